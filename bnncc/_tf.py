"""TensorFlow + Larq imports with legacy (tf_keras) Keras, which larq 0.14 needs (shared by frontend and zoo)."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import larq as lq  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

if tf.keras.layers.Layer is not tf_keras.layers.Layer:  # pragma: no cover - environment problem
    raise ImportError(
        "bnncc.models needs legacy Keras (tf_keras): set TF_USE_LEGACY_KERAS=1 before tensorflow is imported"
    )

keras = tf_keras

__all__ = ["keras", "lq", "tf"]
