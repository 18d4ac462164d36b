"""int8 conv2d as patches × weights: ``bnncc.im2col`` (uint8 NHWC → [N·OH·OW, KH·KW·C], padded with the input's
zero point, i.e. with real 0) feeding ``bnncc.qdense``; and the float ↔ int8 boundary ops ``quantize`` /
``dequantize`` as compositions of Relax ops (their exact arithmetic: docs/semantics.md, oracle
:mod:`bnncc.reference`).

The GEMM form runs every int8 conv on the qdense kernels (AMX tiles, VNNI, AVX2) at the cost of materializing the
patches (KH·KW × the input bytes, small beside the GEMM's work for the 3×3 and 1×1 convs of CNNs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import relax, te, tirx

from ..errors import OpError
from .common import attrs, ints, register_op, shape_of, static_shape
from .geometry import output_hw
from .qdense import qdense

IM2COL_BLOCK = "bnncc_im2col"
OP_NAME = "bnncc.im2col"


def _out_hw(a, h: int, w: int) -> tuple[int, int]:
    return output_hw((h, w), *(ints(a[k]) for k in ("kernel", "strides", "dilation", "padding")))


def im2col_type(shape, dtype, a) -> tuple[tuple[int, ...], str]:
    if dtype != "uint8" or len(shape) != 4:
        raise OpError(OP_NAME, f"input must be uint8 NHWC, got {dtype} of shape {shape}")
    n, h, w, c = shape
    oh, ow = _out_hw(a, h, w)
    if oh < 1 or ow < 1:
        raise OpError(OP_NAME, f"the {tuple(ints(a['kernel']))} window does not fit the {h}×{w} input")
    kh, kw = ints(a["kernel"])
    return (n * oh * ow, kh * kw * c), "uint8"


def im2col_compute(x: te.Tensor, *, kernel, strides, dilation, padding, pad_value: int) -> te.Tensor:
    n, h, w, c = (int(s) for s in x.shape)
    (kh, kw), (sh, sw), (dh, dw), (t, le, _, _) = kernel, strides, dilation, padding
    oh, ow = _out_hw(dict(kernel=kernel, strides=strides, dilation=dilation, padding=padding), h, w)

    def patch(row, col):
        b, rest = row // (oh * ow), row % (oh * ow)
        y = (rest // ow) * sh + (col // c // kw) * dh - t
        xx = (rest % ow) * sw + (col // c % kw) * dw - le
        inside = tirx.all(y >= 0, y < h, xx >= 0, xx < w)
        return tirx.if_then_else(inside, x[b, tirx.max(tirx.min(y, h - 1), 0), tirx.max(tirx.min(xx, w - 1), 0),
                                           col % c], tirx.const(pad_value, "uint8"))

    # The geometry, for the schedule to split rows into (n, y, x) and columns into (ky, kx, c).
    return te.compute((n * oh * ow, kh * kw * c), patch, name=IM2COL_BLOCK,
                      attrs={"bnncc.geometry": [n, oh, ow, kh, kw, c]})


def _infer(call, _ctx):
    return relax.TensorType(*im2col_type(*shape_of(call.args[0]), call.attrs))


def _legalize(bb, call):
    a = call.attrs
    return bb.call_te(im2col_compute, call.args[0], **{k: ints(a[k]) for k in ("kernel", "strides", "dilation",
                                                                               "padding")},
                      pad_value=int(a["pad_value"]), primfunc_name_hint=IM2COL_BLOCK)


IM2COL = register_op("im2col", 1, _infer, _legalize, "uint8 NHWC → conv patches [N·OH·OW, KH·KW·C].")


def im2col(data: relax.Expr, kernel_hw: Sequence[int], strides=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
           pad_value: int = 0) -> relax.Call:
    a = dict(kernel=tuple(kernel_hw), strides=tuple(strides), dilation=tuple(dilation), padding=tuple(padding),
             pad_value=int(pad_value))
    im2col_type(*static_shape(OP_NAME, "input", data), a)
    return relax.Call(IM2COL, [data], attrs(**a))


def qconv2d(bb: relax.BlockBuilder, data: relax.Expr, kernel: np.ndarray, x_zero_point: int = 0, bias=None, *,
            strides=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0)) -> relax.Expr:
    """int8 NHWC conv of uint8 ``data`` (zero point ``x_zero_point``) with an int8 HWIO ``kernel`` (groups = 1):
    int32 NHWC out, emitted into ``bb`` as im2col → qdense → reshape."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.dtype != np.int8:
        raise OpError("bnncc.qconv2d", f"kernel must be int8 HWIO, got {kernel.dtype} of shape {kernel.shape}")
    kh, kw, cin, cout = kernel.shape
    (n, h, w, c), _ = static_shape("bnncc.qconv2d", "input", data)
    if c != cin:
        raise OpError("bnncc.qconv2d", f"input has {c} channels, the kernel {cin}")
    patches = bb.emit(im2col(data, (kh, kw), strides, dilation, padding, x_zero_point))
    acc = bb.emit(qdense(patches, kernel.reshape(kh * kw * cin, cout), x_zero_point, bias))
    oh, ow = _out_hw(dict(kernel=(kh, kw), strides=strides, dilation=dilation, padding=padding), h, w)
    return bb.emit(relax.op.reshape(acc, (n, oh, ow, cout)))


def quantize(bb: relax.BlockBuilder, x: relax.Expr, scale: float, zero_point: int) -> relax.Expr:
    """float32 → uint8: clip(round_half_even(x · (1/scale)) + zero_point, 0, 255)."""
    inv = relax.const(np.float32(1.0 / scale))
    q = relax.op.add(relax.op.round(relax.op.multiply(x, inv)), relax.const(np.float32(zero_point)))
    return bb.emit(relax.op.astype(relax.op.clip(q, 0.0, 255.0), "uint8"))


def dequantize(bb: relax.BlockBuilder, acc: relax.Expr, scale: np.ndarray) -> relax.Expr:
    """int32 accumulators → float32 · per-output-channel ``scale`` (the last axis)."""
    return bb.emit(relax.op.multiply(relax.op.astype(acc, "float32"),
                                     relax.const(np.asarray(scale, np.float32))))
