"""int8 fake quantization in Keras models (QAT output): TF's fake-quant ops imported bit-exact (oracle and
compiled, against tf.quantization.fake_quant_* on every rounding boundary, ±0, the clamp edges, ±inf, denormals
and NaN), and a fake-quantized input feeding an int8-grid Conv2D/Dense running on bnncc's int8 ops."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import logging  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bnncc  # noqa: E402
from bnncc import reference, targets  # noqa: E402
from bnncc._tf import keras, tf  # noqa: E402
from bnncc.frontend.keras_fake_quant import OpCall, params, weight_grid  # noqa: E402
from bnncc.relay_ops import fake_quant as fq  # noqa: E402
from bnncc.testing import compile_graph  # noqa: E402

TFQ = tf.quantization
OPS = {"vars": TFQ.fake_quant_with_min_max_vars, "args": TFQ.fake_quant_with_min_max_args,
       "vars_per_channel": TFQ.fake_quant_with_min_max_vars_per_channel}
HOST = targets.isa("host")
INT8_INSN = "tdpbusd" if HOST.amx_int8 else "vpdpbusd" if HOST.vnni and HOST.avx512 else "vpmaddwd"
F32 = np.float32


def _neighbours(v: np.ndarray, ulps: int = 2) -> np.ndarray:
    out = [v]
    up, down = v.copy(), v.copy()
    for _ in range(ulps):
        up, down = np.nextafter(up, F32(np.inf)), np.nextafter(down, F32(-np.inf))
        out += [up, down]
    return np.concatenate(out).astype(F32)


def boundary_inputs(p: reference.FakeQuant, channel: int, rng: np.random.Generator, n: int = 600) -> np.ndarray:
    """Values where TF's rounding flips (each code's threshold ± 2 ulps; at most ``n`` codes), the clamp edges,
    ±0, denormals, ±inf, NaN, and random values across the range."""
    nmin, nmax, s = (float(a[channel]) for a in (p.nudged_min, p.nudged_max, p.scale))
    codes = np.arange(p.levels) if p.levels <= n else rng.choice(p.levels, n, replace=False)
    thresholds = (nmin + (codes - 0.5) * s).astype(F32)  # floor(t + 0.5) flips at the half steps
    edges = F32([nmin, nmax, 0.0, -0.0, 1e-40, -1e-40, 1.4e-45, np.inf, -np.inf, np.nan, 1e30, -1e30])
    inside = rng.uniform(nmin - 2 * s, nmax + 2 * s, 200).astype(F32)
    return np.concatenate([_neighbours(thresholds), _neighbours(edges[:2]), edges, inside])


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    got, want = np.asarray(got, F32), np.asarray(want, F32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    keep = ~np.isnan(want)
    np.testing.assert_array_equal(got[keep].view(np.uint32), want[keep].view(np.uint32))  # -0.0 ≠ +0.0 here


ranges = st.tuples(st.floats(-50, 1, width=32), st.floats(0.015625, 50, width=32)).filter(lambda r: r[0] < r[1])


@settings(max_examples=40, deadline=None)
@given(op=st.sampled_from(sorted(OPS)), num_bits=st.integers(2, 16), narrow=st.booleans(),
       rs=st.lists(ranges, min_size=1, max_size=3), zero=st.booleans(), seed=st.integers(0, 2**16))
def test_fake_quant_is_bit_exact_against_tensorflow(op, num_bits, narrow, rs, zero, seed):
    """The oracle and the compiled Relax composition both equal TF's output bit for bit."""
    rng = np.random.default_rng(seed)
    if op != "vars_per_channel":
        rs = rs[:1]
    if zero and op != "args":  # min = max = 0: TF writes 0 (args refuses that range)
        rs = [(0.0, 0.0), *rs[1:]]
    mn, mx = F32([r[0] for r in rs]), F32([r[1] for r in rs])
    kw = dict(num_bits=num_bits, narrow_range=narrow)
    if op == "vars_per_channel":
        p = params(OpCall(f"quantization.fake_quant_with_min_max_{op}", (None, list(mn), list(mx)), kw))
        cols = [boundary_inputs(p, c, rng) for c in range(len(rs))]
        x = np.stack([np.resize(c, max(map(len, cols))) for c in cols], axis=1)
        want = OPS[op](x, mn, mx, **kw).numpy()
    else:
        p = params(OpCall(f"quantization.fake_quant_with_min_max_{op}", (), dict(min=mn[0], max=mx[0], **kw)))
        x = boundary_inputs(p, 0, rng)[None]
        want = OPS[op](x, float(mn[0]), float(mx[0]), **kw).numpy()
    _same_bits(reference.fake_quant(x, p), want)
    exe = compile_graph(lambda bb, v: fq.fake_quant(bb, v, p), (x.shape, "float32"))
    _same_bits(exe(x), want)


