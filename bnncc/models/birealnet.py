"""Bi-Real Net 18 (larq-zoo ``literature.BiRealNet``), rebuilt with Larq layers.

Stem: float 7×7/2 conv (64) → BN → 3×3/2 max-pool ('same').
16 blocks: binary 3×3 conv (ApproxSign input, MagnitudeAwareSign kernel, zero padding) → BN → Add(shortcut);
when the width doubles the conv has stride 2 and the shortcut is 2×2/2 avg-pool → float 1×1 conv → BN.
Head: average pool over the whole map → Flatten → float Dense → softmax. BN momentum 0.8, epsilon 1e-3.
The smallest input is 32×32.
"""

from collections.abc import Sequence

from .._tf import keras, lq


def _block(x, out_filters: int):
    in_filters = int(x.shape[-1])
    shortcut = x
    if in_filters != out_filters:
        shortcut = keras.layers.AvgPool2D(2, strides=2, padding="same")(shortcut)
        shortcut = keras.layers.Conv2D(
            out_filters, (1, 1), kernel_initializer="glorot_normal", use_bias=False
        )(shortcut)
        shortcut = keras.layers.BatchNormalization(momentum=0.8)(shortcut)
    x = lq.layers.QuantConv2D(
        out_filters,
        (3, 3),
        strides=1 if in_filters == out_filters else 2,
        padding="same",
        input_quantizer="approx_sign",
        kernel_quantizer="magnitude_aware_sign",
        kernel_constraint="weight_clip",
        kernel_initializer="glorot_normal",
        use_bias=False,
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.8)(x)
    return keras.layers.add([x, shortcut])


def birealnet18(input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 1000) -> keras.Model:
    """Bi-Real Net 18 (64 stem filters, four stages of 4 binary convs: 64, 128, 256, 512)."""
    filters = 64
    inputs = keras.layers.Input(shape=tuple(input_shape))
    x = keras.layers.Conv2D(
        filters, (7, 7), strides=2, padding="same", kernel_initializer="glorot_normal", use_bias=False
    )(inputs)
    x = keras.layers.BatchNormalization(momentum=0.8)(x)
    x = keras.layers.MaxPool2D((3, 3), strides=2, padding="same")(x)
    for _ in range(4):
        x = _block(x, filters)
    for _ in range(3):
        filters *= 2
        for _ in range(4):
            x = _block(x, filters)
    x = keras.layers.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]))(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(num_classes)(x)
    x = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs=inputs, outputs=x, name="birealnet18")
