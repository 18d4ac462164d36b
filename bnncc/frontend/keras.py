"""Keras/Larq → Relax (there is no Keras frontend in Relax).

The graph is imported as it is written: a binary layer becomes ``bitpack`` (the input quantizer) → ``bconv2d`` /
``bdense`` with float output, and BatchNorm, activations and pools stay separate Relax ops. The passes in
:mod:`bnncc.relay_ops.passes` then fold BN/activations into the output transform and keep activations packed.
Quantized kernels are computed by the layer's own Larq quantizer (the oracle), so any ±α quantizer is exact; an
input quantizer, an ``Activation`` or a Larq quantizer used as a layer is a sign when it computes one on
:data:`bnncc.frontend.bnn.SIGN_PROBES` (evaluated with TensorFlow), whatever its name. A sign layer feeding a
±α-kernel layer makes that layer binary (``bitpack`` of the sign's input → ``bconv2d``/``bdense``).

This module only walks the Keras graph and reads layer attributes: one converter per layer kind in
:data:`KERAS`, the BNN recognition in :mod:`bnncc.frontend.bnn`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from .. import reference
from ..errors import BnnccError, FrontendError
from ..provenance import SOURCE_LAYERS_ATTR
from . import bnn, keras_bitserial, keras_fake_quant
from .base import (
    ConverterTable,
    Graph,
    Layer,
    LayerBuilder,
    Unsupported,
    activation,
    check_activation,
    check_input_shape,
    const,
    shape_of,
)
from .model_config import check_model_file

KERAS = ConverterTable()
converter = KERAS.converter

IDENTITY_LAYERS = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization",
                   "NoOp")  # Larq's identity quantizer used as a layer
ADD_SYMBOLS = ("__operators__.add", "math.add")  # TFOpLambda symbols of `x + y` and tf.math.add


def name_of(obj: Any) -> str:
    """Lower-case name of a Keras activation or Larq quantizer: a string, a function or a class instance."""
    if obj is None:
        return "none"
    if isinstance(obj, str):
        return obj.lower()
    return getattr(obj, "__name__", type(obj).__name__).lower()


# ------------------------------------------------------------------------------------------- attribute reading
def _check_layout(layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise Unsupported("only channels_last (NHWC) data is supported")


def _evaluated(q):
    """Quantizer ``q`` (a Larq quantizer layer or any TF function) as numpy → numpy, for bnn's sign probe."""
    from .._tf import keras, tf

    # A layer's call() is its forward pass without Keras's build/metric side effects on the model's layer.
    fn = q.call if isinstance(q, keras.layers.Layer) else q

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(fn(tf.constant(x)), np.float32)
        except (TypeError, ValueError, AttributeError, tf.errors.OpError) as e:
            raise Unsupported(f"quantizer {name_of(q)!r} could not be evaluated: {type(e).__name__}") from None

    return run


def _binary_kind(q, what: str = "input quantizer") -> str | None:
    """bnn.SIGN if ``q`` computes sign(x) with sign(0) = +1, bnn.HEAVISIDE for the step x > 0 (probed, whatever
    its name); None for None; anything else is unsupported."""
    return bnn.binary_input(None if q is None else _evaluated(q), name_of(q), what=what)


def _input_kind(layer) -> str | None:
    return _binary_kind(getattr(layer, "input_quantizer", None))


def _sign_input(layer) -> bool:
    return _input_kind(layer) == bnn.SIGN


def _heaviside_input(layer) -> bool:
    return _input_kind(layer) == bnn.HEAVISIDE


def _input_k_bit(layer) -> int | None:
    """k when the layer's input quantizer computes Larq's DoReFa(k, "activations") (:mod:`.keras_bitserial`)."""
    q = getattr(layer, "input_quantizer", None)
    return None if q is None else keras_bitserial.k_bit_of(_evaluated(q), getattr(q, "precision", None))


def _k_bit_input(b: LayerBuilder, layer, x) -> tuple[int | None, Any]:
    """(k, the float it quantizes) when the layer reads DoReFa k-bit activations — by its input quantizer or
    from a DoReFa quantizer layer — else (None, x)."""
    k = _input_k_bit(layer)
    if k is None and getattr(layer, "input_quantizer", None) is None:
        found = keras_bitserial.levels_source(b, x)
        if found is not None:
            return found[1], found[0]
    return k, x


