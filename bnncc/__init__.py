"""bnncc: a compiler for Binarized Neural Networks built on Apache TVM (Relax).

    import bnncc
    mod = bnncc.from_keras(keras_model)          # Relax IRModule with bnncc's binary ops
    exe = bnncc.compile(keras_model, target="host")
    y = exe(x)                                   # numpy in, numpy out
    exe.export_library("model.so")
    exe = bnncc.load("model.so")
"""

from __future__ import annotations

import os
from typing import Any

# Before TVM's thread pool exists: TVM assumes x86 cores are hyper-threads and defaults to half of them (one
# thread on a 2-core machine), and pins its workers and the calling thread to cores, which then starves any
# other library's threads in the process (TFLite, TensorFlow). bnncc uses every core it may run on, unpinned.
os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))
os.environ.setdefault("TVM_BIND_THREADS", "0")

import tvm  # noqa: E402

from .errors import BnnccError, FrontendError, OpError, TargetError  # noqa: E402
from .pipeline import Executable, load  # noqa: E402
from .targets import get_target, target_names  # noqa: E402

__version__ = "0.1.0"
__all__ = ["BnnccError", "Executable", "FrontendError", "OpError", "TargetError", "compile", "from_keras",
           "get_target", "load", "target_names"]


def from_keras(model: Any, *, batch_size: int = 1, bits: int = 32) -> tvm.IRModule:
    """Import a Keras/Larq model (object or path of a .h5/.keras file/SavedModel dir) into Relax.

    ``bits`` is the packed word size (16, 32 or 64) of the binary layers.
    """
    from .frontend.keras import from_keras as _from_keras
    from .frontend.keras import load_keras

    source = None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        source = str(model)
        model = load_keras(source)
    return _from_keras(model, batch_size=batch_size, bits=bits, source=source)


def compile(model: Any, target: str = "host", *, batch_size: int = 1, bits: int | None = None,  # noqa: A001
            **build_options: Any) -> Executable:
    """Compile a Keras/Larq model, a model file, or a Relax module for ``target``.

    ``bits`` defaults to the target's word size (16 on aarch64, 32 on x86); ``build_options`` go to
    :func:`bnncc.pipeline.build`.
    """
    from .pipeline import build

    spec = get_target(target)
    if not isinstance(model, tvm.IRModule):
        model = from_keras(model, batch_size=batch_size, bits=bits or spec.word_bits)
    return build(model, spec, **build_options)
