"""Binary + int8 + fp32 in one model: a zoo BNN with its float layers quantized by PTQ — latency vs the fp32
version, top-1 agreement with Keras, per-layer SQNR, artifact sizes vs the float .h5 and LCE's .tflite.

    python -m benchmarks.bench_mixed [--models quicknet] [--inputs 100]

The comparison is :mod:`bnncc.compare.mixed`; results go to ``benchmarks/results/mixed.md`` and
``mixed-sizes.md`` (with ``.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnncc.compare import mixed

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    return mixed.main(argv, default_out=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
