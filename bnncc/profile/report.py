"""The per-layer profile of a compiled model: each kernel call with the source layers it computes, its MACs per
precision, its median time, achieved G-MAC/s and fraction of this machine's roofline for that precision, its share
of the total; every source layer of the model mapped to the kernel calls that compute it; the sum of the kernel
times reconciled against the end-to-end median latency. Plain data (JSON-ready dicts) and a terminal table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BnnccError
from ..provenance import PRECISIONS
from .measure import Timings

# What a kernel computes in, for the charts and the RQ1 shares: its MACs' precision, else (no MACs) whether it
# runs bnncc's binary data ops (bitpack, binary max-pool) or float ones (pooling, adds, softmax, ...).
CATEGORIES = ("binary", "int8", "float", "binary, no MACs", "float, no MACs")
BINARY_CATEGORIES = ("binary", "binary, no MACs")


def category(kernel: dict[str, Any]) -> str:
    macs = kernel.get("macs", {})
    for p in PRECISIONS:
        if macs.get(p):
            return p
    return "binary, no MACs" if kernel.get("bnncc") else "float, no MACs"


def kernel_record(signature: dict[str, Any] | None) -> list[dict[str, Any]]:
    kernels = (signature or {}).get("kernels")
    if not kernels:
        raise BnnccError("this library records no kernel-to-layer table (built by an older bnncc): recompile it")
    return kernels


def _rows(signature: dict[str, Any], values, key: str) -> list[dict[str, Any]]:
    """One row per recorded kernel call: its layers (in model order), precision, MACs, ``key`` = its value
    (ms or instructions) and share of the sum."""
    order = {name: i for i, (name, _kind) in enumerate(signature.get("layers", []))}
    total = float(sum(values))
    rows = []
    for i, (k, v) in enumerate(zip(kernel_record(signature), values, strict=True)):
        rows.append({"index": i, "kernel": k["kernel"],
                     "layers": sorted(k["layers"], key=lambda name: order.get(name, len(order))),
                     "category": category(k), "macs": {p: int(k.get("macs", {}).get(p, 0)) for p in PRECISIONS},
                     key: v, "share": v / total if total else 0.0})
    return rows


def _layer_view(signature: dict[str, Any], rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Every source layer with the kernel calls computing it; the totals by precision and of MACs."""
    covered: dict[str, list[int]] = {}
    for r in rows:
        for name in r["layers"]:
            covered.setdefault(name, []).append(r["index"])
    layers = [{"name": name, "kind": kind, "kernels": covered.get(name, [])}
              for name, kind in signature.get("layers", [])]
    return {f"{key}_by_category": {c: sum(r[key] for r in rows if r["category"] == c) for c in CATEGORIES},
            "macs": {p: sum(r["macs"][p] for r in rows) for p in PRECISIONS},
            "memory": signature.get("memory"), "kernels": rows, "layers": layers,
            "layers_without_kernel": [x["name"] for x in layers if not x["kernels"]]}


def build_profile(signature: dict[str, Any], timings: Timings, roofline: dict[str, float],
                  meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile of one model (see the module doc). ``roofline``: G-MAC/s per precision measured on this
    machine with the same thread count (a precision without a measured roofline gets no fraction)."""
    rows = _rows(signature, [float(v) for v in timings.kernel_median_s() * 1e3], "ms")
    for r in rows:
        n = sum(r["macs"].values())
        r["gmacs"] = n / (r["ms"] * 1e-3) / 1e9 if n and r["ms"] > 0 else None
        peak = roofline.get(r["category"])
        r["roofline_fraction"] = r["gmacs"] / peak if r["gmacs"] and peak else None
    e2e_ms = float(np.median(timings.end_to_end_s)) * 1e3
    total = float(sum(r["ms"] for r in rows))
    # On a busy machine a whole run (milliseconds) is often preempted, a single kernel rarely: the per-kernel
    # medians filter out what the end-to-end median keeps. Two views that do not mix the two: the kernel time of
    # each instrumented run (median over runs: as exposed to preemption as a plain run), and the fastest runs.
    per_run_ms = float(np.median(timings.kernel_s.sum(axis=1))) * 1e3
    best_ms = float(np.min(timings.end_to_end_s)) * 1e3
    return {"model": signature.get("model"), "target": signature.get("target", {}).get("name"),
            **(meta or {}), "roofline_gmacs": roofline, "end_to_end_ms": e2e_ms, "sum_of_kernels_ms": total,
            "sum_over_end_to_end": total / e2e_ms if e2e_ms else None, "runs": int(timings.kernel_s.shape[0]),
            "kernels_per_run_median_ms": per_run_ms, "per_run_over_end_to_end": per_run_ms / e2e_ms,
            "end_to_end_best_ms": best_ms, "sum_over_best": total / best_ms,
            **_layer_view(signature, rows, "ms")}


def _label(layers: Sequence[str], width: int = 44) -> str:
    text = " + ".join(layers) if layers else "(no source layer)"
    return text if len(text) <= width else text[:width - 1] + "…"


def _mmacs(macs: dict[str, int]) -> str:
    parts = [f"{v / 1e6:.1f}{p[0]}" for p, v in macs.items() if v]
    return " ".join(parts) or "-"


def _layers_line(p: dict[str, Any]) -> str:
    missing = p["layers_without_kernel"]
    return (f"{len(p['layers'])} source layers, each in a kernel above"
            + (f" except {len(missing)} that compute nothing at run time (identities, reshapes, or folded at "
               f"compile time): {', '.join(missing)}" if missing else ""))


def build_insn_profile(signature: dict[str, Any], counts: dict[str, Any],
                       meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile of an aarch64 library on the emulated device: instructions per kernel call instead of times
    (``counts`` from :func:`bnncc.device.layer_insns.kernel_insns`), MACs per instruction instead of G-MAC/s."""
    rows = _rows(signature, [int(n) for n in counts["kernels"]], "insns")
    for r in rows:
        n = sum(r["macs"].values())
        r["macs_per_insn"] = n / r["insns"] if n and r["insns"] else None
    total = int(sum(r["insns"] for r in rows))
    return {"model": signature.get("model"), "target": signature.get("target", {}).get("name"), **(meta or {}),
            "metric": "instructions", "end_to_end_insns": int(counts["end_to_end"]), "sum_of_kernels_insns": total,
            "sum_over_end_to_end": total / counts["end_to_end"] if counts["end_to_end"] else None,
            "marker_overhead_insns": counts.get("marker_overhead"), **_layer_view(signature, rows, "insns")}


def _cell(v, fmt: str, width: int) -> str:
    return format(v, fmt) if v else f"{'-':>{width}s}"


def _table(p: dict[str, Any], top: int | None, key: str, extra: list[tuple[str, int, Any]]) -> list[str]:
    """Kernel calls in execution order (or the ``top`` largest by ``key``); ``extra``: (title, width, row →
    cell) columns after the common ones."""
    rows = p["kernels"] if top is None else sorted(p["kernels"], key=lambda r: -r[key])[:top]
    head = f"{'#':>3} {'source layers':44s} {'precision':15s} {'MMACs':>12s} " + \
        " ".join(f"{t:>{w}s}" for t, w, _ in extra)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['index']:3d} {_label(r['layers']):44s} {r['category']:15s} {_mmacs(r['macs']):>12s} "
                     + " ".join(cell(r) for _, _, cell in extra))
    return [*lines, "-" * len(head)]


