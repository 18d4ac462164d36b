"""Keras/Larq → Relax (there is no Keras frontend in Relax).

The graph is imported as it is written: a binary layer becomes ``bitpack`` (the input quantizer) → ``bconv2d`` /
``bdense`` with float output, and BatchNorm, activations and pools stay separate Relax ops. The passes in
:mod:`bnncc.relay_ops.passes` then fold BN/activations into the output transform and keep activations packed.
Quantized kernels are computed by the layer's own Larq quantizer (the oracle), so any ±α quantizer is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from .. import reference
from ..errors import BnnccError, FrontendError
from ..relay_ops import bconv2d, bdense, bitpack

# Input quantizers whose forward pass is sign(x) with sign(0) = +1.
SIGN_QUANTIZERS = {"ste_sign", "approx_sign", "swish_sign", "stesign", "approxsign", "swishsign"}

SUPPORTED_LAYERS = (
    "QuantConv2D, QuantDepthwiseConv2D, QuantDense (binary or float), Conv2D, DepthwiseConv2D, Dense, "
    "BatchNormalization, Activation, ReLU, PReLU, LeakyReLU, Softmax, Add, Concatenate, TFOpLambda(add), "
    "MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, ZeroPadding2D, Flatten, Reshape, Dropout"
)
ACTIVATIONS = ("linear", "relu", "relu6", "hard_tanh", "tanh", "sigmoid", "softmax")
IDENTITY_LAYERS = {"Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"}


def _name(obj) -> str:
    if obj is None:
        return "none"
    if isinstance(obj, str):
        return obj.lower()
    return getattr(obj, "__name__", type(obj).__name__).lower()


class _Converter:
    def __init__(self, model, batch_size: int, bits: int, source: str | None):
        from .._tf import keras, tf

        self.keras, self.tf = keras, tf
        self.model = model
        self.batch = batch_size
        self.bits = bits
        self.source = source
        self.values: dict[int, relax.Expr] = {}  # id(KerasTensor) → Relax value

    # ------------------------------------------------------------------ helpers
    def error(self, layer, reason: str) -> FrontendError:
        return FrontendError(f"{type(layer).__name__}: {reason}", file=self.source, layer=layer.name)

    def shape_of(self, expr) -> tuple[int, ...]:
        return tuple(int(s) for s in expr.ty.shape)

    def emit(self, expr, layer) -> relax.Var:
        return self.bb.emit(expr, name_hint=layer.name.replace("/", "_").replace(".", "_"))

    @staticmethod
    def const(x) -> relax.Expr:
        return relax.const(np.ascontiguousarray(np.asarray(x, np.float32)))

    def activation(self, x, act, layer):
        name = _name(act)
        if name in ("linear", "none"):
            return x
        ops: dict[str, Callable] = {
            "relu": relax.op.nn.relu,
            "relu6": lambda v: relax.op.clip(v, 0.0, 6.0),
            "hard_tanh": lambda v: relax.op.clip(v, -1.0, 1.0),
            "tanh": relax.op.tanh,
            "sigmoid": relax.op.sigmoid,
            "softmax": lambda v: relax.op.nn.softmax(v, axis=-1),
        }
        if name not in ops:
            raise self.error(layer, f"activation {name!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
        return self.emit(ops[name](x), layer)

    def sign(self, x, layer):
        """±1 float values (sign(0) = +1): a binary input quantizer in front of a float kernel."""
        return self.emit(relax.op.where(relax.op.less(x, self.const(0.0)), self.const(-1.0), self.const(1.0)), layer)

    def input_quantizer(self, layer) -> str | None:
        """'sign' for a binary input quantizer, None for a float input; anything else is an error."""
        q = getattr(layer, "input_quantizer", None)
        if q is None:
            return None
        if _name(q) in SIGN_QUANTIZERS:
            return "sign"
        raise self.error(layer, f"input quantizer {_name(q)!r} is not supported: binary layers need a sign "
                                f"quantizer ({', '.join(sorted(SIGN_QUANTIZERS)[:3])}) or none")

    def kernel(self, layer, attr: str = "kernel") -> tuple[np.ndarray, np.ndarray | None]:
        """(kernel as the layer computes with it, per-output-channel scale if it is binary ±α, else None)."""
        w = getattr(layer, attr).numpy()
        q = getattr(layer, "depthwise_quantizer" if attr == "depthwise_kernel" else "kernel_quantizer", None)
        if q is None:
            return w, None
        wq = np.asarray(q(self.tf.constant(w)), np.float32)
        mag = np.abs(wq).reshape(-1, wq.shape[-1])
        if getattr(q, "precision", None) == 1 and np.all(mag == mag[:1]) and np.all(mag[0] > 0):
            return wq, mag[0]
        return wq, None

    def padding(self, layer, in_hw, kernel_hw, strides, dilation=(1, 1)):
        return reference.explicit_padding(layer.padding, in_hw, kernel_hw, strides, dilation)

    # ------------------------------------------------------------------ layers
    def conv(self, layer, x, depthwise: bool):
        n, h, w, c = self.shape_of(x)
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise self.error(layer, "only channels_last (NHWC) data is supported")
        wq, scale = self.kernel(layer, "depthwise_kernel" if depthwise else "kernel")
        kh, kw = wq.shape[:2]
        strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
        groups = c if depthwise else int(getattr(layer, "groups", 1))
        if depthwise:  # [KH, KW, C, M] → HWIO with I = 1 per group, output channel c·M + m
            wq = wq.reshape(kh, kw, 1, c * wq.shape[3])
            scale = None if scale is None else np.asarray(scale).reshape(-1)
        if wq.shape[2] * groups != c:
            raise self.error(layer, f"kernel expects {wq.shape[2] * groups} input channels, input has {c}")
        pads = self.padding(layer, (h, w), (kh, kw), strides, dilation)
        pad_value = float(getattr(layer, "pad_values", 0.0))
        bias = layer.bias.numpy() if getattr(layer, "use_bias", False) else None
        binary_input = self.input_quantizer(layer) == "sign"
        if binary_input and scale is not None and not depthwise:
            if pad_value not in (0.0, 1.0):
                raise self.error(layer, f"pad_values must be 0 or 1 for a binary conv, got {pad_value}")
            packed = self.emit(bitpack(x, bits=self.bits, groups=groups), layer)
            y = self.emit(bconv2d(packed, np.sign(wq), scale, bias, strides=strides, dilation=dilation,
                                  padding=pads, pad_value=int(pad_value), groups=groups), layer)
            return self.activation(y, layer.activation, layer)
        if binary_input:
            x = self.sign(x, layer)
        if any(pads) and pad_value != 0.0:  # Larq pads with pad_values itself, then convolves 'valid'
            x = self.emit(relax.op.nn.pad(x, [0, 0, pads[0], pads[2], pads[1], pads[3], 0, 0],
                                          pad_value=pad_value), layer)
            pads = (0, 0, 0, 0)
        y = self.emit(relax.op.nn.conv2d(x, self.const(wq), strides=strides, padding=pads, dilation=dilation,
                                         groups=groups, data_layout="NHWC", kernel_layout="HWIO",
                                         out_dtype="float32"), layer)
        if bias is not None:
            y = self.emit(relax.op.add(y, self.const(bias)), layer)
        return self.activation(y, layer.activation, layer)

    def dense(self, layer, x):
        shape = self.shape_of(x)
        if len(shape) != 2:
            raise self.error(layer, f"only 2-D input [batch, features] is supported, got shape {shape}")
        wq, scale = self.kernel(layer)
        if wq.shape[0] != shape[1]:
            raise self.error(layer, f"kernel expects {wq.shape[0]} features, input has {shape[1]}")
        bias = layer.bias.numpy() if getattr(layer, "use_bias", False) else None
        binary_input = self.input_quantizer(layer) == "sign"
        if binary_input and scale is not None:
            packed = self.emit(bitpack(x, bits=self.bits), layer)
            y = self.emit(bdense(packed, np.sign(wq), scale, bias), layer)
            return self.activation(y, layer.activation, layer)
        if binary_input:
            x = self.sign(x, layer)
        y = self.emit(relax.op.matmul(x, self.const(wq)), layer)
        if bias is not None:
            y = self.emit(relax.op.add(y, self.const(bias)), layer)
        return self.activation(y, layer.activation, layer)

    def batchnorm(self, layer, x):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(self.shape_of(x))
        if [a % rank for a in axis] != [rank - 1]:
            raise self.error(layer, f"only normalization over the last axis is supported, got axis {layer.axis}")
        c = self.shape_of(x)[-1]
        gamma = layer.gamma.numpy() if layer.scale else np.ones(c, np.float32)
        beta = layer.beta.numpy() if layer.center else np.zeros(c, np.float32)
        mean, var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        scale = (gamma / np.sqrt(var + layer.epsilon)).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        y = self.emit(relax.op.multiply(x, self.const(scale)), layer)
        return self.emit(relax.op.add(y, self.const(shift)), layer)

    def pool(self, layer, x, kind: str):
        _, h, w, _ = self.shape_of(x)
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise self.error(layer, "only channels_last (NHWC) data is supported")
        pool, strides = tuple(layer.pool_size), tuple(layer.strides)
        pads = self.padding(layer, (h, w), pool, strides)
        op = relax.op.nn.max_pool2d if kind == "max" else relax.op.nn.avg_pool2d
        # Keras excludes the padding from both the max and the average.
        return self.emit(op(x, pool, strides, pads, layout="NHWC", count_include_pad=False), layer)

    def prelu(self, layer, x):
        alpha = layer.alpha.numpy()
        neg = relax.op.multiply(self.const(alpha), relax.op.minimum(x, self.const(0.0)))
        return self.emit(relax.op.add(relax.op.nn.relu(x), neg), layer)

    def convert_layer(self, layer, inputs: list[relax.Expr]):
        cls = type(layer).__name__
        x = inputs[0] if inputs else None
        if cls in IDENTITY_LAYERS:
            return x
        if len(inputs) != 1 and cls not in ("Add", "Concatenate", "TFOpLambda"):
            raise self.error(layer, f"expected one input, got {len(inputs)}")
        if cls in ("QuantConv2D", "Conv2D"):
            return self.conv(layer, x, depthwise=False)
        if cls in ("QuantDepthwiseConv2D", "DepthwiseConv2D"):
            return self.conv(layer, x, depthwise=True)
        if cls in ("QuantDense", "Dense"):
            return self.dense(layer, x)
        if cls == "BatchNormalization":
            return self.batchnorm(layer, x)
        if cls == "Activation":
            return self.activation(x, layer.activation, layer)
        if cls == "ReLU":
            if layer.negative_slope or layer.threshold:
                raise self.error(layer, "ReLU with negative_slope or threshold is not supported")
            y = relax.op.nn.relu(x) if layer.max_value is None else relax.op.clip(x, 0.0, float(layer.max_value))
            return self.emit(y, layer)
        if cls == "LeakyReLU":
            return self.emit(relax.op.nn.leakyrelu(x, float(layer.alpha)), layer)
        if cls == "PReLU":
            return self.prelu(layer, x)
        if cls == "Softmax":
            return self.emit(relax.op.nn.softmax(x, axis=int(layer.axis)), layer)
        if cls == "Add" or (cls == "TFOpLambda" and layer.symbol in ("__operators__.add", "math.add")):
            if len(inputs) < 2:
                raise self.error(layer, "adding a constant is not supported, only tensors")
            y = inputs[0]
            for other in inputs[1:]:
                y = self.emit(relax.op.add(y, other), layer)
            return y
        if cls == "Concatenate":
            return self.emit(relax.op.concat(inputs, axis=int(layer.axis)), layer)
        if cls == "MaxPooling2D":
            return self.pool(layer, x, "max")
        if cls == "AveragePooling2D":
            return self.pool(layer, x, "avg")
        if cls == "GlobalAveragePooling2D":
            return self.emit(relax.op.mean(x, axis=[1, 2], keepdims=bool(getattr(layer, "keepdims", False))), layer)
        if cls == "ZeroPadding2D":
            (t, b), (le, r) = layer.padding
            return self.emit(relax.op.nn.pad(x, [0, 0, t, b, le, r, 0, 0]), layer)
        if cls == "Flatten":
            shape = self.shape_of(x)
            return self.emit(relax.op.reshape(x, (shape[0], int(np.prod(shape[1:])))), layer)
        if cls == "Reshape":
            return self.emit(relax.op.reshape(x, (self.shape_of(x)[0], *layer.target_shape)), layer)
        if cls == "TFOpLambda":
            raise self.error(layer, f"TensorFlow op {layer.symbol!r} is not supported (only add)")
        raise self.error(layer, f"layer class is not supported; supported layers: {SUPPORTED_LAYERS}")

    # ------------------------------------------------------------------ graph walk
    def convert(self) -> tvm.IRModule:
        model = self.model
        if not hasattr(model, "_nodes_by_depth") or not getattr(model, "inputs", None):
            raise FrontendError("the model has no defined inputs (build it with an Input or input_shape)",
                                file=self.source)
        self.bb = relax.BlockBuilder()
        params = []
        for t in model.inputs:
            shape = (self.batch, *t.shape[1:])
            if any(d is None for d in shape):
                raise FrontendError(f"input {t.name!r} has an undefined dimension {tuple(t.shape)}",
                                    file=self.source)
            v = relax.Var(t.name.split(":")[0].replace("/", "_"), relax.TensorType(shape, "float32"))
            params.append(v)
            self.values[id(t)] = v
        failure = None
        with self.bb.function("main", params):
            with self.bb.dataflow():
                try:
                    self.walk(model)
                    outs = [self.values[id(t)] for t in model.outputs]
                except Exception as e:  # noqa: BLE001 - close the function first, then re-raise
                    failure, outs = e, params[:1]
                out = self.bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            self.bb.emit_func_output(out)
        if failure is not None:
            raise failure
        return self.bb.get()

    def walk(self, model):
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                layer = node.layer
                inputs = [self.values[id(t)] for t in node.keras_inputs]
                if isinstance(layer, self.keras.Model):
                    out = self.submodel(layer, inputs)
                else:
                    out = self.convert_layer(layer, inputs)
                outputs = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
                outs = out if isinstance(out, (list, tuple)) else [out]
                for t, v in zip(outputs, outs, strict=True):
                    self.values[id(t)] = v

    def submodel(self, sub, inputs):
        for t, v in zip(sub.inputs, inputs, strict=True):
            self.values[id(t)] = v
        self.walk(sub)
        return [self.values[id(t)] for t in sub.outputs]


def from_keras(model, *, batch_size: int = 1, bits: int = 32, source: str | None = None) -> tvm.IRModule:
    """Import a Keras/Larq model as a Relax module with one function ``main`` (NHWC float32 inputs)."""
    if int(batch_size) < 1:
        raise FrontendError(f"batch size must be at least 1, got {batch_size}", file=source)
    try:
        return _Converter(model, batch_size, bits, source).convert()
    except BnnccError:
        raise
    except (RuntimeError, ValueError, TypeError, AttributeError) as e:  # a layer bnncc misread
        raise FrontendError(f"could not import the model: {type(e).__name__}: {str(e).splitlines()[0]}",
                            file=source) from e


def load_keras(path: str | Path):
    """Load a Keras model file (.h5, .keras, SavedModel dir) with Larq's custom objects; clear errors."""
    from .._tf import keras, lq

    path = Path(path)
    if not path.exists():
        raise FrontendError("no such file or directory", file=str(path))
    try:
        with lq.context.quantized_scope(False):
            return keras.models.load_model(str(path), compile=False)
    except Exception as e:  # noqa: BLE001 - h5py/TF raise many kinds for a broken file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(f"not a Keras model file bnncc can read ({first[:200]})", file=str(path)) from None
