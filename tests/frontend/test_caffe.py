"""Caffe frontend: deploy nets written as real .prototxt + .caffemodel files (tests/frontend/caffe_nets.py) against
the same nets rebuilt in PyTorch with the same weights; binary layers recognised; Caffe's convolution and
pooling geometry (ceil rounding, the AVE divisor that counts padding) by property tests; bad files refused in one
line. 32×32 inputs keep the default suite short; the 224×224 ResNet-18 is ``slow``."""

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import caffe_nets as cn  # noqa: E402
from caffe_nets import L  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bnncc  # noqa: E402
from bnncc.errors import FrontendError  # noqa: E402
from bnncc.frontend.caffe import from_caffe  # noqa: E402
from bnncc.pipeline import build  # noqa: E402

SIZE = 32


def _rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _ops(mod) -> dict[str, int]:
    text = mod["main"].script()
    return {"conv2d": len(re.findall(r"= R\.nn\.conv2d\(", text)), "bconv2d": text.count('"bnncc.bconv2d"'),
            "bdense": text.count('"bnncc.bdense"'), "matmul": len(re.findall(r"= R\.matmul\(", text))}


def _run(layers, tmp_path, x, stem="net", **kw):
    proto, _ = cn.write(layers, tmp_path, stem)
    mod = from_caffe(proto, **kw)
    out = build(mod, "host")(x)
    return mod, (list(out) if isinstance(out, (list, tuple)) else [out])


def _x(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------- whole nets
@pytest.mark.parametrize("binary", [False, True], ids=["float", "binary"])
def test_resnet18_deploy_net_matches_pytorch(tmp_path, binary):
    layers, binary_convs = cn.resnet18(SIZE, binary=binary)
    x = _x((1, 3, SIZE, SIZE), 1)
    mod, (got,) = _run(layers, tmp_path, x)
    want = cn.torch_forward(layers, x)["fc"]
    ops = _ops(mod)
    convs = sum(x.type == "Convolution" for x in layers)
    assert ops["bconv2d"] == binary_convs == (16 if binary else 0)  # every binary conv became a bconv2d
    assert ops["conv2d"] == convs - binary_convs  # and only the float ones stayed float convs
    assert got.shape == want.shape == (1, 10)
    assert _rel_err(got, want) < 1e-4, _rel_err(got, want)
    assert got.argmax() == want.argmax()


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True], ids=["float", "binary"])
def test_full_resnet18_224(tmp_path, binary):
    layers, binary_convs = cn.resnet18(224, widths=(64, 128, 256, 512), binary=binary, classes=1000, seed=3)
    x = _x((1, 3, 224, 224), 2)
    mod, (got,) = _run(layers, tmp_path, x)
    want = cn.torch_forward(layers, x)["fc"]
    assert _ops(mod)["bconv2d"] == binary_convs
    assert _rel_err(got, want) < 1e-4, _rel_err(got, want)
    assert got.argmax() == want.argmax()


def _layer_zoo() -> tuple[list[L], str]:
    """Every other supported layer type and form: net-level input/input_dim, grouped/dilated convs with
    kernel_h/pad_w forms, PReLU, leaky ReLU, Sigmoid, TanH, Eltwise PROD/MAX/SUM with coeff, Concat, Flatten,
    Dropout, AVE pooling with padding, an InnerProduct with a legacy-shaped bias, Softmax; several outputs."""
    rng = np.random.default_rng(7)
    n = cn.Net((2, 6, 11, 9), seed=7)
    n.layers = []  # the input comes from the net-level input/input_dim fields (head below)
    a = n.conv("a", "data", 9, 3, pad=1, group=3)
    n.layers[-1].params["convolution_param"] = {"num_output": 9, "kernel_h": 3, "kernel_w": 3, "pad_h": 1,
                                                 "pad_w": 1, "group": 3}
    b = n.conv("b", "data", 5, 3, pad=2, dilation=2)
    n.add(L("b_prelu", "PReLU", [b], [b], blobs=[rng.uniform(0.1, 0.4, 5).astype(np.float32)]))
    a = n.add(L("a_leaky", "ReLU", [a], ["a_leaky"], {"relu_param": {"negative_slope": 0.1}}))
    cat = n.add(L("cat", "Concat", [a, b], ["cat"]), 14)
    s = n.add(L("sig", "Sigmoid", [cat], ["sig"]))
    t = n.add(L("tanh", "TanH", [cat], ["tanh"]))
    prod = n.eltwise("prod", [s, t], "PROD")
    mx = n.eltwise("max", [prod, cat], "MAX")
    mixed = n.eltwise("mixed", [mx, cat], "SUM", coeff=[0.5, -2.0])
    mixed = n.add(L("drop", "Dropout", [mixed], [mixed], {"dropout_param": {"dropout_ratio": 0.3}}))
    pool = n.pool("avg", mixed, "AVE", k=3, stride=2, pad=1)  # 11×9 → 6×5, the divisor counts padding
    flat = n.add(L("flat", "Flatten", [pool], ["flat"]))
    fc = n.fc("fc", flat, 7, 14 * 6 * 5)
    n.layers[-1].legacy_blobs = True  # weights 1×1×7×420 and bias 1×1×1×7, as old Caffe files store them
    n.add(L("prob", "Softmax", [fc], ["prob"]))
    head = 'input: "data"\ninput_dim: 2\ninput_dim: 6\ninput_dim: 11\ninput_dim: 9\n'
    return n.layers, head