def _check_quant_layer(layer) -> None:
    _check_layout(layer)
    if _input_k_bit(layer) is None:
        _input_kind(layer)
    check_activation(name_of(layer.activation))


def _kernel(layer, attr: str = "kernel") -> tuple[np.ndarray, bool]:
    """(kernel as the layer computes with it, whether it is a 1-bit quantizer's output)."""
    w = getattr(layer, attr).numpy()
    q = getattr(layer, "depthwise_quantizer" if attr == "depthwise_kernel" else "kernel_quantizer", None)
    if q is None:
        return w, False
    from .._tf import tf

    return np.asarray(q(tf.constant(w)), np.float32), getattr(q, "precision", None) == 1


def _alpha(kernel: np.ndarray, one_bit: bool) -> np.ndarray | None:
    found = bnn.binary_kernel(kernel) if one_bit else None
    return None if found is None else found[1]


def _bias(layer) -> np.ndarray | None:
    return layer.bias.numpy() if getattr(layer, "use_bias", False) else None


# ------------------------------------------------------------------------------------------------- converters
@converter("QuantConv2D", "Conv2D", check=_check_quant_layer)
def _conv(b: LayerBuilder, layer, x, depthwise: bool = False):
    _, h, w, c = shape_of(x)
    wq, one_bit = _kernel(layer, "depthwise_kernel" if depthwise else "kernel")
    kh, kw = wq.shape[:2]
    if depthwise:  # [KH, KW, C, M] → HWIO with I = 1 per group, output channel c·M + m
        wq = wq.reshape(kh, kw, 1, c * wq.shape[3])
    strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    groups = c if depthwise else int(getattr(layer, "groups", 1))
    pads = reference.explicit_padding(layer.padding, (h, w), (kh, kw), strides, dilation)
    pad_value = float(getattr(layer, "pad_values", 0.0))  # Larq's padding value (Keras: 0)
    k_bit, source = _k_bit_input(b, layer, x)
    if k_bit is not None:  # k-bit activations: bit-serial (or a float conv of the DoReFa values)
        y = keras_bitserial.conv2d(b, source, k_bit, wq, bias=_bias(layer), strides=strides, dilation=dilation,
                                   padding=pads, groups=groups, pad_value=pad_value)
        return activation(b, y, name_of(layer.activation))
    y = None if depthwise or pad_value or _input_kind(layer) else keras_fake_quant.int8_conv(
        b, x, wq, _bias(layer), strides=strides, dilation=dilation, padding=pads, groups=groups, layer=layer.name)
    if y is None:
        y = bnn.conv2d(b, x, wq, alpha=_alpha(wq, one_bit), bias=_bias(layer), sign_input=_sign_input(layer),
                       heaviside_input=_heaviside_input(layer), strides=strides, dilation=dilation, padding=pads,
                       groups=groups, depthwise=depthwise, pad_value=pad_value)
    return activation(b, y, name_of(layer.activation))


@converter("QuantDepthwiseConv2D", "DepthwiseConv2D", check=_check_quant_layer)
def _depthwise_conv(b: LayerBuilder, layer, x):
    return _conv(b, layer, x, depthwise=True)


@converter("QuantDense", "Dense", check=_check_quant_layer)
def _dense(b: LayerBuilder, layer, x):
    wq, one_bit = _kernel(layer)
    k_bit, source = _k_bit_input(b, layer, x)
    if k_bit is not None:
        return activation(b, keras_bitserial.dense(b, source, k_bit, wq, bias=_bias(layer)), name_of(layer.activation))
    y = None if _input_kind(layer) else keras_fake_quant.int8_dense(b, x, wq, _bias(layer), layer=layer.name)
    if y is None:
        y = bnn.dense(b, x, wq, alpha=_alpha(wq, one_bit), bias=_bias(layer), sign_input=_sign_input(layer),
                      heaviside_input=_heaviside_input(layer))
    return activation(b, y, name_of(layer.activation))


