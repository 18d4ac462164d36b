"""int8 GEMM on seed 001's ten shapes: bnncc (every x86 path this CPU runs) vs numpy fp32, onnxruntime
MatMulInteger (B input / constant), PyTorch ``_int_mm``; bnncc's 1-bit GEMM beside them; 1 thread.

    python -m benchmarks.bench_gemm [--cases 1,3] [--repeats 7] [--out PATH]

The comparison is :mod:`bnncc.compare.gemm`; results go to ``benchmarks/results/gemm.md`` / ``.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnncc.compare import gemm

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    return gemm.main(argv, default_out=RESULTS / "gemm")


if __name__ == "__main__":
    sys.exit(main())