def test_uint8_codes_are_the_fake_quant_values():
    """code · scale of the uint8 codes (zero point quant_zero) is TF's output; NaN reads as the zero point."""
    p = reference.fake_quant_params(-1.3, 2.1, 8, True, divide=True)
    x = boundary_inputs(p, 0, np.random.default_rng(0))
    u = reference.fake_quant_uint8(x, p)
    real = ((u.astype(F32) - p.quant_zero) * p.scale).astype(F32)
    want = TFQ.fake_quant_with_min_max_vars(x, -1.3, 2.1, narrow_range=True).numpy()
    keep = ~np.isnan(x)
    _same_bits(real[keep], want[keep])
    assert (u[~keep] == p.quant_zero).all() and u.max() == 254  # narrow range: 255 levels


# ----------------------------------------------------------------------------------------------- whole models
def _on_grid(w: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """``w`` fake-quantized as QAT leaves it: symmetric narrow range, per output channel or per tensor."""
    flat = w.reshape(-1, w.shape[-1])
    a = np.abs(flat).max(0) if per_channel else np.full(w.shape[-1], np.abs(flat).max(), F32)
    return TFQ.fake_quant_with_min_max_vars_per_channel(flat, -a, a, narrow_range=True).numpy().reshape(w.shape)


def qat_model(grid: bool = True, seed: int = 0) -> keras.Model:
    """fake-quant → Conv2D (relu) → fake-quant → Flatten → Dense → fake-quant, weights on their int8 grids."""
    inp = keras.Input((7, 7, 3))
    x = TFQ.fake_quant_with_min_max_vars(inp, min=-1.0, max=2.0)
    x = keras.layers.Conv2D(8, 3, padding="same", strides=2, activation="relu", name="conv")(x)
    x = TFQ.fake_quant_with_min_max_args(x, min=0.0, max=3.0, num_bits=7, narrow_range=False)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, name="fc")(x)
    out = TFQ.fake_quant_with_min_max_vars(x, -6.0, 6.0, num_bits=8, narrow_range=True)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    for name, per_channel in (("conv", True), ("fc", False)):
        layer = model.get_layer(name)
        w, b = layer.get_weights()
        layer.set_weights([_on_grid(w, per_channel) if grid else w, rng.normal(0, 0.1, b.shape).astype(F32)])
    return model


@pytest.fixture(scope="module")
def qat():
    model = qat_model()
    return model, bnncc.compile(model, "host")


