"""The analysis as data (:func:`analysis`) and as ``report.md`` with its figures (:func:`write`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..compare.results import markdown_table
from . import figures
from .stats import fit, float_share, outliers, shares, slow_kernels, total_macs, why

LCE_PIXEL1 = ("the LCE paper (Bannink et al., MLSys 2021) found on a Pixel 1 that MAC counts do not predict "
              "latency across architectures: BinaryAlexNet took about twice the latency of networks with similar "
              "MACs")


def analysis(profiles: dict[str, dict[str, Any]], shortcut_rows: list[dict[str, Any]], meta: dict[str, Any],
             emulated: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every number of the report: per network, RQ1 shares, RQ2 rows, RQ3 fits (MACs and a roofline estimate on
    this machine; MACs vs instructions on the emulated aarch64 device when ``emulated`` has its profiles)."""
    emulated = emulated or {}
    roof = meta.get("roofline_gmacs", {})
    nets = []
    for name, p in profiles.items():
        # the roofline estimate: each precision's MACs at that precision's measured peak
        est_ms = sum(p["macs"].get(k, 0) / (roof[k] * 1e9) * 1e3 for k in ("binary", "float") if roof.get(k))
        nets.append({"name": name, "params": p.get("params"), "binary_macs": p["macs"]["binary"],
                     "float_macs": p["macs"]["float"], "total_macs": total_macs(p), "latency_ms": p["end_to_end_ms"],
                     "sum_over_end_to_end": p["sum_over_end_to_end"], "float_share": float_share(p),
                     "per_run_over_end_to_end": p.get("per_run_over_end_to_end"),
                     "best_ms": p.get("end_to_end_best_ms"), "sum_of_kernels_ms": p["sum_of_kernels_ms"],
                     "shares": shares(p), "roofline_estimate_ms": est_ms, "memory": p.get("memory"),
                     "aarch64_insns": emulated[name]["end_to_end_insns"] if name in emulated else None})
    # in the units of the figures: millions of MACs, ms, millions of instructions (r and ratios do not care).
    # Latency: the sum of the per-kernel medians, which the profile reconciles with the fastest whole runs and
    # which preemption on a shared machine disturbs far less than whole-run medians (also fitted, below).
    macs_fit = fit([n["total_macs"] / 1e6 for n in nets], [n["sum_of_kernels_ms"] for n in nets])
    median_fit = fit([n["total_macs"] / 1e6 for n in nets], [n["latency_ms"] for n in nets])
    est_fit = fit([n["roofline_estimate_ms"] for n in nets], [n["sum_of_kernels_ms"] for n in nets])
    best_fit = fit([n["total_macs"] / 1e6 for n in nets], [n["best_ms"] or 0.0 for n in nets])
    names = [n["name"] for n in nets]
    arm = [n for n in nets if n["aarch64_insns"] is not None]
    arm_fit = None
    if arm:
        arm_fit = fit([n["total_macs"] / 1e6 for n in arm], [n["aarch64_insns"] / 1e6 for n in arm])
        arm_fit["outliers"] = outliers([n["name"] for n in arm], arm_fit["ratios"])
    return {"meta": meta, "networks": nets, "rq2": shortcut_rows,
            "rq3": {"macs": {**macs_fit, "outliers": outliers(names, macs_fit["ratios"])},
                    "roofline_estimate": {**est_fit, "outliers": outliers(names, est_fit["ratios"])},
                    "macs_vs_best_run": {**best_fit, "outliers": outliers(names, best_fit["ratios"])},
                    "macs_vs_median": {**median_fit, "outliers": outliers(names, median_fit["ratios"])},
                    "aarch64": arm_fit}}


def _pct(v: float) -> str:
    return f"{v:.0%}"


def _rq2_finding(rows: list[dict[str, Any]]) -> str:
    cheaper = [r for r in rows if r["shortcut_share"] < 0]
    mean = sum(r["shortcut_share"] for r in rows) / len(rows)
    text = f"Mean shortcut share {mean:+.0%}. "
    if cheaper:
        text += (f"In {len(cheaper)} of {len(rows)} stages the network *without* shortcuts is slower: its convs "
                 "emit packed bits through the threshold epilogue, whose binary convs run at "
                 + ", ".join(f"{r['conv_gmacs_without']:.0f}" for r in cheaper) + " G-MAC/s against "
                 + ", ".join(f"{r['conv_gmacs_with']:.0f}" for r in cheaper) + " with the float epilogue + add + "
                 "pack: on this machine bnncc's packed-output epilogue, not the float shortcut, is what costs.")
    else:
        text += "The float shortcuts cost that share of each stage's latency."
    return text


