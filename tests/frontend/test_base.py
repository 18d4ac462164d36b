"""The frontend base without TensorFlow: ±α kernel recognition, sign-like quantizers (by computation), the
converter table, and the one error that lists every unsupported layer before conversion starts."""

import subprocess
import sys

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from tvm import relax

from bnncc.errors import FrontendError
from bnncc.frontend import bnn
from bnncc.frontend.base import (
    ACTIVATIONS,
    ConverterTable,
    Graph,
    Layer,
    Unsupported,
    UnsupportedLayersError,
    activation,
    shape_of,
)


def test_importing_the_frontends_does_not_import_tensorflow():
    code = ("import sys, bnncc.frontend.base, bnncc.frontend.bnn, bnncc.frontend.keras; "
            "assert 'tensorflow' not in sys.modules and 'larq' not in sys.modules, 'TensorFlow imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------ ±α kernels
@st.composite
def alpha_kernels(draw):
    """(kernel = signs · α along ``axis``, axis, α)."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    alpha = draw(hnp.arrays(np.float32, shape[axis], elements=st.floats(0.0009765625, 1024.0, width=32)))
    signs = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([-1.0, 1.0])))
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    return signs * alpha.reshape(bshape), axis, alpha, signs


@given(alpha_kernels())
def test_alpha_kernel_is_binary(case):
    kernel, axis, alpha, signs = case
    found = bnn.binary_kernel(kernel, axis=axis)
    assert found is not None
    np.testing.assert_array_equal(found[0], signs)
    np.testing.assert_array_equal(found[1], alpha)


@given(alpha_kernels(), st.data())
def test_a_zero_weight_makes_the_kernel_float(case, data):
    kernel, axis, _, _ = case
    where = tuple(data.draw(st.integers(0, n - 1)) for n in kernel.shape)
    kernel = kernel.copy()
    kernel[where] = 0.0
    assert bnn.binary_kernel(kernel, axis=axis) is None


@given(alpha_kernels(), st.data(), st.floats(0.5, 2.0))
def test_a_different_magnitude_in_one_channel_makes_the_kernel_float(case, data, factor):
    kernel, axis, _, _ = case
    assume(kernel.size // kernel.shape[axis] > 1)  # a channel with at least two weights to differ
    assume(abs(factor - 1.0) > 1e-3)
    where = tuple(data.draw(st.integers(0, n - 1)) for n in kernel.shape)
    kernel = kernel.copy()
    kernel[where] *= np.float32(factor)
    assert bnn.binary_kernel(kernel, axis=axis) is None


def test_empty_or_scalar_kernel_is_not_binary():
    assert bnn.binary_kernel(np.zeros((3, 3, 0, 4), np.float32)) is None
    assert bnn.binary_kernel(np.float32(1.0)) is None


# ------------------------------------------------------------------------------------ sign-like by computation
def _where_sign(x):
    return np.where(x < 0, -1.0, 1.0)


def _sign_fixed_at_zero(x):
    return np.where(x == 0, 1.0, np.sign(x))  # -0.0 == 0, so -0.0 → +1 too


@pytest.mark.parametrize("fn", [_where_sign, _sign_fixed_at_zero, lambda x: np.where(x >= 0, 1, -1)])
def test_functions_computing_sign_are_sign_like(fn):
    assert bnn.sign_mismatch(fn) is None
    assert bnn.sign_mismatch(fn(bnn.SIGN_PROBES)) is None  # the outputs on the probes work as well
    assert bnn.binary_input(fn, "mine") == bnn.SIGN


@pytest.mark.parametrize(("fn", "maps"), [
    (np.tanh, "maps 0.5 to 0.462"),
    (np.sign, "maps 0 to 0"),
    (lambda x: np.where(x < 0, -1.0, 1.0) * (x.view(np.int32) != np.int32(-2**31)), "maps -0 to 0"),
    (lambda x: np.where(np.signbit(x), -1.0, 1.0), "maps -0 to -1"),
    (lambda x: np.where(x < 0, 0.0, 1.0), "maps -0.5 to 0"),  # heaviside
    (lambda x: np.where(x > 0.1, 1.0, -1.0), "maps 0 to -1"),  # wrong threshold
    (lambda x: x, "maps 0.5 to 0.5"),
    (lambda x: np.where(x < -1e29, 1.0, np.where(x < 0, -1.0, 1.0)), "maps -1e+30 to 1"),
])
def test_other_functions_are_refused_naming_a_probe(fn, maps):
    with pytest.raises(Unsupported) as info:
        bnn.binary_input(fn, "q")
    msg = str(info.value)
    assert msg.startswith(f"input quantizer 'q' is not sign-like: {maps} (a binary layer needs sign(x) with "
                          "sign(0) = +1 or the step x > 0; accepted: ste_sign, approx_sign, swish_sign, ste_heaviside "
                          "or any function computing one of them)")


def test_denormals_may_read_as_zero():
    """TensorFlow on CPU flushes denormals to 0, so +1 for a negative denormal is sign-like; -1 is too."""
    flushed = np.where(bnn.SIGN_PROBES <= -np.finfo(np.float32).tiny, -1.0, 1.0)
    assert bnn.sign_mismatch(flushed) is None
    assert np.any((bnn.SIGN_PROBES < 0) & (flushed == 1))


def test_probes_cover_zeros_tiny_large_and_random_values():
    p = bnn.SIGN_PROBES
    assert p.dtype == np.float32 and len(p) >= 300
    assert np.any((p == 0) & np.signbit(p)) and np.any((p == 0) & ~np.signbit(p))
    for v in (1.4e-45, 1e-38, 1e30, 3e38):
        assert np.float32(v) in p and np.float32(-v) in p


def test_no_input_quantizer_is_a_float_input():
    assert bnn.binary_input(None) is None


def test_heaviside_step_is_a_binary_input():
    """Larq's ste_heaviside: 1 for x > 0, 0 for x ≤ 0 (both zeros); a step that is 1 at 0 is refused."""
    assert bnn.binary_input(lambda x: np.where(x > 0, 1.0, 0.0), "h") == bnn.HEAVISIDE
    flushed = np.where(bnn.SIGN_PROBES >= np.finfo(np.float32).tiny, 1.0, 0.0)  # denormals read as 0
    assert bnn.heaviside_mismatch(flushed) is None
    assert bnn.heaviside_mismatch(lambda x: np.where(x >= 0, 1.0, 0.0)) == (0.0, 1.0)


def test_pad_values():
    assert bnn.binary_pad_value(1.0) == 1 and bnn.binary_pad_value(0.0) == 0
    with pytest.raises(Unsupported, match="pad_values must be 0 or 1 for a binary conv, got 0.5"):
        bnn.binary_pad_value(0.5)


# ------------------------------------------------------------------------------------------- converter table
def _table() -> ConverterTable:
    table = ConverterTable()

    def channels_last(layer):
        if layer.get("data_format") == "channels_first":
            raise Unsupported("only channels_last (NHWC) data is supported")

    @table.converter("Conv", "QuantConv", check=channels_last)
    def conv(b, layer, x):
        return b.emit(relax.op.nn.relu(x))

    @table.converter("Add", variadic=True)
    def add(b, layer, *xs):
        if len(xs) < 2:
            raise Unsupported("adding a constant is not supported, only tensors")
        return b.emit(relax.op.add(*xs))

    return table


def test_table_lookup_and_supported_list():
    table = _table()
    assert table.kinds == ("Conv", "QuantConv", "Add")
    assert table.supported == "Conv, QuantConv, Add"
    assert "QuantConv" in table and "LSTM" not in table
    assert table.get("QuantConv") is table.get("Conv")
    assert table.get("Conv").kinds == ("Conv", "QuantConv")
    assert table.get("LSTM") is None


def test_a_kind_has_one_converter():
    table = _table()
    with pytest.raises(ValueError, match="already have a converter: Conv"):
        table.converter("Conv")(lambda b, layer, x: x)
    with pytest.raises(TypeError):
        table.converter()


def _walk(*layers):
    """A fake model walk: (name, kind, config, number of inputs)."""
    return [Layer(name, kind, config, n) for name, kind, config, n in layers]


def test_two_unsupported_layers_give_one_error_naming_both():
    layers = _walk(("c1", "Conv", {}, 1), ("up", "UpSampling2D", {}, 1), ("c2", "Conv", {}, 1),
                   ("lstm", "LSTM", {}, 1), ("sum", "Add", {}, 2))
    with pytest.raises(UnsupportedLayersError) as info:
        _table().check_all(layers, file="m.h5")
    e = info.value
    assert isinstance(e, FrontendError) and e.file == "m.h5" and e.layer is None
    assert [(p.layer, p.kind) for p in e.problems] == [("up", "UpSampling2D"), ("lstm", "LSTM")]
    assert str(e) == ("file m.h5: 2 layers cannot be imported: layer 'up': UpSampling2D: layer class is not "
                      "supported; layer 'lstm': LSTM: layer class is not supported; supported layers: Conv, "
                      "QuantConv, Add")


def test_missing_converters_and_failed_checks_are_listed_together():
    layers = _walk(("up", "UpSampling2D", {}, 1), ("cf", "QuantConv", {"data_format": "channels_first"}, 1),
                   ("two", "Conv", {}, 2), ("up", "UpSampling2D", {}, 1))  # a shared layer is named once
    with pytest.raises(UnsupportedLayersError) as info:
        _table().check_all(layers)
    msg = str(info.value)
    assert msg.startswith("3 layers cannot be imported: layer 'up': UpSampling2D: layer class is not supported; ")
    assert "layer 'cf': QuantConv: only channels_last (NHWC) data is supported; " in msg
    assert "layer 'two': Conv: expected one input, got 2; supported layers: Conv, QuantConv, Add" in msg
    assert "\n" not in msg  # the CLI prints it as one line


def test_one_unsupported_layer_keeps_the_one_layer_error():
    with pytest.raises(UnsupportedLayersError) as info:
        _table().check_all(_walk(("c", "Conv", {}, 1), ("bad_layer", "LSTM", {}, 1)), file="m.h5")
    assert info.value.layer == "bad_layer"
    assert str(info.value) == ("file m.h5, layer 'bad_layer': LSTM: layer class is not supported; "
                               "supported layers: Conv, QuantConv, Add")
    with pytest.raises(UnsupportedLayersError) as info:  # a failed check alone does not list the table
        _table().check_all(_walk(("cf", "Conv", {"data_format": "channels_first"}, None)))
    assert str(info.value) == "layer 'cf': Conv: only channels_last (NHWC) data is supported"


def test_supported_layers_pass_the_check():
    _table().check_all(_walk(("c", "Conv", {}, 1), ("s", "Add", {}, 3), ("q", "QuantConv", {}, None)))


def test_convert_emits_through_the_table_and_names_a_failing_layer():
    table = _table()
    g = Graph(source="m.h5")
    x = Graph.input("x", (1, 4, 4, 8))

    def body():
        (y,) = table.convert(g, Layer("block/relu", "Conv", {}), [x])
        (z,) = table.convert(g, Layer("sum", "Add", {}), [x, y])
        return [z]

    script = g.build([x], body).script()
    assert "block_relu: R.Tensor((1, 4, 4, 8)" in script and "R.nn.relu(x)" in script
    assert "R.add(x, block_relu)" in script
    failing, x1 = Graph(source="m.h5"), Graph.input("x", (1, 4, 4, 8))
    with pytest.raises(FrontendError) as info:  # the function is closed, then the converter's error raised
        failing.build([x1], lambda: table.convert(failing, Layer("plus1", "Add", {}), [x1]))
    assert str(info.value) == "file m.h5, layer 'plus1': Add: adding a constant is not supported, only tensors"
    with pytest.raises(UnsupportedLayersError, match="layer 'up': UpSampling2D: layer class is not supported"):
        table.convert(g, Layer("up", "UpSampling2D"), [x])


def test_activations():
    g = Graph()
    x = Graph.input("x", (2, 3))
    b = g.layer("act")
    assert activation(b, x, None) is x and activation(b, x, "linear") is x and activation(b, x, "none") is x
    with pytest.raises(Unsupported, match=r"activation 'gelu' is not supported \(supported: linear, relu, relu6"):
        activation(b, x, "gelu")
    assert list(ACTIVATIONS)[0] == "linear"


# ------------------------------------------------------------------------------------------- binary emission
def _emit(fn, shape):
    g = Graph(bits=32)
    x = Graph.input("x", shape)
    return g.build([x], lambda: [fn(g.layer("l"), x)]).script()


ALPHA_KERNEL = np.where(np.random.default_rng(0).random((3, 3, 40, 8)) < 0.5, -0.5, 0.5).astype(np.float32)


def test_sign_input_and_alpha_kernel_become_bitpack_and_bconv2d():
    alpha = bnn.binary_kernel(ALPHA_KERNEL)[1]
    ir = _emit(lambda b, x: bnn.conv2d(b, x, ALPHA_KERNEL, alpha=alpha, sign_input=True, padding=(1, 1, 1, 1),
                                       pad_value=1.0), (1, 6, 6, 40))
    assert '"bnncc.bitpack"' in ir and '"bnncc.bconv2d"' in ir and '"pad_value": 1' in ir
    assert "R.nn.conv2d" not in ir and "R.where" not in ir


def test_sign_input_and_float_kernel_stay_a_float_conv_of_signs():
    ir = _emit(lambda b, x: bnn.conv2d(b, x, ALPHA_KERNEL, sign_input=True, padding=(1, 1, 1, 1), pad_value=1.0),
               (1, 6, 6, 40))
    assert "bnncc" not in ir
    assert "R.where" in ir and 'pad_value=1.0' in ir and "padding=[0, 0, 0, 0]" in ir


def test_depthwise_and_float_input_stay_float():
    alpha = np.full(8, 0.5, np.float32)
    depthwise = ALPHA_KERNEL[:, :, :1, :]
    ir = _emit(lambda b, x: bnn.conv2d(b, x, depthwise, alpha=alpha, sign_input=True, groups=8, depthwise=True),
               (1, 6, 6, 8))
    assert "bnncc" not in ir and "groups=8" in ir
    ir = _emit(lambda b, x: bnn.conv2d(b, x, ALPHA_KERNEL, alpha=bnn.binary_kernel(ALPHA_KERNEL)[1]), (1, 6, 6, 40))
    assert "bnncc" not in ir and "R.where" not in ir


def test_binary_conv_rejects_other_pad_values_and_wrong_channels():
    alpha = bnn.binary_kernel(ALPHA_KERNEL)[1]
    with pytest.raises(Unsupported, match="pad_values must be 0 or 1"):
        _emit(lambda b, x: bnn.conv2d(b, x, ALPHA_KERNEL, alpha=alpha, sign_input=True, padding=(1, 1, 1, 1),
                                      pad_value=0.5), (1, 6, 6, 40))
    with pytest.raises(Unsupported, match="kernel expects 40 input channels, input has 32"):
        _emit(lambda b, x: bnn.conv2d(b, x, ALPHA_KERNEL), (1, 6, 6, 32))


def test_dense():
    kernel = ALPHA_KERNEL.reshape(-1, 8)
    alpha = bnn.binary_kernel(kernel)[1]
    ir = _emit(lambda b, x: bnn.dense(b, x, kernel, alpha=alpha, bias=np.ones(8), sign_input=True), (2, 360))
    assert '"bnncc.bitpack"' in ir and '"bnncc.bdense"' in ir and "R.matmul" not in ir
    ir = _emit(lambda b, x: bnn.dense(b, x, kernel, bias=np.ones(8), sign_input=True), (2, 360))
    assert "R.where" in ir and "R.matmul" in ir and "R.add" in ir
    with pytest.raises(Unsupported, match=r"only 2-D input \[batch, features\] is supported, got shape \(2, 3, 120\)"):
        _emit(lambda b, x: bnn.dense(b, x, kernel), (2, 3, 120))
    with pytest.raises(Unsupported, match="kernel expects 360 features, input has 300"):
        _emit(lambda b, x: bnn.dense(b, x, kernel), (2, 300))
    assert shape_of(Graph.input("y", (2, 360))) == (2, 360)
