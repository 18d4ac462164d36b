"""The target-free core of bnncc's CPU schedules: register-tiled (pixels × output channels) reductions.

Binary conv is scheduled as a register-blocked BGEMM over (pixels × output channels): the packed input word of
a pixel is broadcast, XORed with a vector of weight words of ``lanes`` consecutive output channels (weights in
HWIO layout, output channels contiguous), popcounted and accumulated in the word type. A tile of ``xb`` pixels ×
``nv`` vectors stays in registers across the whole (kh, kw, word) reduction, and the output transform runs on
the tile right after it. ``xb`` and ``nv`` are what tuning searches over (:class:`ConvTile`). Float conv,
depthwise conv and dense (TOPI's blocks) get the same structure.

What differs between targets is a :class:`Family` (vector width, accumulator registers, how the innermost
update is tensorized), defined by the target-family modules :mod:`.x86_avx512`, :mod:`.x86_avx2`,
:mod:`.arm_neon` and :mod:`.generic`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tvm import s_tir, tirx

from ..relay_ops import BINARY_REDUCTION_BLOCKS as _BINARY
from ..relay_ops import BITPACK_BLOCK, BITPLANES_BLOCK, BMAXPOOL_BLOCK, BSCONV_BLOCK, PAD_BLOCK
from ..relay_ops.bsconv2d import LEVELS_BLOCK, WEIGHT_VECTORS_ATTR
from .bitpack_intrin import WORD_BITS, bitpack_intrin_name

# Reduction blocks scheduled as (pixels × output channels) register tiles: bnncc's binary and bit-serial kernels,
# and TOPI's float conv / depthwise conv / dense (HWIO and [K, O] weights keep output channels contiguous too).
CONV_BLOCKS = (*_BINARY, BSCONV_BLOCK, "conv2d_nhwc", "group_conv2d_nhwc", "matmul")
ELEMENTWISE_BLOCKS = (BITPACK_BLOCK, BITPLANES_BLOCK, BMAXPOOL_BLOCK)


@dataclass(frozen=True)
class Family:
    """What the tiling core needs to know of a target family."""

    name: str
    vector_bits: int  # SIMD register width
    registers: int  # SIMD registers available for accumulators (leaving room for weights and temporaries)
    # Tensorizes the innermost binary update of a conv/dense block; returns the block doing the update.
    tensorize_update: Callable[[s_tir.Schedule, s_tir.schedule.SBlockRV], s_tir.schedule.SBlockRV] | None = None
    # Keep tiles within a row (y apart): tensorize cannot blockize an update bound to a fused (y, x) index.
    tile_within_rows: bool = False


@dataclass(frozen=True)
class ConvTile:
    xb: int  # output pixels per register tile
    nv: int  # vectors of output channels per register tile


def _extent(loop_rv, sch) -> int:
    return int(sch.get(loop_rv).extent)


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


def default_conv_tile(tiles: list[int], channels: int, lanes: int, registers: int, weight_vectors: int = 1
                      ) -> ConvTile:
    """Largest register tile xb·nv ≤ registers with xb from ``tiles``, preferring wide nv. An update reading
    more than one weight vector per channel vector (a ternary bsconv: sign and mask) keeps the extra ones in
    registers too: xb·nv + (weight_vectors − 1)·nv ≤ registers."""
    best, best_key = ConvTile(1, 1), (0, 0)
    vectors = channels // lanes
    for nv in range(1, min(vectors, 8) + 1):
        if vectors % nv:
            continue
        fits = [xb for xb in tiles if (xb + weight_vectors - 1) * nv <= registers]
        if not fits:
            continue
        xb = max(fits)
        key = (xb * nv, nv)
        if key > best_key:
            best, best_key = ConvTile(xb, nv), key
    return best


def output_dtype(sch: s_tir.Schedule, block) -> str:
    """Element type of the buffer a block writes."""
    return str(sch.get(block).writes[0].source.ty.dtype)


def find_block(sch: s_tir.Schedule, name: str):
    try:
        return sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - absent block
        return None


def _epilogue(sch: s_tir.Schedule, conv):
    """Inline the chain of blocks after the reduction (output transform, BN, residual add, activation) into
    its last block, which is returned; None if the chain branches. A bitpack of that output (added by
    ``pack_in_producers``) ends the chain: the caller places it."""
    chain = []
    block = conv
    while True:
        consumers = sch.get_consumers(block)
        if not consumers:
            break
        if len(consumers) > 1:
            return None
        if sch.get(consumers[0]).name_hint == BITPACK_BLOCK:
            break
        block = consumers[0]
        chain.append(block)
    for block in chain[:-1]:
        sch.compute_inline(block)
    return chain[-1] if chain else None


def schedule_conv(sch: s_tir.Schedule, conv, family: Family, tile: ConvTile | None = None,
                  tunable: bool = False) -> None:
    """Schedule a conv-like reduction block and its epilogue in place.

    Loops must be (n, y, x, o, reductions...) for a conv or (n, o, k) for a dense layer, ``o`` the output
    channels, which the innermost vector loop runs over. ``tunable`` samples the register tile
    (``sample_perfect_tile`` on the output columns and on the channel vectors) instead of picking it, so that
    MetaSchedule's evolutionary search can mutate it.
    """
    elem_bits = int("".join(ch for ch in output_dtype(sch, conv) if ch.isdigit()))
    loops = sch.get_loops(conv)
    if len(loops) == 3:
        b, c, k = loops
        y, x, reduce, outer = None, b, [k], []
    else:
        b, y, x, c, *reduce = loops
        outer = [b]
    channels = _extent(c, sch)
    # Vector loops must divide the channel count (a predicated vector loop cannot be vectorized); odd widths
    # such as <5 x i64> gave wrong results (seen: groups=4, 20 channels, 64-bit words), so powers of two only.
    lanes = _pow2_divisor(channels, family.vector_bits // elem_bits)
    if tunable:
        # Tiles of columns within a row (a perfect split never straddles rows).
        xo, pi = sch.split(x, sch.sample_perfect_tile(x, n=2, max_innermost_factor=min(16, family.registers)))
        outer = [*outer, y] if y is not None else outer
        po = xo
        cvec, cl = sch.split(c, [None, lanes])
        co, cv = sch.split(cvec, sch.sample_perfect_tile(cvec, n=2, max_innermost_factor=8))
    else:
        tiles = pixel_tiles(1 if y is None else _extent(y, sch), _extent(x, sch))
        weight_vectors = int(sch.get(conv).annotations.get(WEIGHT_VECTORS_ATTR, 1))
        tile = tile or default_conv_tile(tiles, channels, lanes, family.registers, weight_vectors)
        if family.tile_within_rows and y is not None and _extent(x, sch) % tile.xb == 0:
            outer, pix = [*outer, y], x
        else:
            pix = x if y is None else sch.fuse(y, x)
        po, pi = sch.split(pix, [None, tile.xb])
        co, cv, cl = sch.split(c, [None, tile.nv, lanes])
    sch.reorder(*outer, po, co, *reduce, pi, cv, cl)
    sch.vectorize(cl)
    sch.unroll(cv)
    sch.unroll(pi)
    par = sch.fuse(*outer, po) if outer else po
    sch.parallel(par)
    sch.decompose_reduction(conv, reduce[0])
    if family.tensorize_update is not None:
        conv = family.tensorize_update(sch, conv)
    out = _epilogue(sch, conv)
    if out is None:
        return
    packed_out = output_dtype(sch, out).startswith("uint")
    # The epilogue consumes the tile while it is hot: float output follows each channel tile; packed output
    # needs whole words, so it follows the pixel tile (all channels).
    at = None
    if not packed_out or channels % elem_bits == 0:
        # (Packed output of a channel count that is not a whole number of words, which only grouped convs
        # produce, runs over the whole output afterwards.)
        at = par if packed_out else co
        sch.reverse_compute_at(out, at)
    pack = find_block(sch, BITPACK_BLOCK)
    if pack is not None and at is not None:
        # The float output's bitpack packs each pixel tile once all its channels are written (still in cache).
        # Unit loops kept: the tensorized bit loop is then found at the same place under any sampled tile.
        sch.reverse_compute_at(pack, par, preserve_unit_loops=True)
        _tensorize_bitpack(sch, pack)
    if tunable:
        # The epilogue's loop count depends on the sampled tile (unit loops vanish), and a trace must replay
        # with the same instruction outputs under any decision: leave its vectorization to LLVM.
        return
    loops = sch.get_loops(out)
    if at is not None:  # only the epilogue's own loops (extent-1 loops vanish)
        loops = loops[[sch.get(lp).same_as(sch.get(at)) for lp in loops].index(True) + 1:]
    if loops and packed_out:
        sch.unroll(loops[-1])
    elif loops:
        sch.vectorize(sch.split(loops[-1], [None, _pow2_divisor(_extent(loops[-1], sch), lanes)])[-1])


def schedule_elementwise(sch: s_tir.Schedule, name: str) -> None:
    """Parallel outer loops for bitpack and max-pool; their padding is read in place (inlined)."""
    blk = find_block(sch, name)
    if blk is None:
        return
    loops = sch.get_loops(blk)
    spatial = [lp for lp, it in zip(loops, sch.get(blk).iter_vars, strict=True)
               if it.iter_type == tirx.IterVar.DataPar]
    if len(spatial) > 1:
        sch.parallel(sch.fuse(*spatial[:-1]))
    pad = find_block(sch, PAD_BLOCK)
    if pad is not None:
        sch.compute_inline(pad)
    if name == BITPACK_BLOCK:
        _tensorize_bitpack(sch, blk)
    levels = find_block(sch, LEVELS_BLOCK)
    if name == BITPLANES_BLOCK and levels is not None:  # the levels of a pixel's channels, just before they pack
        at = sch.get_loops(blk)[0]
        sch.compute_at(levels, at, preserve_unit_loops=True)
        own = sch.get_loops(levels)
        own = own[[sch.get(lp).same_as(sch.get(at)) for lp in own].index(True) + 1:]
        if own:
            sch.vectorize(sch.split(own[-1], [None, _pow2_divisor(_extent(own[-1], sch), 16)])[-1])


def _tensorize_bitpack(sch: s_tir.Schedule, blk) -> None:
    """Whole words of a bitpack become one vector compare + mask reinterpret (:mod:`.intrinsics`); partial
    words (channels not a multiple of the word size) keep the generic bit loop."""
    block = sch.get(blk)
    bits = int(output_dtype(sch, blk)[4:])
    channels, words = int(block.reads[0].source.shape[-1]), int(block.writes[0].source.shape[-1])
    if bits not in WORD_BITS or channels != words * bits:
        return
    bit_loop = sch.get_loops(blk)[-1]
    sch.decompose_reduction(blk, bit_loop)
    sch.tensorize(bit_loop, bitpack_intrin_name(bits))


def is_conv_like(sch: s_tir.Schedule, block) -> bool:
    """Spatial loops first, then reductions, with the shapes :func:`schedule_conv` expects."""
    kinds = [it.iter_type for it in sch.get(block).iter_vars]
    spatial = kinds.count(tirx.IterVar.DataPar)
    return spatial in (2, 4) and all(k == tirx.IterVar.DataPar for k in kinds[:spatial]) and \
        len(kinds) > spatial and len(sch.get_loops(block)) == len(kinds)


def schedule_function_for(sch: s_tir.Schedule, family: Family, tunable: bool = False) -> bool:
    """Schedule one PrimFunc in place if it holds a block bnncc knows; False if it does not."""
    conv = next((b for b in map(lambda n: find_block(sch, n), CONV_BLOCKS) if b is not None), None)
    if conv is not None:
        if not is_conv_like(sch, conv):
            return False
        schedule_conv(sch, conv, family, tunable=tunable)
        return True
    for name in ELEMENTWISE_BLOCKS:
        if find_block(sch, name) is not None:
            schedule_elementwise(sch, name)
            return True
    return False
