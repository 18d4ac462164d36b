"""Result tables (plain text and Markdown) and result files (``.md`` with the run's metadata, ``.json``)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bnncc.outputs import atomic_write


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


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (columns: ``columns`` or every key, in order of appearance)."""
    cols = _columns(rows, columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(out)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
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
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": {
            "tensorflow": _version("tensorflow"),
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
        lines += ["", markdown_table(rows, columns), ""]
        if notes:
            lines += [f"- {n}" for n in notes] + [""]
        Path(path_md).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path_md, "\n".join(lines))
    if path_json is not None:
        Path(path_json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path_json,
                     json.dumps({"meta": full_meta, "rows": list(rows)}, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Callable):  # type: ignore[arg-type]
        return repr(o)
    return str(o)
