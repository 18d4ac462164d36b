"""``bnncc analyze``: the LCE paper's architecture questions (RQ1–RQ3) answered on this machine, for the zoo and
any model given, in one report (``DIR/report.md`` with its figures, ``DIR/analysis.json`` with every number).

RQ1: where each network's latency goes, by precision (binary vs full-precision kernels), from its profile.
RQ2: what QuickNet's full-precision shortcuts cost: its stages with vs without them (:mod:`.blocks`).
RQ3: how well MAC counts predict latency across networks: a least-squares line, its correlation, the networks
far off it named, with what their profiles say of why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..cli_common import keras_model

ZOO = ("quicknet_small", "quicknet", "quicknet_large", "birealnet18", "binary_alexnet", "binary_resnet_e18")


def _compile(model, name: str, target: str = "host"):
    from .. import compile as bnncc_compile

    return bnncc_compile(model, target, tuning_log="auto", name=name)


def _binary_gmacs(p: dict[str, Any]) -> float:
    rows = [r for r in p["kernels"] if r["category"] == "binary"]
    ms = sum(r["ms"] for r in rows)
    return sum(r["macs"]["binary"] for r in rows) / (ms * 1e-3) / 1e9 if ms else 0.0


def shortcut_costs(threads: int, repeats: int, progress: Callable[[str], None], shapes=None,
                   roofline: dict[str, float] | None = None) -> list[dict]:
    """RQ2: each QuickNet stage's median latency with and without its float shortcuts, and the binary convs'
    throughput in each (from their profiles)."""
    from ..profile import profile
    from . import blocks

    shapes = shapes or blocks.QUICKNET_STAGES
    rows = []
    for i, (label, with_sc, without) in enumerate(blocks.stages(shapes), 1):
        progress(f"bnncc analyze: RQ2 [{i}/{len(shapes)}] stage {label}: compiling and profiling both variants")
        pw, pwo = (profile(_compile(m, m.name), threads=threads, repeats=repeats, roofline=roofline)
                   for m in (with_sc, without))
        w, wo = pw["end_to_end_ms"], pwo["end_to_end_ms"]
        rows.append({"stage": label, "blocks": blocks.BLOCKS_PER_STAGE, "with_ms": w, "without_ms": wo,
                     "shortcut_share": (w - wo) / w if w else 0.0, "conv_gmacs_with": _binary_gmacs(pw),
                     "conv_gmacs_without": _binary_gmacs(pwo)})
    return rows


def run(models: Sequence[str] = ZOO, out: str | Path = "bnncc-analysis", *, threads: int | None = None,
        repeats: int = 30, input_size: int = 224, rq2: bool = True, aarch64: bool = False,
        rq2_shapes: Sequence[tuple[int, int]] | None = None,
        progress: Callable[[str], None] | None = None) -> Path:
    """Profile every model, run RQ2, write ``out/report.md`` (+ figures, profiles, analysis.json); returns it.
    ``aarch64``: also count each model's instructions per kernel on the emulated aarch64 device (RQ3 there)."""
    from ..compare import roofline as R
    from ..compare.results import collect_meta
    from ..profile import measure_roofline, profile, profile_emulated
    from ..profile.plots import bar_chart, pyplot
    from ..tune.util import atomic_write, say
    from . import report

    progress = progress or say
    pyplot()  # fail before the long work when matplotlib is missing
    out = Path(out)
    (out / "profiles").mkdir(parents=True, exist_ok=True)
    threads = threads or R.cores_available()
    t0 = time.monotonic()
    progress(f"bnncc analyze: measuring the roofline ({threads} thread(s))")
    roof = measure_roofline(threads)
    profiles: dict[str, dict[str, Any]] = {}
    emulated: dict[str, dict[str, Any]] = {}
    for i, spec in enumerate(models, 1):
        progress(f"bnncc analyze: [{i}/{len(models)}] {spec}: building and compiling "
                 f"({time.monotonic() - t0:.0f} s so far)")
        model, _path = keras_model(spec, input_size)
        name = Path(spec).stem
        exe = _compile(model, name)
        progress(f"bnncc analyze: [{i}/{len(models)}] {name}: profiling ({repeats} runs)")
        p = profile(exe, threads=threads, repeats=repeats, roofline=roof)
        p["params"] = int(model.count_params())
        profiles[name] = p
        atomic_write(out / "profiles" / f"{name}.json", json.dumps(p, indent=1) + "\n")
        bar_chart(p, out / "profiles" / f"{name}-layers.png")
        if aarch64:
            progress(f"bnncc analyze: [{i}/{len(models)}] {name}: compiling for aarch64, counting instructions on "
                     "the emulated device")
            e = profile_emulated(_compile(model, name, "aarch64"))
            emulated[name] = e
            atomic_write(out / "profiles" / f"{name}-aarch64.json", json.dumps(e, indent=1) + "\n")
            bar_chart(e, out / "profiles" / f"{name}-aarch64-layers.png")
    sc = shortcut_costs(threads, repeats, progress, rq2_shapes, roof) if rq2 else []
    meta = collect_meta(threads, isa_path=R.isa_path(), roofline_gmacs=roof, input_size=input_size,
                        seconds=round(time.monotonic() - t0, 1))
    results = report.analysis(profiles, sc, meta, emulated)
    atomic_write(out / "analysis.json", json.dumps(results, indent=1) + "\n")
    path = report.write(results, profiles, out)
    progress(f"bnncc analyze: wrote {path} in {time.monotonic() - t0:.0f} s")
    return path
