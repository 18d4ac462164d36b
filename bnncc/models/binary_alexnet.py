"""BinaryAlexNet (larq-zoo ``literature.BinaryAlexNet``, Hubara et al. 2016), rebuilt with Larq layers.

Five conv blocks QuantConv2D ('same', zero padding, SteSign kernel, WeightClip) [→ 3×3/2 max-pool]
→ BN without scale (momentum 0.9); the first conv has a float input (binary kernel only), the others
binary inputs.
Classifier: Reshape to 1×1×(H·W·C) → three binary 1×1 convs (4096, 4096, classes) each → BN without scale
→ Flatten → softmax. The three 'valid' 3×3/2 max-pools need an input of at least 57×57.
"""

from collections.abc import Sequence

from .._tf import keras, lq

MIN_SIZE = 57


def _conv_block(x, filters: int, kernel_size: int, strides: int = 1, pool: bool = False, first: bool = False):
    x = lq.layers.QuantConv2D(
        filters,
        kernel_size=kernel_size,
        strides=strides,
        padding="same",
        input_quantizer=None if first else "ste_sign",
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
        use_bias=False,
    )(x)
    if pool:
        x = keras.layers.MaxPool2D(pool_size=3, strides=2)(x)
    return keras.layers.BatchNormalization(scale=False, momentum=0.9)(x)


def _dense_block(x, units: int):
    x = lq.layers.QuantConv2D(
        units,
        kernel_size=1,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
        use_bias=False,
    )(x)
    return keras.layers.BatchNormalization(scale=False, momentum=0.9)(x)


def binary_alexnet(input_shape: Sequence[int] = (224, 224, 3), num_classes: int = 1000) -> keras.Model:
    """BinaryAlexNet (inflation ratio 1); input at least 57×57."""
    if min(int(d) for d in input_shape[:2]) < MIN_SIZE:
        raise ValueError(f"BinaryAlexNet needs an input of at least {MIN_SIZE}x{MIN_SIZE}, got {input_shape}")
    inputs = keras.layers.Input(shape=tuple(input_shape))
    x = _conv_block(inputs, 64, 11, strides=4, pool=True, first=True)
    x = _conv_block(x, 192, 5, pool=True)
    x = _conv_block(x, 384, 3)
    x = _conv_block(x, 384, 3)
    x = _conv_block(x, 256, 3, pool=True)
    h, w, c = (int(d) for d in x.shape[1:])
    x = keras.layers.Reshape((1, 1, h * w * c))(x)
    for units in (4096, 4096, num_classes):
        x = _dense_block(x, units)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs=inputs, outputs=x, name="binary_alexnet")
