"""The same network through bnncc's Keras and LCE ``.tflite`` frontends, with LCE's interpreter as reference:
QuickNetSmall, QuickNet and Bi-Real Net at 224×224, 1 thread, interleaved.

    python -m benchmarks.bench_frontends [--networks quicknet_small,quicknet,birealnet18] [--repeats 30]

The benchmark is :mod:`bnncc.compare.frontends` (``--help`` for the options); it writes
``benchmarks/results/frontends.md`` and ``.json`` unless ``--out``. Conventions: docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnncc.compare import frontends

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    return frontends.main(argv, default_out=RESULTS / "frontends")


if __name__ == "__main__":
    sys.exit(main())
