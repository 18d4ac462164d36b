"""Fuzz the ``.tflite`` loader (:mod:`bnncc.frontend.tflite`: the flatbuffer tables, the operator listing and
LCE's flexbuffer custom options) on mutated model bytes: ``python -m tests.fuzz.tflite_model -runs=100000``.
TVM's importer that follows is not fuzzed here (its bad-model paths: tests/frontend/test_tflite.py)."""

from __future__ import annotations

import os

from tests.fuzz.harness import as_file, fuzz_main, instrumented

with instrumented("tvm.relax.frontend.tflite.tflite_flexbuffer"):
    from bnncc.frontend import tflite as tflite_frontend


def one_input(data: bytes) -> None:
    path = as_file(data, ".tflite")
    model = tflite_frontend.load_tflite(path)
    tflite_frontend.check_operators(model, file=path)
    tflite_frontend.custom_options(model)


def seeds() -> dict[str, bytes]:
    """An LCE model (bconv with both pad values, bitpacked chaining, binary max-pool) and a float one."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import larq as lq
    import larq_compute_engine as lce
    import tf_keras as keras

    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False)
    inp = keras.Input((8, 8, 4))
    x = lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, **binary)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(32, 3, padding="same", **binary)(x)
    x = keras.layers.MaxPool2D()(x)
    y = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    lce_model = lce.convert_keras_model(keras.Model(inp, y))
    import tensorflow as tf

    flt = keras.Sequential([keras.layers.Conv2D(4, 3, input_shape=(8, 8, 3)), keras.layers.ReLU()])
    return {"lce": lce_model, "float": tf.lite.TFLiteConverter.from_keras_model(flt).convert()}


if __name__ == "__main__":
    fuzz_main("tflite_model", one_input, seeds)
