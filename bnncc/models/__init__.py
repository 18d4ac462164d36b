"""Model zoo: the larq-zoo BNN architectures rebuilt with Larq layers, with random weights and realistic BN.

``build(name)`` makes the graph, draws every weight from ``seed`` (latent binary kernels ~ U(-1, 1), float
kernels ~ He normal, biases ~ N(0, 0.1)), then calibrates each BatchNormalization on a small batch of N(0, 1)
images: moving mean/variance are the per-channel batch statistics of the layer's input (with every earlier BN
already set), gamma ~ U(0.5, 1.5) with ~10 % of channels negated, beta ~ N(0, 0.2)·|gamma| (0.2 output stds).
"""

from collections.abc import Callable, Sequence

import numpy as np

from .._tf import keras, tf
from ..errors import FrontendError
from ..zoo import ZOO_NAMES
from . import twin
from .binary_alexnet import binary_alexnet
from .birealnet import birealnet18
from .quicknet import quicknet, quicknet_large, quicknet_small
from .resnet_e import binary_resnet_e18

__all__ = ["MODELS", "build", "calibrate_batchnorm", "describe", "is_binary_layer", "randomize_weights", "twin"]

MODELS: dict[str, Callable[..., keras.Model]] = {
    "quicknet_small": quicknet_small,
    "quicknet": quicknet,
    "quicknet_large": quicknet_large,
    "birealnet18": birealnet18,
    "binary_alexnet": binary_alexnet,
    "binary_resnet_e18": binary_resnet_e18,
}
assert tuple(MODELS) == ZOO_NAMES, "bnncc.zoo.ZOO_NAMES lists the zoo for the CLI: keep it in step"

CALIBRATION_BATCH = 8
NEGATIVE_GAMMA_FRACTION = 0.1


def build(
    name: str, input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 1000, seed: int = 0
) -> keras.Model:
    """Build zoo model ``name`` with seeded random weights and calibrated BN statistics.

    Every model takes 64×64 inputs (BinaryAlexNet needs ≥ 57×57, the others ≥ 32×32).
    """
    try:
        make = MODELS[name]
    except (KeyError, TypeError):
        raise FrontendError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
    model = make(input_shape=tuple(int(d) for d in input_shape), num_classes=int(num_classes))
    rng = np.random.default_rng([seed, 0])
    randomize_weights(model, rng)
    calibrate_batchnorm(model, rng)
    return model


def _quantizer_is_binary(q) -> bool:
    return q is not None and getattr(q, "precision", None) == 1


def _kernel_quantizer(layer: keras.layers.Layer):
    q = getattr(layer, "kernel_quantizer", None)
    return q if q is not None else getattr(layer, "depthwise_quantizer", None)


def is_binary_layer(layer: keras.layers.Layer) -> bool:
    """True for a Larq quantized conv/dense layer whose input and kernel quantizers are both 1-bit."""
    return _quantizer_is_binary(getattr(layer, "input_quantizer", None)) and _quantizer_is_binary(
        _kernel_quantizer(layer)
    )


def randomize_weights(model: keras.Model, rng: np.random.Generator) -> None:
    """Draw every trainable conv/dense weight from ``rng`` (BN is left to :func:`calibrate_batchnorm`)."""
    for layer in model.layers:
        if not layer.trainable or isinstance(layer, keras.layers.BatchNormalization):
            continue
        for attr in ("kernel", "depthwise_kernel"):
            var = getattr(layer, attr, None)
            if var is None:
                continue
            shape = tuple(var.shape)
            if _quantizer_is_binary(_kernel_quantizer(layer)):
                value = rng.uniform(-1.0, 1.0, shape)
            else:
                fan_in = int(np.prod(shape[:2])) if attr == "depthwise_kernel" else int(np.prod(shape[:-1]))
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            var.assign(value.astype(np.float32))
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias.assign(rng.normal(0.0, 0.1, tuple(bias.shape)).astype(np.float32))