def test_qat_model_runs_int8_and_matches_keras(qat):
    model, exe = qat
    ir = bnncc.from_keras(model).script()
    assert ir.count('"bnncc.qdense"') == 2 and ir.count('"bnncc.im2col"') == 1
    assert "R.nn.conv2d" not in ir and "R.matmul" not in ir  # no float conv/dense left
    assert INT8_INSN in exe.assembly()
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = rng.normal(0.3, 1.0, (1, 7, 7, 3)).astype(F32)
        x[0, 0, 0, :] = [0.0, -0.0, 2.5]
        want = model(x, training=False).numpy()
        got = np.asarray(exe(x))
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_int8_conv_accumulators_match_the_oracle():
    """fake-quant → int8-grid conv (no bias): bnncc's output is the oracle's int32 accumulators · s_x·s_w."""
    inp = keras.Input((6, 5, 4))
    x = TFQ.fake_quant_with_min_max_vars(inp, min=-2.0, max=1.5, num_bits=8)
    conv = keras.layers.Conv2D(5, 3, padding="same", dilation_rate=2, use_bias=False, name="conv")
    model = keras.Model(inp, conv(x))
    w = _on_grid(conv.get_weights()[0])
    conv.set_weights([w])
    k, sw = weight_grid(w)
    np.testing.assert_array_equal((k.astype(F32) * sw).astype(F32), w)  # the grid is exact
    p = reference.fake_quant_params(-2.0, 1.5, 8, divide=True)
    exe = bnncc.compile(model, "host")
    rng = np.random.default_rng(2)
    for _ in range(3):
        v = rng.normal(0, 1.5, (1, 6, 5, 4)).astype(F32)
        u = reference.fake_quant_uint8(v, p)
        pads = reference.explicit_padding("same", (6, 5), (3, 3), (1, 1), (2, 2))
        cols = reference.im2col(u, (3, 3), (1, 1), (2, 2), pads, pad_value=int(p.quant_zero[0]))
        acc = reference.qdense(cols, k.reshape(-1, 5), int(p.quant_zero[0])).reshape(1, 6, 5, 5)
        np.testing.assert_array_equal(exe(v), reference.dequantize(acc, (p.scale * sw).astype(F32)))
        want = model(v, training=False).numpy()
        assert np.abs(np.asarray(exe(v)) - want).max() <= 1e-5 * np.abs(want).max()


def test_fake_quant_output_node_is_bit_exact_in_a_model(qat):
    model, _ = qat
    head = keras.Model(model.inputs, model.get_layer("tf.quantization.fake_quant_with_min_max_args").output)
    exe = bnncc.compile(head, "host")
    x = np.random.default_rng(3).normal(0, 2, (1, 7, 7, 3)).astype(F32)
    _same_bits(exe(x), head(x, training=False).numpy())


def test_float_weights_keep_the_layer_float_after_the_exact_fake_quant(caplog):
    model = qat_model(grid=False)
    with caplog.at_level(logging.WARNING, "bnncc.frontend.keras_fake_quant"):
        ir = bnncc.from_keras(model).script()
    assert '"bnncc.qdense"' not in ir and "R.nn.conv2d" in ir
    assert "layer 'conv': kept float after its fake-quantized input: 8 output channel(s) are not on an int8 " \
           "grid" in caplog.text
    exe = bnncc.compile(model, "host")
    x = np.random.default_rng(4).normal(0, 1, (1, 7, 7, 3)).astype(F32)
    want = model(x, training=False).numpy()
    assert np.abs(np.asarray(exe(x)) - want).max() <= 1e-4 * np.abs(want).max()


def test_asymmetric_weight_grid_is_not_int8():
    w = np.random.default_rng(5).uniform(-1, 2, (3, 3, 4, 2)).astype(F32)
    flat = TFQ.fake_quant_with_min_max_vars(w, -1.0, 2.0).numpy()  # codes −85..170 around real 0
    assert "not int8" in weight_grid(flat)
    k, s = weight_grid(TFQ.fake_quant_with_min_max_vars(w, -2.0, 2.0).numpy())  # codes −128..127
    assert k.dtype == np.int8 and k.min() >= -128 and np.all(s == s[0])


