"""Post-training quantization: a float (or mixed binary/float) model's float conv/dense layers to int8 from
calibration data, without retraining (``bnncc quantize``, ``bnncc compile --int8``).

:mod:`.ranges` turns calibration values into uint8/int8 parameters (min/max, percentile, MSE), :mod:`.rewrite`
finds the layers, taps their inputs and rewrites them. :func:`quantize_model` runs the whole flow and reports
each layer's quantization error (SQNR of the layer's int8 output against its float output on the same input).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..lazy import lazy_exports
from .ranges import METHODS, QParams, activation_qparams, weight_qparams

# TVM only when a function needs it: `bnncc --help` lists the calibration methods from here.
_lazy, __getattr__, __dir__ = lazy_exports(__name__, {".rewrite": ("Layer", "find_layers", "quantize_layers",
                                                                    "tap_module")})

RESERVOIR = 1 << 21  # calibration values kept per layer for the percentile / MSE methods
SQNR_SAMPLES = 2  # calibration samples the SQNR report recomputes each layer on


@dataclass
class Report:
    method: str
    samples: int
    layers: list[dict[str, Any]] = field(default_factory=list)

    def median_sqnr(self) -> float:
        vals = [r["sqnr_db"] for r in self.layers if r.get("sqnr_db") is not None]
        return float(np.median(vals)) if vals else float("nan")

    def table(self) -> list[dict[str, Any]]:
        return [{k: r[k] for k in ("layer", "kind", "precision", "scale", "zero_point", "sqnr_db")}
                for r in self.layers]


def _layer_float(layer, x: np.ndarray) -> np.ndarray:
    from .. import reference

    if layer.kind == "dense":
        return x.astype(np.float64) @ layer.weight.astype(np.float64)
    kh, kw = layer.weight.shape[:2]
    cols = reference.im2col(x, (kh, kw), pad_value=0, **layer.attrs).astype(np.float64)
    return cols @ layer.weight.reshape(-1, layer.weight.shape[-1]).astype(np.float64)


def _layer_int8(layer, x: np.ndarray, q: QParams) -> np.ndarray:
    from .. import reference

    wq, sw = weight_qparams(layer.weight)
    xq = reference.quantize(x, q.scale, q.zero_point)
    if layer.kind == "dense":
        acc = reference.qdense(xq, wq, q.zero_point)
    else:
        kh, kw = wq.shape[:2]
        cols = reference.im2col(xq, (kh, kw), pad_value=q.zero_point, **layer.attrs)
        acc = reference.qdense(cols, wq.reshape(-1, wq.shape[-1]), q.zero_point)
    return reference.dequantize(acc, (np.float32(q.scale) * sw).astype(np.float32))


def sqnr_db(want: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((np.asarray(want, np.float64) - got) ** 2))
    signal = float(np.sum(np.asarray(want, np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise) if signal > 0 else float("-inf")


def quantize_model(mod, calibration: np.ndarray, *, method: str = "minmax", keep_float: Sequence[str] = (),
                   keep_first_last: bool = False, target: str = "host", progress=None):
    """(int8 module, :class:`Report`) for a Relax module ``mod`` (batch size 1) and calibration inputs
    ``calibration`` [samples, *input shape without the batch]. ``keep_float``: layer names left in float;
    ``keep_first_last``: also the first and the last quantizable layer."""
    from ..errors import BnnccError
    from ..pipeline import build
    from .rewrite import find_layers, quantize_layers, tap_module

    if method not in METHODS:
        raise BnnccError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    layers = find_layers(mod)
    names = {layer.name for layer in layers}
    unknown = [n for n in keep_float if n not in names]
    if unknown:
        raise BnnccError(f"--keep-float names no quantizable layer: {', '.join(unknown)} "
                         f"(quantizable: {', '.join(sorted(names)) or 'none'})")
    shape = [int(s) for s in mod["main"].params[0].ty.shape]
    calibration = np.asarray(calibration, np.float32)
    if calibration.ndim == len(shape) - 1:
        calibration = calibration[None]
    if list(calibration.shape[1:]) != shape[1:]:
        raise BnnccError(f"calibration data of shape {list(calibration.shape)} does not match the model's input "
                         f"{shape} (want [samples, {', '.join(map(str, shape[1:]))}])")
    if not np.isfinite(calibration).all():
        raise BnnccError("calibration data holds NaN or Inf")
    skip = set(keep_float)
    if keep_first_last and layers:
        skip |= {layers[0].name, layers[-1].name}
    taken = [layer for layer in layers if layer.name not in skip]
    rng = np.random.default_rng(0)
    pools: dict[int, list[np.ndarray]] = {layer.index: [] for layer in taken}
    lows = {layer.index: 0.0 for layer in taken}
    highs = {layer.index: 0.0 for layer in taken}
    kept: dict[int, list[np.ndarray]] = {layer.index: [] for layer in taken}
    if taken:
        taps = build(tap_module(mod), target, name="calibration")
        per_sample = max(1, RESERVOIR // len(calibration))
        for s, sample in enumerate(calibration):
            outs = taps(sample[None])
            outs = outs if isinstance(outs, tuple | list) else (outs,)
            for layer in taken:
                v = np.asarray(outs[layer.index])
                lows[layer.index] = min(lows[layer.index], float(v.min()))
                highs[layer.index] = max(highs[layer.index], float(v.max()))
                flat = v.ravel()
                pools[layer.index].append(flat if flat.size <= per_sample else rng.choice(flat, per_sample))
                if s < SQNR_SAMPLES:
                    kept[layer.index].append(v)
            if progress is not None:
                progress(s + 1, len(calibration))
    qparams: dict[int, QParams] = {}
    for layer in taken:
        pool = np.concatenate(pools[layer.index] + [np.array([lows[layer.index], highs[layer.index]], np.float32)])
        qparams[layer.index] = activation_qparams(pool, method)
    report = Report(method, len(calibration))
    for layer in layers:
        q = qparams.get(layer.index)
        row: dict[str, Any] = {"layer": layer.name, "kind": layer.kind, "precision": "int8" if q else "float32",
                               "scale": q.scale if q else None, "zero_point": q.zero_point if q else None,
                               "sqnr_db": None}
        if q is not None:
            xs = kept[layer.index]
            row["sqnr_db"] = sqnr_db(np.concatenate([_layer_float(layer, x).ravel() for x in xs]),
                                     np.concatenate([_layer_int8(layer, x, q).ravel() for x in xs]))
        report.layers.append(row)
    return quantize_layers(mod, qparams), report


__all__ = ["METHODS", "QParams", "Report", "activation_qparams", "quantize_model", "sqnr_db", "weight_qparams",
           *_lazy]
