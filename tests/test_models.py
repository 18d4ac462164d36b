"""The model zoo: larq-zoo architectures with random weights and calibrated BatchNorm statistics."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bnncc._tf import keras, lq  # noqa: E402
from bnncc.errors import FrontendError  # noqa: E402
from bnncc.models import MODELS, build, describe, is_binary_layer  # noqa: E402

SMALL = (64, 64, 3)

# larq-zoo's documented parameter counts. The QuickNet docstrings were made with larq's model summary, which
# folds BN's gamma/beta into moving variance/mean (2 instead of 4 numbers a channel); the others are Keras'
# count_params().
DOCUMENTED_PARAMS = {
    "quicknet_small": 12_655_688,
    "quicknet": 13_234_088,
    "quicknet_large": 23_342_248,
    "birealnet18": 11_699_112,
    "binary_alexnet": 61_859_192,
    "binary_resnet_e18": 11_699_368,
}
LARQ_SUMMARY_CONVENTION = {"quicknet_small", "quicknet", "quicknet_large"}


def larq_summary_params(model) -> int:
    """Parameter count the way ``larq.models.summary`` reports it (BN affine weights folded away)."""
    folded = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            folded += int(layer.moving_mean.shape[0]) * (int(layer.center) + int(layer.scale))
    return model.count_params() - folded


def documented_convention_params(name: str, model) -> int:
    return larq_summary_params(model) if name in LARQ_SUMMARY_CONVENTION else model.count_params()


@pytest.fixture(scope="module")
def small_models():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build(name, input_shape=SMALL, num_classes=10, seed=0)
        return cache[name]

    return get


def test_unknown_name_lists_known_models():
    with pytest.raises(FrontendError) as info:
        build("resnet50")
    for name in MODELS:
        assert name in str(info.value)


def test_alexnet_rejects_too_small_inputs():
    with pytest.raises(ValueError, match="57"):
        build("binary_alexnet", input_shape=(48, 48, 3), num_classes=10)


@pytest.mark.parametrize("name", list(MODELS))
def test_small_model_builds_and_runs(name, small_models):
    model = small_models(name)
    assert model.output_shape == (None, 10)
    rng = np.random.default_rng(42)
    x = rng.standard_normal((2, *SMALL)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert y.shape == (2, 10)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(y[0], y[1], atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_batchnorm_statistics_are_calibrated(name, small_models):
    model = small_models(name)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns
    any_negative_gamma = False
    for bn in bns:
        mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
        assert not np.allclose(mean, 0.0), bn.name
        assert not np.allclose(var, 1.0), bn.name
        assert np.all(var > 0) and np.all(np.isfinite(var)), bn.name
        if bn.scale:
            gamma = bn.gamma.numpy()
            assert np.all((np.abs(gamma) >= 0.5) & (np.abs(gamma) <= 1.5)), bn.name
            any_negative_gamma |= bool(np.any(gamma < 0))
        if bn.center:
            assert not np.allclose(bn.beta.numpy(), 0.0), bn.name
    if any(bn.scale for bn in bns):
        assert any_negative_gamma


@pytest.mark.parametrize("name", list(MODELS))
def test_binary_layer_inputs_are_sign_balanced(name, small_models):
    """On fresh data every binary layer sees a mix of +1 and -1 (nothing saturated or dead)."""
    model = small_models(name)
    binary = [layer for layer in model.layers if is_binary_layer(layer)]
    assert binary
    probe = keras.Model(model.inputs, [layer.input for layer in binary])
    x = np.random.default_rng(7).standard_normal((4, *SMALL)).astype(np.float32)
    for layer, value in zip(binary, probe(x, training=False), strict=True):
        positive = float(np.mean(value.numpy() >= 0))
        assert 0.2 < positive < 0.8, (layer.name, positive)


def test_build_is_deterministic():
    a = build("quicknet_small", input_shape=SMALL, num_classes=10, seed=3)
    b = build("quicknet_small", input_shape=SMALL, num_classes=10, seed=3)
    c = build("quicknet_small", input_shape=SMALL, num_classes=10, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights(), strict=True))


def test_latent_binary_kernels_uniform(small_models):
    model = small_models("quicknet")
    for layer in model.layers:
        if is_binary_layer(layer):
            k = layer.kernel.numpy()
            assert -1.0 <= k.min() < -0.9 and 0.9 < k.max() <= 1.0, layer.name


def test_quantizers_and_padding_match_larq_zoo(small_models):
    """Spot checks: QuickNet one-pads with SteSign(1.25); Bi-Real Net uses ApproxSign / MagnitudeAwareSign."""
    qn = [layer for layer in small_models("quicknet").layers if is_binary_layer(layer)]
    assert len(qn) == 16
    for layer in qn:
        assert layer.pad_values == 1.0 and layer.padding == "same"
        assert isinstance(layer.input_quantizer, lq.quantizers.SteSign)
        assert layer.input_quantizer.clip_value == 1.25
        assert layer.activation is keras.activations.relu
    br = [layer for layer in small_models("birealnet18").layers if is_binary_layer(layer)]
    assert len(br) == 16
    for layer in br:
        assert layer.pad_values == 0.0
        assert isinstance(layer.input_quantizer, lq.quantizers.ApproxSign)
        assert isinstance(layer.kernel_quantizer, lq.quantizers.MagnitudeAwareSign)
    alex = [
        layer for layer in small_models("binary_alexnet").layers if isinstance(layer, lq.layers.QuantConv2D)
    ]
    assert alex[0].input_quantizer is None and not is_binary_layer(alex[0])
    assert all(is_binary_layer(layer) for layer in alex[1:]) and len(alex) == 8


def test_blurpool_weights_are_fixed(small_models):
    model = small_models("quicknet")
    blur = [layer for layer in model.layers if type(layer) is keras.layers.DepthwiseConv2D]
    assert len(blur) == 3
    for layer in blur:
        assert not layer.trainable
        k = layer.depthwise_kernel.numpy()
        np.testing.assert_allclose(k[:, :, 0, 0], np.outer([1, 2, 1], [1, 2, 1]) / 16.0)
        np.testing.assert_allclose(k, np.broadcast_to(k[:, :, :1, :], k.shape))


def test_describe_quicknet_224():
    model = MODELS["quicknet"]()  # graph only: describe needs no weights or forward pass
    d = describe(model)
    assert d["params"] == model.count_params()
    assert larq_summary_params(model) == DOCUMENTED_PARAMS["quicknet"]
    # 16 binary 3x3 convs: 4 per stage, each stage 56²·64²·9 = 28²·128²·9 = ... MACs
    assert d["binary_macs"] == 16 * 56 * 56 * 64 * 64 * 9
    assert d["binary_params"] == 4 * 9 * (64**2 + 128**2 + 256**2 + 512**2)
    assert 20e6 < d["float_macs"] < 40e6
    assert d["binary_params"] < d["params"]


def test_describe_small_models(small_models):
    for name in MODELS:
        d = describe(small_models(name))
        assert d["binary_macs"] > 0 and d["float_macs"] > 0
        assert 0 < d["binary_params"] < d["params"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_full_size_model(name):
    model = build(name)
    assert model.output_shape == (None, 1000)
    assert documented_convention_params(name, model) == DOCUMENTED_PARAMS[name]
    x = np.random.default_rng(1).standard_normal((2, 224, 224, 3)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert np.all(np.isfinite(y)) and not np.allclose(y[0], y[1], atol=1e-7)
    assert describe(model)["binary_macs"] > 0
