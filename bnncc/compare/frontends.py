"""The same network through bnncc's two front doors: the Keras/Larq model imported directly, and the ``.tflite``
that LCE's converter (``larq_compute_engine.convert_keras_model``) writes from it, imported by bnncc's TFLite/LCE
frontend. Both compiled for this machine, timed interleaved in one process at 1 thread, with LCE's own
interpreter (indirect BGEMM, its fastest x86 path) on the same ``.tflite`` as the reference
(``benchmarks/bench_frontends.py``; docs/benchmarks.md).

    python -m benchmarks.bench_frontends [--networks quicknet_small,quicknet,birealnet18] [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import roofline as R
from .layers import BnnccRunner, rel_err
from .results import collect_meta, print_table, write_results
from .timing import median_times

NETWORKS = ("quicknet_small", "quicknet", "birealnet18")
MD_COLUMNS = ["network", "input", ".tflite / Keras", "LCE / Keras", "binary ops Keras/.tflite",
              "float ops Keras/.tflite", "rel err .tflite vs Keras", "rel err Keras vs LCE",
              "output shapes Keras/.tflite/LCE"]
COLUMNS = ["network", "input", "Keras import ms", ".tflite import ms", "LCE ms", ".tflite / Keras",
           "LCE / Keras", "binary ops Keras/.tflite", "float ops Keras/.tflite", "rel err .tflite vs Keras",
           "rel err Keras vs LCE", "output shapes Keras/.tflite/LCE"]


def zoo_entries(names: Sequence[str], input_size: int = 224, seed: int = 0) -> list[tuple[str, object]]:
    """(name, Keras model) of ``bnncc.models`` zoo networks: seeded random weights, calibrated BatchNorm."""
    from bnncc import models

    return [(name, models.build(name, (input_size, input_size, 3), seed=seed)) for name in names]


def bench_frontends(entries: Sequence[tuple[str, object]], *, repeats: int = 30, warmup: int = 3,
                    burst_ms: float = 2.0, seed: int = 0, tuning_log: str | None = "auto") -> list[dict]:
    """One row per (name, Keras model): median ms of the Keras-imported and the .tflite-imported library and of
    LCE's interpreter, interleaved round-robin at 1 thread, their ratios, the op counts after bnncc's graph phase,
    and the outputs' agreement on one random N(0, 1) input (reported, not asserted: see
    networks.bench_networks)."""
    import bnncc

    from .contenders import LceRunner, lce_convert

    R.ensure_thread_pool(1)
    R.set_tvm_threads(1)
    rows = []
    for name, keras_model in entries:
        shape = tuple(int(d) if d is not None else 1 for d in keras_model.inputs[0].shape)
        flatbuffer = lce_convert(keras_model)
        from_keras = bnncc.compile(keras_model, tuning_log=tuning_log)
        with tempfile.TemporaryDirectory(prefix="bnncc-frontends-") as td:
            path = Path(td) / f"{name}.tflite"
            path.write_bytes(flatbuffer)
            from_tflite = bnncc.compile(str(path), tuning_log=tuning_log)
        runners = {"keras": BnnccRunner(from_keras), "tflite": BnnccRunner(from_tflite),
                   "lce": LceRunner(None, 1, True, flatbuffer=flatbuffer)}
        x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
        outs = {k: np.asarray(r(x)) for k, r in runners.items()}
        shapes = {k: tuple(o.shape) for k, o in outs.items()}
        # compared as flat vectors: a .tflite may keep a model's trailing 1×1 spatial dims (recorded in the row)
        outs = {k: o.reshape(-1) for k, o in outs.items()}
        ms = median_times(runners, x, repeats, warmup, burst_ms)
        rows.append({
            "network": name, "input": "x".join(map(str, shape[1:])), "Keras import ms": ms["keras"],
            ".tflite import ms": ms["tflite"], "LCE ms": ms["lce"], ".tflite / Keras": ms["tflite"] / ms["keras"],
            "LCE / Keras": ms["lce"] / ms["keras"],
            "binary ops Keras/.tflite": f"{from_keras.stats.get('binary_ops')}/{from_tflite.stats.get('binary_ops')}",
            "float ops Keras/.tflite": f"{from_keras.stats.get('float_ops')}/{from_tflite.stats.get('float_ops')}",
            "rel err .tflite vs Keras": rel_err(outs["tflite"], outs["keras"]),
            "rel err Keras vs LCE": rel_err(outs["keras"], outs["lce"]),
            "output shapes Keras/.tflite/LCE": " / ".join("x".join(map(str, v)) for v in shapes.values()),
        })
        print_table([_display(rows[-1])], COLUMNS)
    return rows


def _display(row: dict) -> dict:
    return {k: (f"{v:.1e}" if k.startswith("rel err") else f"{v:.3f}" if isinstance(v, float) else v)
            for k, v in row.items()}


def notes(meta: dict) -> list[str]:
    """What the results file says about how it was measured (from its metadata)."""
    load = {k: tuple(round(v, 2) for v in meta[k]) for k in ("loadavg_before", "loadavg_after")}
    return [
        f"Medians of {meta['repeats']} rounds after {meta['warmup']} warm-up rounds, 1 thread; the three contenders "
        f"interleaved round-robin in one process, each sample the median of a warm burst of about "
        f"{meta['burst_ms']:g} ms. bnncc: one Relax VM call (input already a TVM tensor); LCE: its Python predict "
        "(Invoke + input/output copies) of the same .tflite bnncc imported, indirect BGEMM.",
        "Keras import: bnncc.compile(keras_model); .tflite import: bnncc.compile(path) of "
        "larq_compute_engine.convert_keras_model(keras_model); both with the committed tuning log of this CPU "
        f"({meta['tuning_log']}). Seeded random weights with calibrated BatchNorm (bnncc.models.build).",
        "The machine is shared (2 vCPUs, other jobs running): only ratios of times measured side by side are "
        f"shown (the JSON has the milliseconds). Load average (1, 5, 15 min) before {load['loadavg_before']}, "
        f"after {load['loadavg_after']}.",
        "binary/float ops: counted after bnncc's graph phase (Executable.stats). rel err: max |a − b| / max |b| "
        "of the flattened outputs on one N(0, 1) input, reported, not asserted.",
    ]


def write(base: Path, rows: Sequence[dict], meta: dict) -> None:
    """``base``.md (ratios only) and ``base``.json (everything)."""
    title = "bnncc: the same network through the Keras and the LCE .tflite frontends"
    write_results(base.with_name(base.name + ".md"), None, [_display(r) for r in rows], meta, columns=MD_COLUMNS,
                  title=title, notes=notes(meta))
    write_results(None, base.with_name(base.name + ".json"), rows, meta, columns=COLUMNS, title=title,
                  notes=notes(meta))


def main(argv: list[str] | None = None, *, default_out: Path | None = None) -> int:
    from .x86 import results_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated bnncc.models zoo names")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--burst-ms", type=float, default=2.0, help="warm bursts of about this many ms per contender "
                                                               "per round (0: one cold call)")
    p.add_argument("--tuning-log", default="auto", help="'auto' (as bnncc compile) or 'none'")
    p.add_argument("--roofline-seconds", type=float, default=0.05)
    p.add_argument("--out", default=str(default_out or results_dir() / "frontends"),
                   help="results path without suffix ('' for none)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be ≥ 1")
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    load_before = os.getloadavg()
    roof = R.measure_all([1], seconds=args.roofline_seconds)[1]
    rows = bench_frontends(zoo_entries(names, args.input_size), repeats=args.repeats, warmup=args.warmup,
                           burst_ms=args.burst_ms, tuning_log=None if args.tuning_log == "none" else args.tuning_log)
    again = R.measure_all([1], seconds=args.roofline_seconds)[1]
    roof = again if again.gmacs > roof.gmacs else roof
    print_table([_display(r) for r in rows], COLUMNS)
    if args.out:
        import tvm

        meta = collect_meta([1], repeats=args.repeats, warmup=args.warmup, burst_ms=args.burst_ms,
                            tuning_log=args.tuning_log, tvm=tvm.__version__, target=str(R.tvm_target()),
                            isa_path=roof.isa_path, roofline_gmacs={1: round(roof.gmacs, 1)},
                            loadavg_before=load_before, loadavg_after=os.getloadavg())
        base = Path(args.out)
        write(base, rows, meta)
        print(f"wrote {base}.md and {base}.json")
    return 0
