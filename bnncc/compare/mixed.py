"""Mixed precision in one model: a zoo BNN with its float layers quantized to int8 (PTQ), binary layers kept.

For each network: latency of the fp32-float-layers library vs the int8 one (interleaved, 1 thread), the top-1
agreement of each with Keras on random inputs, where the first disagreeing layer is (a sign flip near zero
feeding a binary layer, or int8 error), the per-layer SQNR, and the artifact sizes: the float ``.h5``, LCE's
``.tflite``, bnncc's shared library and C-library weights for both variants.

    python -m benchmarks.bench_mixed [--models quicknet] [--inputs 100] [--calibration 32]
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .timing import median_times


def _random_images(n: int, shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def rows_for(name: str, inputs: int, calibration: int, keep_first_last: bool, work: Path) -> tuple[dict, dict]:
    from .. import models, pipeline
    from ..frontend.keras import from_keras
    from ..ptq import quantize_model
    from .layers import BnnccRunner
    from .roofline import set_tvm_threads
    from .standalone import lce_tflite_bytes

    model = models.build(name)
    h5 = work / f"{name}.h5"
    model.save(h5)
    mod = from_keras(model)
    shape = model.input_shape[1:]
    cal = _random_images(calibration, shape, seed=1)
    qmod, report = quantize_model(mod, cal, keep_first_last=keep_first_last)
    libs = {"fp32": pipeline.build(mod, "host"), "int8": pipeline.build(qmod, "host")}
    set_tvm_threads(1)
    xs = _random_images(inputs, shape, seed=2)
    keras_top1 = np.argmax(model.predict(xs, batch_size=8, verbose=0), axis=-1)
    row: dict = {"model": name, "keep first/last float": keep_first_last, "int8 layers":
                 sum(r["precision"] == "int8" for r in report.layers),
                 "median SQNR dB": round(report.median_sqnr(), 1)}
    for variant, lib in libs.items():
        top1 = np.array([np.argmax(lib(x[None])) for x in xs])
        row[f"{variant} top-1 = Keras"] = float(np.mean(top1 == keras_top1))
    ms = median_times({v: BnnccRunner(lib) for v, lib in libs.items()}, xs[:1], repeats=15, warmup=3, burst_ms=50)
    row["fp32 ms"], row["int8 ms"] = round(ms["fp32"], 3), round(ms["int8"], 3)
    row["int8 / fp32 time"] = round(ms["int8"] / ms["fp32"], 3)
    sizes = {"float .h5": h5.stat().st_size, "LCE .tflite": lce_tflite_bytes(model)}
    for variant, m in (("fp32", mod), ("int8", qmod)):
        sizes[f"bnncc {variant} .so"] = libs[variant].export_library(work / f"{name}-{variant}.so").stat().st_size
        fp, _ = pipeline.build_c_library(m, work / f"{name}-{variant}-c", "host", name=name)
        sizes[f"bnncc {variant} C weights"] = fp.weight_bytes
    size_row = {"model": name, **{k: round(v / 2**20, 2) for k, v in sizes.items() if v is not None}}
    size_row[".h5 / int8 C weights"] = round(sizes["float .h5"] / sizes["bnncc int8 C weights"], 1)
    size_row[".h5 / int8 .so"] = round(sizes["float .h5"] / sizes["bnncc int8 .so"], 1)
    return row, size_row


def main(argv: Sequence[str] | None = None, default_out=None) -> int:
    import argparse

    from ..targets import get_target, isa
    from .results import print_table, write_results

    p = argparse.ArgumentParser(description="binary + int8 + fp32 in one model: latency, agreement, size")
    p.add_argument("--models", default="quicknet")
    p.add_argument("--inputs", type=int, default=100)
    p.add_argument("--calibration", type=int, default=32)
    p.add_argument("--out", default=str(default_out) if default_out else None)
    a = p.parse_args(argv)
    rows, sizes = [], []
    with tempfile.TemporaryDirectory(prefix="bnncc-mixed-") as td:
        for name in a.models.split(","):
            for keep in (False, True):
                row, size = rows_for(name, a.inputs, a.calibration, keep, Path(td))
                rows.append(row)
                if not keep:
                    sizes.append(size)
    print_table(rows)
    print_table(sizes)
    if a.out:
        meta = {"host_target": get_target("host").description, "isa": isa("host").describe(), "threads": 1,
                "loadavg_end": os.getloadavg(), "inputs": a.inputs, "calibration_samples": a.calibration}
        notes = ["zoo models: random weights, BatchNorm calibrated on N(0,1) images; inputs and calibration "
                 "N(0,1) images (no data set): agreement measures how far int8 moves the argmax, not accuracy",
                 "sizes in MiB; C weights: the constants of the runtime-free C library (1-bit packed, int8, fp32)"]
        out = Path(a.out)
        write_results(out / "mixed.md", out / "mixed.json", rows, meta, title="Binary + int8 + fp32 in one model",
                      notes=notes)
        write_results(out / "mixed-sizes.md", out / "mixed-sizes.json", sizes, meta,
                      title="Artifact sizes: float .h5, LCE .tflite, bnncc fp32 / int8 (MiB)")
    return 0