def format_profile(p: dict[str, Any], top: int | None = None) -> str:
    """The terminal table: kernel calls in execution order (or the ``top`` slowest), then the reconciliation."""
    if p.get("metric") == "instructions":
        return format_insn_profile(p, top)
    lines = _table(p, top, "ms", [("ms", 8, lambda r: f"{r['ms']:8.3f}"), ("share", 6, lambda r: f"{r['share']:6.1%}"),
                                  ("GMAC/s", 8, lambda r: _cell(r["gmacs"], "8.1f", 8)),
                                  ("roof", 5, lambda r: _cell(r["roofline_fraction"], "5.0%", 5))])
    lines.append(f"sum of {len(p['kernels'])} kernel calls {p['sum_of_kernels_ms']:.3f} ms = "
                 f"{p['sum_over_end_to_end']:.1%} of the end-to-end median {p['end_to_end_ms']:.3f} ms "
                 f"({p['runs']} runs each)")
    if p.get("kernels_timed") == "in isolation":
        lines.append(f"  on {p.get('device')}: each kernel timed alone on random tensors of its argument shapes, "
                     "repeated back-to-back (caches warm with its own data), not in place as on this machine; the "
                     f"sum = {p['sum_over_best']:.1%} of the fastest whole run {p['end_to_end_best_ms']:.3f} ms; "
                     "no roofline measured on the device")
    else:
        lines.append(f"  same runs, like with like: kernel time per instrumented run (median) "
                     f"{p['kernels_per_run_median_ms']:.3f} ms = {p['per_run_over_end_to_end']:.1%} of it; the sum "
                     f"= {p['sum_over_best']:.1%} of the fastest run {p['end_to_end_best_ms']:.3f} ms (a busy "
                     "machine preempts whole runs more often than single kernels)")
    shares = ", ".join(f"{c} {ms / p['sum_of_kernels_ms']:.0%}" for c, ms in p["ms_by_category"].items() if ms)
    lines += [f"by precision: {shares}", _layers_line(p)]
    m = p.get("memory")
    if m:
        lines.append(f"memory: peak activations {m['peak_activation_bytes'] / 2**10:.1f} KiB (memory plan), "
                     f"weights {m['weight_bytes'] / 2**10:.1f} KiB")
    return "\n".join(lines)


def format_insn_profile(p: dict[str, Any], top: int | None = None) -> str:
    """The terminal table of an instruction-count profile (emulated aarch64)."""
    lines = _table(p, top, "insns", [("M insns", 9, lambda r: f"{r['insns'] / 1e6:9.3f}"),
                                     ("share", 6, lambda r: f"{r['share']:6.1%}"),
                                     ("MACs/insn", 9, lambda r: _cell(r["macs_per_insn"], "9.2f", 9))])
    lines += [f"sum of {len(p['kernels'])} kernel calls {p['sum_of_kernels_insns'] / 1e6:.3f} M instructions = "
              f"{p['sum_over_end_to_end']:.1%} of a whole run's {p['end_to_end_insns'] / 1e6:.3f} M (emulated "
              f"aarch64, exact counts; {p['marker_overhead_insns']} marker instructions subtracted per kernel)",
              _layers_line(p)]
    return "\n".join(lines)