@converter("BatchNormalization")
def _batchnorm(b: LayerBuilder, layer, x):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    shape = shape_of(x)
    if [a % len(shape) for a in axis] != [len(shape) - 1]:
        raise Unsupported(f"only normalization over the last axis is supported, got axis {layer.axis}")
    c = shape[-1]
    gamma = layer.gamma.numpy() if layer.scale else np.ones(c, np.float32)
    beta = layer.beta.numpy() if layer.center else np.zeros(c, np.float32)
    mean, var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = (gamma / np.sqrt(var + layer.epsilon)).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
    if not (np.isfinite(scale).all() and np.isfinite(shift).all()):
        raise Unsupported(f"moving_variance + epsilon is not positive in {int((var + layer.epsilon <= 0).sum())} "
                          "channel(s): the normalization is undefined")
    return b.emit(relax.op.add(b.emit(relax.op.multiply(x, const(scale))), const(shift)))


def _binary_activation(layer) -> str | None:
    """bnn.SIGN / bnn.HEAVISIDE for an Activation applying a sign or Heaviside quantizer (e.g.
    ``Activation(lq.quantizers.SteSign())``), None for a float activation; anything else is unsupported (with
    the float-activation reason)."""
    try:
        check_activation(name_of(layer.activation))
        return None
    except Unsupported as float_problem:
        try:
            return _binary_kind(layer.activation, "activation")
        except Unsupported as sign_problem:
            raise Unsupported(f"{float_problem}; {sign_problem}") from None


def _binary_values(b: LayerBuilder, x, kind: str | None):
    """±1 (bnn.sign) or {0, 1} (bnn.heaviside) values, which a following ±α-kernel layer packs."""
    return bnn.heaviside(b, x) if kind == bnn.HEAVISIDE else bnn.sign(b, x)


@converter("Activation", check=_binary_activation)
def _activation(b: LayerBuilder, layer, x):
    kind = _binary_activation(layer)
    if kind is not None:
        return _binary_values(b, x, kind)
    return activation(b, x, name_of(layer.activation))


def _layer_k_bit(layer) -> int | None:
    """k for a quantizer layer computing DoReFa(k, "activations"); None for a sign or Heaviside one (anything
    else: Unsupported)."""
    k = keras_bitserial.k_bit_of(_evaluated(layer), getattr(layer, "precision", None))
    if k is None:
        _binary_kind(layer, "quantizer")
    return k


# Larq quantizers are Keras layers and may be applied on their own: a sign one becomes ±1 values (bnn.sign), a
# Heaviside one {0, 1} values (bnn.heaviside), which a following ±α-kernel layer packs as its binary input; a
# DoReFa one its float values, whose levels a following layer without input quantizer reads
# (:mod:`.keras_bitserial`).
@converter("SteSign", "ApproxSign", "SwishSign", "SteHeaviside", "MagnitudeAwareSign", "SteTern", "DoReFa",
           check=_layer_k_bit)
def _quantizer_layer(b: LayerBuilder, layer, x):
    k = _layer_k_bit(layer)
    return _binary_values(b, x, _binary_kind(layer, "quantizer")) if k is None else \
        keras_bitserial.dorefa_values(b, x, k)


def _check_relu(layer) -> None:
    if layer.negative_slope or layer.threshold:
        raise Unsupported("ReLU with negative_slope or threshold is not supported")


@converter("ReLU", check=_check_relu)
def _relu(b: LayerBuilder, layer, x):
    return b.emit(relax.op.nn.relu(x) if layer.max_value is None else relax.op.clip(x, 0.0, float(layer.max_value)))


@converter("PReLU")
def _prelu(b: LayerBuilder, layer, x):
    neg = relax.op.multiply(const(layer.alpha.numpy()), relax.op.minimum(x, const(0.0)))
    return b.emit(relax.op.add(relax.op.nn.relu(x), neg))


@converter("LeakyReLU")
def _leaky_relu(b: LayerBuilder, layer, x):
    return b.emit(relax.op.nn.leakyrelu(x, float(layer.alpha)))


@converter("Softmax")
def _softmax(b: LayerBuilder, layer, x):
    return b.emit(relax.op.nn.softmax(x, axis=int(layer.axis)))


def _check_op_lambda(call: keras_fake_quant.OpCall) -> None:
    if keras_fake_quant.op_name(call.symbol):
        keras_fake_quant.check(call)
    elif call.symbol not in ADD_SYMBOLS:
        raise Unsupported(f"TensorFlow op {call.symbol!r} is not supported (only add and "
                          f"{', '.join(keras_fake_quant.OPS)})")


