"""bnncc vs LCE (indirect BGEMM, default) vs TFLite XNNPACK fp32 on x86: the binary conv layers L1–L5 and whole
networks.

    python -m benchmarks.bench_x86 --layers L1,L2,L3,L4,L5 --threads 1,2 --repeats 20 [--networks quicknet]

The comparison is :mod:`bnncc.compare.x86` (also ``bnncc bench --compare``; ``--help`` for the options); this
script writes its results to ``benchmarks/results/x86.md`` and ``.json`` (``x86-networks.*`` for networks)
unless ``--out``. Conventions: docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnncc.compare import x86

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    return x86.main(argv, default_out=RESULTS / "x86")


if __name__ == "__main__":
    sys.exit(main())
