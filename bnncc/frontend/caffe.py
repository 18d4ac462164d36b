"""Caffe ``.prototxt`` + ``.caffemodel`` → Relax (TVM has no Caffe frontend): one converter per layer type in
:data:`CAFFE`, the files read by :mod:`.caffe_files` with the schema of :mod:`.caffe_schema`.

Layout: Caffe's blobs are NCHW; bnncc's binary ops are NHWC. The model's inputs and outputs keep Caffe's layout;
inside, every 4-D blob is held NHWC (a transpose after each input and before each 4-D output), so a converter
maps Caffe's axes of a 4-D blob (:func:`relax_axis`) and flattens in Caffe's C, H, W order.

Binary layers, as low-bit Caffe forks write them: a ``BinaryActive`` layer (``top = bottom >= 0 ? 1 : -1``, so
sign(0) = +1, as bnncc binarizes) followed by a ``Convolution`` / ``InnerProduct`` whose stored weights are ±α per
output channel (``α · sign(W)``, what an XNOR-Net/BNN fork deploys). They become ``bitpack → bconv2d / bdense``
through :mod:`bnncc.frontend.bnn`, the vocabulary every frontend shares: the ±α test is ``bnn.binary_kernel`` (the
one the ONNX path's recognition pass applies after TVM's importer); the sign input is known directly, since this
frontend emits the graph itself. A sign feeding a float kernel, or a ±α kernel on a float input, stays a float op.
Caffe pads a convolution with zeros after the sign: the binary conv's ``pad_value = 0``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import relax

from ..errors import BnnccError, FrontendError, printable
from . import bnn
from .base import (
    ConverterTable,
    Graph,
    Layer,
    LayerBuilder,
    Problem,
    Unsupported,
    UnsupportedLayersError,
    check_input_shape,
    const,
    shape_of,
)

if TYPE_CHECKING:
    import tvm

CAFFE = ConverterTable(kind_noun="layer type")
converter = CAFFE.converter
SIGN_LAYERS = ("BinaryActive",)  # zjwzcnjsy/caffe's binary activation: x >= 0 ? 1 : -1 (a NeuronLayer)
WEIGHTED = {"Convolution": None, "InnerProduct": None, "BatchNorm": 3, "Scale": None, "PReLU": 1}
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
    """``y = x W^T + b`` over the axes from ``axis`` on, flattened in Caffe's order (C, H, W)."""
    p = layer.param.inner_product_param
    shape = caffe_shape(x)
    axis = caffe_axis(p.axis, len(shape))
    if axis != 1 and not (axis == 0 and len(shape) == 1):
        raise Unsupported(f"axis {p.axis}: only axis 1 (a batch of vectors) is supported")
    n, k = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))
    out = int(p.num_output)
    weight = layer.blob(0, (k, out) if p.transpose else (out, k))
    kernel = weight if p.transpose else weight.T  # [in, out]
    bias = layer.blob(1, (out,)) if p.bias_term else None
    if len(shape) == 4:  # flatten the NHWC value as it is held; the kernel's rows follow it (C, H, W → H, W, C)
        _, c, h, w = shape
        kernel = kernel.reshape(c, h, w, out).transpose(1, 2, 0, 3).reshape(k, out)
    x2 = _through(b, x, lambda v: relax.op.reshape(v, [n, k])) if tuple(shape) != (n, k) else x
    found = bnn.binary_kernel(kernel)
    return bnn.dense(b, x2, np.ascontiguousarray(kernel), alpha=None if found is None else found[1], bias=bias)


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
    if g.crop != (shape[2], shape[3]):  # rows/columns no window reads (FLOOR rounding)
        x = b.emit(relax.op.strided_slice(x, axes=[1, 2], begin=[0, 0], end=list(g.crop)))
    op = relax.op.nn.max_pool2d if p.pool == p.MAX else relax.op.nn.avg_pool2d
    y = b.emit(op(x, g.kernel, g.stride, g.padding, layout="NHWC", count_include_pad=True))
    if p.pool == p.AVE and np.any(g.divisor != g.kernel[0] * g.kernel[1]):
        y = b.emit(relax.op.multiply(y, const((g.kernel[0] * g.kernel[1] / g.divisor)[None, :, :, None])))
    return y


# ------------------------------------------------------------------------------------------------- the net
def _included(layer, phase: int) -> bool:
    """Caffe's NetStateRule by phase (deploy nets run in TEST); level and stage rules are not applied."""
    def meets(rule) -> bool:
        return not rule.HasField("phase") or rule.phase == phase

    if len(layer.include):
        return any(meets(r) for r in layer.include)
    return not any(meets(r) for r in layer.exclude)


def _dims(dims: Sequence[int], name: str, source: str, batch_size: int | None) -> tuple[int, ...]:
    shape = [int(d) for d in dims]
    if not shape:
        raise FrontendError(f"input {name!r} has no shape: bnncc compiles static shapes (give input_param "
                            "{ shape { dim: ... } } or input_shape)", file=source)
    if batch_size is not None:
        shape[0] = int(batch_size)
    if any(d < 0 for d in shape):
        raise FrontendError(f"input {name!r} has a dynamic shape {tuple(shape)}: bnncc compiles static shapes",
                            file=source)
    if len(shape) not in (2, 4):
        raise FrontendError(f"input {name!r} has shape {tuple(shape)}: only N×C×H×W and N×D inputs are "
                            "supported", file=source)
    check_input_shape(name, shape, source)
    return tuple(shape)


def input_shapes(net, source: str, batch_size: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every input blob and its static shape: net-level ``input`` (with ``input_shape`` or ``input_dim``) and
    ``Input`` layers."""
    shapes: dict[str, tuple[int, ...]] = {}
    names = list(net.input)
    if len(net.input_shape) and len(net.input_shape) != len(names):
        raise FrontendError(f"{len(names)} inputs but {len(net.input_shape)} input_shape entries", file=source)
    if len(net.input_dim) and len(net.input_dim) != 4 * len(names):
        raise FrontendError(f"{len(names)} inputs need {4 * len(names)} input_dim values, got {len(net.input_dim)}",
                            file=source)
    for i, name in enumerate(names):
        dims = (net.input_shape[i].dim if len(net.input_shape) else net.input_dim[4 * i:4 * i + 4])
        shapes[name] = _dims(dims, name, source, batch_size)
    for layer in net.layer:
        if layer.type != "Input" or not _included(layer, 1):
            continue
        given = list(layer.input_param.shape)
        if given and len(given) not in (1, len(layer.top)):
            raise FrontendError(f"Input: {len(given)} shapes for {len(layer.top)} tops", file=source,
                                layer=layer.name)
        for i, top in enumerate(layer.top):
            shapes[top] = _dims(given[0 if len(given) == 1 else i].dim if given else [], top, source, batch_size)
    if not shapes:
        raise FrontendError("the net has no inputs (no Input layer, no input: field)", file=source)
    return shapes


def sibling_weights(prototxt: str) -> str:
    """The ``.caffemodel`` beside a ``.prototxt`` with the same stem."""
    return str(Path(prototxt).with_suffix(".caffemodel"))


def sibling_prototxt(caffemodel: str) -> str:
    return str(Path(caffemodel).with_suffix(".prototxt"))


class _Import:
    def __init__(self, net, weights, *, source: str, weights_file: str | None, bits: int,
                 batch_size: int | None):
        self.net, self.source = net, source
        self.weights_file = weights_file
        self.layers = [x for x in net.layer if _included(x, 1)]
        self.graph = Graph(bits=bits, source=source)
        self.blobs = {x.name: list(x.blobs) for x in (weights.layer if weights is not None else ())}
        self.inputs = input_shapes(net, source, batch_size)

    def as_layer(self, x) -> Layer:
        name = Path(self.weights_file).name if self.weights_file else "the .caffemodel"
        return Layer(x.name, x.type, CaffeLayer(x, self.blobs.get(x.name), name), len(x.bottom))

    def check(self) -> None:
        problems = CAFFE.problems(self.as_layer(x) for x in self.layers if x.type != "Input")
        if problems:
            raise UnsupportedLayersError(problems, "Input, " + CAFFE.supported, file=self.source)
        missing = [x for x in self.layers if x.type in WEIGHTED and not self.blobs.get(x.name)]
        if missing:
            where = self.weights_file or f"{sibling_weights(self.source)} (none given)"
            listed = ", ".join(f"'{printable(x.name)}' ({x.type})" for x in missing[:20])
            raise FrontendError(f"{len(missing)} layer(s) need trained blobs that {where} does not hold: {listed}",
                                file=self.source)
        for x in self.layers:
            if not x.name:
                raise FrontendError(f"a {printable(x.type)} layer has no name", file=self.source)
            if x.type != "Input" and len(x.top) == 0:
                raise FrontendError(f"{printable(x.type)}: the layer has no top blob", file=self.source,
                                    layer=x.name)

    def convert(self) -> tvm.IRModule:
        from ..provenance import SOURCE_LAYERS_ATTR

        self.check()
        params = [Graph.input(_var_name(n), s) for n, s in self.inputs.items()]
        values: dict[str, relax.Expr] = {}
        consumed: set[str] = set()
        produced: list[str] = []

        def body():
            for name, p in zip(self.inputs, params, strict=True):
                values[name] = from_caffe_layout(self.graph.layer(f"{name}_nhwc"), p)
            for x in self.layers:
                if x.type == "Input":
                    continue
                missing = [t for t in x.bottom if t not in values]
                if missing:
                    raise FrontendError(f"{x.type}: reads blob '{printable(missing[0])}', which no earlier layer "
                                        "produces", file=self.source, layer=x.name)
                consumed.update(x.bottom)
                outs = CAFFE.convert(self.graph, self.as_layer(x), [values[t] for t in x.bottom])
                if len(outs) != len(x.top):
                    raise FrontendError(f"{x.type}: {len(x.top)} top blobs, the layer makes {len(outs)}",
                                        file=self.source, layer=x.name)
                for t, v in zip(x.top, outs, strict=True):
                    values[t] = v
                    produced.append(t)
            outputs = list(dict.fromkeys(t for t in produced if t not in consumed))
            if not outputs:
                raise FrontendError("the net has no output (every top blob is read by a later layer)",
                                    file=self.source)
            b = self.graph.layer("output")
            return [to_caffe_layout(b, values[t]) for t in outputs]

        mod = self.graph.build(params, body)
        mod = relax.transform.DeadCodeElimination()(mod)
        return mod.with_attr(SOURCE_LAYERS_ATTR, json.dumps([[x.name, x.type] for x in self.layers]))


def _var_name(blob: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in blob) or "data"


def from_caffe(prototxt: str | os.PathLike, caffemodel: str | os.PathLike | None = None, *, bits: int = 32,
               batch_size: int | None = None) -> tvm.IRModule:
    """Import a Caffe net (``.prototxt`` and its trained ``.caffemodel``; by default the one with the same stem
    beside it) into Relax. Inputs and outputs are NCHW as in Caffe; ``batch_size`` replaces the file's batch."""
    from .caffe_files import load_caffemodel, load_prototxt

    source = os.fspath(prototxt)
    if batch_size is not None and int(batch_size) < 1:
        raise FrontendError(f"batch size must be at least 1, got {batch_size}", file=source)
    net = load_prototxt(source, CAFFE)
    weights_file = os.fspath(caffemodel) if caffemodel is not None else sibling_weights(source)
    if caffemodel is None and not Path(weights_file).exists():
        if any(x.type in WEIGHTED for x in net.layer):
            raise FrontendError(f"no trained weights: expected {weights_file} beside the prototxt",
                                file=source)
        weights, weights_file = None, None
    else:
        weights = load_caffemodel(weights_file)
    try:
        return _Import(net, weights, source=source, weights_file=weights_file, bits=bits,
                       batch_size=batch_size).convert()
    except BnnccError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:  # TVM's type
        # inference (RuntimeError) or a layer bnncc misread: one line, not a traceback
        text = str(e).strip().splitlines()
        raise FrontendError(f"could not import the net: {type(e).__name__}: {(text or [''])[0][:200]}",
                            file=source) from None


def problems_of(prototxt: str | os.PathLike) -> list[Problem]:
    """Every layer of a prototxt bnncc cannot convert (no weights needed): what the fuzz target checks."""
    from .caffe_files import load_prototxt

    net = load_prototxt(os.fspath(prototxt), CAFFE)
    return CAFFE.problems(Layer(x.name, x.type, CaffeLayer(x), len(x.bottom)) for x in net.layer
                          if x.type != "Input")
