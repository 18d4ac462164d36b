"""Activation ranges from calibration data, and the uint8 / int8 parameters they give.

Activations are asymmetric uint8 (``scale``, ``zero_point``; the range always holds 0, so real 0 — the conv
padding — is exact); weights are symmetric int8 per output channel in [−127, 127] (TFLite's convention; it also
keeps −128·255 pairs out of any int16 pair sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("minmax", "percentile", "mse")


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int

    @staticmethod
    def of_range(lo: float, hi: float) -> QParams:
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo <= 0 or not np.isfinite(hi - lo):
            return QParams(1.0, 0)
        scale = (hi - lo) / 255.0
        return QParams(scale, int(np.clip(np.round(-lo / scale), 0, 255)))


def _quant_error(x: np.ndarray, q: QParams) -> float:
    inv = np.float32(1.0 / q.scale)
    back = (np.clip(np.round(x * inv) + q.zero_point, 0, 255) - q.zero_point) * np.float32(q.scale)
    return float(np.mean((back - x) ** 2))


def activation_qparams(samples: np.ndarray, method: str = "minmax", percentile: float = 99.99) -> QParams:
    """uint8 parameters for the values in ``samples`` by ``method``: ``minmax`` (the whole range), ``percentile``
    (the range clipped to the given percentiles of the values), ``mse`` (the clip of the range, among 32
    candidates, that minimizes the mean squared quantization error)."""
    x = np.asarray(samples, np.float32).ravel()
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    lo, hi = float(x.min(initial=0.0)), float(x.max(initial=0.0))
    if method == "percentile":
        lo, hi = float(np.percentile(x, 100 - percentile)), float(np.percentile(x, percentile))
    elif method == "mse":
        sub = x if x.size <= 1 << 20 else np.random.default_rng(0).choice(x, 1 << 20, replace=False)
        cands = [QParams.of_range(lo * f, hi * f) for f in np.linspace(0.3, 1.0, 32)]
        return min(cands, key=lambda q: _quant_error(sub, q))
    return QParams.of_range(lo, hi)


def weight_qparams(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (last axis) symmetric int8: (int8 kernel, float32 scales)."""
    w = np.asarray(kernel, np.float32)
    amax = np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale
