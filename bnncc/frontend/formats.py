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
# Formats of issue 11 that bnncc recognises by name but cannot read yet: a clear error rather than a parse failure.
NOT_YET = {".prototxt": "Caffe .prototxt + .caffemodel", ".caffemodel": "Caffe .prototxt + .caffemodel"}
READS = (".h5/.keras/SavedModel directory (Keras/Larq), .onnx (ONNX, e.g. exported from PyTorch), .tflite "
         "(TFLite, LCE ops included)")


def model_format(path: str | os.PathLike) -> str:
    """``"keras"``, ``"onnx"`` or ``"tflite"`` for a model file bnncc reads; a FrontendError naming the file
    otherwise."""
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
    if suffix in NOT_YET:
        raise FrontendError(f"{NOT_YET[suffix]} models are not yet supported; bnncc reads {READS}", file=str(p))
    raise FrontendError(f"unknown model file type {suffix or '(no suffix)'!r}; bnncc reads {READS}", file=str(p))


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
    from .keras import from_keras, load_keras

    return from_keras(load_keras(path, trust_model=trust_model), batch_size=batch_size or 1, bits=bits, source=path)
