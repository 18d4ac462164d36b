"""int8 conv2d (bnncc.im2col + bnncc.qdense) and the float ↔ uint8 boundary ops, exact against the numpy oracle
over shapes, strides, dilations, paddings, odd channel counts and zero points, on every x86 path this CPU runs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnncc import reference, targets
from bnncc.errors import OpError
from bnncc.relay_ops.qconv2d import dequantize, im2col, qconv2d, quantize
from bnncc.testing import compile_graph

HOST = targets.isa("host")
RUNNABLE = ["host"] + [t for t, ok in (("x86-avx512", HOST.vnni and HOST.avx512), ("x86", HOST.avx2)) if ok]


def _conv_case(target, n, h, w, cin, cout, kh, kw, strides, dilation, padding, zx, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, h, w, cin)) * 2).astype(np.float32)
    k = rng.integers(-127, 128, (kh, kw, cin, cout), dtype=np.int8)
    sw = (rng.random(cout) * 0.01 + 1e-3).astype(np.float32)

    def body(bb, v):
        acc = qconv2d(bb, quantize(bb, v, scale, zx), k, zx, strides=strides, dilation=dilation, padding=padding)
        return dequantize(bb, acc, sw)

    exe = compile_graph(body, ((n, h, w, cin), "float32"), target=target)
    q = reference.quantize(x, scale, zx)
    cols = reference.im2col(q, (kh, kw), strides, dilation, padding, zx)
    want = reference.dequantize(reference.qdense(cols, k.reshape(-1, cout), zx), sw)
    got = np.asarray(exe(x))
    assert got.shape[0] == n and got.shape[-1] == cout
    np.testing.assert_array_equal(got.reshape(-1, cout), want)


@pytest.mark.parametrize("target", RUNNABLE)
def test_conv_paths(target):
    _conv_case(target, 1, 9, 11, 5, 7, 3, 3, (2, 1), (1, 2), (1, 2, 1, 2), 100, 0.02, 0)
    _conv_case(target, 2, 7, 7, 64, 32, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 0, 0.05, 1)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(3, 12), w=st.integers(3, 12), cin=st.integers(1, 19), cout=st.integers(1, 40),
       k=st.sampled_from([(1, 1), (3, 3), (1, 3), (5, 5)]), s=st.integers(1, 2), d=st.integers(1, 2),
       pad=st.tuples(*[st.integers(0, 2)] * 4), zx=st.integers(0, 255), seed=st.integers(0, 2**16))
def test_property_conv(h, w, cin, cout, k, s, d, pad, zx, seed):
    if (h + pad[0] + pad[2] - d * (k[0] - 1) - 1) < 0 or (w + pad[1] + pad[3] - d * (k[1] - 1) - 1) < 0:
        return  # the window does not fit: refused (test_bad_window)
    _conv_case("host", 1, h, w, cin, cout, *k, (s, s), (d, d), pad, zx, 0.03, seed)


def test_quantize_rounds_half_to_even_and_saturates():
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0, 0.0]], np.float32)
    exe = compile_graph(lambda bb, v: quantize(bb, v, 1.0, 10), ((1, 8), "float32"))
    got = np.asarray(exe(x))
    np.testing.assert_array_equal(got, reference.quantize(x, 1.0, 10))
    np.testing.assert_array_equal(got[0], [10, 12, 12, 10, 8, 255, 0, 10])


def test_im2col_matches_oracle_and_pads_with_the_zero_point():
    x = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    exe = compile_graph(lambda bb, v: bb.emit(im2col(v, (3, 2), (1, 2), (1, 1), (1, 0, 2, 1), 77)),
                        ((2, 4, 5, 3), "uint8"))
    want = reference.im2col(x, (3, 2), (1, 2), (1, 1), (1, 0, 2, 1), 77)
    np.testing.assert_array_equal(np.asarray(exe(x)), want)
    assert (want == 77).any()


def test_bad_window():
    from tvm import relax

    x = relax.Var("x", relax.TensorType((1, 2, 2, 3), "uint8"))
    with pytest.raises(OpError, match="does not fit"):
        im2col(x, (3, 3))
    with pytest.raises(OpError, match="input has 3 channels"):  # refused before anything is emitted
        qconv2d(relax.BlockBuilder(), x, np.zeros((1, 1, 4, 2), np.int8))