def _set_bn(layer: keras.layers.BatchNormalization, x: tf.Tensor, rng: np.random.Generator) -> None:
    axes = [a % x.shape.rank for a in layer.axis]
    reduce = [a for a in range(x.shape.rank) if a not in axes]
    xs = x.numpy().astype(np.float64)
    mean = xs.mean(axis=tuple(reduce))
    var = xs.var(axis=tuple(reduce))
    var = np.where(var > 1e-8, var, 1.0)  # a constant channel: keep it finite and unamplified
    layer.moving_mean.assign(mean.astype(np.float32))
    layer.moving_variance.assign(var.astype(np.float32))
    shape = mean.shape
    gamma = rng.uniform(0.5, 1.5, shape)
    gamma = np.where(rng.random(shape) < NEGATIVE_GAMMA_FRACTION, -gamma, gamma)
    beta = rng.normal(0.0, 0.2, shape) * (np.abs(gamma) if layer.scale else 1.0)
    if layer.scale:
        layer.gamma.assign(gamma.astype(np.float32))
    if layer.center:
        layer.beta.assign(beta.astype(np.float32))


def calibrate_batchnorm(model: keras.Model, rng: np.random.Generator, batch: int = CALIBRATION_BATCH) -> None:
    """Set every BN layer's statistics from one layer-by-layer pass of ``batch`` N(0, 1) images.

    Layers run in topological order, so each BN sees the activations of an already-calibrated network.
    A BN whose only consumer is a max-pool (Bi-Real Net's stem) gets its beta shifted so that the *pooled*
    values have per-channel median beta: otherwise the max of 9 ~N(0, 1) values would be ≥ 0 almost always
    and the next binary layer would see a constant +1 input.
    """
    data = rng.standard_normal((batch, *model.input_shape[1:])).astype(np.float32)
    values: dict[int, tf.Tensor] = {id(model.inputs[0]): tf.constant(data)}
    uses: dict[int, int] = {}
    consumers: dict[int, list] = {}
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # keras' own topological order
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            nodes.append(node)
            for t in node.keras_inputs:
                uses[id(t)] = uses.get(id(t), 0) + 1
                consumers.setdefault(id(t), []).append(node.layer)

    def lookup(t):
        return values.get(id(t), t)  # ids of live KerasTensors are unique; other arguments pass through

    for node in nodes:
        layer = node.layer
        args = tf.nest.map_structure(lookup, node.call_args)
        kwargs = tf.nest.map_structure(lookup, node.call_kwargs)
        if isinstance(layer, keras.layers.BatchNormalization):
            _set_bn(layer, args[0], rng)
            kwargs = {**kwargs, "training": False}
        out = layer(*args, **kwargs)
        nexts = consumers.get(id(node.outputs), [])
        if (
            isinstance(layer, keras.layers.BatchNormalization)
            and layer.center
            and len(nexts) == 1
            and isinstance(nexts[0], keras.layers.MaxPooling2D)
        ):
            pooled = nexts[0](out).numpy()
            beta = layer.beta.numpy()
            layer.beta.assign(beta - (np.median(pooled, axis=(0, 1, 2)) - beta))
            out = layer(*args, **kwargs)
        for t in node.keras_inputs:
            uses[id(t)] -= 1
            if uses[id(t)] == 0:
                values.pop(id(t), None)
        for t, v in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out), strict=True):
            values[id(t)] = v


def _macs(layer: keras.layers.Layer) -> int:
    out = tuple(int(d) for d in layer.output.shape[1:])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, _, _ = layer.depthwise_kernel.shape
        return int(np.prod(out)) * int(kh) * int(kw)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin_per_group, _ = layer.kernel.shape
        return int(np.prod(out)) * int(kh) * int(kw) * int(cin_per_group)
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(out)) * int(layer.kernel.shape[0])
    return 0


def describe(model: keras.Model) -> dict:
    """Counts ``params``, ``binary_params``, ``binary_macs`` and ``float_macs`` (no forward pass).

    Binary = a Larq QuantConv2D/QuantDepthwiseConv2D/QuantDense with 1-bit input *and* kernel quantizers;
    ``binary_params`` counts those layers' kernels. Every other conv/dense MAC is a float MAC.
    """
    binary_params = binary_macs = float_macs = 0
    for layer in model.layers:
        macs = _macs(layer)
        if is_binary_layer(layer):
            binary_macs += macs
            kernel = getattr(layer, "kernel", None)
            kernel = kernel if kernel is not None else layer.depthwise_kernel
            binary_params += int(np.prod(kernel.shape))
        else:
            float_macs += macs
    return {
        "name": model.name,
        "params": int(model.count_params()),
        "binary_params": binary_params,
        "binary_macs": binary_macs,
        "float_macs": float_macs,
    }
