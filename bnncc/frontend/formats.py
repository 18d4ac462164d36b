"""Which frontend reads a model file, by its type: the one entry point of ``bnncc.compile(path)`` and
``bnncc compile PATH``. Framework-free: a frontend's heavy imports happen only when its format is read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FrontendError

if TYPE_CHECKING:
    import tvm

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
CAFFE_SUFFIXES = (".prototxt", ".caffemodel")
READS = (".h5/.keras/SavedModel directory (Keras/Larq), .onnx (ONNX, e.g. exported from PyTorch), .tflite "
         "(TFLite, LCE ops included), .prototxt + .caffemodel (Caffe)")


def model_format(path: str | os.PathLike) -> str:
    """``"keras"``, ``"onnx"``, ``"tflite"`` or ``"caffe"`` for a model file bnncc reads; a FrontendError naming
    the file otherwise."""
    p = Path(os.fspath(path))
    suffix = p.suffix.lower()
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return "keras"
        raise FrontendError("a directory that is not a SavedModel (no saved_model.pb)", file=str(p))
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix in (".onnx", ".tflite"):
        return suffix[1:]
    if suffix in CAFFE_SUFFIXES:
        return "caffe"
    raise FrontendError(f"unknown model file type {suffix or '(no suffix)'!r}; bnncc reads {READS}", file=str(p))


def caffe_pair(path: str | os.PathLike) -> tuple[str, str]:
    """(prototxt, caffemodel) of a Caffe net given by either file: the other one has the same stem beside it.
    A FrontendError naming the missing file if it is not there."""
    p = Path(os.fspath(path))
    proto, weights = p.with_suffix(".prototxt"), p.with_suffix(".caffemodel")
    given, other = (proto, weights) if p.suffix.lower() == ".prototxt" else (weights, proto)
    if not given.exists():
        raise FrontendError("no such file", file=str(given))
    if not other.exists():
        what = "its trained weights" if other is weights else "the net (its layers)"
        raise FrontendError(f"a Caffe net is a .prototxt and a .caffemodel: {what} should be {other.name} "
                            "beside it, which does not exist", file=str(given))
    return str(proto), str(weights)


def model_files(path: str | os.PathLike) -> list[str]:
    """The files a model path stands for (a Caffe net's two; a file or directory otherwise)."""
    if model_format(path) == "caffe":
        return list(caffe_pair(path))
    return [os.fspath(path)]


def is_onnx_model(model: Any) -> bool:
    """An in-memory ``onnx.ModelProto`` (checked without importing onnx)."""
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def import_model(model: Any, *, batch_size: int | None = 1, bits: int = 32, trust_model: bool = False
                 ) -> tvm.IRModule:
    """A model file (any format of :func:`model_format`), a Keras model or an ``onnx.ModelProto`` → Relax.
    ``trust_model``: load Keras files whose layers carry Python code (SECURITY.md); no other format carries code."""
    if is_onnx_model(model):
        from .onnx import from_onnx

        return from_onnx(model, bits=bits, batch_size=batch_size)
    if not isinstance(model, (str, bytes, os.PathLike)):
        from .keras import from_keras

        return from_keras(model, batch_size=batch_size or 1, bits=bits)
    path = os.fsdecode(model)
    fmt = model_format(path)
    if fmt == "onnx":
        from .onnx import from_onnx

        return from_onnx(path, bits=bits, batch_size=batch_size)
    if fmt == "tflite":  # LCE's packed words are 32 bits: the file fixes the word size and the batch
        from .tflite import from_tflite

        return from_tflite(path)
    if fmt == "caffe":  # Caffe nets reshape to any batch: ``batch_size`` replaces the file's
        from .caffe import from_caffe

        proto, weights = caffe_pair(path)
        return from_caffe(proto, weights, bits=bits, batch_size=batch_size)
    from .keras import from_keras, load_keras

    return from_keras(load_keras(path, trust_model=trust_model), batch_size=batch_size or 1, bits=bits, source=path)
