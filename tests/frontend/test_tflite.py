"""LCE / TFLite frontend: every zoo model written by LCE's converter against LCE's own interpreter on the same
``.tflite``, every LceBconv2d a bconv2d, binary layers bit-exact, plain float TFLite models, malformed files."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

lce = pytest.importorskip("larq_compute_engine")

import bnncc  # noqa: E402
from bnncc import models  # noqa: E402
from bnncc._tf import keras, lq  # noqa: E402
from bnncc.errors import FrontendError  # noqa: E402
from bnncc.frontend.tflite import _op_name, from_tflite, load_tflite  # noqa: E402
from bnncc.pipeline import build  # noqa: E402

# 96×96, as test_keras: LCE 0.16 miscomputes zero-padded 3×3 convs on smaller maps.
SMALL = (96, 96, 3)


def _interpreter(buf: bytes):
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(buf, num_threads=1)


def _rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _ops_in_file(path) -> dict[str, int]:
    model = load_tflite(path)
    g = model.Subgraphs(0)
    counts: dict[str, int] = {}
    for i in range(g.OperatorsLength()):
        name = _op_name(model, g.Operators(i))
        counts[name] = counts.get(name, 0) + 1
    return counts


def _write(tmp_path, name: str, buf: bytes):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(buf)
    return path


def _check(path, buf: bytes, x: np.ndarray) -> np.ndarray:
    mod = from_tflite(str(path))
    text = mod["main"].script()
    ops = _ops_in_file(path)
    assert text.count('"bnncc.bconv2d"') == ops.get("LceBconv2d", 0)  # every binary conv on bnncc's kernels
    assert text.count('"bnncc.bmaxpool2d"') == ops.get("LceBMaxPool2d", 0)
    got, want = build(mod, "host")(x), _interpreter(buf).predict(x)
    assert got.shape == want.shape  # the file's declared output shape, not TVM's importer's
    assert _rel_err(got, want) < 1e-4, _rel_err(got, want)
    assert got.argmax() == want.argmax()
    return got


@pytest.mark.parametrize("name", list(models.MODELS))
def test_lce_zoo_model_matches_lce_interpreter(tmp_path, name):
    model = models.build(name, input_shape=SMALL, num_classes=10, seed=3)
    buf = lce.convert_keras_model(model)
    path = _write(tmp_path, name, buf)
    x = np.random.default_rng(0).standard_normal((1, *SMALL)).astype(np.float32)
    got = _check(path, buf, x)
    # The same network through the Keras frontend: the two imports agree to float round-off.
    assert _rel_err(got, bnncc.compile(model)(x)) < 1e-5


def _binary_chain(pad_values: float, out_sign: bool):
    """float conv → sign → bconv → BN → (sign → bconv: LCE writes the first with bitpacked output) → ..."""
    i = keras.Input((12, 12, 8))
    x = keras.layers.Conv2D(40, 3, padding="same")(i)
    kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
              use_bias=False)
    x = lq.layers.QuantConv2D(40, 3, padding="same", pad_values=pad_values, **kw)(x)
    x = keras.layers.BatchNormalization(beta_initializer="random_normal", gamma_initializer="random_uniform")(x)
    x = lq.layers.QuantConv2D(70, 3, padding="same", pad_values=pad_values, **kw)(x)
    x = keras.layers.BatchNormalization(beta_initializer="random_normal")(x)
    x = lq.layers.QuantConv2D(24, 3, strides=2, padding="same", pad_values=pad_values, **kw)(x)
    if out_sign:
        x = lq.quantizers.SteSign()(x)  # ±1 output: LceQuantize → LceDequantize, compared exactly
    return keras.Model(i, x)


@pytest.mark.parametrize("pad_values", [0.0, 1.0])
@pytest.mark.parametrize("out_sign", [False, True])
def test_binary_layers_bit_exact(tmp_path, pad_values, out_sign):
    model = _binary_chain(pad_values, out_sign)
    rng = np.random.default_rng(1)
    for w in model.weights:  # BN statistics that move the thresholds
        if "moving_mean" in w.name or "moving_variance" in w.name:
            w.assign(rng.uniform(0.5, 2.0, w.shape) if "variance" in w.name else rng.normal(0, 3, w.shape))
    buf = lce.convert_keras_model(model)
    path = _write(tmp_path, "chain", buf)
    x = rng.standard_normal((1, 12, 12, 8)).astype(np.float32)
    got = _check(path, buf, x)
    if out_sign:
        assert np.array_equal(got, _interpreter(buf).predict(x))
        assert set(np.unique(got)) <= {-1.0, 1.0}


def test_plain_float_tflite(tmp_path):
    from bnncc._tf import tf

    i = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(i)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.MaxPool2D()(x)
    x = keras.layers.Conv2D(32, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(i, x)
    buf = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path = _write(tmp_path, "float", buf)
    x = np.random.default_rng(2).standard_normal((1, 32, 32, 3)).astype(np.float32)
    _check(path, buf, x)
    assert _rel_err(bnncc.compile(str(path))(x), model(x).numpy()) < 1e-4


# ---------------------------------------------------------------------------------------- malformed input
@pytest.fixture(scope="module")
def small_lce(tmp_path_factory):
    model = models.build("quicknet_small", input_shape=(64, 64, 3), num_classes=10, seed=3)
    return lce.convert_keras_model(model)


def test_output_has_the_declared_shape(tmp_path, small_lce):
    # The head's FULLY_CONNECTED reads a [1, 1, 1, C] pooled map; TFLite flattens it (keep_num_dims false).
    path = _write(tmp_path, "small", small_lce)
    g = load_tflite(path).Subgraphs(0)
    declared = tuple(int(d) for d in g.Tensors(int(g.Outputs(0))).ShapeAsNumpy())
    assert declared == (1, 10)
    x = np.random.default_rng(4).standard_normal((1, 64, 64, 3)).astype(np.float32)
    assert bnncc.compile(str(path))(x).shape == _interpreter(small_lce).predict(x).shape == declared


def test_truncated_tflite(tmp_path, small_lce):
    path = _write(tmp_path, "half", small_lce[: len(small_lce) // 2])
    with pytest.raises(FrontendError, match="not a TFLite model"):
        from_tflite(str(path))


def test_wrong_magic(tmp_path):
    path = _write(tmp_path, "png", b"\x89PNG\r\n\x1a\n" + bytes(256))
    with pytest.raises(FrontendError, match="no TFL3 file identifier"):
        from_tflite(str(path))


def test_unknown_custom_ops_are_listed_at_once(tmp_path, small_lce):
    path = _write(tmp_path, "custom", small_lce.replace(b"LceQuantize", b"LceQuantizf"))
    n = _ops_in_file(path)["LceQuantizf"]
    with pytest.raises(FrontendError) as e:
        from_tflite(str(path))
    msg = str(e.value)
    assert f"{n} operators cannot be imported" in msg and msg.count(": LceQuantizf: operator is not supported") == n
    assert "supported operators: LceQuantize, LceBconv2d" in msg and "custom.tflite" in msg


def test_dynamic_input_shape(tmp_path):
    from bnncc._tf import tf

    i = keras.Input((None, None, 3))
    model = keras.Model(i, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(i)))
    path = _write(tmp_path, "dynamic", tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(FrontendError, match=r"input '.*' has a dynamic shape \[-1, -1, -1, 3\]"):
        from_tflite(str(path))
