#!/usr/bin/env bash
# Set up a fresh machine: the Python environment (.venv) with bnncc and its pinned TVM, TensorFlow and Larq,
# and the Debian packages for the ARM paths (aarch64 and armv7 cross compilers, qemu-user, debootstrap). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  for p in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user debootstrap; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
  done
  if [ -n "$need" ]; then
    echo "setup: apt-get install$need" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[keras,test,caffe]" 2>&1 | grep -v "^WARNING: Location" || true
# Second step: see the note on the onnx extra in pyproject.toml (pip reports the ml-dtypes clash; it is known).
.venv/bin/python -m pip install -q -e ".[onnx,torch,plot,fuzz,bench]" 2>&1 | grep -v -E "^WARNING: Location|ml-dtypes|dependency resolver" || true
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -c "import bnncc, tvm, larq, onnxruntime, torch; print('setup: bnncc', bnncc.__version__, 'tvm', tvm.__version__)"
