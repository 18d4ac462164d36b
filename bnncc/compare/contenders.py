"""The non-bnncc contenders of the benchmarks, and the LCE correctness oracle.

Contenders (docs/benchmarks.md):

* Larq Compute Engine 0.16.0 interpreter, with its indirect-BGEMM bconv kernel (its fastest x86
  path) and with its default (im2col + BGEMM) kernel: :class:`LceRunner`.
* The float twin of the model (quantizers removed, latent weights) through TFLite with the XNNPACK
  delegate: :class:`TfliteXnnpackRunner` (``use_xnnpack=False``: TFLite's builtin kernels instead).

Timing notes:

* :meth:`TfliteXnnpackRunner.time` times only ``invoke()``; ``set_tensor`` happens before the clock.
* The LCE Python binding exposes only ``predict(list_of_arrays)``, which memcpy's the inputs into the
  input tensors, calls ``Invoke()`` and copies every output into a fresh numpy array
  (larq/compute-engine ``larq_compute_engine/tflite/python/interpreter_wrapper_utils.h``).  There is
  no separate ``invoke()``, and the extension exports no op registerer that ``tf.lite.Interpreter``
  could load, so :meth:`LceRunner.time` necessarily includes those two copies.
  :meth:`TfliteXnnpackRunner.io_time` measures the same copies (``set_tensor`` + ``get_tensor``) so a
  report can show how much of an LCE time is I/O (≈ 1–2 % on L1–L5).
* LCE's ``Interpreter`` uses ``BuiltinOpResolverWithoutDefaultDelegates`` unless ``use_xnnpack=True``:
  by default the float ops of an LCE model (stem, shortcuts, classifier) run on TFLite's builtin
  kernels, not XNNPACK.
* LCE's indirect BGEMM is single-threaded (``indirect_bgemm/kernel.h``: "TODO: implement
  multithreading here") and on x86 it is the portable C++ 4x2 kernel; ``num_threads`` only helps its
  default (ruy-based) path and the float ops.

TensorFlow, Larq and LCE are imported when first needed, with ``TF_USE_LEGACY_KERAS=1`` (larq 0.14 needs
tf-keras, :mod:`bnncc._tf`): importing this module imports none of them.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .timing import Runner

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "bconv_layer_model",
    "float_twin",
    "lce_convert",
    "tflite_convert_float",
    "tflite_op_names",
    "tflite_ops",
    "LceRunner",
    "TfliteXnnpackRunner",
    "network_runners",
    "lce_predict",
]


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .._tf import tf

    return tf


def _lce_interpreter():
    _tf()  # legacy Keras before LCE imports TensorFlow
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------
def bconv_layer_model(input_shape: Sequence[int], filters: int, seed: int = 0) -> tf.keras.Model:
    """Input → QuantConv2D(3×3, 'same', pad_values=1, ste_sign/ste_sign, no bias) → BatchNormalization.

    The BN gets random, non-trivial statistics of the scale of the integer accumulator, so that LCE
    folds it into the per-channel multiplier/bias of a float-output ``LceBconv2d``.  Latent kernel
    weights are uniform in [-1, 1] (what ``weight_clip`` allows).  The batch size of
    ``input_shape`` is baked into the model.
    """
    tf = _tf()
    from .._tf import lq

    n, h, w, c = (int(d) for d in input_shape)
    rng = np.random.default_rng(seed)
    inp = tf.keras.Input(shape=(h, w, c), batch_size=n, name="x")
    conv = lq.layers.QuantConv2D(
        filters,
        3,
        padding="same",
        pad_values=1.0,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
        use_bias=False,
        name="bconv",
    )
    bn = tf.keras.layers.BatchNormalization(name="bn")
    model = tf.keras.Model(inp, bn(conv(inp)), name=f"bconv_{h}x{w}x{c}_{filters}")
    conv.set_weights([rng.uniform(-1.0, 1.0, (3, 3, c, filters)).astype(np.float32)])
    k = 9 * c
    bn.set_weights(
        [
            rng.uniform(0.5, 1.5, filters).astype(np.float32),  # gamma
            rng.normal(0.0, 1.0, filters).astype(np.float32),  # beta
            rng.normal(0.0, 0.5 * np.sqrt(k), filters).astype(np.float32),  # moving mean
            (k * rng.uniform(0.5, 2.0, filters)).astype(np.float32),  # moving variance
        ]
    )
    return model


def float_twin(model: tf.keras.Model) -> tf.keras.Model:
    """The float twin of a Larq model (e.g. of :func:`bconv_layer_model`): see
    :func:`bnncc.models.twin.strip_quantizers`."""
    _tf()
    from ..models.twin import strip_quantizers

    return strip_quantizers(model)


# ----------------------------------------------------------------------------------------------------
# Conversion and flatbuffer inspection
# ----------------------------------------------------------------------------------------------------
def lce_convert(keras_model: tf.keras.Model) -> bytes:
    """LCE's converter (``larq_compute_engine.convert_keras_model``), default options (target 'arm')."""
    _tf()
    import larq_compute_engine as lce

    return lce.convert_keras_model(keras_model)