def write(results: dict[str, Any], profiles: dict[str, dict[str, Any]], out: Path) -> Path:
    out = Path(out)
    meta, nets, rq3 = results["meta"], results["networks"], results["rq3"]
    figs = {"rq1": figures.rq1(profiles, out / "rq1-latency-by-precision.png")}
    if results["rq2"]:
        figs["rq2"] = figures.rq2(results["rq2"], out / "rq2-shortcuts.png")
    pts = [{"name": n["name"], "x": n["total_macs"] / 1e6, "y": n["sum_of_kernels_ms"]} for n in nets]
    figs["rq3"] = figures.rq3(pts, rq3["macs"], out / "rq3-macs-vs-latency.png", "MACs (millions, binary + float)",
                              "latency (ms, sum of per-kernel medians)", "RQ3: MACs vs latency on this machine")
    arm_nets = [n for n in nets if n["aarch64_insns"] is not None]
    if rq3["aarch64"]:
        pts = [{"name": n["name"], "x": n["total_macs"] / 1e6, "y": n["aarch64_insns"] / 1e6} for n in arm_nets]
        figs["rq3-aarch64"] = figures.rq3(pts, rq3["aarch64"], out / "rq3-aarch64-macs-vs-instructions.png",
                                          "MACs (millions, binary + float)", "instructions (millions)",
                                          "RQ3 on the emulated aarch64 device: MACs vs instructions")
    roof = meta.get("roofline_gmacs", {})
    L = [f"# bnncc analyze: {len(nets)} networks on this machine", "",
         f"CPU: {meta.get('cpu')} ({meta.get('cpu_count')} cores), {meta.get('threads')} thread(s), popcount ISA "
         f"path `{meta.get('isa_path')}`; roofline measured in this run: binary {roof.get('binary', 0):.0f} "
         f"G-MAC/s (popcount probe), float {roof.get('float', 0):.0f} G-MAC/s (FMA probe). Input "
         f"{meta.get('input_size')}×{meta.get('input_size')}, batch 1, random weights with calibrated BatchNorm. "
         f"Load average at the end {meta.get('loadavg')}: the machine is shared, so absolute times are noisy; "
         f"shares and ratios are what to read. Written by `bnncc analyze` in {meta.get('seconds')} s.", "",
         "| network | params | binary MMACs | float MMACs | latency ms (median; fastest) | kernels / end-to-end "
         "(sum; per run) | float share | peak activations KiB | weights KiB |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in nets:
        m = n["memory"] or {}
        L.append(f"| {n['name']} | {n['params'] or 0:,} | {n['binary_macs'] / 1e6:.0f} | {n['float_macs'] / 1e6:.0f} "
                 f"| {n['latency_ms']:.2f}; {n['best_ms'] or 0:.2f} | {_pct(n['sum_over_end_to_end'])}; "
                 f"{_pct(n['per_run_over_end_to_end'] or 0)} | {_pct(n['float_share'])} | "
                 f"{m.get('peak_activation_bytes', 0) / 1024:.0f} | {m.get('weight_bytes', 0) / 1024:.0f} |")
    L += ["", "Latency: median (and fastest) of uninstrumented runs. Kernels / end-to-end: the per-kernel medians "
          "summed, over the median latency; and the kernel time of each instrumented run (median over runs), over "
          "it: the second compares like with like when the machine is busy (a whole run is preempted more often "
          "than a single kernel, which the per-kernel medians filter out). The rest is the VM's own work "
          "(allocation, dispatch). Memory: the peak of the static memory plan's live storages, and the constant "
          "weights as stored (binary ones bit-packed).", "",
          "## RQ1: where the latency goes", "", f"![RQ1]({figs['rq1'].name})", ""]
    top = max(nets, key=lambda n: n["float_share"])
    low = min(nets, key=lambda n: n["float_share"])
    L += [f"Full-precision kernels (float convolutions and dense layers, and float ops without MACs: pooling, "
          f"adds, softmax) take from {_pct(low['float_share'])} ({low['name']}) to {_pct(top['float_share'])} "
          f"({top['name']}) of the latency, while computing "
          + ", ".join(f"{n['name']} {n['float_macs'] / max(n['total_macs'], 1):.1%}" for n in nets)
          + " of the MACs. Per network:", ""]
    for name, p in profiles.items():
        L.append(f"- **{name}**: {why(p)}.")
    if results["rq2"]:
        L += ["", "## RQ2: full-precision shortcuts", "", f"![RQ2]({figs['rq2'].name})", "",
              markdown_table([{"stage": r["stage"], "blocks": r["blocks"], "with shortcuts ms": round(r["with_ms"], 4),
                               "without ms": round(r["without_ms"], 4),
                               "shortcuts' share": _pct(r["shortcut_share"]),
                               "binary conv G-MAC/s with / without":
                                   f"{r['conv_gmacs_with']:.0f} / {r['conv_gmacs_without']:.0f}"}
                              for r in results["rq2"]]), "",
              "Each stage is QuickNet's residual block (binary 3×3 conv, ReLU, BatchNorm, `x + shortcut`) four "
              "times at that stage's shape. Without the shortcut, BatchNorm and the next sign fold into the conv, "
              "which writes packed bits (integer thresholds); with it, every block writes its float output, adds "
              "the float shortcut and packs again — bnncc fuses the add and the packing into the conv's epilogue. "
              "The share is (with − without) / with; the conv throughput is the binary kernels' MACs over their "
              "time in each variant's profile.", "", _rq2_finding(results["rq2"])]
    mf, ef = rq3["macs"], rq3["roofline_estimate"]
    out_names = ", ".join(f"{n} ({r:.1f}× the fit)" for n, r in mf["outliers"]) or "none"
    L += ["", "## RQ3: do MACs predict latency?", "", f"![RQ3]({figs['rq3'].name})", "",
          f"On this machine (x86, {meta.get('isa_path')}): latency (the sum of the per-kernel medians) vs total "
          f"MACs, least-squares fit, Pearson r = {mf['r']:.2f} (r² = {mf['r'] ** 2:.2f}) over {len(nets)} "
          f"networks; networks ≥ 1.5× off the fit: {out_names}. Weighting each precision's MACs by its measured "
          f"roofline (binary MACs at the popcount peak, float MACs at the FMA peak) gives r = {ef['r']:.2f}. The "
          f"same fit on the fastest whole run: r = {rq3['macs_vs_best_run']['r']:.2f}; on the whole-run median: "
          f"r = {rq3['macs_vs_median']['r']:.2f} (the median is the most exposed to this shared machine's "
          "preemption).", "",
          "| network | MMACs | latency ms (kernel sum) | latency / fit | kernels under 25 % of their roofline |",
          "|---|---:|---:|---:|---|"]
    for n, r in zip(nets, mf["ratios"], strict=True):
        L.append(f"| {n['name']} | {n['total_macs'] / 1e6:.0f} | {n['sum_of_kernels_ms']:.2f} | "
                 f"{'-' if r is None else f'{r:.2f}'} | {slow_kernels(profiles[n['name']])} |")
    af = rq3["aarch64"]
    if af:
        arm_out = ", ".join(f"{n} ({r:.1f}× the fit)" for n, r in af["outliers"]) or "none"
        arm_cell = f"r = {af['r']:.2f} (instructions vs MACs); off the fit: {arm_out}"
        L += ["", f"![RQ3 aarch64]({figs['rq3-aarch64'].name})", "",
              "On the emulated aarch64 device (qemu-user, exact instruction counts, one thread, NEON kernels): "
              f"instructions of a whole run vs MACs, Pearson r = {af['r']:.2f}; networks ≥ 1.5× off the fit: "
              f"{arm_out}. Instructions are not time (no caches, no memory stalls are modelled), so this "
              "isolates the instruction mix: binary MACs per instruction vs float ones.", "",
              "| network | MMACs | M instructions | instructions / fit |", "|---|---:|---:|---:|"]
        for n, r in zip(arm_nets, af["ratios"], strict=True):
            L.append(f"| {n['name']} | {n['total_macs'] / 1e6:.0f} | {n['aarch64_insns'] / 1e6:.1f} | "
                     f"{'-' if r is None else f'{r:.2f}'} |")
    else:
        arm_cell = "not measured in this run (`bnncc analyze --aarch64`)"
    L += ["", "| | this machine (x86) | aarch64 emulated device | LCE paper, Pixel 1 |", "|---|---|---|---|",
          f"| MACs vs latency | r = {mf['r']:.2f}; off the fit: {out_names} | {arm_cell} | {LCE_PIXEL1} |", ""]
    if "binary_alexnet" in profiles:
        a = next(n for n in nets if n["name"] == "binary_alexnet")
        L += [f"BinaryAlexNet here: {a['latency_ms']:.2f} ms for {a['total_macs'] / 1e6:.0f} M MACs; "
              f"{why(profiles['binary_alexnet'])}.", ""]
    path = out / "report.md"
    path.write_text("\n".join(L) + "\n")
    return path
