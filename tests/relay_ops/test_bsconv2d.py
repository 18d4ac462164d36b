"""The bit-serial ops (``bitplanes``, ``bsconv2d``) against the numpy oracle, and the oracle against Larq itself.

Compiled ops: hypothesis over shapes, strides, dilations, paddings, odd channel counts, k = 1..3, binary and
ternary weights, word sizes, on this CPU's schedule and on the AVX2 one. Accumulators come out exactly (identity
output transform); a random multiplier/bias/clamp within float round-off of the oracle's float32 formula.
Larq: its float ``QuantConv2D`` of DoReFa × ste_sign / SteTern is acc/n up to float rounding, so n·(its output)
rounds to the oracle's integer accumulator exactly.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bnncc import reference as ref
from bnncc.errors import OpError
from bnncc.relay_ops import bitplanes, bsconv2d
from bnncc.testing import compile_graph, graph_module
from tests.relay_ops.test_ops import HOST_HAS_AVX2

TIES = np.float32([(i + 0.5) / (2**k - 1) for k in (1, 2, 3) for i in range(2**k - 1)])


def _activations(rng, shape) -> np.ndarray:
    """Values around [0, 1] (both clips), with every rounding tie of k ≤ 3, exact zeros and negative zeros."""
    x = rng.uniform(-0.4, 1.4, shape).astype(np.float32)
    u = rng.random(shape)
    x[u < 0.1] = rng.choice(TIES, int((u < 0.1).sum()))
    x[(u >= 0.1) & (u < 0.13)] = 0.0
    x[(u >= 0.13) & (u < 0.15)] = -0.0
    return x


def _kernel(rng, shape, weights) -> np.ndarray:
    k = rng.standard_normal(shape).astype(np.float32)
    if weights == "ternary":
        k[np.abs(k) < 0.6] = 0.0
    return k


def _integer(kernel_hwio, weights) -> np.ndarray:
    k = kernel_hwio.transpose(3, 0, 1, 2)
    return ref.binarize(k) if weights == "binary" else np.sign(k).astype(np.int8)


@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=3), c=st.integers(1, 130), k_bit=st.integers(1, 4),
       bits=st.sampled_from([16, 32, 64]), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_bitplanes(lead, c, k_bit, bits, seed):
    x = _activations(np.random.default_rng(seed), (*lead, c))
    got = compile_graph(lambda bb, x: bitplanes(x, k_bit, bits), (x.shape, "float32"))(x)
    np.testing.assert_array_equal(got, ref.bitplanes(ref.dorefa_levels(x, k_bit), k_bit, bits))


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 3]))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["same", "valid", (1, 0, 2, 1)]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if padding == "valid":
        assume(h >= (kh - 1) * dilation[0] + 1 and w >= (kw - 1) * dilation[1] + 1)
    if padding == (1, 0, 2, 1):
        assume(h + 3 >= (kh - 1) * dilation[0] + 1 and w + 1 >= (kw - 1) * dilation[1] + 1)
    o = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    transform = draw(st.sampled_from(["identity", "random"]))
    m, b, clamp = np.ones(o, np.float32), np.zeros(o, np.float32), None
    if transform == "random":
        m = rng.standard_normal(o).astype(np.float32)
        b = (rng.standard_normal(o) * 4).astype(np.float32)
        clamp = draw(st.sampled_from([None, (-5, 7), (0, 2**31 - 1)]))
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, cin=draw(st.integers(1, 90)), o=o, k=(kh, kw),
                strides=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), dilation=dilation, padding=padding,
                k_bit=draw(st.integers(1, 3)), weights=draw(st.sampled_from(["binary", "ternary"])),
                bits=draw(st.sampled_from([16, 32, 64])), rng=rng, transform=(m, b, clamp, transform))


def _bsconv_vs_oracle(case, target: str) -> None:
    rng = case["rng"]
    x = _activations(rng, (case["n"], case["h"], case["w"], case["cin"]))
    kernel = _kernel(rng, (*case["k"], case["cin"], case["o"]), case["weights"])
    m, b, clamp, kind = case["transform"]

    def body(bb, x):
        planes = bb.emit(bitplanes(x, case["k_bit"], case["bits"]))
        return bsconv2d(planes, kernel, m, b, k_bit=case["k_bit"], weights=case["weights"], strides=case["strides"],
                        dilation=case["dilation"], padding=case["padding"], clamp=clamp)

    got = compile_graph(body, (x.shape, "float32"), target=target)(x)
    acc = ref.bsconv2d_acc(ref.dorefa_levels(x, case["k_bit"]), _integer(kernel, case["weights"]), case["strides"],
                           case["dilation"], case["padding"])
    if kind == "identity":
        np.testing.assert_array_equal(got, acc.astype(np.float32))
    else:
        want = ref.output_transform(acc, m, b, clamp if clamp else (-ref.INT32_MAX, ref.INT32_MAX))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(want).max())))


@given(case=conv_cases())
@settings(max_examples=40, deadline=None)
def test_bsconv2d(case):
    _bsconv_vs_oracle(case, "host")


@given(case=conv_cases())
@settings(max_examples=10, deadline=None)
def test_bsconv2d_avx2_target(case):
    """The schedule for CPUs without AVX-512 (target "x86" = haswell), run on this CPU."""
    if not HOST_HAS_AVX2:
        pytest.skip("this CPU cannot run haswell (AVX2) code")
    _bsconv_vs_oracle(case, "x86")


def test_bsconv2d_compiles_for_aarch64():
    """The bit-serial kernels build for the aarch64 target (NEON); they run under qemu in tests/device."""
    x = np.zeros((1, 8, 8, 40), np.float32)
    kernel = _kernel(np.random.default_rng(0), (3, 3, 40, 16), "ternary")
    exe = compile_graph(lambda bb, x: bsconv2d(bb.emit(bitplanes(x, 2, 16)), kernel, k_bit=2, weights="ternary",
                                               padding="same"), (x.shape, "float32"), target="aarch64")
    asm = exe.assembly()
    assert "cnt\tv" in asm or "cnt v" in asm  # NEON popcount on vectors


def test_type_errors_name_the_op_and_reason():
    def build(body, shape, dtype="float32"):
        return graph_module(body, (shape, dtype))

    with pytest.raises(OpError, match="bnncc.bitplanes.*k_bit must be in 1..8"):
        build(lambda bb, x: bitplanes(x, 9), (1, 2, 2, 4))
    with pytest.raises(OpError, match="bnncc.bsconv2d.*need 2 words per pixel"):
        build(lambda bb, x: bsconv2d(x, np.ones((3, 3, 4, 2)), k_bit=2), (1, 5, 5, 1), "uint32")
    with pytest.raises(OpError, match="weights must be one of"):
        build(lambda bb, x: bsconv2d(x, np.ones((3, 3, 4, 2)), k_bit=2, weights="int2"), (1, 5, 5, 2), "uint32")
    with pytest.raises(OpError, match="does not fit"):
        build(lambda bb, x: bsconv2d(x, np.ones((3, 3, 4, 2)), k_bit=2, padding=(0, 0, 0, 0)), (1, 2, 2, 2),
              "uint32")


# ------------------------------------------------------------------------------------- the oracle vs Larq
def test_quantizer_oracles_match_larq():
    from bnncc._tf import lq, tf

    x = np.concatenate([TIES, np.nextafter(TIES, 2), np.nextafter(TIES, -1), np.float32([0, -0.0, -1, 2, 1, 1e-40]),
                        np.random.default_rng(0).uniform(-0.5, 1.5, 20000).astype(np.float32)])
    for k in range(1, 9):
        want = lq.quantizers.DoReFa(k_bit=k, mode="activations")(tf.constant(x)).numpy()
        np.testing.assert_array_equal(ref.dorefa(x, k), want)
    w = np.random.default_rng(1).standard_normal(20000).astype(np.float32)
    for t in (0.05, 0.7, 0.0, -0.3):
        w[:4] = [t, -t, np.nextafter(np.float32(t), 0), 0.0]
        want = lq.quantizers.SteTern(threshold_value=t)(tf.constant(w)).numpy()
        np.testing.assert_array_equal(ref.ste_tern(w, t), want)


@st.composite
def larq_cases(draw):
    k = (draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 3])))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (1, 1) if max(strides) > 1 else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["same", "valid"]))
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    if padding == "valid":
        assume(h >= (k[0] - 1) * dilation[0] + 1 and w >= (k[1] - 1) * dilation[1] + 1)
    return dict(h=h, w=w, cin=draw(st.integers(1, 70)), o=draw(st.integers(1, 20)), k=k, strides=strides,
                dilation=dilation, padding=padding, k_bit=draw(st.integers(1, 3)),
                weights=draw(st.sampled_from(["binary", "ternary"])), seed=draw(st.integers(0, 2**31)))


@given(case=larq_cases())
@settings(max_examples=10, deadline=None)
def test_bsconv2d_matches_larq_layer(case):
    from bnncc._tf import keras, lq, tf

    rng = np.random.default_rng(case["seed"])
    x = _activations(rng, (1, case["h"], case["w"], case["cin"]))
    latent = rng.standard_normal((*case["k"], case["cin"], case["o"])).astype(np.float32)
    kq = "ste_sign" if case["weights"] == "binary" else lq.quantizers.SteTern(threshold_value=0.6)
    layer = lq.layers.QuantConv2D(case["o"], case["k"], strides=case["strides"], padding=case["padding"],
                                  dilation_rate=case["dilation"], use_bias=False, kernel_quantizer=kq,
                                  input_quantizer=lq.quantizers.DoReFa(k_bit=case["k_bit"], mode="activations"))
    inp = keras.Input(x.shape[1:], batch_size=1)
    model = keras.Model(inp, layer(inp))
    layer.set_weights([latent])
    want = model(tf.constant(x), training=False).numpy()
    n = 2 ** case["k_bit"] - 1
    wq = np.asarray(layer.kernel_quantizer(tf.constant(latent)))  # what Larq computes with
    np.testing.assert_array_equal(_integer(wq, case["weights"]), wq.transpose(3, 0, 1, 2))
    acc = ref.bsconv2d_acc(ref.dorefa_levels(x, case["k_bit"]), wq.transpose(3, 0, 1, 2).astype(np.int8),
                           case["strides"], case["dilation"], case["padding"])
    # Larq's float conv is acc/n up to the rounding of its float sums: the integer part is exact
    np.testing.assert_array_equal(np.rint(want * n).astype(np.int32), acc)
    assert np.abs(want * n - acc).max() < 1e-3

    kernel = latent if case["weights"] == "binary" else wq  # the op binarizes latent weights itself

    def body(bb, x):
        planes = bb.emit(bitplanes(x, case["k_bit"], 32))
        return bsconv2d(planes, kernel, np.float32(1 / n), k_bit=case["k_bit"], weights=case["weights"],
                        strides=case["strides"], dilation=case["dilation"], padding=case["padding"])

    got = compile_graph(body, (x.shape, "float32"))(x)
    np.testing.assert_array_equal(np.rint(got * n).astype(np.int32), acc)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(want).max())))