@converter("TFOpLambda", check=_check_op_lambda, variadic=True)
def _op_lambda(b: LayerBuilder, call: keras_fake_quant.OpCall, *xs):
    if keras_fake_quant.op_name(call.symbol):
        return keras_fake_quant.convert(b, call, xs[0])
    return _add(b, call, *xs)


@converter("Add", variadic=True)
def _add(b: LayerBuilder, layer, *xs):
    if len(xs) < 2:
        raise Unsupported("adding a constant is not supported, only tensors")
    y = xs[0]
    for other in xs[1:]:
        y = b.emit(relax.op.add(y, other))
    return y


@converter("Concatenate", variadic=True)
def _concatenate(b: LayerBuilder, layer, *xs):
    return b.emit(relax.op.concat(list(xs), axis=int(layer.axis)))


def _pool(b: LayerBuilder, layer, x, op):
    _, h, w, _ = shape_of(x)
    pool, strides = tuple(layer.pool_size), tuple(layer.strides)
    pads = reference.explicit_padding(layer.padding, (h, w), pool, strides, (1, 1))
    # Keras excludes the padding from both the max and the average.
    return b.emit(op(x, pool, strides, pads, layout="NHWC", count_include_pad=False))


@converter("MaxPooling2D", check=_check_layout)
def _max_pool(b: LayerBuilder, layer, x):
    y = _pool(b, layer, x, relax.op.nn.max_pool2d)
    # the max of fake-quant values is the value of the max code (code · scale, scale > 0)
    keras_fake_quant.follow(b, x, y, lambda codes, _zp: _pool(b, layer, codes, relax.op.nn.max_pool2d))
    return y


@converter("AveragePooling2D", check=_check_layout)
def _avg_pool(b: LayerBuilder, layer, x):
    return _pool(b, layer, x, relax.op.nn.avg_pool2d)


@converter("GlobalAveragePooling2D")
def _global_avg_pool(b: LayerBuilder, layer, x):
    return b.emit(relax.op.mean(x, axis=[1, 2], keepdims=bool(getattr(layer, "keepdims", False))))


@converter("ZeroPadding2D")
def _zero_padding(b: LayerBuilder, layer, x):
    (t, bottom), (left, r) = layer.padding
    y = b.emit(relax.op.nn.pad(x, [0, 0, t, bottom, left, r, 0, 0]))
    keras_fake_quant.follow(b, x, y, lambda codes, zp: relax.op.nn.pad(codes, [0, 0, t, bottom, left, r, 0, 0],
                                                                       pad_value=zp))  # real 0 is the zero point
    return y


def _reshaped(b: LayerBuilder, x, y):
    """``y`` = a reshape of ``x``, keeping what a binary or int8 consumer reads (signs, fake-quant codes)."""
    bnn.follow_reshape(b, x, y)
    keras_fake_quant.follow_reshape(b, x, y)
    return y


@converter("Flatten")
def _flatten(b: LayerBuilder, layer, x):
    shape = shape_of(x)
    return _reshaped(b, x, b.emit(relax.op.reshape(x, (shape[0], int(np.prod(shape[1:]))))))


@converter("Reshape")
def _reshape(b: LayerBuilder, layer, x):
    return _reshaped(b, x, b.emit(relax.op.reshape(x, (shape_of(x)[0], *layer.target_shape))))


@converter(*IDENTITY_LAYERS, variadic=True)
def _identity(b: LayerBuilder, layer, x, *_):
    return x


# ------------------------------------------------------------------------------------------------- graph walk
def _nodes(model) -> Iterator:
    """The model's layer nodes (not its inputs) in an order where every node comes after its inputs."""
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if not node.is_input:
                yield node


def _check_finite(layer: Layer, source: str | None) -> None:
    """NaN or Inf in a layer's weights or statistics would be folded into the compiled model (or break TVM's
    constant folding): refused, naming the layer and the weight."""
    for w in getattr(layer.obj, "weights", ()):
        a = np.asarray(w.numpy())
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.isfinite(a).sum())
            name = w.name.split("/")[-1].split(":")[0]
            raise FrontendError(f"{layer.kind}: weight {name!r} holds {bad} NaN or infinite value(s) of {a.size}",
                                file=source, layer=layer.name)


