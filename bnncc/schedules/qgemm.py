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

from ..relay_ops.qdense import BLOCK, COLUMN_BLOCK, OUTPUT_BLOCK, PAD_BLOCK
from ..targets import isa
from .tiling import Family, find_block
from .x86_avx2 import INT8_INTRIN as AVX2_INTRIN
from .x86_avx512 import VNNI_INTRIN

AVX2_ROWS = 2  # rows per register tile: 2 × 4 ymm accumulators (16 columns × 2 half-sums) + 4 weight ymm


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
    facts = isa(target) if target is not None else None
    if facts is not None and facts.arch == "x86_64" and facts.avx2 and not (facts.vnni and facts.avx512):
        return _schedule_avx2(sch, acc, tunable)
    vnni = facts is not None and facts.vnni and family.vector_bits == 512
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
    if n % COLUMN_BLOCK == 0 and n % (16 * nv) == 0:  # else a tile's columns are predicated: leave them scalar
        sch.vectorize(sch.get_loops(out)[-1])
    _vectorize_pad(sch)
    return True


def _vectorize_pad(sch: s_tir.Schedule) -> None:
    """The input's zero padding, 64 bytes a vector (K is padded to a multiple of 64)."""
    sch.vectorize(sch.split(sch.get_loops(find_block(sch, PAD_BLOCK))[-1], [None, 64])[1])


def _schedule_avx2(sch: s_tir.Schedule, acc, tunable: bool) -> bool:
    """x86 without VNNI: the exact vpmaddwd update (:data:`.x86_avx2.INT8_INTRIN`) on a reduction split into the
    two depth pairs of each 4-deep group (rfactor), whose half-sums are added after the reduction."""
    i, j, q, r = sch.get_loops(acc)
    rows = int(sch.get(i).extent)
    rh, _ = sch.split(r, [2, 2])
    rf = sch.rfactor(rh, factor_axis=2)  # rf[i, j, h]: the half-sums
    i, j, q, rh, rk = sch.get_loops(rf)
    xb = sch.sample_perfect_tile(i, n=2, max_innermost_factor=4)[1] if tunable else _divisor(rows, AVX2_ROWS)
    io, ii = sch.split(i, [None, xb])
    jo, ji = sch.split(j, [None, 16])
    sch.reorder(io, jo, q, ii, ji, rh, rk)
    sch.reverse_compute_at(acc, jo)
    out = sch.get_sblock(OUTPUT_BLOCK)
    sch.reverse_compute_at(out, jo)
    sch.parallel(sch.fuse(io, jo))
    sch.unroll(ii)
    init = sch.decompose_reduction(rf, q)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(ji, AVX2_INTRIN)
    n = int(sch.get(out).writes[0].source.ty.shape[1])
    if n % COLUMN_BLOCK == 0:
        sch.vectorize(sch.get_loops(out)[-1])
    _vectorize_pad(sch)
    return True


def schedule_im2col(sch: s_tir.Schedule) -> bool:
    """A conv's patches (``bnncc.im2col``) with the elementwise producers FuseOps put before it (the input's
    quantize, a layout transpose) inlined: one pass that reads the float input and writes the uint8 patches,
    parallel over patch rows, vectorized over each window position's channels."""
    from ..relay_ops.qconv2d import IM2COL_BLOCK

    blk = find_block(sch, IM2COL_BLOCK)
    if blk is None:
        return False
    for b in reversed(sch.get_child_blocks(sch.get_sblock("root"))):
        if sch.get(b).name_hint != IM2COL_BLOCK:
            try:
                sch.compute_inline(b)
            except s_tir.ScheduleError:  # not inlinable (a reduction): left as its own loop nest
                pass
    # Rows split as (n, y, x) and columns as (ky, kx, c): the patch index arithmetic then simplifies to plain
    # loop variables (no division per element).
    n, oh, ow, kh, kw, c = (int(v) for v in sch.get(blk).annotations["bnncc.geometry"])
    row, col = sch.get_loops(blk)
    bn, by, bx = sch.split(row, [n, oh, ow])
    ky, kx, cc = sch.split(col, [kh, kw, c])
    if c % 8 == 0:
        sch.vectorize(cc)
    sch.parallel(sch.fuse(bn, by))
    return True


def schedule_int8_boundary(sch: s_tir.Schedule) -> bool:
    """Elementwise kernels at the int8 boundary (an int32 accumulator dequantized, with whatever float ops FuseOps
    joined to it): producers inlined, one flat loop, parallel chunks, vectorized 16 lanes."""
    from tvm import tirx

    try:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except s_tir.ScheduleError:  # a hand-written kernel (no blocks): not this rule's
        return False
    if not blocks or any(it.iter_type != tirx.IterVar.DataPar for b in blocks for it in sch.get(b).iter_vars):
        return False
    if not any(str(r.source.ty.dtype) == "int32" for b in blocks for r in sch.get(b).reads):
        return False
    for b in blocks[:-1]:
        try:
            sch.compute_inline(b)
        except s_tir.ScheduleError:
            return False
    last = blocks[-1]
    flat = sch.fuse(*sch.get_loops(last))
    size = int(sch.get(flat).extent)
    if size % 16:
        sch.parallel(flat)
        return True
    outer, inner = sch.split(flat, [None, 16])
    sch.vectorize(inner)
    sch.parallel(outer)
    return True
