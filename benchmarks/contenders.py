"""The non-bnncc contenders of the benchmarks, and the LCE correctness oracle.

Contenders (see /work/shared/BENCHMARKS.md):

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

Importing this module sets ``TF_USE_LEGACY_KERAS=1`` (larq 0.14 needs tf-keras) before TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import platform
import re
import sys
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if tf.keras.layers.Layer.__module__.startswith("keras."):
    # tf.keras resolved to Keras 3 (TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set):
    # larq 0.14 needs tf-keras.
    raise ImportError("benchmarks.contenders needs TF_USE_LEGACY_KERAS=1 set before tensorflow is imported")

import larq as lq  # noqa: E402
import larq_compute_engine as lce  # noqa: E402
from larq_compute_engine.tflite.python.interpreter import Interpreter as LceInterpreter  # noqa: E402

__all__ = [
    "LAYERS",
    "BconvLayer",
    "bconv_layer_model",
    "float_twin",
    "strip_quantizers",
    "lce_convert",
    "tflite_convert_float",
    "tflite_op_names",
    "tflite_ops",
    "LceRunner",
    "TfliteXnnpackRunner",
    "time_interleaved",
    "time_interleaved_bursts",
    "network_runners",
    "lce_predict",
    "median_ms",
    "format_table",
    "print_table",
    "collect_meta",
    "write_results",
]


# ----------------------------------------------------------------------------------------------------
# The benchmark layers
# ----------------------------------------------------------------------------------------------------
class BconvLayer(NamedTuple):
    """A 3×3, stride 1, 'same', pad_values=1 binary convolution with float output."""

    name: str
    input_shape: tuple[int, int, int, int]  # NHWC
    filters: int

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        n, h, w, _ = self.input_shape
        return (n, h, w, self.filters)

    @property
    def binary_macs(self) -> int:
        n, h, w, c = self.input_shape
        return n * h * w * self.filters * 9 * c


LAYERS: dict[str, BconvLayer] = {
    layer.name: layer
    for layer in (
        BconvLayer("L1", (1, 56, 56, 64), 64),
        BconvLayer("L2", (1, 28, 28, 128), 128),
        BconvLayer("L3", (1, 28, 28, 256), 256),
        BconvLayer("L4", (1, 14, 14, 512), 512),
        BconvLayer("L5", (1, 7, 7, 512), 512),
    )
}


def bconv_layer_model(input_shape: Sequence[int], filters: int, seed: int = 0) -> tf.keras.Model:
    """Input → QuantConv2D(3×3, 'same', pad_values=1, ste_sign/ste_sign, no bias) → BatchNormalization.

    The BN gets random, non-trivial statistics of the scale of the integer accumulator, so that LCE
    folds it into the per-channel multiplier/bias of a float-output ``LceBconv2d``.  Latent kernel
    weights are uniform in [-1, 1] (what ``weight_clip`` allows).  The batch size of
    ``input_shape`` is baked into the model.
    """
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


# ----------------------------------------------------------------------------------------------------
# Float twins
# ----------------------------------------------------------------------------------------------------
from bnncc.models.twin import strip_quantizers  # noqa: E402  (the float twin lives in the package)


def float_twin(model: tf.keras.Model) -> tf.keras.Model:
    """The float twin of a Larq model (e.g. of :func:`bconv_layer_model`): see :func:`strip_quantizers`."""
    return strip_quantizers(model)


# ----------------------------------------------------------------------------------------------------
# Conversion and flatbuffer inspection
# ----------------------------------------------------------------------------------------------------
def lce_convert(keras_model: tf.keras.Model) -> bytes:
    """LCE's converter (``larq_compute_engine.convert_keras_model``), default options (target 'arm')."""
    return lce.convert_keras_model(keras_model)


def tflite_convert_float(keras_model: tf.keras.Model) -> bytes:
    """Plain TFLite float32 conversion (no optimizations, no quantization)."""
    return tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()


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
        tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer)
    return re.findall(r"^\s*Op#\d+ (\w+)\(", buf.getvalue(), flags=re.MULTILINE)


# ----------------------------------------------------------------------------------------------------
# Runners
# ----------------------------------------------------------------------------------------------------
class _Runner:
    name = "runner"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _timed_once(self, x: np.ndarray) -> float:
        raise NotImplementedError

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    def time(self, x: np.ndarray, repeats: int = 20, warmup: int = 3) -> list[float]:
        """Seconds per run, ``repeats`` samples after ``warmup`` untimed runs."""
        x = self._prepare(x)
        for _ in range(warmup):
            self._timed_once(x)
        return [self._timed_once(x) for _ in range(repeats)]


