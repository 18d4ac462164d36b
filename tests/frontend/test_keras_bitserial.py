"""Larq models with DoReFa(k_bit=2) activations × ste_sign / SteTern kernels through bnncc.compile vs Keras: the
bit-serial layers exact, the whole net within float round-off."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bnncc  # noqa: E402
from bnncc._tf import keras, lq  # noqa: E402
from bnncc.errors import FrontendError  # noqa: E402

BITSERIAL = ("a2w1", "a2w2", "a2w1_standalone", "fc")


def _dorefa(**kw):
    return lq.quantizers.DoReFa(k_bit=2, mode="activations", **kw)


def _model():
    rng = np.random.default_rng(0)
    inp = keras.Input((12, 11, 3))
    x = keras.layers.Conv2D(20, 3, padding="same", name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = lq.layers.QuantConv2D(24, 3, padding="same", input_quantizer=_dorefa(), kernel_quantizer="ste_sign",
                              use_bias=False, name="a2w1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = lq.layers.QuantConv2D(17, 3, strides=2, padding="same", input_quantizer=_dorefa(),
                              kernel_quantizer=lq.quantizers.SteTern(threshold_value=0.6), use_bias=False,
                              name="a2w2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = _dorefa(name="q3")(x)  # the quantizer as a layer: the next conv reads its levels
    x = lq.layers.QuantConv2D(9, (3, 2), dilation_rate=(1, 2), padding="valid", kernel_quantizer="ste_sign",
                              use_bias=False, name="a2w1_standalone")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(10, input_quantizer=_dorefa(), kernel_quantizer="ste_sign", name="fc")(x)
    model = keras.Model(inp, x)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # activations spread over DoReFa's [0, 1]
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.05, 0.2, c), rng.uniform(0.3, 0.7, c), rng.normal(0, 1, c),
                               rng.uniform(0.5, 2, c)])
        elif layer.name in BITSERIAL:
            layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def model():
    return _model()


def test_layers_become_bitserial_and_the_net_matches_keras(model):
    text = bnncc.from_keras(model).script()
    assert text.count('"bnncc.bsconv2d"') == len(BITSERIAL) and text.count('"bnncc.bitplanes"') == len(BITSERIAL)
    assert text.count("R.nn.conv2d") == 1  # only the float stem
    x = np.random.default_rng(1).standard_normal((2, 12, 11, 3)).astype(np.float32)
    exe = bnncc.compile(model, "host", batch_size=2)
    got, want = exe(x), model(x, training=False).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("name", ["a2w1", "a2w2", "a2w1_standalone"])
def test_bitserial_layers_are_exact(model, name):
    """Each layer alone on Keras's own input to it: n·output is the integer accumulator, equal in both."""
    layer = model.get_layer(name)
    src = model.get_layer("q3").input if name == "a2w1_standalone" else layer.input
    sub = keras.Model(src, layer.output)
    feed = keras.Model(model.input, src)(np.random.default_rng(2).standard_normal((1, 12, 11, 3)), training=False)
    x = feed.numpy()
    want = sub(x, training=False).numpy() * 3
    got = bnncc.compile(sub, "host")(x) * 3
    np.testing.assert_array_equal(np.rint(got), np.rint(want))
    assert np.abs(want - np.rint(want)).max() < 1e-3 and np.abs(want).max() > 0


def test_uncovered_cases_stay_float_and_match():
    """A float kernel, or pad_values=1, after DoReFa: a float conv of the DoReFa values."""
    inp = keras.Input((6, 6, 5))
    x = lq.layers.QuantConv2D(4, 3, padding="same", input_quantizer=_dorefa(), name="float_kernel")(inp)
    x = lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0, input_quantizer=_dorefa(),
                              kernel_quantizer="ste_sign", name="pad_one")(x)
    model = keras.Model(inp, x)
    assert '"bnncc.bsconv2d"' not in bnncc.from_keras(model).script()
    x = np.random.default_rng(3).uniform(-0.2, 1.2, (1, 6, 6, 5)).astype(np.float32)
    got, want = bnncc.compile(model, "host")(x), model(x, training=False).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_ternary_activations_are_refused_naming_the_layer():
    inp = keras.Input((6, 6, 5))
    x = lq.layers.QuantConv2D(4, 3, input_quantizer=lq.quantizers.SteTern(), kernel_quantizer="ste_sign",
                              name="tern_in")(inp)
    with pytest.raises(FrontendError, match="tern_in.*input quantizer 'stetern' is not sign-like"):
        bnncc.from_keras(keras.Model(inp, x))
