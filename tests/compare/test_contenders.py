"""Fast checks of bnncc.compare's contenders: the LCE oracle, the converted graphs, float twins."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bnncc._tf import lq, tf  # noqa: E402
from bnncc.compare import contenders as C  # noqa: E402
from bnncc.compare.layers import LAYERS  # noqa: E402
from bnncc.compare.results import format_table, write_results  # noqa: E402
from bnncc.compare.timing import median_ms, time_interleaved  # noqa: E402
from bnncc.models.twin import strip_quantizers  # noqa: E402


def _rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-30))


@pytest.fixture(scope="module")
def small_layer():
    # 40 input channels: two 32-bit words, the second one padded.
    model = C.bconv_layer_model((1, 6, 7, 40), 24, seed=3)
    x = np.random.default_rng(0).normal(size=(1, 6, 7, 40)).astype(np.float32)
    return model, C.lce_convert(model), x


def _tiny_larq_net(seed=0):
    """Float stem → binary conv ('same', pad 1) + float shortcut → binary depthwise → binary conv
    ('valid') → binary conv (bitpacked input from the previous one) → max-pool → binary dense → float head.

    LCE 0.16 converts it to: CONV_2D, LceQuantize, LceBconv2d, ADD, DEPTHWISE_CONV_2D (binarized weights
    stay float), LceQuantize, LceBconv2d (bitpacked INT32 output), LceBconv2d, MAX_POOL_2D, MEAN,
    LceQuantize, LceDequantize, FULLY_CONNECTED (the binary dense runs as a float FC), FULLY_CONNECTED.
    """
    rng = np.random.default_rng(seed)
    kw = dict(
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
        use_bias=False,
    )
    inp = tf.keras.Input((12, 12, 3), batch_size=1)
    y = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    y = tf.keras.layers.BatchNormalization(name="stem_bn")(y)
    s = y
    y = lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, name="qconv1", **kw)(y)
    y = tf.keras.layers.BatchNormalization(name="bn1")(y)
    y = tf.keras.layers.Add(name="add")([y, s])
    y = lq.layers.QuantDepthwiseConv2D(
        3, padding="same", depthwise_quantizer="ste_sign", use_bias=False, name="qdw"
    )(y)
    y = lq.layers.QuantConv2D(48, 3, padding="valid", name="qconv2", **kw)(y)
    y = tf.keras.layers.BatchNormalization(name="bn2")(y)
    y = lq.layers.QuantConv2D(48, 3, padding="same", pad_values=1.0, name="qconv3", **kw)(y)
    y = tf.keras.layers.BatchNormalization(name="bn3")(y)
    y = tf.keras.layers.MaxPool2D(2, name="pool")(y)
    y = tf.keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = lq.layers.QuantDense(16, name="qdense", **kw)(y)
    y = tf.keras.layers.BatchNormalization(name="bn4")(y)
    y = tf.keras.layers.Dense(10, name="head")(y)
    model = tf.keras.Model(inp, y, name="tiny_larq")
    for layer in model.layers:
        ws = layer.get_weights()
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = ws[0].shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.5, n),
                    rng.normal(0, 2.0, n),
                    rng.uniform(5, 50, n),
                ]
            )
        elif ws:
            layer.set_weights([rng.uniform(-1, 1, w.shape).astype(np.float32) for w in ws])
    return model


def test_layers_table():
    assert list(LAYERS) == ["L1", "L2", "L3", "L4", "L5"]
    assert LAYERS["L3"].input_shape == (1, 28, 28, 256) and LAYERS["L3"].filters == 256
    assert LAYERS["L1"].binary_macs == 56 * 56 * 64 * 64 * 9


def test_converted_graph_is_quantize_then_float_bconv(small_layer):
    _, fb, _ = small_layer
    assert C.tflite_op_names(fb) == ["LceQuantize", "LceBconv2d"]
    bconv = C.tflite_ops(fb)[1]
    assert bconv["outputs"][0] == ((1, 6, 7, 24), "FLOAT32")
    assert bconv["inputs"][0] == ((1, 6, 7, 2), "INT32")  # bitpacked input: 40 channels → 2 words
    assert bconv["inputs"][2][1] == bconv["inputs"][3][1] == "FLOAT32"  # fused multiplier and bias


def test_op_names_analyzer_fallback(small_layer, monkeypatch):
    _, fb, _ = small_layer
    monkeypatch.setitem(sys.modules, "tflite", None)  # `import tflite` now raises ImportError
    assert C.tflite_op_names(fb) == ["LceQuantize", "LceBconv2d"]


def test_lce_matches_keras_on_bconv_layer(small_layer):
    model, fb, x = small_layer
    ref = model(x).numpy()
    assert _rel_err(C.lce_predict(model, x), ref) < 1e-4
    for indirect in (True, False):
        runner = C.LceRunner(None, 1, indirect, flatbuffer=fb)
        assert _rel_err(runner(x), ref) < 1e-4
    assert _rel_err(C.LceRunner(None, 1, False, use_reference_bconv=True, flatbuffer=fb)(x), ref) < 1e-4
    samples = runner.time(x, repeats=2, warmup=1)
    assert len(samples) == 2 and all(s > 0 for s in samples)


def test_float_twin_matches_plain_keras(small_layer):
    model, _, x = small_layer
    twin = C.float_twin(model)
    assert not any(type(layer).__module__.startswith("larq") for layer in twin.layers)
    inp = tf.keras.Input((6, 7, 40), batch_size=1)
    conv = tf.keras.layers.Conv2D(24, 3, padding="same", use_bias=False)
    bn = tf.keras.layers.BatchNormalization()
    plain = tf.keras.Model(inp, bn(conv(inp)))
    conv.set_weights(model.get_layer("bconv").get_weights())
    bn.set_weights(model.get_layer("bn").get_weights())
    ref = plain(x).numpy()
    np.testing.assert_allclose(twin(x).numpy(), ref, rtol=1e-5, atol=1e-5)
    runner = C.TfliteXnnpackRunner(twin, 1)
    assert C.tflite_op_names(runner.flatbuffer) == ["CONV_2D"]
    assert _rel_err(runner(x), ref) < 1e-4
    assert (
        _rel_err(C.TfliteXnnpackRunner(None, 1, use_xnnpack=False, flatbuffer=runner.flatbuffer)(x), ref)
        < 1e-4
    )
    assert len(runner.time(x, repeats=2, warmup=1)) == 2


def test_strip_quantizers_keeps_weights():
    model = _tiny_larq_net()
    twin = strip_quantizers(model)
    kinds = {layer.name: type(layer).__name__ for layer in twin.layers}
    assert kinds["qconv1"] == "Conv2D" and kinds["qdw"] == "DepthwiseConv2D" and kinds["qdense"] == "Dense"
    assert not any(type(layer).__module__.startswith("larq") for layer in twin.layers)
    for old in model.layers:
        new = twin.get_layer(old.name)
        for a, b in zip(old.get_weights(), new.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    # The twin computes the float network: check one stripped conv against its Keras float equivalent.
    x = np.random.default_rng(1).normal(size=(1, 12, 12, 3)).astype(np.float32)
    sub = tf.keras.Model(twin.input, twin.get_layer("qconv1").output)
    pre = tf.keras.Model(twin.input, twin.get_layer("stem_bn").output)(x)
    want = tf.nn.conv2d(pre, model.get_layer("qconv1").get_weights()[0], 1, "SAME")
    np.testing.assert_allclose(sub(x).numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


def test_network_runners_on_tiny_larq_net():
    model = _tiny_larq_net()
    x = np.random.default_rng(2).normal(size=(1, 12, 12, 3)).astype(np.float32)
    runners = C.network_runners(model, 1)
    assert set(runners) == {"lce_indirect", "lce_default", "lce_indirect_xnnpack", "tflite_xnnpack_fp32"}
    ops = C.tflite_ops(runners["lce_indirect"].flatbuffer)
    bconvs = [op for op in ops if op["name"] == "LceBconv2d"]
    assert len(bconvs) == 3 and ops[0]["name"] == "CONV_2D"
    # qconv2 feeds qconv3 directly: LCE fuses BN + the next sign into a bitpacked (INT32) output.
    assert [op["outputs"][0][1] for op in bconvs] == ["FLOAT32", "INT32", "FLOAT32"]
    ref = model(x).numpy()
    for name in ("lce_indirect", "lce_default", "lce_indirect_xnnpack"):
        assert _rel_err(runners[name](x), ref) < 1e-4, name
    twin_ref = strip_quantizers(model)(x).numpy()
    assert _rel_err(runners["tflite_xnnpack_fp32"](x), twin_ref) < 1e-4
    samples = time_interleaved(runners, x, repeats=2, warmup=1)
    assert all(len(v) == 2 for v in samples.values())


def test_tables_and_results(tmp_path):
    rows = [{"layer": "L1", "threads": 1, "lce_ms": 1.91234}, {"layer": "L3", "threads": 2, "lce_ms": 14.9}]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "threads", "lce_ms"] and "1.912" in lines[2] and "14.90" in lines[3]
    assert median_ms([0.001, 0.003, 0.002]) == pytest.approx(2.0)
    write_results(tmp_path / "r.md", tmp_path / "r.json", rows, {"threads": [1, 2]})
    md = (tmp_path / "r.md").read_text()
    assert "| layer | threads | lce_ms |" in md and "tensorflow" in md
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["rows"][1]["lce_ms"] == 14.9 and data["meta"]["versions"]["larq_compute_engine"] == "0.16.0"
