"""ARM NEON (aarch64, and 32-bit armv7-a): the schedule families and their tensor intrinsic, one step of the
register-blocked BGEMM of :mod:`.tiling`.

``bnncc_neon_bxor_popc_acc_u{bits}x{lanes}`` — ``acc[i] += popcount(x ^ w[i])`` for ``i < lanes``, with ``x`` one
packed input word broadcast to all lanes, ``w`` the words of ``lanes`` consecutive output channels and ``acc`` their
accumulators (all of the word type, one 128-bit vector each). The implementation names the instructions instead of
leaving them to LLVM's pattern matching of ``ctpop``: ``eor`` + ``cnt .16b`` (``llvm.ctpop.v16i8``), then pairwise
widening adds up to the word width, the last one accumulating (``uadalp``): 3 instructions per 128-bit word for
16-bit words, 4 for 32-bit ones. armv7's NEON has the same instructions under other names (``vcnt.8``,
``vpaddl.u8``, ``vpadal``) and half the registers.

``bnncc_neon_bs{bin,tern}_popc_acc_u{bits}x{lanes}_p{k}`` — the bit-serial update of ``bsconv2d``: the k plane
words of one input word against the weights (and mask), their byte counts combined in bytes before one widening.

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

from ..relay_ops import BINARY_REDUCTION_BLOCKS, BSCONV_BLOCK
from ..relay_ops.bsconv2d import PLANE_AXIS, WEIGHT_VECTORS_ATTR
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
    return _widen_accumulate(acc, _byte_counts(v), bits, arch)


def _byte_counts(v):
    """cnt .16b: the popcount of every byte of a 128-bit vector."""
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.ctpop.v16i8"),
                                   T.reinterpret(v, dtype="uint8x16"), dtype="uint8x16")


def _widen_accumulate(acc, counts, bits: int, arch: str):
    """acc + the byte counts summed pairwise up to the lane width (uaddlp …, the last one uadalp)."""
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
    if name.startswith(BSCONV_BLOCK):
        return _tensorize_bsconv(sch, block, arch)
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


# ------------------------------------------------- the bit-serial update of bsconv2d (k-bit activation planes)
# acc[i] += Σ_p popcount((x[p] ∧ m[i]) ⊕ w[i]) << p over the k planes of one input word: the planes' byte counts
# are combined in bytes (≤ 8·(2^k − 1) ≤ 255 for k ≤ 5) and widened once, so a 2-plane step is 2 eor + 2 cnt +
# shl + add + one widening chain instead of two.
MAX_BS_PLANES = 5


def bs_intrin_name(bits: int, planes: int, masked: bool) -> str:
    return f"bnncc_neon_bs{'tern' if masked else 'bin'}_popc_acc_u{bits}x{VECTOR_BITS // bits}_p{planes}"


def _bs_intrin(bits: int, planes: int, masked: bool, arch: str) -> tuple:
    """The weights are one region [sign] or [sign; mask] × lanes (the weight planes of the packed constant)."""
    lanes = VECTOR_BITS // bits
    word = f"uint{bits}"
    vec = f"{word}x{lanes}"
    wp = 2 if masked else 1

    def term(x, w, m):
        return x & m ^ w if masked else x ^ w

    @T.prim_func(s_tir=True)
    def desc(acc: T.Buffer((lanes,), word, offset_factor=1), xw: T.Buffer((planes,), word, offset_factor=1),
             wm: T.Buffer((wp, lanes), word, offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(acc[0:lanes], xw[0:planes], wm[0:wp, 0:lanes])
            T.writes(acc[0:lanes])
            for p in T.serial(T.int64(planes)):
                for i in T.vectorized(T.int64(lanes)):
                    with T.sblock("update"):
                        vi, vp = T.axis.remap("SR", [i, p])  # the order of the conv block's vars
                        acc[vi] = acc[vi] + (T.popcount(term(xw[vp], wm[0, vi], wm[wp - 1, vi])) << T.Cast(word, vp))

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, x: T.handle, w: T.handle) -> None:
        s0 = T.int32()
        acc = T.match_buffer(a, (lanes,), word, offset_factor=1)
        xw = T.match_buffer(x, (planes,), word, offset_factor=1)
        wm = T.match_buffer(w, (wp, lanes), word, offset_factor=1, strides=[s0, 1])
        with T.sblock("root"):
            T.reads(acc[0:lanes], xw[0:planes], wm[0:wp, 0:lanes])
            T.writes(acc[0:lanes])
            wv = wm.vload([0, 0], vec)
            mv = wm.vload([wp - 1, 0], vec)
            counts = _byte_counts(term(T.Broadcast(xw[0], lanes), wv, mv))
            for p in range(1, planes):
                counts = counts + (_byte_counts(term(T.Broadcast(xw[p], lanes), wv, mv)) << T.Broadcast(T.uint8(p), 16))
            acc.vstore([0], _widen_accumulate(acc.vload([0], vec), counts, bits, arch))

    return desc, impl


def _register_bs(bits: int, planes: int, masked: bool, arch: str) -> str:
    name = bs_intrin_name(bits, planes, masked) + ("" if arch == "aarch64" else "_" + arch)
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, *_bs_intrin(bits, planes, masked, arch))
    return name


def _tensorize_bsconv(sch: s_tir.Schedule, block: SBlockRV, arch: str) -> SBlockRV:
    """The plane loop moved just above the lane loop, and the two tensorized with the bit-serial intrinsic."""
    dtype = str(sch.get(block).writes[0].source.ty.dtype)
    loops = sch.get_loops(block)
    plane = next((lp for lp in loops if sch.get(lp).loop_var.name == PLANE_AXIS), None)
    if plane is None or not dtype.startswith("uint"):
        return block
    bits, planes = int(dtype[4:]), int(sch.get(plane).extent)
    if bits not in WORD_BITS or int(sch.get(loops[-1]).extent) != VECTOR_BITS // bits or planes > MAX_BS_PLANES:
        return block
    masked = int(sch.get(block).annotations.get(WEIGHT_VECTORS_ATTR, 1)) == 2
    inner = [lp for lp in loops[loops.index(plane) + 1:-1]]
    try:
        sch.reorder(*inner, plane)
        tile = sch.blockize(plane)
    except s_tir.ScheduleError:
        return block
    try:
        sch.tensorize(tile, _register_bs(bits, planes, masked, arch))
    except s_tir.ScheduleError:
        pass
    return tile


# 32 NEON registers: 24 for accumulators. Tiles stay within a row so that the update can be tensorized.
FAMILY = Family("arm-neon", vector_bits=VECTOR_BITS, registers=24, tensorize_update=tensorize_update,
                tile_within_rows=True)
# armv7: 16 quad registers, 10 for accumulators.
ARMV7_FAMILY = Family("armv7-neon", vector_bits=VECTOR_BITS, registers=10,
                      tensorize_update=functools.partial(tensorize_update, arch="armv7"), tile_within_rows=True)