class LceRunner(_Runner):
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
        self.interpreter = LceInterpreter(
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
        out = self._raw.predict([self._prepare(x)])
        return out[0] if len(out) == 1 else out

    def _timed_once(self, x: np.ndarray) -> float:
        t0 = _time.perf_counter()
        self._raw.predict([x])
        return _time.perf_counter() - t0


class TfliteXnnpackRunner(_Runner):
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
        resolver = tf.lite.experimental.OpResolverType
        self.interpreter = tf.lite.Interpreter(
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

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if tuple(x.shape) != self.input_shape:
            self.interpreter.resize_tensor_input(self._in, list(x.shape))
            self.interpreter.allocate_tensors()
            self.input_shape = tuple(x.shape)
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, self._prepare(x))
        self.interpreter.invoke()
        outs = [self.interpreter.get_tensor(i) for i in self._outs]
        return outs[0] if len(outs) == 1 else outs

    def _timed_once(self, x: np.ndarray) -> float:
        self.interpreter.set_tensor(self._in, x)
        t0 = _time.perf_counter()
        self.interpreter.invoke()
        return _time.perf_counter() - t0

    def io_time(self, x: np.ndarray, repeats: int = 20) -> list[float]:
        """Seconds of ``set_tensor(x)`` + copying all outputs out, without ``invoke()``: the same copies LCE's
        ``predict`` makes, i.e. an estimate of what an LCE timing carries on top of its ``Invoke()``."""
        x = self._prepare(x)
        samples = []
        for _ in range(repeats):
            t0 = _time.perf_counter()
            self.interpreter.set_tensor(self._in, x)
            for i in self._outs:
                self.interpreter.get_tensor(i)  # get_tensor returns a copy
            samples.append(_time.perf_counter() - t0)
        return samples


def time_interleaved(
    runners: Mapping[str, _Runner], x: np.ndarray, repeats: int = 20, warmup: int = 3
) -> dict[str, list[float]]:
    """Time several runners round-robin (one run of each per round) so that machine drift hits all alike."""
    xs = {name: r._prepare(x) for name, r in runners.items()}
    for _ in range(warmup):
        for name, r in runners.items():
            r._timed_once(xs[name])
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, r in runners.items():
            samples[name].append(r._timed_once(xs[name]))
    return samples


SETTLE_REWARM_S = 0.02


def time_interleaved_bursts(
    runners: Mapping[str, _Runner],
    x: np.ndarray,
    repeats: int = 20,
    warmup: int = 3,
    min_burst_s: float = 2e-3,
    max_burst: int = 1000,
    settle_s: float = 0.0,
) -> dict[str, list[float]]:
    """:func:`time_interleaved` with warm caches: each round runs each runner in a burst of back-to-back calls
    (about ``min_burst_s`` long, at least 2 calls) and records the median of the burst's calls after its first.

    Single interleaved calls start cold (the other contenders evicted their weights, and on a VM an idle gap
    slows the next call): negligible for a several-ms call, up to 2x for a 0.05 ms one. Bursts keep the
    round-robin (drift hits all alike) but measure the steady-state time per call.

    ``settle_s``: idle time before each burst. Multi-threaded runtimes keep their workers spinning for a while
    after a call (TVM ≈ 0.1 s, ruy/pthreadpool some ms); without a pause those workers take cores from the next
    contender's threads (seen: a 2-thread QuickNet at 1.6 ms interleaved vs 0.84 ms alone). After the pause the
    runner is called untimed for ``SETTLE_REWARM_S`` (its own workers and the idle vCPU wake up again: without it
    a 0.06 ms layer took 0.08 ms on 2 threads)."""
    xs = {name: r._prepare(x) for name, r in runners.items()}
    first: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, warmup)):
        for name, r in runners.items():
            first[name].append(r._timed_once(xs[name]))
    burst = {
        name: int(min(max_burst, max(2, np.ceil(min_burst_s / max(float(np.median(t)), 1e-9)) + 1)))
        for name, t in first.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, r in runners.items():
            if settle_s > 0:
                _time.sleep(settle_s)
                # then wake this runtime's own workers (and the idle vCPU) up again before timing
                end = _time.perf_counter() + SETTLE_REWARM_S
                while _time.perf_counter() < end:
                    r._timed_once(xs[name])
            times = [r._timed_once(xs[name]) for _ in range(burst[name])]
            samples[name].append(float(np.median(times[1:])))
    return samples


def network_runners(
    keras_model: tf.keras.Model, num_threads: int = 1, *, lce_xnnpack: bool = True
) -> dict[str, _Runner]:
    """Runners for a whole Larq network: LCE indirect BGEMM, LCE default, (LCE indirect with XNNPACK
    for its float ops, if ``lce_xnnpack``), and the float twin
    (:func:`strip_quantizers`) through TFLite + XNNPACK."""
    fb = lce_convert(keras_model)
    runners: dict[str, _Runner] = {
        "lce_indirect": LceRunner(None, num_threads, True, flatbuffer=fb),
        "lce_default": LceRunner(None, num_threads, False, flatbuffer=fb),
    }
    if lce_xnnpack:
        runners["lce_indirect_xnnpack"] = LceRunner(None, num_threads, True, use_xnnpack=True, flatbuffer=fb)
    runners["tflite_xnnpack_fp32"] = TfliteXnnpackRunner(strip_quantizers(keras_model), num_threads)
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
    fb = lce_convert(keras_model)
    interp = LceInterpreter(
        fb,
        num_threads=num_threads,
        use_reference_bconv=use_reference_bconv,
        use_indirect_bgemm=use_indirect_bgemm,
    )
    return interp.predict(np.asarray(x, dtype=np.float32))


# ----------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------
def median_ms(samples: Iterable[float]) -> float:
    """Median of samples given in seconds, in milliseconds."""
    return float(np.median(np.asarray(list(samples), dtype=np.float64))) * 1e3


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return str(v)
        a = abs(float(v))
        return f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else f"{v:.3f}"
    return str(v)


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An aligned plain-text table (numbers right-aligned)."""
    cols = _columns(rows, columns)
    cells = [[_fmt(row.get(c)) for c in cols] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    numeric = [
        all(isinstance(row.get(c), int | float | np.number) or row.get(c) is None for row in rows)
        for c in cols
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        )

    out = [line(cols), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(s.rstrip() for s in out)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, file=None) -> None:
    """Print :func:`format_table` to ``file`` (stdout by default)."""
    print(format_table(rows, columns), file=file if file is not None else sys.stdout, flush=True)


def _markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    cols = _columns(rows, columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(out)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect_meta(threads: Sequence[int] | int | None = None, **extra: Any) -> dict[str, Any]:
    """Date, CPU (``/proc/cpuinfo`` model name), core count, thread counts, load average, package versions."""
    meta: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": {
            "tensorflow": tf.__version__,
            "tf_keras": _version("tf-keras"),
            "larq": _version("larq"),
            "larq_compute_engine": _version("larq-compute-engine"),
            "numpy": np.__version__,
        },
    }
    meta.update(extra)
    return meta


def write_results(
    path_md: str | os.PathLike | None,
    path_json: str | os.PathLike | None,
    rows: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
    *,
    columns: Sequence[str] | None = None,
    title: str = "Contenders",
    notes: Sequence[str] = (),
) -> None:
    """Write ``rows`` as a Markdown table (with ``meta`` and ``notes`` above it) and as JSON ``{meta, rows}``.
    Missing meta keys (date, cpu, versions, …) are filled in by :func:`collect_meta`."""
    full_meta = collect_meta()
    full_meta.update(meta or {})
    if path_md is not None:
        lines = [f"# {title}", ""]
        for key, value in full_meta.items():
            if isinstance(value, Mapping):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            lines.append(f"- {key}: {value}")
        lines += ["", _markdown_table(rows, columns), ""]
        if notes:
            lines += [f"- {n}" for n in notes] + [""]
        Path(path_md).parent.mkdir(parents=True, exist_ok=True)
        Path(path_md).write_text("\n".join(lines))
    if path_json is not None:
        Path(path_json).parent.mkdir(parents=True, exist_ok=True)
        Path(path_json).write_text(
            json.dumps({"meta": full_meta, "rows": list(rows)}, indent=2, default=_json_default) + "\n"
        )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Callable):  # type: ignore[arg-type]
        return repr(o)
    return str(o)
