"""The numbers of the analysis: RQ1 latency shares by precision, RQ3's MACs-vs-latency fit and its outliers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..profile.report import BINARY_CATEGORIES, CATEGORIES

OUTLIER_RATIO = 1.5  # a network this many times slower (or faster) than the fit predicts is named


def shares(p: dict[str, Any]) -> dict[str, float]:
    """Each category's share of a profile's kernel time."""
    total = p["sum_of_kernels_ms"] or 1.0
    return {c: p["ms_by_category"].get(c, 0.0) / total for c in CATEGORIES}


def float_share(p: dict[str, Any]) -> float:
    return 1.0 - sum(shares(p)[c] for c in BINARY_CATEGORIES)


def total_macs(p: dict[str, Any]) -> int:
    return int(sum(p["macs"].values()))


def fit(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Least-squares line y = a·x + b, Pearson r, and each point's latency over the fit's prediction."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": None, "intercept": None, "r": None, "ratios": [None] * len(x)}
    a, b = np.polyfit(x, y, 1)
    pred = a * x + b
    r = float(np.corrcoef(x, y)[0, 1])
    return {"slope": float(a), "intercept": float(b), "r": r,
            "ratios": [float(v / q) if q > 0 else None for v, q in zip(y, pred, strict=True)]}


def outliers(names: Sequence[str], ratios: Sequence[float | None]) -> list[tuple[str, float]]:
    return [(n, r) for n, r in zip(names, ratios, strict=True)
            if r is not None and (r >= OUTLIER_RATIO or r <= 1 / OUTLIER_RATIO)]


def why(p: dict[str, Any]) -> str:
    """What the profile says of a network's time: the float share, and the slowest kernels with their speed."""
    top = sorted(p["kernels"], key=lambda r: -r["ms"])[:3]
    parts = []
    for r in top:
        speed = f", {r['gmacs']:.0f} G-MAC/s = {r['roofline_fraction']:.0%} of the {r['category']} roofline" \
            if r["gmacs"] and r["roofline_fraction"] else ""
        parts.append(f"{' + '.join(r['layers'][:3])}{'…' if len(r['layers']) > 3 else ''} ({r['category']}, "
                     f"{r['share']:.0%}{speed})")
    return f"float kernels take {float_share(p):.0%} of its time; slowest: " + "; ".join(parts)


def slow_kernels(p: dict[str, Any], below: float = 0.25) -> str:
    """The MAC kernels under ``below`` of their precision's roofline (memory-bound ones, typically): how many,
    and their share of the time."""
    slow = [r for r in p["kernels"] if r.get("roofline_fraction") is not None and r["roofline_fraction"] < below]
    if not slow:
        return "none"
    return f"{len(slow)}, {sum(r['share'] for r in slow):.0%} of the time"
