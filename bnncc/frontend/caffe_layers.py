"""The Caffe layer converters of :mod:`.caffe` (one per layer type in :data:`CAFFE`) and the layout helpers
they share: every 4-D blob is held NHWC, so Caffe's axes of a 4-D blob are mapped (:func:`relax_axis`) and a
flatten follows Caffe's C, H, W order. Binary layers go through :mod:`bnncc.frontend.bnn` (see :mod:`.caffe`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tvm import relax

from . import bnn
from .base import ConverterTable, LayerBuilder, Unsupported, const, shape_of

CAFFE = ConverterTable(kind_noun="layer type")
converter = CAFFE.converter
SIGN_LAYERS = ("BinaryActive",)  # zjwzcnjsy/caffe's binary activation: x >= 0 ? 1 : -1 (a NeuronLayer)
WEIGHTED = ("Convolution", "InnerProduct", "BatchNorm", "Scale", "PReLU")  # the layer types with trained blobs
_NHWC_OF_NCHW = (0, 3, 1, 2)  # Caffe axis of a 4-D blob → its axis in the NHWC value


@dataclass(frozen=True)
class CaffeLayer:
    """A prototxt layer and its trained blobs (from the caffemodel; None if it has none there)."""

    param: Any
    blobs: Sequence[Any] | None = None
    weights_file: str = "the .caffemodel"

    def blob(self, index: int, shape: Sequence[int]) -> np.ndarray:
        from .caffe_files import blob_array

        blobs = self.blobs or ()
        if index >= len(blobs):
            raise Unsupported(f"{self.weights_file} holds {len(blobs)} blob(s) for this layer, it needs "
                              f"{index + 1} or more")
        return blob_array(blobs[index], index, tuple(int(d) for d in shape), self.weights_file)


# ---------------------------------------------------------------------------------------------- layout helpers
def caffe_shape(x: relax.Expr) -> tuple[int, ...]:
    """The Caffe (NCHW) shape of a value (held NHWC when 4-D)."""
    s = shape_of(x)
    return (s[0], s[3], s[1], s[2]) if len(s) == 4 else s


def caffe_axis(axis: int, rank: int, what: str = "axis") -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise Unsupported(f"{what} {axis} is out of range for a {rank}-D blob")
    return a


def relax_axis(axis: int, rank: int) -> int:
    """Caffe's axis ``axis`` (normalized) of a ``rank``-D blob in the value that holds it."""
    return _NHWC_OF_NCHW[axis] if rank == 4 else axis


def _through(b: LayerBuilder, x: relax.Expr, op) -> relax.Expr:
    """``op(x)`` for a layout op (reshape, transpose); applied to what ``x`` is the sign of as well, so that ±1
    values stay recognisable to the binary layer after it (unused otherwise, and removed)."""
    y = b.emit(op(x))
    source = b.graph.signs.get(x)
    if source is not None:
        b.graph.signs[y] = b.emit(op(source))
    return y


def to_caffe_layout(b: LayerBuilder, x: relax.Expr) -> relax.Expr:
    if len(caffe_shape(x)) != 4:
        return x
    return _through(b, x, lambda v: relax.op.permute_dims(v, [0, 3, 1, 2]))


def from_caffe_layout(b: LayerBuilder, x: relax.Expr) -> relax.Expr:
    if len(x.ty.shape) != 4:
        return x
    return b.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))


def _reshape(b: LayerBuilder, x: relax.Expr, shape: Sequence[int]) -> relax.Expr:
    """``x`` (Caffe layout) reshaped to the Caffe shape ``shape``, held NHWC if that is 4-D."""
    y = _through(b, x, lambda v: relax.op.reshape(v, [int(d) for d in shape]))
    return from_caffe_layout(b, y) if len(shape) == 4 else y


def _channel_const(values: np.ndarray, rank: int, axis: int = 1) -> np.ndarray:
    """A per-channel (or any [axis, axis + k) broadcast) constant shaped to broadcast over the held value."""
    shape = [1] * rank
    shape[axis:axis + values.ndim] = values.shape
    c = values.reshape(shape)
    return np.transpose(c, (0, 2, 3, 1)) if rank == 4 else c


def check_elements(shape: Sequence[int], what: str) -> None:
    """A tensor a layer makes fits :data:`bnncc.limits.MAX_TENSOR_ELEMENTS` (checked before building it: a huge
    pad or a chain of Concats would otherwise make bnncc or TVM try to allocate it)."""
    from ..limits import MAX_TENSOR_ELEMENTS

    if int(np.prod([int(d) for d in shape], dtype=object)) > MAX_TENSOR_ELEMENTS:
        raise Unsupported(f"{what} would have shape {tuple(int(d) for d in shape)}: more than "
                          f"{MAX_TENSOR_ELEMENTS} elements")


# ---------------------------------------------------------------------------------------------- geometry
def _pair(values: Sequence[int], h: int | None, w: int | None, has_hw: bool, default: int | None,
          what: str) -> tuple[int, int]:
    """Caffe's (h, w) of a parameter given once, per dimension, or as ``*_h``/``*_w``."""
    if has_hw:
        if len(values):
            raise Unsupported(f"either {what} or {what}_h/{what}_w may be given, not both")
        if h is None or w is None:
            raise Unsupported(f"{what}_h and {what}_w must be given together")
        return int(h), int(w)
    if len(values) == 0:
        if default is None:
            raise Unsupported(f"{what} is not given")
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise Unsupported(f"{what} has {len(values)} values; a 2-D layer takes 1 or 2")


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]


def conv_geometry(p) -> ConvGeometry:
    has = p.HasField
    kernel = _pair(p.kernel_size, p.kernel_h if has("kernel_h") else None, p.kernel_w if has("kernel_w") else None,
                   has("kernel_h") or has("kernel_w"), None, "kernel_size")
    stride = _pair(p.stride, p.stride_h if has("stride_h") else None, p.stride_w if has("stride_w") else None,
                   has("stride_h") or has("stride_w"), 1, "stride")
    pad = _pair(p.pad, p.pad_h, p.pad_w, has("pad_h") or has("pad_w"), 0, "pad")
    dilation = _pair(p.dilation, None, None, False, 1, "dilation")
    if min(*kernel, *stride, *dilation) < 1:
        raise Unsupported(f"kernel {kernel}, stride {stride} and dilation {dilation} must be at least 1")
    return ConvGeometry(kernel, stride, pad, dilation)


def _check_conv(layer: CaffeLayer) -> None:
    p = layer.param.convolution_param
    conv_geometry(p)
    if p.axis != 1:
        raise Unsupported(f"axis {p.axis} (only the channel axis 1 of NCHW blobs is supported)")
    if p.num_output < 1 or p.group < 1 or p.num_output % p.group:
        raise Unsupported(f"num_output {p.num_output} must be a positive multiple of group {p.group}")


@converter("Convolution", check=_check_conv)
def _convolution(b: LayerBuilder, layer: CaffeLayer, x):
    p = layer.param.convolution_param
    g = conv_geometry(p)
    shape = caffe_shape(x)
    if len(shape) != 4:
        raise Unsupported(f"input has shape {shape}; a 2-D convolution takes N, C, H, W blobs")
    _, c, h, w = shape
    groups, out = int(p.group), int(p.num_output)
    if c % groups:
        raise Unsupported(f"{c} input channels are not divisible by group {groups}")
    for size, k, pad, d, name in zip((h, w), g.kernel, g.pad, g.dilation, "HW", strict=True):
        if size + 2 * pad < d * (k - 1) + 1:
            raise Unsupported(f"the dilated kernel ({d * (k - 1) + 1}) is larger than the padded input "
                              f"{name} ({size + 2 * pad})")
    check_elements((shape[0], c, h + 2 * g.pad[0], w + 2 * g.pad[1]), "the padded input")
    check_elements((shape[0], out, *((size + 2 * pad - d * (k - 1) - 1) // s + 1 for size, k, s, pad, d in zip(
        (h, w), g.kernel, g.stride, g.pad, g.dilation, strict=True))), "the output")
    weight = layer.blob(0, (out, c // groups, *g.kernel))
    bias = layer.blob(1, (out,)) if p.bias_term else None
    kernel = np.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # OIHW → HWIO
    found = bnn.binary_kernel(kernel)
    ph, pw = g.pad
    return bnn.conv2d(b, x, kernel, alpha=None if found is None else found[1], bias=bias, strides=g.stride,
                      dilation=g.dilation, padding=(ph, pw, ph, pw), pad_value=0.0, groups=groups,
                      depthwise=groups > 1 and groups == c)


def _check_inner_product(layer: CaffeLayer) -> None:
    if layer.param.inner_product_param.num_output < 1:
        raise Unsupported("num_output must be at least 1")


@converter("InnerProduct", check=_check_inner_product)
def _inner_product(b: LayerBuilder, layer: CaffeLayer, x):
    """``y = x W^T + b`` over the axes from ``axis`` on, flattened in Caffe's order (C, H, W); the axes before
    ``axis`` are kept (output shape ``shape[:axis] + (num_output,)``)."""
    p = layer.param.inner_product_param
    shape = caffe_shape(x)
    axis = caffe_axis(p.axis, len(shape))
    m, k = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))
    out = int(p.num_output)
    weight = layer.blob(0, (k, out) if p.transpose else (out, k))
    kernel = weight if p.transpose else weight.T  # [in, out]
    bias = layer.blob(1, (out,)) if p.bias_term else None
    if len(shape) == 4 and axis == 1:  # flatten the NHWC value as it is held; the kernel's rows follow it
        _, c, h, w = shape
        kernel = kernel.reshape(c, h, w, out).transpose(1, 2, 0, 3).reshape(k, out)
    else:
        x = to_caffe_layout(b, x)
    x2 = _through(b, x, lambda v: relax.op.reshape(v, [m, k])) if tuple(shape) != (m, k) else x
    found = bnn.binary_kernel(kernel)
    y = bnn.dense(b, x2, np.ascontiguousarray(kernel), alpha=None if found is None else found[1], bias=bias)
    new = (*shape[:axis], out)
    return y if new == (m, out) else _reshape(b, y, new)


