"""ResNet-18 (224×224, batch 1) in fp32 and int8: bnncc (ONNX import + post-training quantization) vs onnxruntime
(fp32; its own static int8 quantization) vs OpenVINO (fp32; NNCF int8), 1 and 2 threads, in one process.

    python -m benchmarks.bench_int8_networks [--threads 1,2] [--repeats 10] [--out PATH]

The comparison is :mod:`bnncc.compare.int8_networks`; results go to ``benchmarks/results/resnet18-int8.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnncc.compare import int8_networks

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    return int8_networks.main(argv, default_out=RESULTS / "resnet18-int8")


if __name__ == "__main__":
    sys.exit(main())
