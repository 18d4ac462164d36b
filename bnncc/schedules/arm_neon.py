"""ARM NEON (aarch64, and 32-bit armv7-a): the schedule families and their tensor intrinsic, one step of the
register-blocked BGEMM of :mod:`.tiling`.

``bnncc_neon_bxor_popc_acc_u{bits}x{lanes}`` — ``acc[i] += popcount(x ^ w[i])`` for ``i < lanes``, with ``x`` one
packed input word broadcast to all lanes, ``w`` the words of ``lanes`` consecutive output channels and ``acc`` their
accumulators (all of the word type, one 128-bit vector each). The implementation names the instructions instead of
leaving them to LLVM's pattern matching of ``ctpop``: ``eor`` + ``cnt .16b`` (``llvm.ctpop.v16i8``), then pairwise
widening adds up to the word width, the last one accumulating (``uadalp``): 3 instructions per 128-bit word for
16-bit words, 4 for 32-bit ones. armv7's NEON has the same instructions under other names (``vcnt.8``,
``vpaddl.u8``, ``vpadal``) and half the registers.

The intrinsic covers the innermost (vector) loop of a conv or dense update, so its shape does not depend on the
register tile: the default schedule and the tunable one (whose tile MetaSchedule samples and mutates) both
tensorize with it, and a traced ``tensorize`` replays under any tile decision.
"""

from __future__ import annotations

import functools

from tvm import s_tir
from tvm.s_tir import TensorIntrin
from tvm.s_tir.schedule import SBlockRV
from tvm.script import tirx as T

from ..relay_ops import BINARY_REDUCTION_BLOCKS
from .tiling import Family

VECTOR_BITS = 128
WORD_BITS = (16, 32, 64)  # 8-bit lanes would need no widening add; bnncc packs 16/32/64-bit words


# The pairwise widening add (uaddlp / vpaddl.u) per architecture
PAIRWISE_ADD = {"aarch64": "llvm.aarch64.neon.uaddlp", "armv7": "llvm.arm.neon.vpaddlu"}


def intrin_name(bits: int, arch: str = "aarch64") -> str:
    return f"bnncc_neon_bxor_popc_acc_u{bits}x{VECTOR_BITS // bits}{'' if arch == 'aarch64' else '_' + arch}"


def _popcount_accumulate(acc, v, bits: int, arch: str):
    """acc + popcount(v) per lane: cnt .16b, then uaddlp up to the lane width, the last one fused into the add
    (LLVM selects uadalp for add(acc, uaddlp(·)))."""
    counts = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.ctpop.v16i8"),
                                     T.reinterpret(v, dtype="uint8x16"), dtype="uint8x16")
    width = 8
    while width < bits:
        src, width = f"v{VECTOR_BITS // width}i{width}", width * 2
        counts = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(f"{PAIRWISE_ADD[arch]}.v{VECTOR_BITS // width}i{width}.{src}"),
            counts, dtype=f"uint{width}x{VECTOR_BITS // width}")
    return acc + counts


def _intrin(bits: int, arch: str) -> tuple:
    lanes = VECTOR_BITS // bits
    word = f"uint{bits}"
    vec = f"{word}x{lanes}"

    @T.prim_func(s_tir=True)
    def desc(acc: T.Buffer((lanes,), word, offset_factor=1), xw: T.Buffer((1,), word, offset_factor=1),
             ww: T.Buffer((lanes,), word, offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(acc[0:lanes], xw[0:1], ww[0:lanes])
            T.writes(acc[0:lanes])
            for i in T.vectorized(T.int64(lanes)):
                with T.sblock("update"):
                    vi = T.axis.remap("S", [i])
                    acc[vi] = acc[vi] + T.popcount(xw[0] ^ ww[vi])

    @T.prim_func(s_tir=True)
    def impl(acc: T.Buffer((lanes,), word, offset_factor=1), xw: T.Buffer((1,), word, offset_factor=1),
             ww: T.Buffer((lanes,), word, offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(acc[0:lanes], xw[0:1], ww[0:lanes])
            T.writes(acc[0:lanes])
            acc.vstore([0], _popcount_accumulate(acc.vload([0], vec), T.Broadcast(xw[0], lanes) ^ ww.vload([0], vec),
                                                 bits, arch))

    return desc, impl


def register() -> None:
    """Register the intrinsics (idempotent: TVM's registry is process-wide)."""
    for arch in PAIRWISE_ADD:
        for bits in WORD_BITS:
            if TensorIntrin.get(intrin_name(bits, arch), allow_missing=True) is None:
                TensorIntrin.register(intrin_name(bits, arch), *_intrin(bits, arch))


register()


def tensorize_update(sch: s_tir.Schedule, block: SBlockRV, arch: str = "aarch64") -> SBlockRV:
    """Tensorize the innermost loop of a binary conv/dense update block with the intrinsic of its word type.

    Applies when the loop is one full 128-bit vector of accumulators of the word type (the popcounts accumulate
    in the word type, which bnncc does while the sum fits, and the channels fill a vector); otherwise the block
    is left to LLVM's vectorizer. Returns the block that now does the update (the tensorized one, if any).
    """
    name = sch.get(block).name_hint
    dtype = str(sch.get(block).writes[0].source.ty.dtype)
    if not name.startswith(BINARY_REDUCTION_BLOCKS) or not dtype.startswith("uint"):
        return block
    bits = int(dtype[4:])
    loop = sch.get_loops(block)[-1]
    if bits not in WORD_BITS or int(sch.get(loop).extent) != VECTOR_BITS // bits:
        return block
    try:
        # blockize fails when the pixel loop was fused across rows (whole-row tiles): the binding is not affine
        tile = sch.blockize(loop)
    except s_tir.ScheduleError:
        return block
    try:
        sch.tensorize(tile, intrin_name(bits, arch))
    except s_tir.ScheduleError:  # e.g. popcounts widened to a larger accumulator type: not this intrinsic
        pass
    return tile


# 32 NEON registers: 24 for accumulators. Tiles stay within a row so that the update can be tensorized.
FAMILY = Family("arm-neon", vector_bits=VECTOR_BITS, registers=24, tensorize_update=tensorize_update,
                tile_within_rows=True)
# armv7: 16 quad registers, 10 for accumulators.
ARMV7_FAMILY = Family("armv7-neon", vector_bits=VECTOR_BITS, registers=10,
                      tensorize_update=functools.partial(tensorize_update, arch="armv7"), tile_within_rows=True)
