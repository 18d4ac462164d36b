"""Sign quantizers recognised by what they compute (any spelling, any function), and a sign used as a layer on
its own: the binary layer it feeds still runs on bitpack → bconv2d/bdense, matching Keras."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bnncc  # noqa: E402
from bnncc._tf import keras, lq, tf  # noqa: E402
from bnncc.testing import random_input  # noqa: E402

WHY = ("(a binary layer needs sign(x) with sign(0) = +1 or the step x > 0; accepted: ste_sign, approx_sign, "
       "swish_sign, ste_heaviside or any function computing one of them)")


@tf.custom_gradient
def tf_where_sign(x):
    """The sign of LCE's end-to-end test: straight-through gradient."""
    return tf.where(x >= 0, 1.0, -1.0), lambda dy: dy


def where_less_sign(x):
    return tf.where(x < 0, -1.0, 1.0)


def fixed_tf_sign(x):
    return tf.where(x == 0, 1.0, tf.sign(x))  # -0.0 == 0 as well, so -0.0 → +1


def wrong_threshold(x):
    return tf.where(x > 0.1, 1.0, -1.0)


def identity(x):
    return x


ACCEPTED = {
    "ste_sign": lambda: "ste_sign",
    "SteSign(clip_value=0.5)": lambda: lq.quantizers.SteSign(clip_value=0.5),
    "ApproxSign": lambda: lq.quantizers.ApproxSign(),
    "SwishSign": lambda: lq.quantizers.SwishSign(),
    "swish_sign": lambda: "swish_sign",
    "tf_where_sign": lambda: tf_where_sign,
    "where_less_sign": lambda: where_less_sign,
    "fixed_tf_sign": lambda: fixed_tf_sign,
}
REFUSED = {  # quantizer → (name in the error, the probe it names)
    "tanh": (lambda: tf.math.tanh, "'tanh' is not sign-like: maps 0.5 to 0.462"),
    "tf.sign": (lambda: tf.sign, "'sign' is not sign-like: maps 0 to 0"),
    "wrong_threshold": (lambda: wrong_threshold, "'wrong_threshold' is not sign-like: maps 0 to -1"),
    "identity": (lambda: identity, "'identity' is not sign-like: maps 0.5 to 0.5"),
}


def _one_layer(kind: str, quantizer) -> keras.Model:
    kw = dict(input_quantizer=quantizer, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
    if kind == "conv":
        inp = keras.Input((5, 5, 8))
        out = lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0, name="q", **kw)(inp)
    else:
        inp = keras.Input((16,))
        out = lq.layers.QuantDense(4, name="q", **kw)(inp)
    return keras.Model(inp, out)


@settings(max_examples=30)
@given(st.sampled_from(sorted(ACCEPTED)), st.sampled_from(["conv", "dense"]))
def test_sign_like_quantizers_are_binary_layers(name, kind):
    ir = bnncc.from_keras(_one_layer(kind, ACCEPTED[name]())).script()
    assert ('"bnncc.bconv2d"' if kind == "conv" else '"bnncc.bdense"') in ir
    assert '"bnncc.bitpack"' in ir


@settings(max_examples=30)
@given(st.sampled_from(sorted(REFUSED)), st.sampled_from(["conv", "dense"]))
def test_other_quantizers_are_refused_saying_why(name, kind):
    make, reason = REFUSED[name]
    with pytest.raises(bnncc.FrontendError) as info:
        bnncc.from_keras(_one_layer(kind, make()))
    msg = str(info.value)
    layer = "QuantConv2D" if kind == "conv" else "QuantDense"
    assert f"layer 'q': {layer}: input quantizer {reason} {WHY}" in msg


def _set_weights(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 1, c), rng.normal(0, 3, c),
                               rng.uniform(5, 20, c)])
        elif layer.weights:
            layer.set_weights([rng.uniform(-1, 1, w.shape) for w in layer.get_weights()])


def test_custom_gradient_sign_quantizer_is_bit_exact():
    model = _one_layer("conv", tf_where_sign)
    rng = np.random.default_rng(0)
    _set_weights(model, rng)
    exe = bnncc.compile(model, "host")
    assert exe.stats["binary_ops"] == 1
    for _ in range(3):
        x = random_input(rng, (1, 5, 5, 8), zeros=0.1)
        np.testing.assert_array_equal(exe(x), model(x, training=False).numpy())


