"""A 2-bit-activation layer against the 1-bit and int8 versions of the same layer: x86 times and aarch64
instruction counts (docs/benchmarks.md).

    python -m benchmarks.bench_bitserial [--layers L1,L2,L3,L4,L5] [--repeats 15] [--no-aarch64]

x86: :mod:`bnncc.compare.bitserial` — 2A1W (DoReFa 2-bit × ±1), 2A2W (× ternary), 1-bit and int8, each float32
in → float32 out, checked exactly against the oracle, then timed round-robin in one process, 1 thread, 64-bit
words. The machine is shared: quote the ratios, not the milliseconds. aarch64: the same graphs built for
``rasp4`` (Cortex-A72, 16-bit words), counted under ``qemu-aarch64`` with the qemu-insncount plugin as
:mod:`benchmarks.bench_aarch64` counts the binary layers (one call of ``main``, one thread), outputs checked
exactly. Writes ``benchmarks/results/bitserial.md`` and ``.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from bnncc.compare import bitserial
from bnncc.compare.layers import LAYERS
from bnncc.compare.results import markdown_table, print_table, write_results

from .bench_aarch64 import layer_list

RESULTS = Path(__file__).resolve().parent / "results"
CONTENDERS = ("1-bit", "2A1W", "2A2W", "int8", "2A1W planes")
ARM_COLUMNS = ["layer", "1-bit insns/MAC", "2A1W insns/MAC", "2A2W insns/MAC", "int8 insns/MAC",
               "2A1W planes insns", "2A1W / 1-bit", "2A2W / 2A1W", "int8 / 2A1W", "exact"]


def aarch64_rows(layers: list[str], target: str = "rasp4", repeats: int = 2, log=print) -> list[dict[str, Any]]:
    """Instructions per MAC of each contender under qemu (one call of main, one thread), outputs checked."""
    from bnncc import device
    from bnncc.targets import get_target

    from .bench_aarch64 import count_calls

    device.setup()
    spec = get_target(target)
    rows = []
    with TemporaryDirectory(prefix="bnncc-bitserial-") as td:
        for name in layers:
            x, _, _ = bitserial.layer_data(name)
            counts, exact = {}, True
            for key, (exe, want) in bitserial.build(name, bits=spec.word_bits, target=target).items():
                so = exe.export_library(Path(td) / f"{name}_{key.replace(' ', '_')}.so")
                c = count_calls(so, [x], repeats, device.DEFAULT_CPU)
                out = np.asarray(c["output"])
                exact &= bool(np.array_equal(out, np.asarray(want).astype(out.dtype)))
                counts[key] = c["per_call"]
            macs = LAYERS[name].binary_macs
            row = {"layer": name, **{f"{k} insns/MAC": counts[k] / macs for k in CONTENDERS[:4]},
                   "2A1W planes insns": counts["2A1W planes"], "2A1W / 1-bit": counts["2A1W"] / counts["1-bit"],
                   "2A2W / 2A1W": counts["2A2W"] / counts["2A1W"], "int8 / 2A1W": counts["int8"] / counts["2A1W"],
                   "exact": exact}
            log(f"aarch64 {name}: " + "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "layer"))
            rows.append(row)
    return rows


def write(out: Path, rows: list[dict[str, Any]], arm: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """``out``.md (metadata, the x86 table, the aarch64 table) and ``out``.json (``aarch64_rows`` in its meta)."""
    from bnncc.outputs import atomic_write

    notes = ["x86 times: median ms of the round-robin rounds, 1 thread, on a machine shared with other jobs "
             "(see the load averages): the ratios are the result.",
             "Every contender: float32 NHWC in → float32 out, quantization of its input included (2A1W planes "
             "= that step alone for 2A1W); outputs equal the numpy oracle exactly before timing (exact column)."]
    title = "Bit-serial 2A1W / 2A2W vs 1-bit and int8 conv layers (L1–L5, 1 thread)"
    md = out.with_suffix(".md")
    write_results(md, None, rows, meta, columns=bitserial.COLUMNS, title=title, notes=notes)
    if arm:
        atomic_write(md, md.read_text() + "\n## aarch64: instructions per MAC under qemu (rasp4 = Cortex-A72, 16-bit "
                     "words, one call of main, one thread)\n\n" + markdown_table(arm, ARM_COLUMNS) + "\n")
    write_results(None, out.with_suffix(".json"), rows, {**meta, "aarch64_rows": arm})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="L1,L2,L3,L4,L5")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--burst-ms", type=float, default=2.0)
    p.add_argument("--no-aarch64", action="store_true", help="skip the qemu instruction counts")
    p.add_argument("--aarch64-target", default="rasp4")
    p.add_argument("--out", default=str(RESULTS / "bitserial"), help="results path without extension")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    layers = layer_list(p, args.layers)
    from bnncc.compare.roofline import isa_path
    from bnncc.targets import isa

    host = isa("host")

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = bitserial.bench_layers(layers, repeats=args.repeats, burst_ms=args.burst_ms)
    load_after = os.getloadavg()
    print_table(rows, bitserial.COLUMNS, file=sys.stderr)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    arm = [] if args.no_aarch64 else aarch64_rows(layers, args.aarch64_target, log=log)
    meta = {"threads": 1, "isa_path": f"popcount {isa_path()}, int8 "
                                      + ("AMX tiles" if host.amx_int8 else "VNNI" if host.vnni else "AVX2 vpmaddwd"),
            "words": "64-bit on x86",
            "loadavg_before": load_before, "loadavg_after_x86": load_after,
            "repeats": args.repeats, "burst_ms": args.burst_ms,
            "aarch64": None if args.no_aarch64 else f"{args.aarch64_target}: qemu-insncount, one thread, "
                                                   "16-bit words",
            "runtime_s": round(time.perf_counter() - t0, 1)}
    out = Path(args.out)
    write(out, rows, arm, meta)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0 if all(r["exact"] for r in rows + arm) else 1


if __name__ == "__main__":
    sys.exit(main())
