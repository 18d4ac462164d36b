"""Larq's SteHeaviside ({0, 1} activations: 1 for x > 0) against ±1 kernels runs on the binary kernels: the sign
bits of −x, with Σ a·w = (Σ w − acc)/2 folded into the output transform; bit-exact against Larq, including the
padding (Larq pads the {0, 1} input with ``pad_values``: 0 is exact on bconv2d, 1 stays a float conv)."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bnncc  # noqa: E402
from bnncc._tf import keras, lq  # noqa: E402
from bnncc.testing import random_input  # noqa: E402

KW = dict(input_quantizer="ste_heaviside", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")


def _set_weights(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(-1.5, 1.5, c), rng.normal(0, 1, c), rng.normal(0, 3, c),
                               rng.uniform(5, 20, c)])
        elif layer.weights:
            layer.set_weights([rng.uniform(-1, 1, w.shape) for w in layer.get_weights()])


def _exact(model, shape, binary_ops: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    _set_weights(model, rng)
    exe = bnncc.compile(model, "host")
    assert exe.stats["binary_ops"] == binary_ops
    for _ in range(2):
        x = random_input(rng, shape, zeros=0.15)  # exact +0.0 and -0.0: Heaviside maps both to 0
        np.testing.assert_array_equal(exe(x), model(x, training=False).numpy())


@pytest.mark.parametrize("padding, pad_values, groups, strides, binary", [
    ("same", 0.0, 1, 1, 1),  # padded 0s: s = +1 words, exact on bconv2d
    ("same", 0.0, 2, 2, 1),
    ("valid", 1.0, 1, 1, 1),  # no padding: the pad value does not matter
    ("same", 1.0, 1, 1, 0),  # padded 1s would be −1 bits bconv2d cannot pad with: a float conv, still exact
])
def test_heaviside_conv_is_bit_exact(padding, pad_values, groups, strides, binary):
    inp = keras.Input((6, 5, 64))
    out = lq.layers.QuantConv2D(32, 3, padding=padding, pad_values=pad_values, groups=groups, strides=strides,
                                use_bias=False, **KW)(inp)
    _exact(keras.Model(inp, out), (1, 6, 5, 64), binary)


def test_heaviside_dense_is_bit_exact():
    inp = keras.Input((70,))
    _exact(keras.Model(inp, lq.layers.QuantDense(9, use_bias=False, **KW)(inp)), (1, 70), 1)


def test_standalone_heaviside_layers_feed_binary_convs():
    """SteHeaviside as a layer and inside Activation, BatchNorm between: binary, within float round-off."""
    inp = keras.Input((5, 5, 8))
    x = lq.quantizers.SteHeaviside()(inp)
    x = lq.layers.QuantConv2D(16, 3, padding="same", input_quantizer=None, kernel_quantizer="ste_sign",
                              use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation(lq.quantizers.SteHeaviside())(x)
    x = lq.layers.QuantConv2D(8, 3, input_quantizer=None, kernel_quantizer="ste_sign", name="conv2")(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(1)
    _set_weights(model, rng)
    exe = bnncc.compile(model, "host")
    assert exe.stats["binary_ops"] == 2
    first = keras.Model(inp, model.get_layer("conv1").output)
    first_exe = bnncc.compile(first, "host")
    for _ in range(2):
        v = random_input(rng, (1, 5, 5, 8), zeros=0.15)
        np.testing.assert_array_equal(first_exe(v), first(v, training=False).numpy())
        want = model(v, training=False).numpy()
        assert np.abs(np.asarray(exe(v)) - want).max() <= 1e-5 * np.abs(want).max()


@settings(max_examples=12, deadline=None)
@given(k=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2), dilation=st.integers(1, 2),
       padding=st.sampled_from(["same", "valid"]), cin=st.sampled_from([3, 33, 64]), cout=st.integers(1, 40),
       seed=st.integers(0, 1000))
def test_property_heaviside_conv(k, stride, dilation, padding, cin, cout, seed):
    if stride > 1 and dilation > 1:
        stride = 1  # Keras refuses both
    inp = keras.Input((12, 11, cin))
    out = lq.layers.QuantConv2D(cout, k, strides=stride, dilation_rate=dilation, padding=padding, use_bias=False,
                                **KW)(inp)
    _exact(keras.Model(inp, out), (1, 12, 11, cin), 1, seed)


def test_heaviside_layer_through_flatten_feeds_a_binary_dense():
    inp = keras.Input((3, 3, 16))
    x = keras.layers.Flatten()(lq.quantizers.SteHeaviside()(inp))
    out = lq.layers.QuantDense(8, input_quantizer=None, kernel_quantizer="ste_sign", use_bias=False)(x)
    _exact(keras.Model(inp, out), (1, 3, 3, 16), 1)
