"""The analysis figures (matplotlib via :func:`bnncc.profile.plots.pyplot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..profile.plots import COLOURS, pyplot
from ..profile.report import CATEGORIES
from .stats import shares


def rq1(profiles: dict[str, dict[str, Any]], path: Path) -> Path:
    """Stacked bars: each network's kernel time split by precision (shares)."""
    plt = pyplot()
    names = list(profiles)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(names) + 3.5), 4.5))
    bottom = np.zeros(len(names))
    for c in CATEGORIES:
        v = np.array([shares(profiles[n])[c] for n in names]) * 100
        if v.any():
            ax.bar(names, v, bottom=bottom, color=COLOURS[c], label=c)
            bottom += v
    ax.set_ylabel("share of latency (%)")
    ax.set_title("RQ1: where the latency goes, by precision", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rq2(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars: each QuickNet stage's latency with and without full-precision shortcuts."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["with_ms"] for r in rows], 0.4, label="with float shortcuts", color=COLOURS["float"])
    ax.bar(x + 0.2, [r["without_ms"] for r in rows], 0.4, label="without", color=COLOURS["binary"])
    for i, r in enumerate(rows):
        ax.text(i - 0.2, r["with_ms"], f"{r['shortcut_share']:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [r["stage"] for r in rows])
    ax.set_ylabel("median latency (ms)")
    ax.set_title("RQ2: QuickNet stages (4 blocks) with vs without shortcuts; label: the shortcuts' share",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rq3(points: list[dict[str, Any]], line: dict[str, Any], path: Path, xlabel: str, ylabel: str,
        title: str) -> Path:
    """Scatter of MACs vs latency (or instructions) with the fitted line, every point named."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    x = np.array([p["x"] for p in points])
    y = np.array([p["y"] for p in points])
    ax.scatter(x, y, color=COLOURS["binary"], zorder=3)
    placed: list[tuple[float, float]] = []
    span_x, span_y = max(np.ptp(x), 1e-9), max(np.ptp(y), 1e-9)
    for p in points:  # a point next to one already named gets its name below it, not on top of the other
        near = any(abs(p["x"] - a) < 0.05 * span_x and abs(p["y"] - b) < 0.05 * span_y for a, b in placed)
        ax.annotate(p["name"], (p["x"], p["y"]), textcoords="offset points", xytext=(4, -12 if near else 4),
                    fontsize=8)
        placed.append((p["x"], p["y"]))
    if line["slope"] is not None:
        xs = np.linspace(0, x.max() * 1.05, 50)
        ax.plot(xs, line["slope"] * xs + line["intercept"], color="grey", linestyle="--",
                label=f"least-squares fit, r = {line['r']:.2f}")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
