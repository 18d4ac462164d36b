"""Small model files, good and bad, for the CLI's bad-input tests (``python tests/model_files.py DIR``).

Run in a subprocess with ``DIR`` as its working directory: building a model with a Lambda layer calls the
layer's function, which writes :data:`LAMBDA_MARKER` (relative: in the current directory); it is removed after
saving, so a test can tell whether loading the file ran the code again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

LAMBDA_MARKER = "LAMBDA_RAN"
TINY_SHAPE = (1, 8, 8, 8)


def _tiny(keras, lq, name: str = "tiny"):
    """A binary conv, BatchNorm, a float dense head: 8×8×8 in, 3 out."""
    i = keras.Input(TINY_SHAPE[1:])
    x = lq.layers.QuantConv2D(8, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip", use_bias=False, name="bconv")(i)
    x = keras.layers.BatchNormalization(name="bn")(x)
    y = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x))
    return keras.Model(i, y, name=name)


def _with_weight(model, layer: str, index: int, value: float, where=(0,)):
    w = model.get_layer(layer).get_weights()
    w[index].reshape(-1)[list(where)] = value
    model.get_layer(layer).set_weights(w)
    return model


def _lambda_model(keras):
    i = keras.Input((4,))
    # The default argument is stored with the marshalled code: loading the file and calling the layer writes it.
    y = keras.layers.Lambda(lambda x, p=LAMBDA_MARKER: (open(p, "w").write("ran"), x)[1], name="evil")(i)
    return keras.Model(i, keras.layers.Dense(2, name="head")(y))


def caffe(out: Path) -> None:
    """A small binary Caffe net (tiny.prototxt + tiny.caffemodel) and nets whose files do not fit, each a pair
    caffe_<what>.prototxt + .caffemodel."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "frontend"))
    import caffe_nets as cn

    def tiny(out_channels: int = 8):
        n = cn.Net((1, 8, 8, 8), seed=0)
        x = n.bn_scale("bn", n.conv("conv1", "data", out_channels, 3, pad=1))
        y = n.conv("bconv", n.sign("sign", x), 8, 3, pad=1, bias=False, binary=True)
        n.fc("head", n.pool("pool", y, "MAX", k=2, stride=2), 3, 8 * 4 * 4)
        return n.layers

    good = tiny()
    cn.write(good, out, "tiny")
    weights = cn.caffemodel_bytes(good)
    cn.write(tiny(6), out, "caffe_mismatch")  # conv1 of 6 outputs: tiny's 8-output blobs do not fit
    (out / "caffe_mismatch.caffemodel").write_bytes(weights)
    cn.write(good, out, "caffe_missing")  # the weights of every layer but bconv
    (out / "caffe_missing.caffemodel").write_bytes(cn.caffemodel_bytes([x for x in good if x.name != "bconv"]))
    nan = tiny()
    nan[1].blobs[0][0, 0, 0, 0] = np.nan
    cn.write(nan, out, "caffe_nan")
    extra = [cn.L("norm", "LRN", ["data"], ["norm"], {"lrn_param": {"local_size": 5}}),
             cn.L("up", "Deconvolution", ["norm"], ["up"], {"convolution_param": {"num_output": 2, "kernel_size": 2}})]
    cn.write([*good, *extra], out, "caffe_unsupported")
    for name, shape in (("dynamic", "dim: 1 dim: 8 dim: -1 dim: 8"), ("noshape", "")):
        text = cn.prototxt(good[1:], head=f'input: "data"\ninput_shape {{ {shape} }}\n')
        (out / f"caffe_{name}.prototxt").write_text(text)
        (out / f"caffe_{name}.caffemodel").write_bytes(weights)
    (out / "caffe_v1.prototxt").write_text('name: "old"\ninput: "data"\nlayers { name: "r" type: RELU bottom: "data" '
                                           'top: "data" }\n')
    (out / "caffe_v1.caffemodel").write_bytes(weights)


def make(out: Path) -> None:
    from bnncc._tf import keras, lq

    caffe(out)
    tiny = _tiny(keras, lq)
    tiny.save(out / "tiny.h5")
    tiny.save(out / "tiny.keras")
    _lambda_model(keras).save(out / "lambda.h5")
    _lambda_model(keras).save(out / "lambda.keras")
    _lambda_model(keras).save(out / "lambda_savedmodel")
    i = keras.Input((4,))
    inner = _lambda_model(keras)
    keras.Model(i, keras.layers.Dense(1)(inner(i))).save(out / "nested_lambda.h5")
    _with_weight(_tiny(keras, lq), "bn", 2, float("nan")).save(out / "nan_bn.h5")  # moving_mean[0] = NaN
    _with_weight(_tiny(keras, lq), "bn", 3, -1.0, where=(1, 2)).save(out / "negative_variance.h5")
    _with_weight(_tiny(keras, lq), "bconv", 0, float("nan"), where=(5,)).save(out / "nan_kernel.h5")
    _with_weight(_tiny(keras, lq), "head", 1, float("inf")).save(out / "inf_bias.h5")
    i = keras.Input((None, None, 8))
    keras.Model(i, keras.layers.Conv2D(4, 3)(i)).save(out / "dynamic.h5")
    i = keras.Input((65536, 65536, 8))
    keras.Model(i, keras.layers.Conv2D(4, 3)(i)).save(out / "huge.h5")
    i = keras.Input((8, 8, 0))
    keras.Model(i, keras.layers.Dense(3)(keras.layers.Flatten()(i))).save(out / "zero_channels.h5")
    i = keras.Input((8, 8, 1))
    up = keras.layers.UpSampling2D(name="bad_layer")(keras.layers.Conv2D(4, 3, name="c")(i))
    keras.Model(i, up).save(out / "upsampling.h5")
    i = keras.Input((5, 3))
    keras.Model(i, keras.layers.Dense(2)(keras.layers.LSTM(4, name="bad_layer")(i))).save(out / "lstm.h5")
    os.remove(LAMBDA_MARKER)

    import bnncc

    bnncc.compile(tiny, "host", tuning_log=None).export_library(out / "tiny.so")


if __name__ == "__main__":
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    make(Path(sys.argv[1]).resolve())
