"""The benchmark layers L1–L5 (docs/benchmarks.md) and bnncc against LCE and TFLite XNNPACK on them.

For every layer (3×3, stride 1, 'same', pad_values=1, float output through a BN-like multiplier/bias) the Keras
model is :func:`~bnncc.compare.contenders.bconv_layer_model` (QuantConv2D → BatchNormalization). bnncc compiles
the same computation from the model's weights — float NHWC input → ``bitpack`` → ``bconv2d(..., out="float32")``
with multiplier = γ/√(var+ε), bias = β − mean·multiplier — so its time includes bitpacking and the output
transform, like LCE's ``LceQuantize → LceBconv2d``. bnncc's output must match LCE's within :data:`REL_TOL`
(relative to the largest output) before anything is timed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import contenders as C
from . import roofline as R
from .timing import Runner, median_times

if TYPE_CHECKING:
    import tensorflow as tf

REL_TOL = 1e-4
LAYER_COLUMNS = [
    "layer", "threads", "bnncc ms", "bnncc alone ms", "LCE-indirect ms", "LCE-default ms", "XNNPACK ms",
    "speedup vs LCE best", "speedup vs XNNPACK", "bnncc G binary MAC/s", "fraction of roofline", "rel err vs LCE",
]
ALONE_NOTE = ("bnncc alone ms: bnncc timed the same way with no other runtime run in between (its own thread "
              "scaling); the interleaved 'bnncc ms' at 2 threads also pays for the other runtimes' worker threads "
              "and, on this VM, for the second vCPU's contention on the host.")


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


class BnnccRunner(Runner):
    """A bnncc :class:`~bnncc.pipeline.Executable` (timed as one VM call on an input already in a TVM tensor) or,
    for stand-ins, any callable on one numpy array (timed as one call). Float inputs are passed as float32,
    packed (integer) inputs as they are."""

    name = "bnncc"

    def __init__(self, model: Any):
        from ..pipeline import Executable

        self.model = model
        self._main = model.vm["main"] if isinstance(model, Executable) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.model(self._array(x))
        return out[0] if isinstance(out, tuple | list) else out

    @staticmethod
    def _array(x) -> np.ndarray:
        x = np.asarray(x)
        return np.ascontiguousarray(x, dtype=np.float32 if x.dtype.kind == "f" else None)

    def prepare(self, x: np.ndarray):
        x = self._array(x)
        if self._main is None:
            return x
        import tvm

        return tvm.runtime.tensor(x)

    def timed_once(self, x) -> float:
        run = self.model if self._main is None else self._main
        t0 = time.perf_counter()
        run(x)
        return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------
# The Keras layer model → bnncc graph
# ----------------------------------------------------------------------------------------------------
def bn_fold(bn: tf.keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, bias) of an inference-mode BatchNormalization: γ/√(var+ε), β − mean·multiplier."""
    mean = bn.moving_mean.numpy().astype(np.float64)
    var = bn.moving_variance.numpy().astype(np.float64)
    gamma = bn.gamma.numpy().astype(np.float64) if bn.gamma is not None else np.ones_like(mean)
    beta = bn.beta.numpy().astype(np.float64) if bn.beta is not None else np.zeros_like(mean)
    mult = gamma / np.sqrt(var + float(bn.epsilon))
    return mult.astype(np.float32), (beta - mean * mult).astype(np.float32)


def layer_params(model: tf.keras.Model) -> dict[str, Any]:
    """Kernel (HWIO, latent: bnncc takes the sign), multiplier, bias, padding of a ``bconv_layer_model``."""
    conv, bn = model.get_layer("bconv"), model.get_layer("bn")
    cfg = conv.get_config()
    if tuple(cfg["strides"]) != (1, 1) or tuple(cfg["dilation_rate"]) != (1, 1) or cfg.get("groups", 1) != 1:
        raise NotImplementedError("the benchmark layers are stride 1, dilation 1, groups 1")
    mult, bias = bn_fold(bn)
    return {"kernel": conv.get_weights()[0], "multiplier": mult, "bias": bias, "padding": cfg["padding"],
            "pad_value": int(round(float(cfg.get("pad_values", 0.0))))}


def compile_layer(model: tf.keras.Model, bits: int = 64, target: str = "host", tuning_log: str | None = None):
    """bnncc's executable for a ``bconv_layer_model``: float NHWC → bitpack → bconv2d (float output)."""
    from ..relay_ops import bconv2d, bitpack
    from ..testing import compile_graph

    p = layer_params(model)
    shape = tuple(int(d) for d in model.inputs[0].shape)

    def body(bb, x):
        packed = bb.emit(bitpack(x, bits=bits))
        return bconv2d(packed, p["kernel"], p["multiplier"], p["bias"], padding=p["padding"],
                       pad_value=p["pad_value"], out="float32")

    return compile_graph(body, (shape, "float32"), target=target, tuning_log=tuning_log)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got − want| / max |want|."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"output shape {got.shape} vs {want.shape}")
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))


