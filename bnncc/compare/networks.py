"""Whole networks: bnncc against LCE (three configurations) and the float twin on TFLite XNNPACK.

:func:`bench_networks` takes ``(name, keras_model, bnncc_model)`` entries (``bnncc_model``: a
:class:`bnncc.pipeline.Executable` or any callable on one numpy input); :func:`network_entries` resolves names:
a ``bnncc.models`` zoo model or ``standin`` (a one-layer Larq model with its bnncc graph built by hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import contenders as C
from . import roofline as R
from .layers import BnnccRunner, add_speedups, alone_times, compile_layer, rel_err
from .results import collect_meta, print_table, write_results
from .timing import median_times

NETWORK_COLUMNS = [
    "network", "threads", "bnncc ms", "bnncc alone ms", "LCE-indirect ms", "LCE-default ms", "LCE-indirect+XNNPACK ms",
    "XNNPACK ms", "speedup vs LCE best", "speedup vs XNNPACK", "rel err vs LCE",
]
# runner name in contenders.network_runners → column
_RUNNER_COLUMNS = {
    "lce_indirect": "LCE-indirect ms",
    "lce_default": "LCE-default ms",
    "lce_indirect_xnnpack": "LCE-indirect+XNNPACK ms",
    "tflite_xnnpack_fp32": "XNNPACK ms",
}

NetworkEntry = tuple[str, Any, Any]  # (name, Keras model, bnncc Executable or callable)


def bench_networks(entries: Sequence[NetworkEntry], threads: Sequence[int] = (1, 2), repeats: int = 20,
                   warmup: int = 3, *, lce_xnnpack: bool = True, seed: int = 0, burst_ms: float = 0.0,
                   settle_ms: float = 0.0) -> list[dict]:
    """bnncc vs ``contenders.network_runners(keras_model, t)`` for each entry and thread count.

    ``rel err vs LCE`` (bnncc against LCE's default path, on one random N(0, 1) input) is reported, not asserted:
    in a whole network a pre-activation within round-off of 0 may binarize differently in two correct
    implementations.
    """
    R.ensure_thread_pool(max(threads))
    rows = []
    for name, keras_model, bnncc_model in entries:
        shape = tuple(int(d) if d is not None else 1 for d in keras_model.inputs[0].shape)
        x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
        bnncc = BnnccRunner(bnncc_model)
        err = None
        alone = alone_times(bnncc, x, threads, repeats, warmup, burst_ms)
        for t in threads:
            R.set_tvm_threads(t)
            runners = {"bnncc": bnncc, **C.network_runners(keras_model, t, lce_xnnpack=lce_xnnpack)}
            if err is None:
                err = rel_err(bnncc(x), runners["lce_default"](x))
            ms = median_times(runners, x, repeats, warmup, burst_ms, settle_ms if t > 1 else 0.0)
            row = {"network": name, "threads": t, "bnncc ms": ms["bnncc"], "bnncc alone ms": alone[t]}
            row.update({col: ms.get(key) for key, col in _RUNNER_COLUMNS.items()})
            add_speedups(row, ["LCE-indirect ms", "LCE-default ms", "LCE-indirect+XNNPACK ms"], "XNNPACK ms")
            row["rel err vs LCE"] = err
            rows.append(row)
    return rows


def standin_entry(input_shape: Sequence[int] = (1, 14, 14, 64), filters: int = 64, seed: int = 0) -> NetworkEntry:
    """A one-layer stand-in network: ``bconv_layer_model`` with its bnncc graph built by hand
    (:func:`~bnncc.compare.layers.compile_layer`)."""
    model = C.bconv_layer_model(input_shape, filters, seed=seed)
    return ("standin-bconv-" + "x".join(str(d) for d in input_shape[1:]) + f"-{filters}", model,
            compile_layer(model))


def network_entries(names: Sequence[str], seed: int = 0, tuning_log: str | None = None) -> list[NetworkEntry]:
    """Entries for ``--networks``: ``standin`` or a ``bnncc.models`` zoo name (built with seeded random weights,
    224×224×3, compiled with ``bnncc.compile``)."""
    entries = []
    for name in names:
        if name == "standin":
            entries.append(standin_entry(seed=seed))
            continue
        import bnncc
        from bnncc import models

        if name not in models.MODELS:
            raise SystemExit(f"--networks {name}: unknown; known: standin, {', '.join(models.MODELS)}")
        keras_model = models.build(name, (224, 224, 3), seed=seed)
        entries.append((name, keras_model, bnncc.compile(keras_model, tuning_log=tuning_log)))
    return entries


def write_breakdown(name: str, base: Path, threads: int = 1) -> None:
    """Per-kernel time of a zoo model at 224×224, measured in place (:mod:`bnncc.profile`), so the next
    bottleneck is visible: binary kernels vs float ones, with the source layers each kernel computes."""
    import bnncc
    from bnncc import models
    from bnncc.profile import profile

    p = profile(bnncc.compile(models.build(name, (224, 224, 3))), threads=threads, repeats=40)
    total = p["sum_of_kernels_ms"]
    table = [{"kernel": r["kernel"], "layers": " + ".join(r["layers"]), "precision": r["category"],
              "ms": round(r["ms"], 4), "share": f"{r['share']:.1%}"} for r in p["kernels"]]
    print_table(table)
    binary = sum(r["ms"] for r in p["kernels"] if r["category"].startswith("binary"))
    notes = [f"{name} 224×224, {threads} thread: sum of kernels {total:.3f} ms ({p['sum_over_end_to_end']:.0%} of "
             f"the end-to-end median {p['end_to_end_ms']:.3f} ms), binary kernels {binary:.3f} ms = "
             f"{binary / total:.0%}, float kernels {total - binary:.3f} ms.",
             "Each kernel call timed in place in the compiled model (bnncc.profile: the VM's instrument reads the "
             "clock around every kernel call); see `bnncc profile` for MACs, G-MAC/s and the roofline."]
    write_results(base.with_name(base.name + ".md"), base.with_name(base.name + ".json"), table,
                  collect_meta([threads]), title=f"bnncc on x86: per-kernel breakdown of {name}", notes=notes)
    print(f"wrote {base}.md")
