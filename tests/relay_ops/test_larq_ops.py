"""bnncc's binary ops against Keras + Larq itself (the oracle of docs/semantics.md, not our reading of it).

Each example builds a small Keras model around one Larq layer, calls it eagerly on random data (with exact zeros and
negative zeros: sign(±0) = +1 is part of the contract) and compares with the compiled bnncc op. Accumulators are small
integers in float32, so the comparison is exact; only the BatchNorm-folded output allows float round-off.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bnncc import reference as ref
from bnncc._tf import keras, lq, tf  # legacy Keras (tf_keras), which larq 0.14 needs
from bnncc.relay_ops import bconv2d, bdense, bitpack, bmaxpool2d
from bnncc.testing import compile_graph, random_input

try:  # the machine is small and shared: TF must not fight the compiled kernels for cores
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:  # TF already initialized by another test module in this worker
    pass

bits_st = st.sampled_from([32, 64])
BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)


def _keras(layers, x, all_outputs=False):
    """A functional model stacking ``layers`` on an input like ``x`` (building it creates the layers' weights)."""
    inp = keras.Input(shape=x.shape[1:], batch_size=x.shape[0])
    h, outs = inp, []
    for layer in layers:
        h = layer(h)
        outs.append(h)
    return keras.Model(inp, outs if all_outputs else h)


def _run(model, x):
    """Call the model eagerly in inference mode (no compile/fit)."""
    out = model(tf.constant(x), training=False)
    return [o.numpy() for o in out] if isinstance(out, list | tuple) else out.numpy()


def _fits(h, w, k, dilation):
    return h >= (k[0] - 1) * dilation[0] + 1 and w >= (k[1] - 1) * dilation[1] + 1


@st.composite
def conv_cases(draw, grouped=False):
    groups = draw(st.sampled_from([2, 4])) if grouped else 1
    cg = draw(st.integers(1, 50 if grouped else 100).filter(lambda c: c % 32 != 0))
    og = draw(st.integers(1, 12 if grouped else 40))
    k = (draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5])))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if max(strides) > 1 and max(dilation) > 1:  # Keras forbids strides > 1 together with dilation > 1
        dilation = (1, 1) if draw(st.booleans()) else dilation
        strides = (1, 1) if max(dilation) > 1 else strides
    padding = draw(st.sampled_from(["same", "valid"]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if padding == "valid":
        assume(_fits(h, w, k, dilation))
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, cin=cg * groups, o=og * groups, k=k, groups=groups,
                strides=strides, dilation=dilation, padding=padding, pad_value=draw(st.sampled_from([0, 1])),
                bits=draw(bits_st), seed=draw(st.integers(0, 2**31)))


def _check_conv_against_larq(case):
    rng = np.random.default_rng(case["seed"])
    x = random_input(rng, (case["n"], case["h"], case["w"], case["cin"]))
    kernel = random_input(rng, (*case["k"], case["cin"] // case["groups"], case["o"]))  # Keras HWIO
    layer = lq.layers.QuantConv2D(case["o"], case["k"], strides=case["strides"], padding=case["padding"],
                                  dilation_rate=case["dilation"], groups=case["groups"],
                                  pad_values=float(case["pad_value"]), **BINARY)
    model = _keras([layer], x)
    layer.set_weights([kernel])
    want = _run(model, x)

    def body(bb, x):
        p = bb.emit(bitpack(x, bits=case["bits"], groups=case["groups"]))
        return bconv2d(p, kernel, multiplier=1, bias=0, strides=case["strides"], dilation=case["dilation"],
                       padding=case["padding"], pad_value=case["pad_value"], groups=case["groups"])

    got = compile_graph(body, (x.shape, "float32"))(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@given(case=conv_cases())
@settings(max_examples=40)
def test_bconv2d_matches_larq_quantconv2d(case):
    _check_conv_against_larq(case)


@given(case=conv_cases(grouped=True))
@settings(max_examples=12)
def test_grouped_bconv2d_matches_larq_quantconv2d(case):
    _check_conv_against_larq(case)


@given(n=st.integers(1, 4), k=st.integers(1, 300), o=st.integers(1, 100), bits=bits_st, seed=st.integers(0, 2**31))
@settings(max_examples=15)
def test_bdense_matches_larq_quantdense(n, k, o, bits, seed):
    rng = np.random.default_rng(seed)
    x = random_input(rng, (n, k))
    kernel = random_input(rng, (k, o))  # Keras [K, O]
    layer = lq.layers.QuantDense(o, **BINARY)
    model = _keras([layer], x)
    layer.set_weights([kernel])
    want = _run(model, x)
    got = compile_graph(lambda bb, x: bdense(bb.emit(bitpack(x, bits=bits)), kernel, multiplier=1, bias=0),
                        (x.shape, "float32"))(x)
    np.testing.assert_array_equal(got, want)


@given(
    n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 100),
    pool=st.tuples(st.integers(1, 3), st.integers(1, 3)), strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.sampled_from(["same", "valid"]), bits=bits_st, seed=st.integers(0, 2**31),
)
@settings(max_examples=15)
def test_bmaxpool2d_matches_keras_maxpool_on_signs(n, h, w, c, pool, strides, padding, bits, seed):
    if padding == "valid":
        assume(h >= pool[0] and w >= pool[1])
    x = random_input(np.random.default_rng(seed), (n, h, w, c))
    signs = lq.quantizers.ste_sign(tf.constant(x)).numpy()  # Larq's binarization, sign(±0) = +1
    want = _run(_keras([keras.layers.MaxPool2D(pool, strides, padding)], signs), signs)
    packed = compile_graph(lambda bb, x: bmaxpool2d(bb.emit(bitpack(x, bits=bits)), pool, strides, padding),
                           (x.shape, "float32"))(x)
    assert packed.shape[:3] == want.shape[:3]
    np.testing.assert_array_equal(ref.unpack(packed, c, bits).astype(np.float32), want)


@pytest.mark.parametrize(
    "h, cin, o, k, strides, padding, pad_value, bits, seed",
    [
        (7, 45, 37, 3, 1, "same", 0, 32, 1),
        (8, 70, 33, 3, 2, "same", 1, 64, 2),
        (6, 13, 70, 5, 1, "valid", 0, 32, 3),
    ],
)
def test_batchnorm_folded_into_bconv2d(h, cin, o, k, strides, padding, pad_value, bits, seed):
    """QuantConv2D → BatchNormalization (inference) = bconv2d with multiplier/bias = the folded BN."""
    rng = np.random.default_rng(seed)
    x = random_input(rng, (2, h, h, cin))
    kernel = random_input(rng, (k, k, cin, o))
    kmax = k * k * cin
    gamma = rng.standard_normal(o).astype(np.float32) * 2
    gamma[rng.random(o) < 0.3] *= -1
    gamma[0] = -abs(gamma[0])  # at least one negative scale: the packed threshold must flip
    beta = (rng.standard_normal(o) * 3).astype(np.float32)
    mean = (rng.standard_normal(o) * np.sqrt(kmax)).astype(np.float32)
    var = (rng.random(o) * 20 + 0.1).astype(np.float32)
    mean[1:4], beta[1:4] = [0.0, 1.0, -3.0], 0.0  # y = γ'·(acc − mean) is exactly 0 wherever acc hits the mean
    conv = lq.layers.QuantConv2D(o, k, strides=strides, padding=padding, pad_values=float(pad_value), **BINARY)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    model = _keras([conv, bn], x, all_outputs=True)
    conv.set_weights([kernel])
    bn.set_weights([gamma, beta, mean, var])
    acc, want = _run(model, x)

    multiplier = (gamma / np.sqrt(var + np.float32(bn.epsilon))).astype(np.float32)
    bias = (beta - mean * multiplier).astype(np.float32)
    kw = dict(strides=(strides, strides), padding=padding, pad_value=pad_value)

    def body(out):
        return lambda bb, x: bconv2d(bb.emit(bitpack(x, bits=bits)), kernel, multiplier, bias, out=out, **kw)

    got = compile_graph(body("float32"), (x.shape, "float32"))(x)
    scale = np.maximum(np.abs(bias) + np.abs(multiplier * acc), 1.0)  # size of the terms that cancel in y
    rel = np.abs(got - want) / scale
    assert rel.max() <= 1e-5, f"float output off by {rel.max():.3g} (relative)"

    packed = compile_graph(body("bitpacked"), (x.shape, "float32"))(x)
    want_packed = ref.bitpack(want, bits)
    assert packed.shape == want_packed.shape
    np.testing.assert_array_equal(ref.bitpack(ref.unpack(packed, o, bits), bits), packed)  # padding bits are 0
    near_zero = np.abs(want) <= 1e-5 * scale  # y so close to 0 that float rounding may decide its sign
    differ = (ref.unpack(packed, o, bits) < 0) != (want < 0)
    n_near, n_near_differ = int(near_zero.sum()), int((differ & near_zero).sum())
    print(f"{n_near} of {want.size} outputs within 1e-5 of zero, {n_near_differ} of them with another bit")
    assert not (differ & ~near_zero).any(), f"{int((differ & ~near_zero).sum())} bits differ away from zero"
    assert n_near <= want.size // 20, "the rounding gray zone must stay a corner case"
    if not n_near:
        np.testing.assert_array_equal(packed, want_packed)