# ----------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------
def alone_times(bnncc: BnnccRunner, x: np.ndarray, threads: Sequence[int], repeats: int, warmup: int,
                burst_ms: float) -> dict[int, float]:
    """bnncc's median ms per thread count with no other runtime in between (its own thread scaling, apart from
    the co-runners' interference that the interleaved columns include)."""
    out = {}
    for t in threads:
        R.set_tvm_threads(t)
        out[t] = median_times({"bnncc": bnncc}, x, repeats, warmup, max(burst_ms, 2.0))["bnncc"]
    return out


def add_speedups(row: dict, lce_cols: Sequence[str], xnn_col: str) -> None:
    """speedup vs LCE best = min(LCE columns) / bnncc; speedup vs XNNPACK = XNNPACK / bnncc."""
    lce = [row[c] for c in lce_cols if row.get(c) is not None]
    row["speedup vs LCE best"] = min(lce) / row["bnncc ms"] if lce else None
    row["speedup vs XNNPACK"] = row[xnn_col] / row["bnncc ms"] if row.get(xnn_col) is not None else None


def set_roofline_fractions(rows: Sequence[dict], roofline: Mapping[int, R.Roofline]) -> None:
    """fraction of roofline = bnncc G binary MAC/s / (1-thread roofline × threads)."""
    for row in rows:
        row["fraction of roofline"] = row["bnncc G binary MAC/s"] / (roofline[1].gmacs * row["threads"])


def display_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows for the printed/Markdown tables: relative errors in scientific notation (JSON keeps the floats)."""
    return [{k: (f"{v:.1e}" if k == "rel err vs LCE" and isinstance(v, float) else v) for k, v in row.items()}
            for row in rows]


def bench_layer(layer: BconvLayer, threads: Sequence[int] = (1, 2), repeats: int = 20, warmup: int = 3,
                roofline: Mapping[int, R.Roofline] | None = None, *, bits: int = 64, seed: int = 0,
                tol: float = REL_TOL, burst_ms: float = 0.0, tuning_log: str | None = None,
                settle_ms: float = 0.0) -> list[dict]:
    """Check bnncc against LCE on ``layer``, then time all contenders for each thread count; one row each.
    ``tuning_log="auto"`` applies the committed tuning log of this CPU, as ``bnncc compile`` does."""
    R.ensure_thread_pool(max(threads))
    model = C.bconv_layer_model(layer.input_shape, layer.filters, seed=seed)
    lce_fb = C.lce_convert(model)
    float_fb = C.tflite_convert_float(C.float_twin(model))
    x = np.random.default_rng(seed + 1).normal(size=layer.input_shape).astype(np.float32)
    bnncc = BnnccRunner(compile_layer(model, bits, tuning_log=tuning_log))

    want = C.LceRunner(None, 1, True, flatbuffer=lce_fb)(x)
    err = rel_err(bnncc(x), want)
    if not err <= tol:
        raise AssertionError(f"{layer.name}: bnncc differs from LCE: max rel err {err:.2e} > {tol:.0e}")
    print(f"{layer.name}: bnncc matches LCE (max rel err {err:.1e}); timing threads {list(threads)}",
          file=sys.stderr, flush=True)

    alone = alone_times(bnncc, x, threads, repeats, warmup, burst_ms)
    rows = []
    for t in threads:
        R.set_tvm_threads(t)
        runners = {
            "bnncc": bnncc,
            "lce_indirect": C.LceRunner(None, t, True, flatbuffer=lce_fb),
            "lce_default": C.LceRunner(None, t, False, flatbuffer=lce_fb),
            "xnnpack": C.TfliteXnnpackRunner(None, t, flatbuffer=float_fb),
        }
        ms = median_times(runners, x, repeats, warmup, burst_ms, settle_ms if t > 1 else 0.0)
        row = {"layer": layer.name, "threads": t, "bnncc ms": ms["bnncc"], "bnncc alone ms": alone[t],
               "LCE-indirect ms": ms["lce_indirect"],
               "LCE-default ms": ms["lce_default"], "XNNPACK ms": ms["xnnpack"]}
        add_speedups(row, ["LCE-indirect ms", "LCE-default ms"], "XNNPACK ms")
        row["bnncc G binary MAC/s"] = layer.binary_macs / (ms["bnncc"] * 1e-3) / 1e9
        row["fraction of roofline"] = None
        row["rel err vs LCE"] = err
        if roofline:
            set_roofline_fractions([row], roofline)
        rows.append(row)
    return rows


def bench_layers(layers: Sequence[str | BconvLayer], threads: Sequence[int] = (1, 2), repeats: int = 20,
                 warmup: int = 3, roofline: Mapping[int, R.Roofline] | None = None, **kw) -> list[dict]:
    """:func:`bench_layer` for each layer (a name of :data:`LAYERS` or a :class:`BconvLayer`)."""
    rows = []
    for layer in layers:
        layer = LAYERS[layer] if isinstance(layer, str) else layer
        rows += bench_layer(layer, threads, repeats, warmup, roofline, **kw)
    return rows