def _check_batch_norm(layer: CaffeLayer) -> None:
    p = layer.param.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        raise Unsupported("use_global_stats: false normalizes with the batch's own statistics (training); "
                          "inference needs the stored ones")


@converter("BatchNorm", check=_check_batch_norm)
def _batch_norm(b: LayerBuilder, layer: CaffeLayer, x):
    """Caffe's BatchNorm: the stored mean and variance are sums scaled by blob 2 (the moving-average factor,
    1/factor, or 0 when the factor is 0); ``y = (x - mean) / sqrt(var + eps)``. No scale or shift (a Scale
    layer follows)."""
    shape = caffe_shape(x)
    if len(shape) < 2:
        raise Unsupported(f"input has shape {shape}; BatchNorm normalizes channel axis 1")
    c = shape[1]
    mean, var, factor = layer.blob(0, (c,)), layer.blob(1, (c,)), layer.blob(2, (1,))
    f = 0.0 if factor[0] == 0 else 1.0 / float(factor[0])
    eps = float(layer.param.batch_norm_param.eps)
    var64 = var.astype(np.float64) * f + eps
    if np.any(var64 <= 0):
        raise Unsupported(f"variance + eps is not positive in {int((var64 <= 0).sum())} channel(s)")
    scale = 1.0 / np.sqrt(var64)
    shift = -mean.astype(np.float64) * f * scale
    rank = len(shape)
    s, t = (_channel_const(v.astype(np.float32), rank) for v in (scale, shift))
    return b.emit(relax.op.add(b.emit(relax.op.multiply(x, const(s))), const(t)))


def _check_scale(layer: CaffeLayer) -> None:
    if len(layer.param.bottom) != 1:
        raise Unsupported("a scale from a second input blob is not supported (only a learned scale)")


@converter("Scale", check=_check_scale)
def _scale(b: LayerBuilder, layer: CaffeLayer, x):
    p = layer.param.scale_param
    shape = caffe_shape(x)
    axis = caffe_axis(p.axis, len(shape))
    end = len(shape) if p.num_axes == -1 else axis + p.num_axes
    if p.num_axes < -1 or end > len(shape):
        raise Unsupported(f"num_axes {p.num_axes} from axis {p.axis} exceeds the {len(shape)}-D input")
    want = shape[axis:end]
    y = b.emit(relax.op.multiply(x, const(_channel_const(layer.blob(0, want), len(shape), axis))))
    if p.bias_term:
        y = b.emit(relax.op.add(y, const(_channel_const(layer.blob(1, want), len(shape), axis))))
    return y


@converter("ReLU")
def _relu(b: LayerBuilder, layer: CaffeLayer, x):
    slope = float(layer.param.relu_param.negative_slope)
    return b.emit(relax.op.nn.relu(x) if slope == 0 else relax.op.nn.leakyrelu(x, slope))


@converter("PReLU")
def _prelu(b: LayerBuilder, layer: CaffeLayer, x):
    shape = caffe_shape(x)
    if len(shape) < 2:
        raise Unsupported(f"input has shape {shape}; PReLU's slopes are per channel (axis 1)")
    shared = layer.param.prelu_param.channel_shared
    slope = layer.blob(0, (1,) if shared else (shape[1],))
    a = slope.reshape(()) if shared else _channel_const(slope, len(shape))
    neg = relax.op.multiply(const(a), relax.op.minimum(x, const(0.0)))
    return b.emit(relax.op.add(relax.op.nn.relu(x), neg))


@converter("Sigmoid")
def _sigmoid(b: LayerBuilder, layer: CaffeLayer, x):
    return b.emit(relax.op.sigmoid(x))


@converter("TanH")
def _tanh(b: LayerBuilder, layer: CaffeLayer, x):
    return b.emit(relax.op.tanh(x))


@converter(*SIGN_LAYERS)
def _binary_active(b: LayerBuilder, layer: CaffeLayer, x):
    return bnn.sign(b, x)


@converter("Dropout", "Split")  # Dropout is the identity in inference; Split copies its bottom to every top
def _identity(b: LayerBuilder, layer: CaffeLayer, x):
    return [x] * max(1, len(layer.param.top))


