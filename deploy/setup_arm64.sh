#!/usr/bin/env bash
# setup_arm64.sh -- an aarch64 "device" on an x86_64 Debian host, for testing bnncc's ARM path.
#
# Idempotent and cached: the first run takes a couple of minutes, a rerun is a no-op (well under a second).
#
#   1. apt: gcc/g++-aarch64-linux-gnu, qemu-user, debootstrap (only what is missing)
#   2. an arm64 Debian bookworm sysroot with python3.11 + libstdc++6 (debootstrap --foreign, then
#      `dpkg-deb -x` of every downloaded .deb: no second stage, no chroot, no binfmt_misc needed)
#   3. the aarch64 wheels (apache-tvm, apache-tvm-ffi, numpy, ... pinned) into ROOT/opt/site
#   4. the qemu-insncount TCG plugin (built from tools/qemu-insncount into the cache, again when its sources change)
#   5. a wrapper script that runs the arm64 python under qemu (the TVM RPC server re-launches
#      sys.executable for its workers; it is pointed at this wrapper)
#
# Prints KEY=VALUE lines on stdout (logs go to stderr); bnncc/device/arm64.py parses them.
# Exit status: 0 ok; 3 this machine cannot provide the device (qemu-user/cross compiler missing and not
# installable: no apt-get, not root, apt failed); 1 any other failure (a bug or a broken download).
#
# Environment:
#   BNNCC_CACHE          cache root (default: $HOME/.cache/bnncc)
#   BNNCC_ARM64_ROOT     sysroot (default: $BNNCC_CACHE/arm64-sysroot)
#   BNNCC_HOST_PYTHON    a host python with pip, used only to download the aarch64 wheels (default: python3)
#   BNNCC_DEBIAN_MIRROR  default: http://deb.debian.org/debian
#   BNNCC_INSNCOUNT_SRC  default: <repo>/tools/qemu-insncount
# Options:
#   --check   only report whether everything is in place (exit 3 if not); never installs anything
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
CACHE=${BNNCC_CACHE:-$HOME/.cache/bnncc}
ROOT=${BNNCC_ARM64_ROOT:-$CACHE/arm64-sysroot}
SITE=$ROOT/opt/site
SUITE=bookworm
MIRROR=${BNNCC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PY=${BNNCC_HOST_PYTHON:-python3}
PLUGIN_SRC=${BNNCC_INSNCOUNT_SRC:-$REPO/tools/qemu-insncount}
PLUGIN_DIR=$CACHE/qemu-insncount
PLUGIN=$PLUGIN_DIR/insncount.so
WRAPPER=$CACHE/bin/python3.11-aarch64

# Bump a *_VERSION string to force that step to be redone.
SYSROOT_PKGS="python3.11,libstdc++6"
SYSROOT_VERSION="1 $SUITE $SYSROOT_PKGS"
# --no-deps: the full closure is listed and pinned (the same versions as the host environment).
WHEELS="apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 numpy==1.26.4 ml_dtypes==0.3.2
typing_extensions==4.16.0 cloudpickle==3.1.2 psutil==7.2.2"
WHEELS_VERSION="1 $(echo $WHEELS)"

case "$ROOT" in /|"") echo "[setup_arm64] ERROR: refusing sysroot path '$ROOT'" >&2; exit 1 ;; esac

log() { echo "[setup_arm64] $*" >&2; }
die() { echo "[setup_arm64] ERROR: $*" >&2; exit 1; }
unavailable() { echo "[setup_arm64] UNAVAILABLE: $*" >&2; exit 3; }
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1