def _as_layer(node) -> Layer:
    kind = type(node.layer).__name__
    obj = node.layer
    if kind == "TFOpLambda":  # what it computes is in the node: the function's arguments beside the tensor
        obj = keras_fake_quant.OpCall(str(obj.symbol), tuple(node.call_args), dict(node.call_kwargs),
                                      len(node.keras_inputs))
    return Layer(node.layer.name, kind, obj, len(node.keras_inputs))


class _Import:
    def __init__(self, model, batch_size: int, bits: int, source: str | None):
        from .._tf import keras

        self.keras = keras
        self.model, self.batch, self.source = model, batch_size, source
        self.graph = Graph(bits=bits, source=source)
        self.values: dict[int, relax.Expr] = {}  # id(KerasTensor) → Relax value

    def layers(self, model) -> Iterator[Layer]:
        """Every layer the conversion will meet, nested models' layers included."""
        for node in _nodes(model):
            if isinstance(node.layer, self.keras.Model):
                yield from self.layers(node.layer)
            else:
                yield _as_layer(node)

    def convert(self) -> tvm.IRModule:
        model = self.model
        if not hasattr(model, "_nodes_by_depth") or not getattr(model, "inputs", None):
            raise FrontendError("the model has no defined inputs (build it with an Input or input_shape)",
                                file=self.source)
        layers = list(self.layers(model))
        KERAS.check_all(layers, file=self.source)
        for layer in layers:
            _check_finite(layer, self.source)
        params = []
        for t in model.inputs:
            shape = (self.batch, *t.shape[1:])
            if any(d is None for d in shape):
                raise FrontendError(f"input {t.name!r} has an undefined dimension {tuple(t.shape)}",
                                    file=self.source)
            check_input_shape(t.name, shape, self.source)
            params.append(Graph.input(t.name.split(":")[0].replace("/", "_"), shape))
            self.values[id(t)] = params[-1]

        def body():
            self.walk(model)
            return [self.values[id(t)] for t in model.outputs]

        mod = self.graph.build(params, body)
        # every layer as written, in graph order: what bnncc profile accounts each kernel's time to
        return mod.with_attr(SOURCE_LAYERS_ATTR, json.dumps([[x.name, x.kind] for x in self.layers(model)]))

    def walk(self, model) -> None:
        for node in _nodes(model):
            inputs = [self.values[id(t)] for t in node.keras_inputs]
            if isinstance(node.layer, self.keras.Model):
                outs = self.submodel(node.layer, inputs)
            else:
                outs = KERAS.convert(self.graph, _as_layer(node), inputs)
            outputs = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
            for t, v in zip(outputs, outs, strict=True):
                self.values[id(t)] = v

    def submodel(self, sub, inputs: list[relax.Expr]) -> list[relax.Expr]:
        for t, v in zip(sub.inputs, inputs, strict=True):
            self.values[id(t)] = v
        self.walk(sub)
        return [self.values[id(t)] for t in sub.outputs]


def from_keras(model, *, batch_size: int = 1, bits: int = 32, source: str | None = None) -> tvm.IRModule:
    """Import a Keras/Larq model as a Relax module with one function ``main`` (NHWC float32 inputs)."""
    if int(batch_size) < 1:
        raise FrontendError(f"batch size must be at least 1, got {batch_size}", file=source)
    try:
        return _Import(model, batch_size, bits, source).convert()
    except BnnccError:
        raise
    except (RuntimeError, ValueError, TypeError, AttributeError) as e:  # a layer bnncc misread
        raise FrontendError(f"could not import the model: {type(e).__name__}: {str(e).splitlines()[0]}",
                            file=source) from e


def load_keras(path: str | Path, *, trust_model: bool = False):
    """Load a Keras model file (.h5, .keras, SavedModel dir) with Larq's custom objects; clear errors.

    The file's configuration is read as data first (:mod:`bnncc.frontend.model_config`): a model with layers
    that carry Python code (``Lambda``) is refused unless ``trust_model``, since Keras runs that code to load it.
    """
    path = Path(path)
    check_model_file(path, trust_model=trust_model)
    from .._tf import keras, lq

    try:
        with lq.context.quantized_scope(False):
            return keras.models.load_model(str(path), compile=False, safe_mode=not trust_model)
    except Exception as e:  # noqa: BLE001 - h5py/TF raise many kinds for a broken file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(f"not a Keras model file bnncc can read ({first[:200]})", file=str(path)) from None
