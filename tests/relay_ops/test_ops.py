"""Property tests: every binary op, compiled with its real schedule for this CPU, against the numpy oracle."""

import platform
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tvm import relax
from tvm.target import codegen

from bnncc import reference as ref
from bnncc.pipeline import legalize
from bnncc.relay_ops import bconv2d, bdense, bitpack, bmaxpool2d
from bnncc.targets import get_target
from bnncc.testing import compile_graph, random_input

CASES = settings(max_examples=300)
HOST_HAS_AVX2 = platform.machine() == "x86_64" and codegen.llvm_cpu_has_features(
    ["avx2", "fma", "bmi2"], get_target("host").tvm_target())
bits_st = st.sampled_from([16, 32, 64])


def _transform(draw, o):
    """Either the identity (accumulators must come out exactly) or a random BN-like transform."""
    kind = draw(st.sampled_from(["identity", "random"]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    clamp = draw(st.sampled_from([None, (-4, 6), (0, 2**31 - 1), (-3, -1)]))
    if kind == "identity":
        return np.ones(o, np.float32), np.zeros(o, np.float32), clamp, kind
    m = rng.standard_normal(o).astype(np.float32)
    m[rng.random(o) < 0.1] = 0.0  # γ = 0 gives a constant output bit
    b = (rng.standard_normal(o) * 4).astype(np.float32)
    return m, b, clamp, kind


def _check(got, acc, m, b, clamp, kind, out, bits):
    want = ref.output_transform(acc, m, b, clamp if clamp else (-ref.INT32_MAX, ref.INT32_MAX))
    if out == "bitpacked":
        np.testing.assert_array_equal(got, ref.bitpack(want, bits))
    elif kind == "identity" and clamp is None:
        np.testing.assert_array_equal(got, acc.astype(np.float32))
    else:  # float round-off of the same formula (LLVM may contract the multiply-add)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(want).max())))


@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    c=st.integers(1, 200),
    groups=st.sampled_from([1, 2, 4]),
    bits=bits_st,
    whole_words=st.booleans(),
    seed=st.integers(0, 2**31),
)
@CASES
def test_bitpack(lead, c, groups, bits, whole_words, seed):
    # whole words per group take the tensorized path (vector compare → mask), partial words the bit loop
    c = groups * bits * (1 + c % 3) if whole_words else max(groups, c - c % groups)
    x = random_input(np.random.default_rng(seed), (*lead, c))
    f = compile_graph(lambda bb, x: bitpack(x, bits=bits, groups=groups), (x.shape, "float32"))
    got = f(x)
    np.testing.assert_array_equal(got, ref.bitpack(x, bits, groups))
    np.testing.assert_array_equal(ref.unpack(got, c, bits, groups), ref.binarize(x))


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 2, 4]))
    bits = draw(bits_st)
    cg = draw(st.one_of(st.integers(1, 70), st.sampled_from([bits, 2 * bits])))  # whole words: tensorized bitpack
    og = draw(st.integers(1, 24))
    kh, kw = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5]))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["same", "valid"]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if padding == "valid":
        assume(h >= (kh - 1) * dilation[0] + 1 and w >= (kw - 1) * dilation[1] + 1)
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, cin=cg * groups, o=og * groups, k=(kh, kw),
                groups=groups, strides=strides, dilation=dilation, padding=padding,
                pad_value=draw(st.sampled_from([0, 1])), out=draw(st.sampled_from(["float32", "bitpacked"])),
                bits=bits, seed=draw(st.integers(0, 2**31)), transform=_transform(draw, og * groups))


@given(case=conv_cases())
@CASES
def test_bconv2d(case):
    _bconv2d_vs_oracle(case, "host")


@given(case=conv_cases())
@settings(max_examples=60)
def test_bconv2d_avx2_target(case):
    """The AVX2 code path (target "x86" = haswell: no AVX-512, vpshufb popcount), run on this CPU, which has
    AVX2: the schedules for CPUs without AVX-512 are checked by running them, not only by their assembly."""
    if not HOST_HAS_AVX2:
        pytest.skip("this CPU cannot run haswell (AVX2) code")
    _bconv2d_vs_oracle(case, "x86")


