"""bnncc: a compiler for Binarized Neural Networks built on Apache TVM (Relax).

    import bnncc
    mod = bnncc.from_keras(keras_model)          # Relax IRModule with bnncc's binary ops
    mod = bnncc.from_onnx("model.onnx")          # ONNX (e.g. a PyTorch BNN): binary layers recognised
    mod = bnncc.from_caffe("net.prototxt")       # Caffe (+ net.caffemodel beside it): binary layers too
    exe = bnncc.compile("model.onnx")            # any model file (.h5/.keras/SavedModel, .onnx, .tflite,
                                                 # .prototxt/.caffemodel)
    exe = bnncc.compile(keras_model, target="host")
    y = exe(x)                                   # numpy in, numpy out
    exe.export_library("model.so")
    exe = bnncc.load("model.so")

Importing bnncc imports neither TVM nor TensorFlow: the names resolve on first use (the CLI starts fast, and
``bnncc run`` never loads the compiler).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import BnnccError, FrontendError, OpError, TargetError
from .lazy import lazy_exports
from .version import __version__

# Before TVM's thread pool exists: TVM assumes x86 cores are hyper-threads and defaults to half of them (one
# thread on a 2-core machine), and pins its workers and the calling thread to cores, which then starves any
# other library's threads in the process (TFLite, TensorFlow). bnncc uses every core it may run on, unpinned.
os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))
os.environ.setdefault("TVM_BIND_THREADS", "0")

_lazy, __getattr__, __dir__ = lazy_exports(__name__, {
    ".runtime": ("Executable", "load"),
    ".targets": ("get_target", "target_names"),
})
__all__ = ["BnnccError", "FrontendError", "OpError", "TargetError", "__version__", "compile", "from_caffe",
           "from_keras", "from_onnx", "from_tflite", *_lazy]


def from_keras(model: Any, *, batch_size: int = 1, bits: int = 32, trust_model: bool = False):
    """Import a Keras/Larq model (object or path of a .h5/.keras file/SavedModel dir) into Relax.

    ``bits`` is the packed word size (16, 32 or 64) of the binary layers. A model file with layers that carry
    Python code (``Lambda``) is refused unless ``trust_model`` (loading it would run that code; SECURITY.md).
    """
    from .frontend.keras import from_keras as _from_keras
    from .frontend.keras import load_keras

    source = None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        source = str(model)
        model = load_keras(source, trust_model=trust_model)
    return _from_keras(model, batch_size=batch_size, bits=bits, source=source)


def from_onnx(model: Any, *, batch_size: int | None = None, bits: int = 32):
    """Import an ONNX model (path of a .onnx file, or an ``onnx.ModelProto``) into Relax, its binary layers
    (sign activations, ±α kernels, the STE arithmetic PyTorch exports around them) as bnncc's binary ops.

    ``batch_size`` fixes a dynamic batch dimension; ``bits`` is the packed word size (16, 32 or 64).
    """
    from .frontend.onnx import from_onnx as _from_onnx

    return _from_onnx(model, bits=bits, batch_size=batch_size)


def from_caffe(prototxt: str | os.PathLike, caffemodel: str | os.PathLike | None = None, *,
               batch_size: int | None = None, bits: int = 32):
    """Import a Caffe net into Relax: its ``.prototxt`` and trained ``.caffemodel`` (default: the one with the
    same stem beside the prototxt). ``BinaryActive`` layers and convolutions / inner products with ±α weights per
    output channel become bnncc's binary ops. Inputs and outputs are NCHW, as in Caffe; ``batch_size`` replaces
    the net's batch; ``bits`` is the packed word size (16, 32 or 64).
    """
    from .frontend.caffe import from_caffe as _from_caffe

    return _from_caffe(prototxt, caffemodel, bits=bits, batch_size=batch_size)


def from_tflite(model: Any):
    """Import a ``.tflite`` file (path, or a ``tflite.Model``) into Relax: a Larq Compute Engine model's
    ``LceQuantize``/``LceBconv2d``/``LceBMaxPool2d``/``LceDequantize`` as bnncc's binary ops (32-bit words, as
    LCE packs them), the TFLite builtins through TVM's TFLite importer; plain float models too."""
    from .frontend.tflite import from_tflite as _from_tflite

    return _from_tflite(model)


def compile(model: Any, target: str = "host", *, batch_size: int = 1, bits: int | None = None,  # noqa: A001
            trust_model: bool = False, **build_options: Any):
    """Compile a Keras/Larq model, an ``onnx.ModelProto``, a model file or a Relax module for ``target``;
    returns an :class:`~bnncc.runtime.Executable`.

    A file's frontend is picked by its type (:func:`bnncc.frontend.formats.model_format`): .h5/.keras/SavedModel
    directory → Keras, .onnx → ONNX, .tflite → TFLite/LCE, .prototxt or .caffemodel → Caffe (the other file of
    the pair beside it, same stem).

    ``bits`` defaults to the target's word size (16 on aarch64, 32 on x86); ``build_options`` go to
    :func:`bnncc.pipeline.build` (``tuning_log``, ``name``, ``dump_ir``); ``trust_model`` as :func:`from_keras`.
    """
    import tvm

    from .frontend.formats import import_model
    from .pipeline import build
    from .targets import get_target

    spec = get_target(target)
    if not isinstance(model, tvm.IRModule):
        is_path = isinstance(model, (str, bytes, os.PathLike))
        name = Path(os.fsdecode(model)).stem if is_path else getattr(model, "name", None)
        model = import_model(model, batch_size=batch_size, bits=bits or spec.word_bits, trust_model=trust_model)
        build_options.setdefault("name", name)
    return build(model, spec, **build_options)
