"""Default CPU schedules for the binary operators (x86 AVX-512/AVX2 and ARM NEON share one structure).

Binary conv is scheduled as a register-blocked BGEMM over (pixels × output channels): the packed input word of
a pixel is broadcast, XORed with a vector of weight words of ``lanes`` consecutive output channels (weights in
HWIO layout, output channels contiguous), popcounted and accumulated in the word type. A tile of ``xb`` pixels ×
``nv`` vectors stays in registers across the whole (kh, kw, word) reduction, and the output transform runs on
the tile right after it. ``xb`` and ``nv`` are what tuning searches over (:class:`ConvTile`).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target, codegen


@dataclass(frozen=True)
class CpuInfo:
    vector_bits: int  # SIMD register width
    registers: int  # SIMD registers available for accumulators (leaving room for weights and temporaries)

    @staticmethod
    def of(target: Target) -> CpuInfo:
        def has(f):
            return codegen.llvm_cpu_has_features([f], target)

        if has("avx512f"):
            return CpuInfo(512, 24)
        if has("avx2"):
            return CpuInfo(256, 12)
        if has("neon"):
            return CpuInfo(128, 24)
        return CpuInfo(128, 12)


@dataclass(frozen=True)
class ConvTile:
    xb: int  # output pixels per register tile
    nv: int  # vectors of output channels per register tile


def _extent(loop_rv, sch) -> int:
    return int(sch.get(loop_rv).extent)


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _pow2_divisor(n: int, limit: int) -> int:
    d = 1
    while n % (2 * d) == 0 and 2 * d <= limit:
        d *= 2
    return d


def pixel_tiles(rows: int, cols: int) -> list[int]:
    """Pixel-tile sizes that never straddle a row boundary: divisors of the row, or whole rows.

    A tile over the fused (y, x) index that straddles rows makes the epilogue's region an over-approximation
    (whole rows), which would read pixels of another tile that has not been computed yet.
    """
    return sorted({d for d in range(1, cols + 1) if cols % d == 0} |
                  {cols * k for k in range(1, rows + 1) if rows % k == 0})


def default_conv_tile(tiles: list[int], channels: int, lanes: int, registers: int) -> ConvTile:
    """Largest register tile xb·nv ≤ registers with xb from ``tiles``, preferring wide nv."""
    best, best_key = ConvTile(1, 1), (0, 0)
    vectors = channels // lanes
    for nv in range(1, min(vectors, 8) + 1):
        if vectors % nv:
            continue
        fits = [xb for xb in tiles if xb * nv <= registers]
        if not fits:
            continue
        xb = max(fits)
        key = (xb * nv, nv)
        if key > best_key:
            best, best_key = ConvTile(xb, nv), key
    return best


def _dtype(sch: s_tir.Schedule, block) -> str:
    """Element type of the buffer a block writes."""
    return str(sch.get(block).writes[0].source.ty.dtype)


def _dtype_bits(sch: s_tir.Schedule, block) -> int:
    return int(_dtype(sch, block)[4:])


def _find(sch: s_tir.Schedule, name: str):
    try:
        return sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - absent block
        return None


def schedule_bconv(sch: s_tir.Schedule, info: CpuInfo, tile: ConvTile | None = None) -> None:
    """Schedule the ``bnncc_bconv`` / ``bnncc_bdense`` reduction and its epilogue in place."""
    conv = _find(sch, "bnncc_bconv")
    dense = conv is None
    if dense:
        conv = sch.get_sblock("bnncc_bdense")
    word_bits = _dtype_bits(sch, conv)
    lanes = info.vector_bits // word_bits
    acc = sch.get_sblock("bnncc_acc")
    out = sch.get_sblock("bnncc_output")
    sch.compute_inline(acc)
    packed_out = _dtype(sch, out).startswith("uint")
    if dense:
        b, c, k = sch.get_loops(conv)
        tiles = pixel_tiles(1, _extent(b, sch))
        pix = b
        reduce = [k]
        outer = []
    else:
        b, y, x, c, kh, kw, k = sch.get_loops(conv)
        tiles = pixel_tiles(_extent(y, sch), _extent(x, sch))
        pix = sch.fuse(y, x)
        reduce = [kh, kw, k]
        outer = [b]
    channels = _extent(c, sch)
    # Vector loops must divide the channel count (a predicated vector loop cannot be vectorized); odd widths
    # such as <5 x i64> gave wrong results (seen: groups=4, 20 channels, 64-bit words), so powers of two only.
    lanes = _pow2_divisor(channels, lanes)
    tile = tile or default_conv_tile(tiles, channels, lanes, info.registers)
    po, pi = sch.split(pix, [None, tile.xb])
    co, cv, cl = sch.split(c, [None, tile.nv, lanes])
    sch.reorder(*outer, po, co, *reduce, pi, cv, cl)
    sch.vectorize(cl)
    sch.unroll(cv)
    sch.unroll(pi)
    par = sch.fuse(*outer, po) if outer else po
    sch.parallel(par)
    sch.decompose_reduction(conv, reduce[0])
    # The epilogue consumes the tile while it is hot; packed output needs whole words, so it follows the
    # pixel tile (all channels), float output follows each channel tile.
    # The pad_value=0 correction depends only on the position: computed once per call, before the conv.
    for name in ("bnncc_wpop", "bnncc_pad_correction"):
        blk = _find(sch, name)
        if blk is not None:
            sch.parallel(sch.get_loops(blk)[0])
    at = None
    if _find(sch, "bnncc_pad_correction") is None and (not packed_out or channels % word_bits == 0):
        # TODO(x86 speed): the pad_value=0 epilogue reads the correction too, which stops it from following
        # the tile; it then runs over the whole output afterwards (so does packed output of a channel count
        # that is not a whole number of words, which only grouped convs produce).
        at = par if packed_out else co
        sch.reverse_compute_at(out, at)
    loops = sch.get_loops(out)
    if at is not None:  # only the epilogue's own loops (extent-1 loops vanish)
        loops = loops[[sch.get(lp).same_as(sch.get(at)) for lp in loops].index(True) + 1:]
    if loops and packed_out:
        sch.unroll(loops[-1])
    elif loops:
        sch.vectorize(sch.split(loops[-1], [None, _pow2_divisor(_extent(loops[-1], sch), lanes)])[-1])


def schedule_elementwise(sch: s_tir.Schedule, name: str, info: CpuInfo) -> None:
    """Parallel outer loop, unrolled reduction (bitpack over bits, max-pool over the window)."""
    blk = _find(sch, name)
    if blk is None:
        return
    loops = sch.get_loops(blk)
    spatial = [lp for lp, it in zip(loops, sch.get(blk).iter_vars, strict=True)
               if it.iter_type == tirx.IterVar.DataPar]
    if len(spatial) > 1:
        sch.parallel(sch.fuse(*spatial[:-1]))
    pad = _find(sch, "bnncc_pad")
    if pad is not None:
        sch.compute_inline(pad)


class BinaryOps(ScheduleRule):
    """dlight rule: schedules every PrimFunc that holds a bnncc block; leaves other functions alone."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):  # noqa: ARG002
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        info = CpuInfo.of(target)
        if _find(sch, "bnncc_bconv") is not None or _find(sch, "bnncc_bdense") is not None:
            schedule_bconv(sch, info)
        elif _find(sch, "bnncc_bitpack") is not None:
            schedule_elementwise(sch, "bnncc_bitpack", info)
        elif _find(sch, "bnncc_bmaxpool") is not None:
            schedule_elementwise(sch, "bnncc_bmaxpool", info)
        else:
            return None
        return sch


def schedule_module(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    """Apply the bnncc rules (then TVM's generic CPU rules) to every unscheduled PrimFunc."""
    from tvm.s_tir import dlight

    with target:
        return dlight.ApplyDefaultSchedule(BinaryOps(), dlight.cpu.GEMV(), dlight.cpu.Reduction())(mod)