def _bconv2d_vs_oracle(case, target: str) -> None:
    rng = np.random.default_rng(case["seed"])
    x = random_input(rng, (case["n"], case["h"], case["w"], case["cin"]))
    kernel = random_input(rng, (*case["k"], case["cin"] // case["groups"], case["o"]))  # HWIO, like Keras
    m, b, clamp, kind = case["transform"]
    kw = dict(strides=case["strides"], dilation=case["dilation"], padding=case["padding"],
              pad_value=case["pad_value"], groups=case["groups"], clamp=clamp, out=case["out"])

    def body(bb, x):
        p = bb.emit(bitpack(x, bits=case["bits"], groups=case["groups"]))
        return bconv2d(p, kernel, m, b, **kw)

    got = compile_graph(body, (x.shape, "float32"), target=target)(x)
    acc = ref.bconv2d_acc(ref.binarize(x), ref.binarize(kernel.transpose(3, 0, 1, 2)), case["strides"],
                          case["dilation"], case["padding"], case["pad_value"], case["groups"])
    _check(got, acc, m, b, clamp, kind, case["out"], case["bits"])


@st.composite
def dense_cases(draw):
    o = draw(st.integers(1, 150))
    return dict(n=draw(st.integers(1, 5)), k=draw(st.integers(1, 300)), o=o, bits=draw(bits_st),
                out=draw(st.sampled_from(["float32", "bitpacked"])), seed=draw(st.integers(0, 2**31)),
                transform=_transform(draw, o))


@given(case=dense_cases())
@CASES
def test_bdense(case):
    rng = np.random.default_rng(case["seed"])
    x = random_input(rng, (case["n"], case["k"]))
    kernel = random_input(rng, (case["k"], case["o"]))
    m, b, clamp, kind = case["transform"]

    def body(bb, x):
        p = bb.emit(bitpack(x, bits=case["bits"]))
        return bdense(p, kernel, m, b, clamp=clamp, out=case["out"])

    got = compile_graph(body, (x.shape, "float32"))(x)
    acc = ref.bdense_acc(ref.binarize(x), ref.binarize(kernel.T))
    _check(got, acc, m, b, clamp, kind, case["out"], case["bits"])


@given(
    n=st.integers(1, 2), h=st.integers(1, 10), w=st.integers(1, 10), c=st.integers(1, 150),
    pool=st.tuples(st.integers(1, 3), st.integers(1, 3)), strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.sampled_from(["same", "valid"]), bits=bits_st, seed=st.integers(0, 2**31),
)
@CASES
def test_bmaxpool2d(n, h, w, c, pool, strides, padding, bits, seed):
    if padding == "valid":
        assume(h >= pool[0] and w >= pool[1])
    x = random_input(np.random.default_rng(seed), (n, h, w, c))
    f = compile_graph(lambda bb, x: bmaxpool2d(bb.emit(bitpack(x, bits=bits)), pool, strides, padding),
                      (x.shape, "float32"))
    want = ref.bmaxpool2d(ref.binarize(x), pool, strides, padding)
    np.testing.assert_array_equal(ref.unpack(f(x), c, bits), want)


@pytest.mark.parametrize("kmax", [1, 9, 576, 41472])
def test_thresholds_match_float_formula(kmax):
    """Packed output thresholds reproduce y < 0 for every possible accumulator, γ of either sign or zero."""
    from bnncc.relay_ops import output_thresholds

    rng = np.random.default_rng(kmax)
    o = 64
    m = rng.standard_normal(o).astype(np.float32) * rng.choice([1e-3, 1.0, 1e3], o).astype(np.float32)
    m[:4] = [0.0, -0.0, 1e-30, -1e-30]
    b = rng.standard_normal(o).astype(np.float32) * kmax / 4
    for clamp in [(-ref.INT32_MAX, ref.INT32_MAX), (-3, 5)]:
        t, flip = output_thresholds(m, b, clamp, kmax)
        acc = np.arange(-kmax, kmax + 1)[:, None]
        want = ref.output_transform(acc, m, b, clamp) < 0
        got = np.where(flip, -acc, acc) < t
        np.testing.assert_array_equal(got, want)


@st.composite
def residual_cases(draw):
    bits = draw(bits_st)
    groups = draw(st.sampled_from([1, 2]))  # of the bitpack of the block's output
    c = draw(st.one_of(st.integers(1, 100), st.sampled_from([bits, 2 * bits, 3 * bits])))
    c = max(groups, c - c % groups)
    return dict(dense=draw(st.booleans()), n=draw(st.integers(1, 2)), h=draw(st.integers(1, 7)),
                w=draw(st.integers(1, 7)), c=c, k=draw(st.sampled_from([1, 3])), groups=groups,
                pad_value=draw(st.sampled_from([0, 1])), relu=draw(st.booleans()), bits=bits,
                seed=draw(st.integers(0, 2**31)), transform=_transform(draw, c))


def _residual_block(case, kernel):
    """bitpack → bconv2d/bdense (float) → + input [→ relu] → (output, bitpack of it): the packed output also
    has another user, so the producer kernel writes both (pack_in_producers) when the channels are whole words."""
    m, b, clamp, _ = case["transform"]

    def body(bb, x):
        p = bb.emit(bitpack(x, bits=case["bits"]))
        if case["dense"]:
            y = bb.emit(bdense(p, kernel, m, b, clamp=clamp))
        else:
            y = bb.emit(bconv2d(p, kernel, m, b, padding="same", pad_value=case["pad_value"], clamp=clamp))
        r = bb.emit(relax.op.add(y, x))
        if case["relu"]:
            r = bb.emit(relax.op.nn.relu(r))
        return relax.Tuple([r, bb.emit(bitpack(r, bits=case["bits"], groups=case["groups"]))])

    return body


@given(case=residual_cases())
@settings(max_examples=100)
def test_bitpack_in_residual_producer(case):
    rng = np.random.default_rng(case["seed"])
    c = case["c"]
    shape = (case["n"], c) if case["dense"] else (case["n"], case["h"], case["w"], c)
    x = random_input(rng, shape)
    kernel = random_input(rng, (c, c) if case["dense"] else (case["k"], case["k"], c, c))
    got, bits = compile_graph(_residual_block(case, kernel), (x.shape, "float32"))(x)
    if case["dense"]:
        acc = ref.bdense_acc(ref.binarize(x), ref.binarize(kernel.T))
    else:
        acc = ref.bconv2d_acc(ref.binarize(x), ref.binarize(kernel.transpose(3, 0, 1, 2)), padding="same",
                              pad_value=case["pad_value"])
    m, b, clamp, _ = case["transform"]
    want = ref.output_transform(acc, m, b, clamp if clamp else (-ref.INT32_MAX, ref.INT32_MAX)) + x
    if case["relu"]:
        want = np.maximum(want, 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(want).max())))
    # the bits are exactly those of the float output the same kernel wrote
    np.testing.assert_array_equal(bits, ref.bitpack(got, case["bits"], case["groups"]))


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("channels_in_words", [1, 2, 1.5])
def test_bitpack_joins_its_producer_kernel_only_for_whole_words(bits, channels_in_words):
    c = int(bits * channels_in_words)
    case = dict(dense=False, c=c, bits=bits, groups=1, pad_value=1, relu=False,
                transform=(np.ones(c, np.float32), np.zeros(c, np.float32), None, "identity"))
    kernel = random_input(np.random.default_rng(0), (3, 3, c, c))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 5, 5, c), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(_residual_block(case, kernel)(bb, x))
        bb.emit_func_output(out)
    kernels = re.findall(r"call_tir\((?:cls\.)?(\w+),", legalize(bb.get(), get_target("host"))["main"].script())
    whole = c % bits == 0
    assert len([k for k in kernels if k.startswith("bnncc_bitpack")]) == (1 if whole else 2)  # input's [output's]
    assert any(k.startswith("fused_bnncc_bconv2d") and k.endswith("_bitpack") for k in kernels) == whole
