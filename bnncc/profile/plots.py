"""The profile as pictures (matplotlib, the ``plot`` extra, imported only here): a bar per kernel call coloured by
precision, and the cumulative time through the model against the end-to-end latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BnnccError
from .report import CATEGORIES

COLOURS = dict(zip(CATEGORIES, ("#1f77b4", "#9467bd", "#d62728", "#aec7e8", "#ff9896"), strict=True))


def pyplot():
    """matplotlib.pyplot with a file-only backend; one clear error line without the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BnnccError("charts need matplotlib: pip install 'bnncc[plot]' (or pass --no-plots)") from None
    return plt


def _label(layers: list[str]) -> str:
    if not layers:
        return "(none)"
    return layers[0] if len(layers) == 1 else f"{layers[0]} +{len(layers) - 1}"


def _legend(ax, cats, extra=(), loc="upper right") -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[*extra, *(Patch(color=COLOURS[c], label=c) for c in CATEGORIES if c in cats)], fontsize=8,
              loc=loc)


def _measure(p: dict[str, Any]) -> tuple[str, float, float, str]:
    """(row key, sum of kernels, end to end, axis label) of a time or an instruction-count profile."""
    if p.get("metric") == "instructions":
        return "insns", p["sum_of_kernels_insns"] / 1e6, p["end_to_end_insns"] / 1e6, "instructions (millions)"
    return "ms", p["sum_of_kernels_ms"], p["end_to_end_ms"], "median time per run (ms)"


def bar_chart(p: dict[str, Any], path: Path) -> Path:
    """One bar per kernel call in execution order, its height the median ms (or the instructions on the emulated
    device), coloured by precision."""
    plt = pyplot()
    rows = p["kernels"]
    key, total, e2e, ylabel = _measure(p)
    scale = 1e-6 if key == "insns" else 1.0
    fig, ax = plt.subplots(figsize=(max(8.0, 0.16 * len(rows) + 2), 4.8))
    ax.bar(range(len(rows)), [r[key] * scale for r in rows], color=[COLOURS[r["category"]] for r in rows],
           width=0.85)
    ax.set_xticks(range(len(rows)), [_label(r["layers"]) for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    where = "emulated aarch64" if key == "insns" else f"{p.get('threads')} thread(s)"
    ax.set_title(f"{p['model']}: per kernel call (source layers), {where}; sum {total:.2f}, whole run {e2e:.2f}",
                 fontsize=9)
    _legend(ax, {r["category"] for r in rows})
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cumulative_chart(p: dict[str, Any], path: Path) -> Path:
    """Cumulative kernel time through the model (a step per kernel call, coloured by precision), with the
    end-to-end median as a line: the gap at the right end is what no kernel accounts for."""
    plt = pyplot()
    rows = p["kernels"]
    key, _total, e2e, ylabel = _measure(p)
    scale = 1e-6 if key == "insns" else 1.0
    fig, ax = plt.subplots(figsize=(9, 4.8))
    t, ts = 0.0, []
    for r in rows:
        ax.bar(r["index"], r[key] * scale, bottom=t, color=COLOURS[r["category"]], width=1.0)
        t += r[key] * scale
        ts.append(t)
    ax.plot(range(len(rows)), ts, color="black", linewidth=1)
    lines = [ax.axhline(e2e, color="grey", linestyle="--", linewidth=1,
                        label=f"whole run{' (median)' if key == 'ms' else ''} {e2e:.2f}")]
    if p.get("end_to_end_best_ms"):  # a busy machine preempts whole runs more often than single kernels
        lines.append(ax.axhline(p["end_to_end_best_ms"], color="black", linestyle=":", linewidth=1,
                                label=f"fastest whole run {p['end_to_end_best_ms']:.2f}"))
    ax.set_ylim(0, max(t, e2e) * 1.08)
    ax.set_xlabel("kernel call, in execution order")
    ax.set_ylabel("cumulative " + ylabel.replace("median time per run", "time"))
    best = f", {p['sum_over_best']:.1%} of the fastest" if p.get("sum_over_best") else ""
    ax.set_title(f"{p['model']}: cumulative; kernels sum to {p['sum_over_end_to_end']:.1%} of a whole run{best}",
                 fontsize=9)
    _legend(ax, {r["category"] for r in rows}, lines, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_charts(p: dict[str, Any], prefix: Path) -> list[Path]:
    """``PREFIX-layers.png`` and ``PREFIX-cumulative.png``."""
    prefix = Path(prefix)
    return [bar_chart(p, prefix.with_name(prefix.name + "-layers.png")),
            cumulative_chart(p, prefix.with_name(prefix.name + "-cumulative.png"))]
