"""Post-training quantization (bnncc.ptq): a float CNN trained here on scikit-learn's digits keeps its test
accuracy in int8 (≤ 0.5 points lost, ≤ 200 calibration samples), every layer's SQNR is high, the policy knobs
keep the named layers float, a binary model comes out mixed (binary + int8 + float), and the int8 layers run on
this CPU's best int8 path."""

from __future__ import annotations

import numpy as np
import pytest

from bnncc import reference, targets
from bnncc.errors import BnnccError
from bnncc.pipeline import build
from bnncc.ptq import activation_qparams, find_layers, quantize_model, weight_qparams

HOST = targets.isa("host")
INT8_INSN = "tdpbusd" if HOST.amx_int8 else "vpdpbusd" if HOST.vnni and HOST.avx512 else "vpmaddwd"


@pytest.fixture(scope="module")
def digits_cnn():
    import tf_keras as keras
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", input_shape=(8, 8, 1), name="stem"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(64, activation="relu", name="fc"),
        keras.layers.Dense(10, name="logits")])
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x[:1400], d.target[:1400], epochs=12, batch_size=32, verbose=0)
    return m, x[:1400], x[1400:], d.target[1400:]


def _accuracy(exe, x, y) -> float:
    return float(np.mean([np.argmax(np.asarray(exe(v[None]))) == t for v, t in zip(x, y, strict=True)]))


def test_digits_accuracy_survives_int8(digits_cnn):
    import bnncc

    model, train, test, labels = digits_cnn
    mod = bnncc.from_keras(model)
    qmod, report = quantize_model(mod, train[:200])
    assert [r["precision"] for r in report.layers] == ["int8"] * 4
    assert report.median_sqnr() >= 30 and min(r["sqnr_db"] for r in report.layers) >= 25
    keras_acc = float(np.mean(np.argmax(model.predict(test, verbose=0), 1) == labels))
    qexe = build(qmod, "host")
    assert INT8_INSN in qexe.assembly()
    int8_acc = _accuracy(qexe, test, labels)
    assert keras_acc > 0.85  # the model learned the digits
    assert int8_acc >= keras_acc - 0.005, (keras_acc, int8_acc)


@pytest.mark.parametrize("method", ["percentile", "mse"])
def test_other_calibration_methods(digits_cnn, method):
    import bnncc

    model, train, test, labels = digits_cnn
    qmod, report = quantize_model(bnncc.from_keras(model), train[:100], method=method)
    assert report.method == method and report.median_sqnr() >= 30
    keras_acc = float(np.mean(np.argmax(model.predict(test, verbose=0), 1) == labels))
    assert _accuracy(build(qmod, "host"), test, labels) >= keras_acc - 0.01


def test_policy_keeps_layers_float(digits_cnn):
    import bnncc

    model, train, _, _ = digits_cnn
    mod = bnncc.from_keras(model)
    names = [layer.name for layer in find_layers(mod)]
    _, report = quantize_model(mod, train[:20], keep_float=[names[1]])
    assert [r["precision"] for r in report.layers] == ["int8", "float32", "int8", "int8"]
    _, report = quantize_model(mod, train[:20], keep_first_last=True)
    assert [r["precision"] for r in report.layers] == ["float32", "int8", "int8", "float32"]
    with pytest.raises(BnnccError, match="names no quantizable layer: nope"):
        quantize_model(mod, train[:20], keep_float=["nope"])


def test_calibration_data_is_checked(digits_cnn):
    import bnncc

    mod = bnncc.from_keras(digits_cnn[0])
    with pytest.raises(BnnccError, match="does not match the model's input"):
        quantize_model(mod, np.zeros((4, 9, 9, 1), np.float32))
    with pytest.raises(BnnccError, match="NaN or Inf"):
        quantize_model(mod, np.full((2, 8, 8, 1), np.nan, np.float32))
    with pytest.raises(BnnccError, match="calibration method"):
        quantize_model(mod, np.zeros((2, 8, 8, 1), np.float32), method="kl")


def test_binary_layers_stay_binary_float_layers_become_int8():
    import larq as lq
    import tf_keras as keras

    import bnncc

    keras.utils.set_random_seed(1)
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", name="stem")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(32, 3, padding="same", name="bconv", **binary)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, name="head")(x)
    model = keras.Model(inp, out)
    mod = bnncc.from_keras(model)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((16, 16, 16, 3)).astype(np.float32)
    qmod, report = quantize_model(mod, data)
    assert [r["kind"] for r in report.layers] == ["conv2d", "dense"]  # the binary conv is not a candidate
    text = qmod.script()
    assert "bnncc.bconv2d" in text and text.count("bnncc.qdense") == 2
    assert min(r["sqnr_db"] for r in report.layers) >= 30
    want = model.predict(data, verbose=0)
    fexe, qexe = build(mod, "host"), build(qmod, "host")
    got_float = np.concatenate([np.asarray(fexe(v[None])) for v in data])
    np.testing.assert_allclose(got_float, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # In int8, the stem's rounding flips the sign of its outputs that lie within a step of zero, and the binary
    # layer turns each flip into a ±2 change of its accumulators: outputs move, decisions mostly do not.
    got = np.concatenate([np.asarray(qexe(v[None])) for v in data])
    assert np.mean(np.argmax(got, 1) == np.argmax(want, 1)) >= 0.75


def test_ranges():
    x = np.concatenate([np.linspace(-1, 3, 10001, dtype=np.float32), [1000.0]])
    mm = activation_qparams(x, "minmax")
    pc = activation_qparams(x, "percentile", percentile=99.9)
    assert mm.scale > 100 * pc.scale  # the outlier sets min/max's range; the percentile clips it
    assert 0 <= mm.zero_point <= 255 and activation_qparams(np.zeros(5)).scale == 1.0
    w = np.random.default_rng(0).standard_normal((3, 3, 4, 6)).astype(np.float32)
    wq, sw = weight_qparams(w)
    assert wq.dtype == np.int8 and wq.min() >= -127 and np.abs(wq).reshape(-1, 6).max(axis=0).tolist() == [127] * 6
    np.testing.assert_allclose(wq * sw, w, atol=float(sw.max()) / 2 + 1e-7)
    q = reference.quantize(np.array([0.0]), mm.scale, mm.zero_point)
    assert int(q[0]) == mm.zero_point  # real 0 is exact (the conv padding)
