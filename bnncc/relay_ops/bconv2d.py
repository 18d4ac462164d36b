"""``bnncc.bconv2d(x, w, post)``: binary conv2d, packed NHWC input × packed weights → NHWO float32 or packed words.

Weights are constant, packed OHWI ([O, KH, KW, words]) or HWIO ([KH, KW, words, O], output channels contiguous:
what vectorizing over output channels wants; :func:`with_weight_layout`). The accumulator of an output is
K − 2·popcount(x ^ w) over the window (K = KH·KW·channels per group); ``post`` is the output transform
(:mod:`.output_transform`). Padded pixels are +1 (zero bits); ``pad_value=0`` subtracts a correction table
computed from the constant weights at compile time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tvm
from tvm import relax, te, tirx, topi

from .. import reference
from ..errors import OpError
from .common import (
    PAD_BLOCK,
    accumulator_type,
    attrs,
    copy_attrs,
    ints,
    ohwi_kernel,
    packed_bits,
    popcount,
    popcount_as,
    register_op,
    shape_of,
    static_shape,
)
from .geometry import BorderClasses, explicit_window, output_hw
from .output_transform import (
    binary_weights,
    clamp_range,
    output_compute,
    output_type,
    pad_packed_channels,
    post_constants,
)

BLOCK = "bnncc_bconv"  # the popcount reduction
PAD_CORRECTION_BLOCK = "bnncc_pad_correction"
OP_NAME = "bnncc.bconv2d"
WEIGHT_LAYOUTS = ("OHWI", "HWIO")


def bconv2d_type(dshape, ddtype, wshape, wdtype, a) -> tuple[tuple[int, ...], str]:
    """The type rule: result (shape, dtype) from the input's and weights' and the attributes, or an OpError."""
    op = OP_NAME
    bits = packed_bits(op, ddtype)
    if wdtype != ddtype:
        raise OpError(op, f"weights ({wdtype}) and input ({ddtype}) must use the same word type")
    if len(dshape) != 4:
        raise OpError(op, f"input must be NHWC (rank 4), got rank {len(dshape)} {dshape}")
    if len(wshape) != 4:
        raise OpError(op, f"weights must be packed OHWI (rank 4), got rank {len(wshape)} {wshape}")
    n, h, w, words = dshape
    layout = str(a["weight_layout"])
    if layout not in WEIGHT_LAYOUTS:
        raise OpError(op, f"weight_layout must be 'OHWI' or 'HWIO', got {layout!r}")
    if layout == "HWIO":
        kh, kw, wg, o = wshape
    else:
        o, kh, kw, wg = wshape
    groups, cin = int(a["groups"]), int(a["channels_in"])
    if groups < 1 or cin % groups:
        raise OpError(op, f"{cin} input channels cannot be split into {groups} groups")
    if o % groups:
        raise OpError(op, f"{o} output channels cannot be split into {groups} groups")
    need = reference.words_per_group(cin, groups, bits)
    if words != groups * need:
        raise OpError(op, f"input has {words} words per pixel, but {cin} channels in {groups} group(s) "
                          f"of {bits}-bit words need {groups * need}")
    if wg != need:
        raise OpError(op, f"weights have {wg} words per tap, but {cin // groups} channels per group need {need}")
    strides, dilation = ints(a["strides"]), ints(a["dilation"])
    if min(*strides, *dilation) < 1:
        raise OpError(op, f"strides and dilation must be positive, got {strides} and {dilation}")
    if int(a["pad_value"]) not in (0, 1):
        raise OpError(op, f"pad_value must be 0 or 1, got {a['pad_value']}")
    oh, ow = output_hw((h, w), (kh, kw), strides, dilation, ints(a["padding"]))
    if oh < 1 or ow < 1:
        raise OpError(op, f"a {kh}x{kw} kernel (dilation {dilation}) does not fit the padded {h}x{w} input")
    return output_type(op, (n, oh, ow), o, str(a["out"]), bits)


# ------------------------------------------------------------------------------------------------- TE
def _weight_access(weight: te.Tensor, weight_layout: str):
    """(O, KH, KW, words, wt(c, i, j, k)) for packed OHWI or HWIO weights."""
    if weight_layout == "HWIO":
        kh, kw, wg, o = (int(s) for s in weight.shape)
        return o, kh, kw, wg, lambda c, i, j, k: weight[i, j, k, c]
    o, kh, kw, wg = (int(s) for s in weight.shape)
    return o, kh, kw, wg, lambda c, i, j, k: weight[c, i, j, k]


def _border_classes(data_shape, kh, kw, strides, dilation, padding):
    """(OH, OW, row classes, column classes)."""
    _, h, w, _ = (int(s) for s in data_shape)
    oh, ow = output_hw((h, w), (kh, kw), strides, dilation, padding)
    return (oh, ow, BorderClasses(h, oh, kh, strides[0], dilation[0], padding[0]),
            BorderClasses(w, ow, kw, strides[1], dilation[1], padding[1]))


def pad_correction_compute(data_shape, weight: te.Tensor, *, channels_in: int, strides, dilation, padding,
                           groups: int, weight_layout: str = "OHWI") -> te.Tensor:
    """int32 [row classes, column classes, O]: what zero-padded taps wrongly added as +1 pixels.

    With pad_value=0, taps in the padding must not count; the kernel pads with +1 (zero bits) and subtracts
    Σ_padded (kg − 2·popcount(w_tap)). It depends only on the weights and the border class of the position,
    so it is computed from the constant weights at compile time (Relax folds this call) into a small table.
    """
    o, kh, kw, wg, wt = _weight_access(weight, weight_layout)
    _, _, rows, cols = _border_classes(data_shape, kh, kw, strides, dilation, padding)
    kg = channels_in // groups
    k = te.reduce_axis((0, wg), name="wk")
    wpop = te.compute((o, kh, kw), lambda c, i, j: te.sum(popcount(wt(c, i, j, k)), axis=k), name="bnncc_wpop")
    ci = te.reduce_axis((0, kh), name="ci")
    cj = te.reduce_axis((0, kw), name="cj")
    return te.compute(
        (rows.count, cols.count, o),
        lambda cy, cx, c: te.sum(
            tirx.if_then_else(tirx.any(rows.padded(rows.row(cy), ci), cols.padded(cols.row(cx), cj)),
                              kg - 2 * wpop[c, ci, cj], 0), axis=[ci, cj]),
        name=PAD_CORRECTION_BLOCK,
    )


def compute(data: te.Tensor, weight: te.Tensor, post: te.Tensor, correction: te.Tensor | None = None, *,
            channels_in: int, strides, dilation, padding, pad_value: int, groups: int, clamp, out: str,
            weight_layout: str = "OHWI") -> te.Tensor:
    """The TE definition: padding (:data:`PAD_BLOCK`), popcount reduction (:data:`BLOCK`), accumulator, output
    transform. ``correction`` is the table of :func:`pad_correction_compute`, needed for pad_value=0 with
    padding."""
    o, kh, kw, wg, wt = _weight_access(weight, weight_layout)
    oh, ow, rows, cols = _border_classes(data.shape, kh, kw, strides, dilation, padding)
    n = int(data.shape[0])
    bits = int(str(data.dtype)[4:])
    sh, sw = strides
    dh, dw = dilation
    pt, pl, pb, pr = padding
    og = o // groups
    kg = channels_in // groups
    # Padded pixels are +1, i.e. zero bits; pad_value=0 is corrected by the table.
    xpad = topi.nn.pad(data, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=0, name=PAD_BLOCK) \
        if any(padding) else data
    rkh = te.reduce_axis((0, kh), name="kh")
    rkw = te.reduce_axis((0, kw), name="kw")
    rk = te.reduce_axis((0, wg), name="k")
    acc_t = accumulator_type(str(data.dtype), kh * kw * wg * bits)
    popc = te.compute(
        (n, oh, ow, o),
        lambda b, y, x, c: te.sum(
            popcount_as(xpad[b, y * sh + rkh * dh, x * sw + rkw * dw, (c // og) * wg + rk] ^ wt(c, rkh, rkw, rk),
                        acc_t),
            axis=[rkh, rkw, rk]),
        name=BLOCK,
    )
    if correction is None:
        acc = te.compute(popc.shape, lambda b, y, x, c: kg * kh * kw - 2 * popc[b, y, x, c].astype("int32"),
                         name="bnncc_acc")
    else:
        acc = te.compute(popc.shape,
                         lambda b, y, x, c: kg * kh * kw - 2 * popc[b, y, x, c].astype("int32")
                         - correction[rows.of(y), cols.of(x), c],
                         name="bnncc_acc")
    return output_compute(acc, post, out, clamp, bits)


# --------------------------------------------------------------------------------------- registration
def _conv_kwargs(a) -> dict:
    return dict(channels_in=int(a["channels_in"]), strides=ints(a["strides"]), dilation=ints(a["dilation"]),
                padding=ints(a["padding"]), pad_value=int(a["pad_value"]), groups=int(a["groups"]),
                clamp=ints(a["clamp"]), out=str(a["out"]), weight_layout=str(a["weight_layout"]))


def _infer(call, _ctx):
    return relax.TensorType(*bconv2d_type(*shape_of(call.args[0]), *shape_of(call.args[1]), call.attrs))


def _legalize(bb, call):
    kw = _conv_kwargs(call.attrs)
    args = list(call.args)
    if kw["pad_value"] == 0 and any(kw["padding"]):
        # A table from the constant weights only: FoldConstant evaluates it at compile time.
        table = bb.emit(bb.call_te(
            pad_correction_compute, [int(s) for s in call.args[0].ty.shape], call.args[1],
            **{k: kw[k] for k in ("channels_in", "strides", "dilation", "padding", "groups", "weight_layout")},
            primfunc_name_hint=PAD_CORRECTION_BLOCK))
        args.append(table)
    return bb.call_te(compute, *args, **kw, primfunc_name_hint="bnncc_bconv2d")


BCONV2D = register_op("bconv2d", 3, _infer, _legalize, "Binary 2-D convolution on packed words.")


# ------------------------------------------------------------------------------------------- builder
def pack_conv_weights(kernel_pm1: np.ndarray, bits: int) -> np.ndarray:
    """±1 (or float, sign taken) OHWI kernel → packed uint{bits} [O, KH, KW, words]."""
    return reference.bitpack(np.asarray(kernel_pm1), bits=bits)


def bconv2d(data: relax.Expr, kernel: np.ndarray, multiplier=None, bias=None, *, strides: Sequence[int] = (1, 1),
            dilation: Sequence[int] = (1, 1), padding: str | Sequence[int] = "valid", pad_value: int = 1,
            groups: int = 1, clamp: Sequence[int] | None = None, out: str = "float32",
            kernel_layout: str = "HWIO") -> relax.Call:
    """Binary conv2d of packed NHWC ``data`` with a constant kernel (sign taken; packed at compile time).

    ``kernel`` is HWIO (Keras; I = channels per group) or OHWI. The output transform is
    y = bias + multiplier · clamp(acc) per output channel; ``out="bitpacked"`` emits the bits of y < 0.
    """
    op = OP_NAME
    dshape, ddtype = static_shape(op, "input", data)
    bits = packed_bits(op, ddtype)
    kernel = ohwi_kernel(op, kernel, kernel_layout)
    o, kh, kw, cg = kernel.shape
    groups, strides, dilation = int(groups), ints(strides), ints(dilation)
    pads = explicit_window(op, dshape, padding, (kh, kw), strides, dilation)
    clamp = clamp_range(clamp)
    post, flip = post_constants(op, o, multiplier, bias, clamp, out, kh * kw * cg)
    pm1 = binary_weights(kernel, flip)
    if out == "bitpacked" and groups == 1:
        pm1, post = pad_packed_channels(pm1, post, bits, kh * kw * cg)
    a = dict(channels_in=cg * groups, strides=strides, dilation=dilation, padding=pads,
             pad_value=int(pad_value), groups=groups, clamp=clamp, out=out, weight_layout="OHWI")
    wpacked = pack_conv_weights(pm1, bits)
    bconv2d_type(dshape, ddtype, wpacked.shape, wpacked.dtype.name, a)
    return relax.Call(BCONV2D, [data, relax.const(wpacked), relax.const(post)], attrs(**a))


# ----------------------------------------------------------------------- what graph passes need of it
def unpacked_kernel(call: relax.Call) -> np.ndarray:
    """The ±1 OHWI kernel of a bconv2d call, from its packed constant weights."""
    w = call.args[1].value.numpy()
    if str(call.attrs["weight_layout"]) != "OHWI":
        w = w.transpose(3, 0, 1, 2)
    return reference.unpack(w, int(call.attrs["channels_in"]) // int(call.attrs["groups"]), int(str(w.dtype)[4:]))


def rebuild(call: relax.Call, data: relax.Expr, multiplier, bias, clamp, out: str) -> relax.Call:
    """The same conv with another output transform (the builder re-derives thresholds and packing)."""
    kernel = unpacked_kernel(call)
    a = call.attrs
    if str(a["out"]) == "float32":
        kernel = kernel[:int(call.ty.shape[-1])]
    return bconv2d(data, kernel, multiplier, bias, strides=tuple(a["strides"]), dilation=tuple(a["dilation"]),
                   padding=tuple(a["padding"]), pad_value=int(a["pad_value"]), groups=int(a["groups"]),
                   clamp=clamp, out=out, kernel_layout="OHWI")


def with_weight_layout(call: relax.Call, layout: str) -> relax.Call:
    """The same conv with its constant weights stored in ``layout`` ("OHWI" or "HWIO")."""
    w = call.args[1]
    if str(call.attrs["weight_layout"]) == layout or not isinstance(w, tvm.ir.expr.Constant):
        return call
    perm = (1, 2, 3, 0) if layout == "HWIO" else (3, 0, 1, 2)
    data = np.ascontiguousarray(w.value.numpy().transpose(perm))
    return relax.Call(BCONV2D, [call.args[0], relax.const(data), call.args[2]],
                      copy_attrs(call, weight_layout=layout))
