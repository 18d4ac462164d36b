"""BinaryResNetE18 (larq-zoo ``literature.BinaryResNetE18``, Bethge et al. 2019), rebuilt with Larq layers.

Stem (input ≥ 50 px): float 7×7/2 conv (64) → BN → ReLU → 3×3/2 max-pool ('same') → BN; for smaller inputs
larq-zoo uses a single float 3×3/1 conv instead (no BN), and so does this module.
16 blocks: binary 3×3 conv (SteSign 1.25 input and kernel, zero padding) → BN → Add(shortcut); the first block
of stages 2–4 has stride 2 and a 2×2/2 avg-pool ('valid') → float 1×1 conv → BN shortcut.
Head: ReLU → average pool over the whole map → Flatten → float Dense → softmax. BN momentum 0.9, epsilon 1e-5.
"""

from collections.abc import Sequence

from .._tf import keras, lq

_CLIP = 1.25


def _bn():
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)


def _block(x, filters: int, strides: int):
    if int(x.shape[-1]) != filters:
        shortcut = keras.layers.AvgPool2D(pool_size=2, strides=2)(x)
        shortcut = keras.layers.Conv2D(
            filters, kernel_size=1, kernel_initializer="glorot_normal", use_bias=False
        )(shortcut)
        shortcut = _bn()(shortcut)
    else:
        shortcut = x
    x = lq.layers.QuantConv2D(
        filters,
        kernel_size=3,
        strides=strides,
        padding="same",
        input_quantizer=lq.quantizers.SteSign(clip_value=_CLIP),
        kernel_quantizer=lq.quantizers.SteSign(clip_value=_CLIP),
        kernel_constraint=lq.constraints.WeightClip(clip_value=_CLIP),
        kernel_initializer="glorot_normal",
        use_bias=False,
    )(x)
    x = _bn()(x)
    return keras.layers.add([x, shortcut])


def binary_resnet_e18(input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 1000) -> keras.Model:
    """BinaryResNetE18: stages of 4 binary convs with 64, 128, 256, 512 filters."""
    inputs = keras.layers.Input(shape=tuple(input_shape))
    if input_shape[0] and int(input_shape[0]) < 50:
        x = keras.layers.Conv2D(
            64, kernel_size=3, padding="same", kernel_initializer="he_normal", use_bias=False
        )(inputs)
    else:
        x = keras.layers.Conv2D(
            64, kernel_size=7, strides=2, padding="same", kernel_initializer="he_normal", use_bias=False
        )(inputs)
        x = _bn()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPool2D(3, strides=2, padding="same")(x)
        x = _bn()(x)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for i in range(4):  # 2 ResNet-18 basic blocks per stage, a shortcut around every conv
            x = _block(x, filters, strides=2 if stage > 0 and i == 0 else 1)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]))(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(num_classes, kernel_initializer="glorot_normal")(x)
    x = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs=inputs, outputs=x, name="binary_resnet_e_18")
