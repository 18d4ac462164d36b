"""QuickNet family (larq-zoo ``sota.QuickNet*`` v1.0 graphs), rebuilt with Larq layers.

Stem: float 3×3/2 conv (C/4) → BN → ReLU → float depthwise 3×3/2 → BN (no affine) → float 1×1 conv → BN.
Residual block: binary 3×3 conv (SteSign 1.25, one-padding, ReLU on the accumulator) → BN → ``x + residual``.
Transition: ReLU → 2×2/1 max-pool ('valid') → fixed 3×3/2 blur-pool depthwise → float 1×1 conv → BN.
Head: ReLU → average pool over the whole map → Flatten → float QuantDense → softmax.
The smallest input is 32×32 (every size from there up works).
"""

from collections.abc import Sequence

import numpy as np

from .._tf import keras, lq

_CLIP = 1.25


def blurpool_kernel(channels: int, size: int = 3) -> np.ndarray:
    """Depthwise kernel (size, size, channels, 1) of the anti-aliasing (binomial) blur filter."""
    taps = {2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 5: [1.0, 4.0, 6.0, 4.0, 1.0]}[size]
    k2 = np.outer(taps, taps)
    k2 /= k2.sum()
    return np.broadcast_to(k2[:, :, None, None], (size, size, channels, 1)).astype(np.float32).copy()


def _binary_args() -> dict:
    return {
        "input_quantizer": lq.quantizers.SteSign(clip_value=_CLIP),
        "kernel_quantizer": lq.quantizers.SteSign(clip_value=_CLIP),
        "kernel_constraint": lq.constraints.WeightClip(clip_value=_CLIP),
    }


def _stem(x, filters: int):
    x = lq.layers.QuantConv2D(
        filters // 4, (3, 3), strides=2, padding="same", kernel_initializer="he_normal", use_bias=False
    )(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = lq.layers.QuantDepthwiseConv2D((3, 3), strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(scale=False, center=False)(x)
    x = lq.layers.QuantConv2D(filters, 1, kernel_initializer="he_normal", use_bias=False)(x)
    return keras.layers.BatchNormalization()(x)


def binary_block(x):
    """A residual block without its shortcut: binary 3×3 conv (ReLU on the accumulator) → BatchNorm."""
    x = lq.layers.QuantConv2D(
        int(x.shape[-1]),
        (3, 3),
        activation="relu",
        padding="same",
        pad_values=1.0,
        kernel_initializer="glorot_normal",
        use_bias=False,
        **_binary_args(),
    )(x)
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def _residual(x):
    return binary_block(x) + x  # a TFOpLambda ``tf.__operators__.add``, as in larq-zoo


def _transition(x, filters: int, strides: int = 2):
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPool2D(pool_size=strides, strides=1)(x)
    blur = keras.layers.DepthwiseConv2D(
        (3, 3), strides=strides, padding="same", use_bias=False, trainable=False
    )
    x = blur(x)
    blur.set_weights([blurpool_kernel(int(x.shape[-1]))])
    x = lq.layers.QuantConv2D(filters, (1, 1), kernel_initializer="glorot_normal", use_bias=False)(x)
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def _quicknet(
    name: str,
    section_blocks: Sequence[int],
    section_filters: Sequence[int],
    input_shape: Sequence[int],
    num_classes: int,
) -> keras.Model:
    inputs = keras.layers.Input(shape=tuple(input_shape))
    x = _stem(inputs, section_filters[0])
    for blocks, filters in zip(section_blocks, section_filters, strict=True):
        for _ in range(blocks):
            if int(x.shape[-1]) != filters:
                x = _transition(x, filters)
            x = _residual(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]))(x)
    x = keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(num_classes, kernel_initializer="glorot_normal")(x)
    x = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs=inputs, outputs=x, name=name)


def quicknet_small(input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 1000) -> keras.Model:
    """QuickNetSmall: blocks (4, 4, 4, 4), filters (32, 64, 256, 512)."""
    return _quicknet("quicknet_small", (4, 4, 4, 4), (32, 64, 256, 512), input_shape, num_classes)


def quicknet(input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 1000) -> keras.Model:
    """QuickNet: blocks (4, 4, 4, 4), filters (64, 128, 256, 512)."""
    return _quicknet("quicknet", (4, 4, 4, 4), (64, 128, 256, 512), input_shape, num_classes)


def quicknet_large(input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 1000) -> keras.Model:
    """QuickNetLarge: blocks (6, 8, 12, 6), filters (64, 128, 256, 512)."""
    return _quicknet("quicknet_large", (6, 8, 12, 6), (64, 128, 256, 512), input_shape, num_classes)