def test_every_layer_type_matches_pytorch(tmp_path):
    layers, head = _layer_zoo()
    proto, _ = cn.write(layers, tmp_path, "zoo", head=head)
    x = _x((2, 6, 11, 9), 3)
    out = build(from_caffe(proto), "host")(x)
    want = cn.torch_forward([cn.input_layer(x.shape), *layers], x)
    names = cn.outputs(layers)
    assert names == ["prob"]
    np.testing.assert_allclose(out, want["prob"], rtol=1e-5, atol=1e-6)
    # the pre-softmax values too (a softmax hides small differences): cut the net before it
    out_fc = build(from_caffe(cn.write(layers[:-1], tmp_path, "zoo_fc", head=head)[0]), "host")(x)
    assert _rel_err(out_fc, want["fc"]) < 1e-5


def _small_net() -> list[L]:
    n = cn.Net((1, 3, 8, 8), seed=2)
    x = n.relu("relu", n.bn_scale("bn", n.conv("conv", "data", 4, 3, pad=1)))
    n.fc("fc", n.pool("pool", x, "MAX", k=2, stride=2), 3, 4 * 4 * 4)
    return n.layers


def test_axis_parameters_match_pytorch(tmp_path):
    """Layers on other axes than the channels: Concat along H, a Scale over (H, W) and a scalar one, Flatten
    of H and W, Softmax along an inner axis, InnerProduct with axis 2 and with a transposed weight."""
    rng = np.random.default_rng(9)
    c, h, w = 4, 5, 6
    layers = [cn.input_layer((2, c, h, w)),
              L("cat", "Concat", ["data", "data"], ["cat"], {"concat_param": {"axis": 2}}),
              L("scale_hw", "Scale", ["cat"], ["cat"], {"scale_param": {"axis": 2, "num_axes": 2}},
                [rng.standard_normal((2 * h, w)).astype(np.float32)]),
              L("scale_all", "Scale", ["cat"], ["scaled"], {"scale_param": {"num_axes": 0, "bias_term": True}},
                [np.array(1.5, np.float32), np.array(-0.25, np.float32)]),
              L("flat", "Flatten", ["scaled"], ["flat"], {"flatten_param": {"axis": 2}}),
              L("soft", "Softmax", ["flat"], ["soft"], {"softmax_param": {"axis": 2}}),
              L("ip_axis2", "InnerProduct", ["soft"], ["ip_axis2"], {"inner_product_param": {"num_output": 3,
                                                                                             "axis": 2}},
                [rng.standard_normal((3, 2 * h * w)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]),
              L("ip_t", "InnerProduct", ["data"], ["ip_t"], {"inner_product_param": {"num_output": 5,
                                                                                      "transpose": True}},
                [rng.standard_normal((c * h * w, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)])]
    x = _x((2, c, h, w), 10)
    _, got = _run(layers, tmp_path, x)
    want = cn.torch_forward(layers, x)
    assert cn.outputs(layers) == ["ip_axis2", "ip_t"]
    for g, name in zip(got, ["ip_axis2", "ip_t"], strict=True):
        assert g.shape == want[name].shape
        np.testing.assert_allclose(g, want[name], rtol=1e-5, atol=1e-5)


def test_batch_size_replaces_the_nets_batch(tmp_path):
    layers = _small_net()
    proto, _ = cn.write(layers, tmp_path)
    mod = from_caffe(proto, batch_size=3)
    assert [int(d) for d in mod["main"].params[0].ty.shape] == [3, 3, 8, 8]
    x = _x((3, 3, 8, 8), 4)
    assert _rel_err(build(mod, "host")(x), cn.torch_forward(layers, x)["fc"]) < 1e-4


# ------------------------------------------------------------------------------------------- binary layers
def test_binary_inner_product_and_sign_of_zero(tmp_path):
    """BinaryActive computes ``x >= 0 ? 1 : -1``: sign(0) = +1, bnncc's bit for 0, so exact zeros (e.g. after
    a ReLU) give Caffe's answer. A ±α InnerProduct after a sign (through a Flatten) is a bdense."""
    n = cn.Net((1, 8, 6, 6), seed=5)
    x = n.relu("relu", "data")
    s = n.sign("sign", x)
    y = n.conv("bconv", s, 16, 3, pad=1, bias=True, binary=True)
    s2 = n.sign("sign2", y)
    flat = n.add(L("flat", "Flatten", [s2], ["flat"]))
    n.fc("bfc", flat, 5, 16 * 36)
    w = n.layers[-1].blobs[0]
    n.layers[-1].blobs[0] = (np.abs(w).mean(axis=1, keepdims=True) * np.where(w < 0, -1, 1)).astype(np.float32)
    data = _x((1, 8, 6, 6), 6)  # about half the ReLU outputs are exactly 0
    mod, (got,) = _run(n.layers, tmp_path, data)
    ops = _ops(mod)
    assert ops["bconv2d"] == 1 and ops["bdense"] == 1 and ops["conv2d"] == 0 and ops["matmul"] == 0
    want = cn.torch_forward(n.layers, data)["bfc"]
    assert (np.maximum(data, 0) == 0).mean() > 0.3
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_float_kernel_after_a_sign_stays_float(tmp_path):
    n = cn.Net((1, 4, 5, 5), seed=8)
    n.conv("conv", n.sign("sign", "data"), 6, 3)  # float weights: a float conv of ±1 values
    x = _x((1, 4, 5, 5), 8)
    mod, (got,) = _run(n.layers, tmp_path, x)
    assert _ops(mod)["bconv2d"] == 0 and _ops(mod)["conv2d"] == 1
    np.testing.assert_allclose(got, cn.torch_forward(n.layers, x)["conv"], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------- geometry
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cin=st.integers(1, 9), cout=st.integers(1, 9), group=st.sampled_from([1, 2, 3]), k=st.integers(1, 4),
       stride=st.integers(1, 3), pad=st.integers(0, 2), dilation=st.integers(1, 2), h=st.integers(3, 10),
       w=st.integers(3, 10), binary=st.booleans())
def test_convolution_geometry(tmp_path, cin, cout, group, k, stride, pad, dilation, h, w, binary):
    cin, cout = cin * group, cout * group
    assume(min(h, w) + 2 * pad >= dilation * (k - 1) + 1)
    n = cn.Net((1, cin, h, w), seed=cin + 10 * cout)
    src = n.sign("sign", "data") if binary else "data"
    n.conv("conv", src, cout, k, stride=stride, pad=pad, group=group, dilation=dilation, binary=binary)
    x = _x((1, cin, h, w), k)
    mod, (got,) = _run(n.layers, tmp_path, x)
    want = cn.torch_forward(n.layers, x)["conv"]
    depthwise = group > 1 and group == cin
    assert _ops(mod)["bconv2d"] == int(binary and not depthwise)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["MAX", "AVE"]), k=st.integers(1, 5), stride=st.integers(1, 4),
       pad=st.integers(0, 2), h=st.integers(1, 12), w=st.integers(1, 12), c=st.integers(1, 5),
       floor=st.booleans())