# ---------------------------------------------------------------------------------------------- 1. apt
declare -A PKG_FOR=(
  [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
  [aarch64-linux-gnu-g++]=g++-aarch64-linux-gnu
  [qemu-aarch64]=qemu-user
  [debootstrap]=debootstrap
  [gcc]=gcc
  [g++]=g++
  [make]=make
)
missing=()
for cmd in "${!PKG_FOR[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG_FOR[$cmd]}")
done
if ((${#missing[@]})); then
  ((CHECK_ONLY)) && unavailable "missing host packages: ${missing[*]}"
  command -v apt-get >/dev/null || unavailable "missing ${missing[*]} and no apt-get to install them"
  SUDO=""
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || unavailable "missing ${missing[*]}; need root (or sudo) to apt-get install them"
    SUDO="sudo -n"
  fi
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq >&2 || unavailable "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2 \
    || unavailable "apt-get install ${missing[*]} failed"
fi
QEMU=$(command -v qemu-aarch64) || unavailable "qemu-aarch64 not found after installing qemu-user"

# ------------------------------------------------------------------------------------------ 2. sysroot
if ! stamp_ok "$ROOT/.bnncc-sysroot" "$SYSROOT_VERSION"; then
  ((CHECK_ONLY)) && unavailable "no arm64 sysroot at $ROOT"
  [[ $(id -u) == 0 ]] || unavailable "debootstrap needs root to build $ROOT (build it once as root)"
  log "debootstrap --foreign arm64 $SUITE ($SYSROOT_PKGS) -> $ROOT"
  tmp="$ROOT.partial"
  rm -rf "$tmp" "$ROOT"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --foreign --arch=arm64 --variant=minbase --include="$SYSROOT_PKGS" \
    "$SUITE" "$tmp" "$MIRROR" >&2 || die "debootstrap failed (see $tmp/debootstrap/debootstrap.log)"
  log "dpkg-deb -x $(ls "$tmp"/var/cache/apt/archives/*.deb | wc -l) packages"
  for deb in "$tmp"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$tmp"
  done
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  [[ -x "$tmp/usr/bin/python3.11" ]] || die "python3.11 missing from the sysroot"
  "$QEMU" -L "$tmp" "$tmp/usr/bin/python3.11" -c 'import sys, ctypes, sqlite3; assert sys.version_info[:2] == (3, 11)' \
    || die "the arm64 python3.11 does not run under $QEMU"
  echo "$SYSROOT_VERSION" >"$tmp/.bnncc-sysroot"
  mv "$tmp" "$ROOT"
  rm -f "$SITE/.bnncc-wheels"   # a fresh sysroot has no wheels
fi

# ------------------------------------------------------------------------------------------- 3. wheels
if ! stamp_ok "$SITE/.bnncc-wheels" "$WHEELS_VERSION"; then
  ((CHECK_ONLY)) && unavailable "no aarch64 wheels in $SITE"
  "$HOST_PY" -m pip --version >/dev/null 2>&1 || die "$HOST_PY has no pip (set BNNCC_HOST_PYTHON)"
  log "pip install --target $SITE (aarch64 wheels): $(echo $WHEELS)"
  rm -rf "$SITE.partial" "$SITE"
  # Trap: pip does not expand `--platform manylinux_2_36_aarch64` to older tags (apache-tvm is
  # manylinux_2_28, numpy manylinux2014): list every glibc up to bookworm's 2.36.
  plats=(--platform manylinux2014_aarch64)
  for minor in $(seq 17 36); do plats+=(--platform "manylinux_2_${minor}_aarch64"); done
  # shellcheck disable=SC2086
  if ! "$HOST_PY" -m pip install -q --disable-pip-version-check --no-deps --target "$SITE.partial" \
    "${plats[@]}" --python-version 3.11 --implementation cp --only-binary=:all: $WHEELS 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; then
    die "pip install of the aarch64 wheels failed"
  fi
  file -b "$SITE.partial/tvm/lib/libtvm_runtime.so" 2>/dev/null | grep -q aarch64 \
    || [[ "$(od -An -tx1 -j18 -N2 "$SITE.partial/tvm/lib/libtvm_runtime.so" | tr -d ' ')" == "b700" ]] \
    || die "tvm/lib/libtvm_runtime.so in $SITE.partial is not an aarch64 library"
  echo "$WHEELS_VERSION" >"$SITE.partial/.bnncc-wheels"
  mv "$SITE.partial" "$SITE"
fi

# ------------------------------------------------------------------------------------ 4. insncount plugin
if [[ -f "$PLUGIN_SRC/insncount.c" ]]; then
  # Keyed by the sources' hash (not mtimes): a plugin built from other sources, e.g. an older copy, is rebuilt.
  PLUGIN_VERSION="1 $(cat "$PLUGIN_SRC"/*.[ch] | sha256sum | cut -d" " -f1)"
  if [[ ! -f "$PLUGIN" ]] || ! stamp_ok "$PLUGIN_DIR/.bnncc-plugin" "$PLUGIN_VERSION"; then
    ((CHECK_ONLY)) && unavailable "qemu-insncount plugin not built from $PLUGIN_SRC ($PLUGIN)"
    log "building $PLUGIN"
    mkdir -p "$PLUGIN_DIR"
    gcc -O2 -shared -fPIC -fvisibility=hidden -I"$PLUGIN_SRC" -o "$PLUGIN.tmp" "$PLUGIN_SRC/insncount.c" >&2 \
      || die "building the qemu-insncount plugin failed"
    mv "$PLUGIN.tmp" "$PLUGIN"
    echo "$PLUGIN_VERSION" >"$PLUGIN_DIR/.bnncc-plugin"
  fi
elif [[ ! -f "$PLUGIN" ]]; then
  log "warning: $PLUGIN_SRC/insncount.c not found: no instruction counting"
  PLUGIN=""
fi

# ------------------------------------------------------------------------------------ 5. python wrapper
WRAPPER_TEXT="#!/bin/sh
# Runs the arm64 python3.11 of $ROOT under qemu-user (written by deploy/setup_arm64.sh).
# Extra qemu options (e.g. -cpu cortex-a72) can be given in \$BNNCC_QEMU_OPTS.
exec $QEMU \$BNNCC_QEMU_OPTS -L $ROOT -E PYTHONPATH=$SITE $ROOT/usr/bin/python3.11 \"\$@\""
if [[ ! -x "$WRAPPER" || "$(cat "$WRAPPER")" != "$WRAPPER_TEXT" ]]; then
  ((CHECK_ONLY)) && unavailable "no python wrapper at $WRAPPER"
  mkdir -p "$(dirname "$WRAPPER")"
  printf '%s\n' "$WRAPPER_TEXT" >"$WRAPPER.tmp"
  chmod +x "$WRAPPER.tmp"
  mv "$WRAPPER.tmp" "$WRAPPER"
fi

cat <<EOF
BNNCC_ARM64_ROOT=$ROOT
BNNCC_ARM64_SITE=$SITE
BNNCC_ARM64_PYTHON=$ROOT/usr/bin/python3.11
BNNCC_ARM64_PYTHON_WRAPPER=$WRAPPER
BNNCC_QEMU=$QEMU
BNNCC_INSNCOUNT=$PLUGIN
BNNCC_AARCH64_CXX=$(command -v aarch64-linux-gnu-g++)
BNNCC_TVM_RUNTIME_LIBDIR=$SITE/tvm/lib
BNNCC_TVM_FFI_LIBDIR=$SITE/tvm_ffi/lib
BNNCC_TVM_FFI_INCLUDE=$SITE/tvm_ffi/include
EOF