def test_per_channel_activation_ranges_stay_float_and_exact():
    inp = keras.Input((4, 4, 3))
    x = TFQ.fake_quant_with_min_max_vars_per_channel(inp, [-1.0, -2.0, 0.0], [1.0, 0.5, 3.0], num_bits=6)
    model = keras.Model(inp, keras.layers.Conv2D(2, 1, name="conv")(x))
    ir = bnncc.from_keras(model).script()
    assert '"bnncc.qdense"' not in ir  # one zero point per channel: no uint8 operand for qdense
    head = keras.Model(inp, x)
    v = np.random.default_rng(6).normal(0, 2, (1, 4, 4, 3)).astype(F32)
    _same_bits(bnncc.compile(head, "host")(v), head(v).numpy())


@pytest.mark.parametrize("kwargs, reason", [
    (dict(min=-1.0, max=1.0, num_bits=1), "num_bits must be between 2 and 16, got 1"),
    (dict(min=1.0, max=1.0), "min must be smaller than max, got [1, 1]"),
    (dict(min=0.0, max=float("nan")), "min and max must be finite"),
    (dict(min=-1e-43, max=1e-43), "the range is too narrow: its step is not a normal float32"),
])
def test_bad_ranges_are_refused_naming_the_layer(kwargs, reason):
    inp = keras.Input((4,))
    model = keras.Model(inp, TFQ.fake_quant_with_min_max_vars(inp, name="fq", **kwargs))
    with pytest.raises(bnncc.FrontendError) as info:
        bnncc.from_keras(model)
    assert re.search(r"layer 'tf\.quantization\.fake_quant_with_min_max_vars(_\d+)?': TFOpLambda: " + re.escape(reason),
                     str(info.value))


def test_computed_range_is_refused():
    inp = keras.Input((4,))
    model = keras.Model(inp, TFQ.fake_quant_with_min_max_vars(inp, tf.reduce_min(inp), tf.reduce_max(inp)))
    with pytest.raises(bnncc.FrontendError, match="min and max must be constants, not tensors computed"):
        bnncc.from_keras(model)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_saved_qat_model_compiles_from_file(tmp_path, qat):
    model, exe = qat
    path = tmp_path / "qat.h5"
    model.save(path)
    loaded = bnncc.compile(str(path), "host")
    x = np.random.default_rng(7).normal(0, 1, (1, 7, 7, 3)).astype(F32)
    np.testing.assert_array_equal(loaded(x), exe(x))


def test_max_pool_and_zero_padding_keep_the_codes():
    """fake-quant → MaxPooling2D → ZeroPadding2D → Conv2D: the pools map codes to codes, so the conv is int8;
    its accumulators are the oracle's on the codes of TF's own pooled, padded tensor."""
    inp = keras.Input((9, 9, 4))
    x = TFQ.fake_quant_with_min_max_vars(inp, -1.0, 2.0)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    pooled = keras.layers.ZeroPadding2D(((1, 0), (2, 1)))(x)
    conv = keras.layers.Conv2D(6, 3, use_bias=False)
    model = keras.Model(inp, conv(pooled))
    conv.set_weights([_on_grid(conv.get_weights()[0])])
    assert bnncc.from_keras(model).script().count('"bnncc.qdense"') == 1
    k, sw = weight_grid(conv.get_weights()[0])
    p = reference.fake_quant_params(-1.0, 2.0, divide=True)
    zp = int(p.quant_zero[0])
    exe = bnncc.compile(model, "host")
    before_conv = keras.Model(inp, pooled)
    for seed in range(2):
        v = np.random.default_rng(seed).normal(0, 1.5, (1, 9, 9, 4)).astype(F32)
        codes = (np.round(before_conv(v).numpy() / p.scale) + zp).astype(np.uint8)  # TF's values are k · scale
        acc = reference.qdense(reference.im2col(codes, (3, 3)), k.reshape(-1, 6), zp).reshape(1, 4, 6, 6)
        np.testing.assert_array_equal(exe(v), reference.dequantize(acc, (p.scale * sw).astype(F32)))