def _standalone_sign_model() -> keras.Model:
    """Larq quantizers applied as layers (a quantizer instance, and one inside Activation) in front of binary
    convs whose own input quantizer is None."""
    kw = dict(input_quantizer=None, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    inp = keras.Input((6, 6, 8))
    x = lq.quantizers.SteSign(name="sign1")(inp)
    x = lq.layers.QuantConv2D(16, 3, padding="same", pad_values=1.0, name="conv1", **kw)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation(lq.quantizers.SteSign(), name="sign2")(x)
    x = lq.layers.QuantConv2D(8, 3, name="conv2", **kw)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(5)(x)
    model = keras.Model(inp, out)
    _set_weights(model, np.random.default_rng(1))
    return model


def test_standalone_sign_layer_feeds_a_binary_conv():
    model = _standalone_sign_model()
    ir = bnncc.from_keras(model).script()
    assert ir.count('"bnncc.bconv2d"') == 2
    exe = bnncc.compile(model, "host")
    assert exe.stats["binary_ops"] == 2
    first = keras.Model(model.inputs, model.get_layer("conv1").output)
    first_exe = bnncc.compile(first, "host")
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = random_input(rng, (1, 6, 6, 8), zeros=0.1)
        np.testing.assert_array_equal(first_exe(x), first(x, training=False).numpy())  # the binary conv: exact
        want = model(x, training=False).numpy()
        assert np.abs(exe(x) - want).max() <= 1e-4 * np.abs(want).max()


def test_sign_layer_read_by_a_float_layer_too_stays_exact():
    """The ±1 values are also needed by a float conv: they are computed, and the binary conv still packs."""
    inp = keras.Input((5, 5, 8))
    s = lq.quantizers.SteSign()(inp)
    a = lq.layers.QuantConv2D(4, 3, input_quantizer=None, kernel_quantizer="ste_sign", use_bias=False)(s)
    b = keras.layers.Conv2D(4, 3, use_bias=False)(s)
    model = keras.Model(inp, keras.layers.Concatenate()([a, b]))
    _set_weights(model, np.random.default_rng(3))
    exe = bnncc.compile(model, "host")
    assert exe.stats["binary_ops"] == 1
    x = random_input(np.random.default_rng(4), (1, 5, 5, 8), zeros=0.1)
    want = model(x, training=False).numpy()
    assert np.abs(exe(x) - want).max() <= 1e-5 * np.abs(want).max()


def test_standalone_non_sign_quantizer_layer_is_refused_and_noop_is_identity():
    inp = keras.Input((4, 4, 3))
    with pytest.raises(bnncc.FrontendError) as info:
        bnncc.from_keras(keras.Model(inp, keras.layers.Activation(wrong_threshold, name="t")(inp)))
    msg = str(info.value)
    assert "layer 't': Activation: activation 'wrong_threshold' is not supported (supported: " in msg
    assert f"; activation 'wrong_threshold' is not sign-like: maps 0 to -1 {WHY}" in msg
    model = keras.Model(inp, lq.quantizers.NoOp(precision=1)(inp))
    x = random_input(np.random.default_rng(5), (1, 4, 4, 3))
    np.testing.assert_array_equal(bnncc.compile(model, "host")(x), x)


def test_denormal_inputs():
    """bnncc keeps IEEE semantics on denormals (the sign of −1e-40 is −1, as in numpy, onnxruntime, PyTorch);
    TensorFlow on CPU reads denormals as 0 (even in `x < 0`), so Larq's sign is +1 there: the outputs differ by
    exactly the flipped taps, and agree once the denormals are gone."""
    x = np.float32([-1e-40, 1e-40, -1.4e-45, -1.2e-38, 0.0, -0.0, -2.0]).reshape(1, 1, 1, 7)
    assert (tf.constant(x) < 0).numpy().sum() == 2  # TF: only -1.2e-38 (normal) and -2 are negative
    inp = keras.Input((1, 1, 7))
    conv = lq.layers.QuantConv2D(1, 1, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.ones((1, 1, 7, 1), np.float32)])
    exe = bnncc.compile(model, "host")
    ours = float(np.asarray(exe(x)).ravel()[0])
    assert ours == float(bnncc.reference.binarize(x).sum()) == -1.0  # −1 −1 for the two negative denormals
    assert float(model(x).numpy().ravel()[0]) == ours + 2 * 2
    flushed = np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0), x)
    assert float(np.asarray(exe(flushed)).ravel()[0]) == float(model(flushed).numpy().ravel()[0])


@pytest.mark.parametrize("reshape", ["flatten", "reshape"])
def test_sign_layer_through_flatten_or_reshape_feeds_a_binary_dense(reshape):
    """A standalone sign, then Flatten/Reshape, then a QuantDense without input quantizer: still binary (it ran
    as a float dense of ±1 values before)."""
    inp = keras.Input((3, 3, 16))
    x = lq.quantizers.SteSign()(inp)
    x = keras.layers.Flatten()(x) if reshape == "flatten" else keras.layers.Reshape((144,))(x)
    out = lq.layers.QuantDense(8, input_quantizer=None, kernel_quantizer="ste_sign", use_bias=False)(x)
    model = keras.Model(inp, out)
    _set_weights(model, np.random.default_rng(6))
    exe = bnncc.compile(model, "host")
    assert exe.stats["binary_ops"] == 1
    x = random_input(np.random.default_rng(7), (1, 3, 3, 16), zeros=0.1)
    np.testing.assert_array_equal(exe(x), model(x, training=False).numpy())
