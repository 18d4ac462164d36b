"""Bit-serial conv2d: k-bit activations (Larq's ``DoReFa``) × binary or ternary weights on popcounts.

- ``bnncc.bitplanes(x)``: float NHWC → uint{bits} [N, H, W, wg·k]: the DoReFa level of every channel,
  round_half_even(clip(x, 0, 1)·n) with n = 2^k − 1, as k bit-planes packed like ``bitpack`` (word j·k + i holds
  bit i of the levels of channels j·bits …, wg = ⌈C/bits⌉; padding bits 0): the k plane words of the same
  channels are adjacent, what one step of the kernel reads.
- ``bnncc.bsconv2d(planes, w, offset, post)``: the conv of those levels with constant weights in {−1, +1}
  (one plane: sign bits, 1 for −1) or {−1, 0, +1} (two planes: sign, and mask of the non-zeros) → NHWO float32.

The accumulator: with a level's bits a_i, sign bits s and mask m (all ones for binary weights),
Σ a·w = Σ_i 2^i · Σ_c a_i·m·(1 − 2s) and, since s ⊆ m, popcount((a_i ∧ m) ⊕ s) = Σ a_i∧m + Σ s − 2·Σ a_i∧s, so

    acc = Σ_i 2^i · Σ_taps popcount((a_i ∧ m) ⊕ s) − n·S,    S = the number of −1 weights of the output channel

(``offset`` = n·S, constant). A padded pixel is level 0 (all planes zero words: Larq's zero padding of DoReFa
values) and adds popcount(s) per tap, which the n·S term, counted over every tap, takes away again: no
correction table. The reduction is bconv2d's XOR-popcount with one more reduction axis (the planes, each
popcount shifted by its plane): the same register-tiled schedule runs it (:mod:`bnncc.schedules.tiling`).
The output transform is ``y = bias + multiplier · clamp(acc)`` (:mod:`.output_transform`); a Larq layer's float
conv of level/n values is acc/n, so the frontend's multiplier is α/n.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import relax, te, tirx, topi

from .. import reference
from ..errors import OpError
from .common import (
    PAD_BLOCK,
    accumulator_type,
    attrs,
    ints,
    ohwi_kernel,
    packed_bits,
    popcount_as,
    register_op,
    shape_of,
    static_shape,
)
from .geometry import explicit_window, output_hw
from .output_transform import clamp_range, output_compute, post_constants

BLOCK = "bnncc_bsconv"  # the shifted-popcount reduction
PLANES_BLOCK = "bnncc_bitplanes"
LEVELS_BLOCK = "bnncc_levels"  # the uint8 DoReFa levels bitplanes packs (computed once per channel)
OP_NAME = "bnncc.bsconv2d"
PLANES_OP = "bnncc.bitplanes"
WEIGHT_VECTORS_ATTR = "bnncc.weight_vectors"
PLANE_AXIS = "plane"  # the reduction axis over bit-planes (the NEON schedule moves it)
MAX_K_BIT = 8
WEIGHTS = ("binary", "ternary")


def _check_k(op: str, k_bit: int) -> None:
    if not 1 <= k_bit <= MAX_K_BIT:
        raise OpError(op, f"k_bit must be in 1..{MAX_K_BIT}, got {k_bit}")


# ------------------------------------------------------------------------------------------- bitplanes
def bitplanes_type(shape, dtype, k_bit: int, bits: int) -> tuple[tuple[int, ...], str]:
    _check_k(PLANES_OP, k_bit)
    if len(shape) < 1 or not dtype.startswith("float"):
        raise OpError(PLANES_OP, f"input must be floating point with channels last, got {dtype} {shape}")
    if bits not in (16, 32, 64):
        raise OpError(PLANES_OP, f"bits must be 16, 32 or 64, got {bits}")
    return (*shape[:-1], k_bit * reference.words_per_group(shape[-1], 1, bits)), f"uint{bits}"


def bitplanes_compute(data: te.Tensor, k_bit: int, bits: int) -> te.Tensor:
    """The TE definition: the levels (block :data:`LEVELS_BLOCK`), then the words (block :data:`PLANES_BLOCK`):
    bit b of word j = bit j % k of the level of channel (j // k)·bits + b."""
    c = int(data.shape[-1])
    wg = reference.words_per_group(c, 1, bits)
    dtype = f"uint{bits}"
    n = tirx.const(float(2 ** k_bit - 1), "float32")

    def level(*idx):
        v = data(*idx).astype("float32")
        clipped = tirx.max(tirx.min(v, tirx.const(1.0, "float32")), tirx.const(0.0, "float32"))
        return tirx.round(clipped * n).astype("uint8")

    levels = te.compute(data.shape, level, name=LEVELS_BLOCK)
    i = te.reduce_axis((0, bits), name="bit")

    def word(*idx):
        *lead, j = idx
        plane, ch = j % k_bit, (j // k_bit) * bits + i
        bit = ((levels(*lead, tirx.min(ch, c - 1)) >> plane.astype("uint8")) & tirx.const(1, "uint8")).astype(dtype)
        if c % bits:
            bit = tirx.if_then_else(ch < c, bit, tirx.const(0, dtype))
        return te.sum(bit << i.astype(dtype), axis=i)

    return te.compute((*data.shape[:-1], k_bit * wg), word, name=PLANES_BLOCK)


def _planes_infer(call, _ctx):
    a = call.attrs
    return relax.TensorType(*bitplanes_type(*shape_of(call.args[0]), int(a["k_bit"]), int(a["bits"])))


def _planes_legalize(bb, call):
    a = call.attrs
    return bb.call_te(bitplanes_compute, call.args[0], int(a["k_bit"]), int(a["bits"]),
                      primfunc_name_hint=PLANES_BLOCK)


BITPLANES = register_op("bitplanes", 1, _planes_infer, _planes_legalize,
                        "DoReFa k-bit levels of float channels as packed bit-planes.")


def bitplanes(data: relax.Expr, k_bit: int = 2, bits: int = 32) -> relax.Call:
    """The k bit-planes of the DoReFa levels of ``data`` along its last axis, in ``bits``-bit words."""
    bitplanes_type(*static_shape(PLANES_OP, "input", data), int(k_bit), int(bits))
    return relax.Call(BITPLANES, [data], attrs(k_bit=int(k_bit), bits=int(bits)))


# -------------------------------------------------------------------------------------------- bsconv2d
def bsconv2d_type(dshape, ddtype, wshape, wdtype, a) -> tuple[tuple[int, ...], str]:
    """The type rule: result (shape, dtype), or an OpError."""
    op = OP_NAME
    bits = packed_bits(op, ddtype)
    k_bit = int(a["k_bit"])
    _check_k(op, k_bit)
    if wdtype != ddtype:
        raise OpError(op, f"weights ({wdtype}) and input ({ddtype}) must use the same word type")
    if len(dshape) != 4 or len(wshape) != 5:
        raise OpError(op, f"input must be NHWC planes and weights [KH, KW, words, planes, O], got ranks "
                          f"{len(dshape)} and {len(wshape)}")
    n, h, w, words = dshape
    kh, kw, wg, pw, o = wshape
    if pw not in (1, 2):
        raise OpError(op, f"weights have {pw} planes: 1 (binary) or 2 (ternary) expected")
    cin = int(a["channels_in"])
    need = reference.words_per_group(cin, 1, bits)
    if words != k_bit * need or wg != need:
        raise OpError(op, f"{cin} channels of {k_bit} planes need {k_bit * need} words per pixel and {need} per "
                          f"weight tap, got {words} and {wg}")
    strides, dilation = ints(a["strides"]), ints(a["dilation"])
    if min(*strides, *dilation) < 1:
        raise OpError(op, f"strides and dilation must be positive, got {strides} and {dilation}")
    if str(a["out"]) != "float32":
        raise OpError(op, f"only float32 output is supported, got {a['out']!r}")
    oh, ow = output_hw((h, w), (kh, kw), strides, dilation, ints(a["padding"]))
    if oh < 1 or ow < 1:
        raise OpError(op, f"a {kh}x{kw} kernel (dilation {dilation}) does not fit the padded {h}x{w} input")
    return (n, oh, ow, o), "float32"


def compute(data: te.Tensor, weight: te.Tensor, offset: te.Tensor, post: te.Tensor, *, k_bit: int,
            channels_in: int, strides, dilation, padding, clamp, out: str = "float32") -> te.Tensor:
    """The TE definition: zero padding (:data:`PAD_BLOCK`, level 0), the reduction (:data:`BLOCK`),
    acc = reduction − offset, the output transform."""
    kh, kw, wg, pw, o = (int(s) for s in weight.shape)
    n, h, w, _ = (int(s) for s in data.shape)
    oh, ow = output_hw((h, w), (kh, kw), strides, dilation, padding)
    bits = int(str(data.dtype)[4:])
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilation, padding
    xpad = topi.nn.pad(data, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=0, name=PAD_BLOCK) \
        if any(padding) else data
    rkh = te.reduce_axis((0, kh), name="kh")
    rkw = te.reduce_axis((0, kw), name="kw")
    rp = te.reduce_axis((0, k_bit), name=PLANE_AXIS)
    rk = te.reduce_axis((0, wg), name="k")
    acc_t = accumulator_type(str(data.dtype), (2 ** k_bit - 1) * kh * kw * wg * bits)

    def term(b, y, x, c):
        a = xpad[b, y * sh + rkh * dh, x * sw + rkw * dw, rk * k_bit + rp]
        if pw == 2:
            a = a & weight[rkh, rkw, rk, 1, c]
        return popcount_as(a ^ weight[rkh, rkw, rk, 0, c], acc_t) << rp.astype(acc_t)

    # weight vectors per channel vector of the update (sign, mask): the schedule's register budget
    popc = te.compute((n, oh, ow, o), lambda b, y, x, c: te.sum(term(b, y, x, c), axis=[rkh, rkw, rk, rp]),
                      name=BLOCK, attrs={WEIGHT_VECTORS_ATTR: pw})
    acc = te.compute(popc.shape, lambda b, y, x, c: popc[b, y, x, c].astype("int32") - offset[c],
                     name="bnncc_bsacc")
    return output_compute(acc, post, out, clamp, bits)


def _conv_kwargs(a) -> dict:
    return dict(k_bit=int(a["k_bit"]), channels_in=int(a["channels_in"]), strides=ints(a["strides"]),
                dilation=ints(a["dilation"]), padding=ints(a["padding"]), clamp=ints(a["clamp"]), out=str(a["out"]))


def _infer(call, _ctx):
    return relax.TensorType(*bsconv2d_type(*shape_of(call.args[0]), *shape_of(call.args[1]), call.attrs))


def _legalize(bb, call):
    return bb.call_te(compute, *call.args, **_conv_kwargs(call.attrs), primfunc_name_hint="bnncc_bsconv2d")


BSCONV2D = register_op("bsconv2d", 4, _infer, _legalize, "Bit-serial 2-D convolution of k-bit activation planes.")


def integer_weights(kernel_ohwi: np.ndarray, weights: str) -> np.ndarray:
    """The int8 OHWI weights the op computes with: sign(w) with sign(0) = +1 (binary) or sign(w) ∈ {−1, 0, +1}
    (ternary: a zero stays zero)."""
    if weights == "binary":
        return reference.binarize(kernel_ohwi)
    return np.sign(np.asarray(kernel_ohwi, np.float32)).astype(np.int8)


def pack_weights(w_int: np.ndarray, bits: int, ternary: bool) -> np.ndarray:
    """int OHWI weights → uint{bits} [KH, KW, words, planes, O]: the sign plane (1 for −1) and, for ternary
    weights, the mask plane (1 for a non-zero); output channels contiguous, and the planes of a word next to
    each other (one region of the NEON update)."""
    planes = [reference.bitpack(w_int, bits)]
    if ternary:
        planes.append(reference.bitpack(np.where(w_int != 0, -1, 1), bits))
    return np.ascontiguousarray(np.stack(planes).transpose(2, 3, 4, 0, 1))


def bsconv2d(data: relax.Expr, kernel: np.ndarray, multiplier=None, bias=None, *, k_bit: int = 2,
             weights: str = "binary", strides: Sequence[int] = (1, 1), dilation: Sequence[int] = (1, 1),
             padding: str | Sequence[int] = "valid", clamp: Sequence[int] | None = None,
             kernel_layout: str = "HWIO") -> relax.Call:
    """Bit-serial conv2d of ``data`` (the output of :func:`bitplanes` with the same ``k_bit``) with a constant
    kernel (HWIO like Keras, or OHWI; groups = 1), binarized or ternarized as ``weights`` says
    (:func:`integer_weights`). y = bias + multiplier · clamp(acc) per output channel, float32."""
    op = OP_NAME
    dshape, ddtype = static_shape(op, "input", data)
    bits = packed_bits(op, ddtype)
    if weights not in WEIGHTS:
        raise OpError(op, f"weights must be one of {WEIGHTS}, got {weights!r}")
    kernel = ohwi_kernel(op, kernel, kernel_layout)
    o, kh, kw, cin = kernel.shape
    strides, dilation, k_bit = ints(strides), ints(dilation), int(k_bit)
    _check_k(op, k_bit)
    pads = explicit_window(op, dshape, padding, (kh, kw), strides, dilation)
    clamp = clamp_range(clamp)
    post, _ = post_constants(op, o, multiplier, bias, clamp, "float32", 0)
    w_int = integer_weights(kernel, weights)
    offset = ((2 ** k_bit - 1) * (w_int.reshape(o, -1) < 0).sum(axis=1)).astype(np.int32)
    wpacked = pack_weights(w_int, bits, weights == "ternary")
    a = dict(k_bit=k_bit, channels_in=cin, strides=strides, dilation=dilation, padding=pads, clamp=clamp,
             out="float32")
    bsconv2d_type(dshape, ddtype, wpacked.shape, wpacked.dtype.name, a)
    return relax.Call(BSCONV2D, [data, relax.const(wpacked), relax.const(offset), relax.const(post)], attrs(**a))