def test_pooling_geometry(tmp_path, method, k, stride, pad, h, w, c, floor):
    """Caffe's output size (ceil, or floor, then one less if the last window starts in the padding) and AVE
    divisor (the window clipped to input + padding) against PyTorch's ceil_mode / count_include_pad pooling."""
    assume(pad <= k // 2 and min(h, w) + 2 * pad >= k)  # PyTorch's limit on padding; a window fits
    n = cn.Net((1, c, h, w))
    n.pool("pool", "data", method, k=k, stride=stride, pad=pad, floor=floor)
    x = _x((1, c, h, w), k * 7 + stride)
    proto, _ = cn.write(n.layers, tmp_path)
    past = [(o - 1) * stride >= size for size in (h, w)
            for o in [(-(-(size - k) // stride) if not floor else (size - k) // stride) + 1]]
    if pad == 0 and any(past):  # Caffe keeps a window that pools nothing (PyTorch drops it): refused
        with pytest.raises(FrontendError, match="starts past the input"):
            from_caffe(proto)
        return
    got = build(from_caffe(proto), "host")(x)
    want = cn.torch_forward(n.layers, x)["pool"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_global_pooling(tmp_path):
    n = cn.Net((2, 3, 7, 5))
    n.pool("gmax", "data", "MAX", global_pooling=True)
    n.pool("gave", "data", "AVE", global_pooling=True)
    x = _x((2, 3, 7, 5), 9)
    _, got = _run(n.layers, tmp_path, x)
    want = cn.torch_forward(n.layers, x)
    for g, name in zip(got, ("gmax", "gave"), strict=True):
        np.testing.assert_allclose(g, want[name], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------- entry points
def test_compile_finds_the_other_file_of_the_pair(tmp_path):
    layers = _small_net()
    proto, weights = cn.write(layers, tmp_path)
    x = _x((1, 3, 8, 8), 11)
    want = cn.torch_forward(layers, x)["fc"]
    for path in (proto, weights):
        assert _rel_err(bnncc.compile(str(path))(x), want) < 1e-4
    other = tmp_path / "elsewhere.caffemodel"
    weights.rename(other)
    assert _rel_err(build(bnncc.from_caffe(proto, other), "host")(x), want) < 1e-4
    with pytest.raises(FrontendError, match=r"net.caffemodel beside it, which does not exist"):
        bnncc.compile(str(proto))
    with pytest.raises(FrontendError, match=r"expected .*net.caffemodel beside the prototxt"):
        bnncc.from_caffe(proto)


# ------------------------------------------------------------------------------------------- bad nets
def _net_text(body: str) -> str:
    return 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n' + body


def test_unsupported_layers_are_listed_at_once(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text(_net_text(
        'layer { name: "norm" type: "LRN" bottom: "data" top: "norm" lrn_param { local_size: 5 alpha: 0.1 } }\n'
        'layer { name: "relu" type: "ReLU" bottom: "norm" top: "norm" }\n'
        'layer { name: "up" type: "Deconvolution" bottom: "norm" top: "up" convolution_param { num_output: 3 '
        'kernel_size: 2 } }\n'
        'layer { name: "stoch" type: "Pooling" bottom: "up" top: "p" pooling_param { pool: STOCHASTIC '
        'kernel_size: 2 } }\n'))
    with pytest.raises(FrontendError) as e:
        from_caffe(proto)
    msg = str(e.value)
    assert "3 layers cannot be imported" in msg and str(proto) in msg
    assert "'norm': LRN" in msg and "'up': Deconvolution" in msg and "'stoch': Pooling: STOCHASTIC" in msg
    assert "'relu'" not in msg and "supported layers: Input, Convolution" in msg


def test_a_misspelt_parameter_of_a_supported_layer_is_an_error(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text(_net_text('layer { name: "conv1" type: "Convolution" bottom: "data" top: "c" '
                               'convolution_param { num_output: 3 kernal_size: 3 } }\n'))
    with pytest.raises(FrontendError, match=r"layer 'conv1'.*Convolution: unknown parameter.*kernal_size"):
        from_caffe(proto)


@pytest.mark.parametrize("text, phrase", [
    ('layer { name: "a" type: "ReLU" bottom: "data" top: "a" ', "not a valid Caffe .prototxt: 3:"),
    ('layers { name: "a" type: RELU bottom: "data" top: "a" }', "V1 'layers' format"),
    ('layer { name: "a" type: "ReLU" bottom: "nothere" top: "a" }', "reads blob 'nothere'"),
    ('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param { use_global_stats: false } }',
     "use_global_stats: false"),
], ids=["syntax", "v1", "dangling-bottom", "batch-statistics"])
def test_bad_prototxt(tmp_path, text, phrase):
    proto = tmp_path / "net.prototxt"
    proto.write_text(_net_text(text))
    (tmp_path / "net.caffemodel").write_bytes(cn.caffemodel_bytes([L("bn", "BatchNorm", [], [], blobs=[
        np.zeros(3, np.float32), np.ones(3, np.float32), np.ones(1, np.float32)])]))
    with pytest.raises(FrontendError, match=re.escape(phrase)):
        from_caffe(proto)


@pytest.mark.parametrize("head, phrase", [
    ('input: "data"\n', "input 'data' has no shape"),
    ('input: "data"\ninput_shape { dim: -1 dim: 3 dim: 8 dim: 8 }\n', "dynamic shape (-1, 3, 8, 8)"),
    ('layer { name: "in" type: "Input" top: "data" }\n', "input 'data' has no shape"),
    ('', "the net has no inputs"),
])
def test_missing_or_dynamic_input_shape(tmp_path, head, phrase):
    proto = tmp_path / "net.prototxt"
    proto.write_text(head + 'layer { name: "a" type: "ReLU" bottom: "data" top: "a" }\n')
    with pytest.raises(FrontendError, match=re.escape(phrase)):
        from_caffe(proto)


def test_weights_that_do_not_match_the_net(tmp_path):
    n = cn.Net((1, 3, 8, 8))
    n.conv("conv1", "data", 4, 3)
    n.conv("conv2", "conv1", 4, 3)
    proto, weights = cn.write(n.layers, tmp_path)
    n.layers[1].blobs[0] = n.layers[1].blobs[0][:, :2]  # 4×2×3×3 for a conv of 3 input channels
    weights.write_bytes(cn.caffemodel_bytes(n.layers[1:2]))  # and conv2 has none
    with pytest.raises(FrontendError, match=r"layer\(s\) need trained blobs .* 'conv2' \(Convolution\)"):
        from_caffe(proto)
    weights.write_bytes(cn.caffemodel_bytes(n.layers[1:]))
    with pytest.raises(FrontendError, match=r"layer 'conv1'.*blob 0 in net.caffemodel has shape \(4, 2, 3, 3\), "
                                            r"the layer needs \(4, 3, 3, 3\)"):
        from_caffe(proto)


@pytest.mark.parametrize("layer, params", [
    ("conv", {"num_output": 2, "kernel_size": 3, "pad": 1000000000}),
    ("pool", {"pool": "AVE", "kernel_size": 1000000001, "pad": 1000000000}),
])
def test_a_huge_padding_is_refused_before_anything_is_allocated(tmp_path, layer, params):
    """A pad of 10^9 (a damaged or hostile file) would make 10^18-element tensors (numpy's pad-correction and
    divisor tables, then TVM's buffers): refused naming the layer."""
    kind, key = ("Convolution", "convolution_param") if layer == "conv" else ("Pooling", "pooling_param")
    blobs = [np.ones((2, 3, 3, 3), np.float32), np.zeros(2, np.float32)] if layer == "conv" else []
    layers = [cn.input_layer((1, 3, 8, 8)), L(layer, kind, ["data"], [layer], {key: params}, blobs)]
    proto, _ = cn.write(layers, tmp_path)
    with pytest.raises(FrontendError, match=rf"layer '{layer}'.*padded input would have shape .*more than"):
        from_caffe(proto)


_NUMBER = re.compile(r"(?<=: )-?\d+(\.\d+)?")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
    [0, 1, 2, 3, 7, -1, -2, 100, 2**31, 2**32 - 1, 10**9])), min_size=1, max_size=3))
def test_mutated_nets_import_or_fail_in_one_line(tmp_path, edits):
    """The layer zoo with some of its numbers (kernel, stride, pad, group, num_output, axis, shapes, coeff, ...)
    replaced by 0, negative, huge values: bnncc imports it or refuses it with one FrontendError line (found: a
    huge pad made numpy allocate exabytes)."""
    layers, head = _layer_zoo()
    text = cn.prototxt(layers, head=head)
    for at, value in edits:
        spans = list(_NUMBER.finditer(text))
        m = spans[at % len(spans)]
        text = text[:m.start()] + str(value) + text[m.end():]
    (tmp_path / "net.prototxt").write_text(text)
    (tmp_path / "net.caffemodel").write_bytes(cn.caffemodel_bytes(layers))
    try:
        from_caffe(tmp_path / "net.prototxt")
    except FrontendError as e:
        assert "\n" not in str(e)
