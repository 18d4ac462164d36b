"""The target-free core of the int8 GEMM schedule (``bnncc.qdense``) on SIMD registers: a register tile of
``xb`` rows × ``nv`` 16-column vectors of int32 accumulators stays in registers across the whole reduction,
each update one 16×4 u8·s8 dot product (a 4-byte broadcast of the row times 64 bytes of packed weights).

On AVX-512 VNNI targets the update is the intrinsic :data:`.x86_avx512.VNNI_INTRIN` (one ``vpdpbusd``); elsewhere LLVM
vectorizes the same loop nest with exact int32 arithmetic. AMX targets replace the whole function instead
(:mod:`.x86_amx`).
"""

from __future__ import annotations

from tvm import s_tir
from tvm.target import Target

from ..relay_ops.qdense import BLOCK, OUTPUT_BLOCK, PAD_BLOCK
from ..targets import isa
from .tiling import Family, find_block
from .x86_avx512 import VNNI_INTRIN


def _divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def qdense_tile(rows: int, vectors: int, registers: int) -> tuple[int, int]:
    """(xb, nv): up to 4 vectors of columns, then as many rows (a divisor of M) as registers allow."""
    nv = _divisor(vectors, 4)
    return _divisor(rows, max(1, registers // nv)), nv


def schedule_qdense(sch: s_tir.Schedule, family: Family, tunable: bool = False) -> bool:
    """Schedule a ``bnncc.qdense`` PrimFunc in place; False if ``sch`` holds none."""
    acc = find_block(sch, BLOCK)
    if acc is None:
        return False
    target = Target.current(allow_none=True)
    vnni = target is not None and isa(target).vnni and family.vector_bits == 512
    i, j, q, r = sch.get_loops(acc)
    rows, cols = (int(sch.get(x).extent) for x in (i, j))
    if tunable:
        io, ii = sch.split(i, sch.sample_perfect_tile(i, n=2, max_innermost_factor=8))
        jo, ji = sch.split(j, [None, 16])
        nv_rv = sch.sample_perfect_tile(jo, n=2, max_innermost_factor=4)
        joo, joi = sch.split(jo, nv_rv)
        nv = nv_rv[1]
    else:
        xb, nv = qdense_tile(rows, cols // 16, family.registers)
        io, ii = sch.split(i, [None, xb])
        jo, ji = sch.split(j, [None, 16])
        joo, joi = sch.split(jo, [None, nv])
    sch.reorder(io, joo, q, ii, joi, ji, r)
    out = sch.get_sblock(OUTPUT_BLOCK)
    sch.reverse_compute_at(out, joo)
    tile = sch.fuse(io, joo)
    sch.parallel(tile)  # before the reduction is decomposed and tensorized (parallel needs a reduction block)
    if not vnni:  # before decompose_reduction: vectorize needs the block to keep its init
        sch.reorder(r, ji)
        sch.vectorize(ji)
        sch.unroll(r)
    sch.unroll(joi)
    sch.unroll(ii)
    init = sch.decompose_reduction(acc, q)
    if vnni:
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(ji, VNNI_INTRIN)
    n = int(sch.get(out).writes[0].source.ty.shape[1])
    if n % (16 * nv) == 0:  # else the tile's last columns are predicated (n < N): leave them scalar
        sch.vectorize(sch.get_loops(out)[-1])
    pad = find_block(sch, PAD_BLOCK)
    sch.vectorize(sch.get_loops(pad)[-1])
    return True