def _check_eltwise(layer: CaffeLayer) -> None:
    p = layer.param.eltwise_param
    if len(p.coeff) and (len(p.coeff) != len(layer.param.bottom) or p.operation != p.SUM):
        raise Unsupported(f"{len(p.coeff)} coeff for {len(layer.param.bottom)} bottoms (coeff: one per bottom, "
                          "SUM only)")


@converter("Eltwise", check=_check_eltwise, variadic=True)
def _eltwise(b: LayerBuilder, layer: CaffeLayer, *xs):
    p = layer.param.eltwise_param
    if len(xs) < 2:
        raise Unsupported(f"Eltwise needs at least 2 bottoms, got {len(xs)}")
    shapes = {caffe_shape(x) for x in xs}
    if len(shapes) != 1:
        raise Unsupported(f"bottoms of different shapes {sorted(shapes)}")
    coeff = list(p.coeff) or [1.0] * len(xs)
    op = {p.PROD: relax.op.multiply, p.SUM: relax.op.add, p.MAX: relax.op.maximum}[p.operation]
    terms = [x if (cf == 1.0 or p.operation != p.SUM) else b.emit(relax.op.multiply(x, const(cf)))
             for x, cf in zip(xs, coeff, strict=True)]
    y = terms[0]
    for t in terms[1:]:
        y = b.emit(op(y, t))
    return y


@converter("Concat", variadic=True)
def _concat(b: LayerBuilder, layer: CaffeLayer, *xs):
    p = layer.param.concat_param
    shapes = [caffe_shape(x) for x in xs]
    rank = len(shapes[0])
    axis = caffe_axis(int(p.concat_dim) if p.HasField("concat_dim") else int(p.axis), rank)
    for s in shapes:
        if len(s) != rank or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
            raise Unsupported(f"bottoms of shapes {shapes} do not concatenate along axis {axis}")
    return b.emit(relax.op.concat(list(xs), axis=relax_axis(axis, rank)))


@converter("Softmax")
def _softmax(b: LayerBuilder, layer: CaffeLayer, x):
    rank = len(caffe_shape(x))
    axis = caffe_axis(int(layer.param.softmax_param.axis), rank)
    return b.emit(relax.op.nn.softmax(x, axis=relax_axis(axis, rank)))


@converter("Flatten")
def _flatten(b: LayerBuilder, layer: CaffeLayer, x):
    p = layer.param.flatten_param
    shape = caffe_shape(x)
    start, end = caffe_axis(int(p.axis), len(shape)), caffe_axis(int(p.end_axis), len(shape), "end_axis")
    if end < start:
        raise Unsupported(f"end_axis {p.end_axis} comes before axis {p.axis}")
    new = (*shape[:start], int(np.prod(shape[start:end + 1], dtype=np.int64)), *shape[end + 1:])
    if new == shape:
        return x
    return _reshape(b, to_caffe_layout(b, x), new)


def _check_pooling(layer: CaffeLayer) -> None:
    from .caffe_pooling import check_pooling

    check_pooling(layer.param.pooling_param)


@converter("Pooling", check=_check_pooling)
def _pooling(b: LayerBuilder, layer: CaffeLayer, x):
    """Caffe's pooling (:mod:`.caffe_pooling`): explicit padding that makes every window whole (-inf for MAX,
    0 for AVE), then Caffe's divisor for AVE where it is not the kernel's area."""
    from .caffe_pooling import pool_geometry

    shape = caffe_shape(x)
    if len(shape) != 4:
        raise Unsupported(f"input has shape {shape}; 2-D pooling takes N, C, H, W blobs")
    p = layer.param.pooling_param
    g = pool_geometry(p, shape[2], shape[3])
    check_elements((shape[0], shape[1], g.crop[0] + g.padding[0] + g.padding[2],
                    g.crop[1] + g.padding[1] + g.padding[3]), "the padded input")
    if g.crop != (shape[2], shape[3]):  # rows/columns no window reads (FLOOR rounding)
        x = b.emit(relax.op.strided_slice(x, axes=[1, 2], begin=[0, 0], end=list(g.crop)))
    op = relax.op.nn.max_pool2d if p.pool == p.MAX else relax.op.nn.avg_pool2d
    y = b.emit(op(x, g.kernel, g.stride, g.padding, layout="NHWC", count_include_pad=True))
    for axis in (0, 1):  # AVE: the last row / column of windows may divide by less than the kernel's size
        if p.pool == p.AVE and g.last_divisor[axis] != g.kernel[axis]:
            shape = [1, 1, 1, 1]
            shape[axis + 1] = g.out[axis]
            y = b.emit(relax.op.multiply(y, const((g.kernel[axis] / g.divisor(axis)).reshape(shape))))
    return y
