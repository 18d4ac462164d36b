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


def bar_chart(p: dict[str, Any], path: Path) -> Path:
    """One bar per kernel call in execution order, its height the median ms, coloured by precision."""
    plt = pyplot()
    rows = p["kernels"]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.16 * len(rows) + 2), 4.8))
    ax.bar(range(len(rows)), [r["ms"] for r in rows], color=[COLOURS[r["category"]] for r in rows], width=0.85)
    ax.set_xticks(range(len(rows)), [_label(r["layers"]) for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("median time per run (ms)")
    ax.set_title(f"{p['model']}: time per kernel call (source layers), {p.get('threads')} thread(s); "
                 f"sum {p['sum_of_kernels_ms']:.2f} ms, end-to-end {p['end_to_end_ms']:.2f} ms", fontsize=9)
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
    fig, ax = plt.subplots(figsize=(9, 4.8))
    t = 0.0
    for r in rows:
        ax.bar(r["index"], r["ms"], bottom=t, color=COLOURS[r["category"]], width=1.0)
        t += r["ms"]
    ax.plot(range(len(rows)), [sum(x["ms"] for x in rows[:i + 1]) for i in range(len(rows))], color="black",
            linewidth=1)
    line = ax.axhline(p["end_to_end_ms"], color="grey", linestyle="--", linewidth=1,
                      label=f"end-to-end median {p['end_to_end_ms']:.2f} ms")
    ax.set_ylim(0, max(t, p["end_to_end_ms"]) * 1.08)
    ax.set_xlabel("kernel call, in execution order")
    ax.set_ylabel("cumulative time (ms)")
    ax.set_title(f"{p['model']}: cumulative time; kernels sum to {p['sum_over_end_to_end']:.1%} of end-to-end",
                 fontsize=9)
    _legend(ax, {r["category"] for r in rows}, [line], loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_charts(p: dict[str, Any], prefix: Path) -> list[Path]:
    """``PREFIX-layers.png`` and ``PREFIX-cumulative.png``."""
    prefix = Path(prefix)
    return [bar_chart(p, prefix.with_name(prefix.name + "-layers.png")),
            cumulative_chart(p, prefix.with_name(prefix.name + "-cumulative.png"))]