def tflite_convert_float(keras_model: tf.keras.Model) -> bytes:
    """Plain TFLite float32 conversion (no optimizations, no quantization)."""
    return _tf().lite.TFLiteConverter.from_keras_model(keras_model).convert()


def _builtin_names() -> dict[int, str]:
    import tflite  # the flatbuffer schema package (pip `tflite`)

    return {
        v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)
    }


def tflite_ops(flatbuffer: bytes) -> list[dict[str, Any]]:
    """Operators of every subgraph in execution order: ``{"name", "inputs", "outputs"}`` where
    inputs/outputs are ``(shape, type)`` tuples (None for an omitted optional input).  Custom
    ops are named by their custom code (``LceBconv2d``), builtins by their enum name
    (``CONV_2D``).  Needs the ``tflite`` package."""
    import tflite

    names = _builtin_names()
    types = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_") and isinstance(v, int)}
    model = tflite.Model.GetRootAsModel(flatbuffer, 0)
    ops = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)

        def tensor(i: int, sg=sg) -> tuple[tuple[int, ...], str] | None:
            if i < 0:
                return None
            t = sg.Tensors(i)
            return tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (), types.get(t.Type())

        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, str(builtin))
            if name == "CUSTOM":
                name = code.CustomCode().decode()
            ops.append(
                {
                    "name": name,
                    "inputs": [tensor(op.Inputs(j)) for j in range(op.InputsLength())],
                    "outputs": [tensor(op.Outputs(j)) for j in range(op.OutputsLength())],
                }
            )
    return ops


def tflite_op_names(flatbuffer: bytes) -> list[str]:
    """Names of the operators of a TFLite flatbuffer, in execution order
    (e.g. ``["LceQuantize", "LceBconv2d"]``).

    Uses the ``tflite`` schema package; falls back to parsing ``tf.lite.experimental.Analyzer`` output."""
    try:
        return [op["name"] for op in tflite_ops(flatbuffer)]
    except ImportError:
        pass
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _tf().lite.experimental.Analyzer.analyze(model_content=flatbuffer)
    return re.findall(r"^\s*Op#\d+ (\w+)\(", buf.getvalue(), flags=re.MULTILINE)


# ----------------------------------------------------------------------------------------------------
# Runners
# ----------------------------------------------------------------------------------------------------
class LceRunner(Runner):
    """A model converted once by LCE, run by LCE's interpreter.

    ``Interpreter(flatbuffer, num_threads=1, use_reference_bconv=False, use_indirect_bgemm=False,
    use_xnnpack=False)`` is the real signature in larq-compute-engine 0.16.0; ``use_reference_bconv``
    selects the slow reference bconv kernel and ``use_xnnpack`` the TFLite resolver with default
    delegates (XNNPACK for the float ops).  ``time()`` includes the input/output copies
    of ``predict`` (see module docstring).
    """

    def __init__(
        self,
        keras_model: tf.keras.Model | None,
        num_threads: int = 1,
        use_indirect_bgemm: bool = True,
        *,
        use_xnnpack: bool = False,
        use_reference_bconv: bool = False,
        flatbuffer: bytes | None = None,
    ):
        if flatbuffer is None:
            if keras_model is None:
                raise ValueError("give a keras_model or a flatbuffer")
            flatbuffer = lce_convert(keras_model)
        self.flatbuffer = flatbuffer
        self.num_threads = num_threads
        self.use_indirect_bgemm = use_indirect_bgemm
        self.use_xnnpack = use_xnnpack
        self.use_reference_bconv = use_reference_bconv
        self.interpreter = _lce_interpreter()(
            flatbuffer,
            num_threads=num_threads,
            use_reference_bconv=use_reference_bconv,
            use_indirect_bgemm=use_indirect_bgemm,
            use_xnnpack=use_xnnpack,
        )
        self._raw = self.interpreter.interpreter  # the pybind LiteInterpreter: predict(list) -> list
        self.input_shape = tuple(self.interpreter.input_shapes[0])
        self.name = "lce_" + (
            "reference" if use_reference_bconv else "indirect" if use_indirect_bgemm else "default"
        )
        if use_xnnpack:
            self.name += "_xnnpack"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self._raw.predict([self.prepare(x)])
        return out[0] if len(out) == 1 else out

    def timed_once(self, x: np.ndarray) -> float:
        t0 = time.perf_counter()
        self._raw.predict([x])
        return time.perf_counter() - t0


