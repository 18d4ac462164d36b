"""bnncc: a compiler for Binarized Neural Networks built on Apache TVM (Relax).

    import bnncc
    mod = bnncc.from_keras(keras_model)          # Relax IRModule with bnncc's binary ops
    exe = bnncc.compile(keras_model, target="host")
    y = exe(x)                                   # numpy in, numpy out
    exe.export_library("model.so")
    exe = bnncc.load("model.so")
"""

from __future__ import annotations

from typing import Any

import tvm

from .errors import BnnccError, FrontendError, OpError, TargetError
from .pipeline import Executable, load
from .targets import get_target, target_names

__version__ = "0.1.0"
__all__ = ["BnnccError", "Executable", "FrontendError", "OpError", "TargetError", "compile", "from_keras",
           "get_target", "load", "target_names"]


def from_keras(model: Any, *, batch_size: int = 1, bits: int = 32) -> tvm.IRModule:
    """Import a Keras/Larq model (object or path of a .h5/.keras file/SavedModel dir) into Relax."""
    from .frontend.keras import from_keras as _from_keras
    from .frontend.keras import load_keras

    source = None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        source = str(model)
        model = load_keras(source)
    return _from_keras(model, batch_size=batch_size, bits=bits, source=source)


def compile(model: Any, target: str = "host", *, batch_size: int = 1, bits: int = 32) -> Executable:  # noqa: A001
    """Compile a Keras/Larq model, a model file, or a Relax module for ``target``."""
    from .pipeline import build

    mod = model if isinstance(model, tvm.IRModule) else from_keras(model, batch_size=batch_size, bits=bits)
    return build(mod, target)
