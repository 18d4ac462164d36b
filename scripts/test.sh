#!/usr/bin/env bash
# The test suite (default: everything not marked slow), on both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/ruff check bnncc tests benchmarks
exec .venv/bin/python -m pytest -n 2 -p no:cacheprovider "$@"