class TfliteXnnpackRunner(Runner):
    """A float Keras model converted by ``tf.lite.TFLiteConverter`` and run by ``tf.lite.Interpreter``.

    ``use_xnnpack=True`` uses ``OpResolverType.AUTO`` (TFLite applies its default XNNPACK delegate);
    ``use_xnnpack=False`` uses ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (TFLite's own optimized kernels).
    ``time()`` times only ``invoke()``.
    """

    def __init__(
        self,
        keras_model: tf.keras.Model | None,
        num_threads: int = 1,
        *,
        use_xnnpack: bool = True,
        flatbuffer: bytes | None = None,
    ):
        if flatbuffer is None:
            if keras_model is None:
                raise ValueError("give a keras_model or a flatbuffer")
            flatbuffer = tflite_convert_float(keras_model)
        self.flatbuffer = flatbuffer
        self.num_threads = num_threads
        self.use_xnnpack = use_xnnpack
        lite = _tf().lite
        resolver = lite.experimental.OpResolverType
        self.interpreter = lite.Interpreter(
            model_content=flatbuffer,
            num_threads=num_threads,
            experimental_op_resolver_type=resolver.AUTO
            if use_xnnpack
            else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._outs = [d["index"] for d in self.interpreter.get_output_details()]
        self.input_shape = tuple(self.interpreter.get_input_details()[0]["shape"])
        self.name = "tflite_xnnpack_fp32" if use_xnnpack else "tflite_builtin_fp32"

    def prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if tuple(x.shape) != self.input_shape:
            self.interpreter.resize_tensor_input(self._in, list(x.shape))
            self.interpreter.allocate_tensors()
            self.input_shape = tuple(x.shape)
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, self.prepare(x))
        self.interpreter.invoke()
        outs = [self.interpreter.get_tensor(i) for i in self._outs]
        return outs[0] if len(outs) == 1 else outs

    def timed_once(self, x: np.ndarray) -> float:
        self.interpreter.set_tensor(self._in, x)
        t0 = time.perf_counter()
        self.interpreter.invoke()
        return time.perf_counter() - t0

    def io_time(self, x: np.ndarray, repeats: int = 20) -> list[float]:
        """Seconds of ``set_tensor(x)`` + copying all outputs out, without ``invoke()``: the same copies LCE's
        ``predict`` makes, i.e. an estimate of what an LCE timing carries on top of its ``Invoke()``."""
        x = self.prepare(x)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.interpreter.set_tensor(self._in, x)
            for i in self._outs:
                self.interpreter.get_tensor(i)  # get_tensor returns a copy
            samples.append(time.perf_counter() - t0)
        return samples


def network_runners(
    keras_model: tf.keras.Model, num_threads: int = 1, *, lce_xnnpack: bool = True
) -> dict[str, Runner]:
    """Runners for a whole Larq network: LCE indirect BGEMM, LCE default, (LCE indirect with XNNPACK
    for its float ops, if ``lce_xnnpack``), and the float twin (:func:`float_twin`) through TFLite + XNNPACK."""
    fb = lce_convert(keras_model)
    runners: dict[str, Runner] = {
        "lce_indirect": LceRunner(None, num_threads, True, flatbuffer=fb),
        "lce_default": LceRunner(None, num_threads, False, flatbuffer=fb),
    }
    if lce_xnnpack:
        runners["lce_indirect_xnnpack"] = LceRunner(None, num_threads, True, use_xnnpack=True, flatbuffer=fb)
    runners["tflite_xnnpack_fp32"] = TfliteXnnpackRunner(float_twin(keras_model), num_threads)
    return runners


def lce_predict(
    keras_model: tf.keras.Model,
    x: np.ndarray,
    *,
    num_threads: int = 1,
    use_indirect_bgemm: bool = False,
    use_reference_bconv: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """The correctness oracle: convert with LCE and run ``x`` (a batch: axis 0 is iterated one sample
    at a time, as ``Interpreter.predict`` does) through LCE's interpreter.
    Default LCE kernels unless told otherwise."""
    interp = _lce_interpreter()(
        lce_convert(keras_model),
        num_threads=num_threads,
        use_reference_bconv=use_reference_bconv,
        use_indirect_bgemm=use_indirect_bgemm,
    )
    return interp.predict(np.asarray(x, dtype=np.float32))
