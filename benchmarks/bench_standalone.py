"""The runtime-free C library (``--emit c-library``) vs the TVM-runtime deployment: footprint (code, weights,
arena; vs TVM runtime + model .so, and LCE .tflite + interpreter), speed at 1 and 2 threads, instructions per
inference on aarch64 (qemu) and per binary MAC on armv7 vs aarch64.

    python -m benchmarks.bench_standalone [--models digits_bnn,quicknet,birealnet18] [--no-emulated]

The comparison is :mod:`bnncc.compare.standalone`; results go to ``benchmarks/results/footprint.md`` and
``standalone-*.md`` (with ``.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnncc.compare import standalone

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    return standalone.main(argv, default_out=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
