"""The emulated aarch64 device's environment: an arm64 Debian sysroot run under qemu-user.

Everything is prepared by ``deploy/setup_arm64.sh`` (cached under ``$BNNCC_CACHE``, default
``~/.cache/bnncc``); :func:`setup` runs it (a no-op once done) and parses what it prints. :func:`qemu_cmd` and
:func:`python_cmd` run guest programs; the guest gets an environment without the host's x86 library and python
paths (:func:`guest_safe_env`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bnncc.errors import BnnccError

# The source tree holding deploy/ (this file is bnncc/device/arm64.py in it; BNNCC_REPO overrides).
REPO = Path(os.environ.get("BNNCC_REPO") or Path(__file__).resolve().parents[2])
SETUP_SCRIPT = REPO / "deploy" / "setup_arm64.sh"

#: qemu CPU model (qemu's ``-cpu`` names, not LLVM's): the Raspberry Pi 4's core, the ``rasp4`` target's mcpu
#: (also the CPU the qemu-insncount anchors were measured on).
DEFAULT_CPU = "cortex-a72"

# Host variables that must not leak into the guest (x86 libraries, x86 python paths).
_HOST_ONLY_ENV = ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")


class DeviceError(BnnccError):
    """The qemu aarch64 device failed (setup, server start, remote run)."""


class QemuUnavailable(DeviceError):
    """qemu-user / the cross toolchain is missing and cannot be installed on this machine."""


@dataclass(frozen=True)
class Arm64Env:
    """Paths of the aarch64 device (as printed by deploy/setup_arm64.sh)."""

    root: Path  # the arm64 sysroot (qemu -L)
    site: Path  # pip --target of the aarch64 wheels (tvm, tvm_ffi, numpy, ...), inside root
    python: Path  # root/usr/bin/python3.11 (an aarch64 binary)
    python_wrapper: Path  # host shell script: runs that python under qemu with PYTHONPATH=site
    qemu: Path
    insncount_plugin: Path | None
    cxx: str  # aarch64-linux-gnu-g++
    tvm_libdir: Path  # site/tvm/lib: libtvm_runtime.so, libtvm_runtime_extra.so (aarch64)
    ffi_libdir: Path  # site/tvm_ffi/lib: libtvm_ffi.so (aarch64)
    ffi_include: Path

    @property
    def ld_library_path(self) -> str:
        return f"{self.tvm_libdir}:{self.ffi_libdir}"


_ENV: Arm64Env | None = None
_ENV_ERROR: DeviceError | None = None  # a failed setup is not retried in the same process
_ENV_LOCK = threading.Lock()


def setup(*, install: bool | None = None, timeout: float = 3600.0) -> Arm64Env:
    """Run deploy/setup_arm64.sh (cached: a no-op once done) and return the device's paths.

    ``install=False`` (or env ``BNNCC_ARM64_NO_INSTALL=1``) only checks, never installs/downloads.
    Raises :class:`QemuUnavailable` if this machine cannot provide qemu (no apt, not root, apt failed),
    :class:`DeviceError` for any other failure. The result is cached for the process.
    """
    global _ENV, _ENV_ERROR
    if install is None:
        install = os.environ.get("BNNCC_ARM64_NO_INSTALL", "") not in ("1", "true", "yes")
    with _ENV_LOCK:
        if _ENV is not None:
            return _ENV
        if _ENV_ERROR is not None:
            raise _ENV_ERROR
        try:
            _ENV = _run_setup(install, timeout)
        except DeviceError as e:
            _ENV_ERROR = e
            raise
        return _ENV


def _run_setup(install: bool, timeout: float) -> Arm64Env:
    if not SETUP_SCRIPT.is_file():
        raise DeviceError(f"{SETUP_SCRIPT} is missing (set BNNCC_REPO to the bnncc source tree)")
    env = dict(os.environ)
    env.setdefault("BNNCC_HOST_PYTHON", sys.executable)
    cmd = ["bash", str(SETUP_SCRIPT)] + ([] if install else ["--check"])
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise DeviceError(f"{SETUP_SCRIPT} did not finish in {timeout:.0f} s") from e
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-15:])
        cls = QemuUnavailable if res.returncode == 3 else DeviceError
        raise cls(f"the aarch64 qemu device is unavailable ({SETUP_SCRIPT.name} exit {res.returncode}):\n{tail}")
    kv = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    try:
        plugin = kv["BNNCC_INSNCOUNT"]
        return Arm64Env(
            root=Path(kv["BNNCC_ARM64_ROOT"]),
            site=Path(kv["BNNCC_ARM64_SITE"]),
            python=Path(kv["BNNCC_ARM64_PYTHON"]),
            python_wrapper=Path(kv["BNNCC_ARM64_PYTHON_WRAPPER"]),
            qemu=Path(kv["BNNCC_QEMU"]),
            insncount_plugin=Path(plugin) if plugin else None,
            cxx=kv["BNNCC_AARCH64_CXX"],
            tvm_libdir=Path(kv["BNNCC_TVM_RUNTIME_LIBDIR"]),
            ffi_libdir=Path(kv["BNNCC_TVM_FFI_LIBDIR"]),
            ffi_include=Path(kv["BNNCC_TVM_FFI_INCLUDE"]),
        )
    except KeyError as e:
        raise DeviceError(f"{SETUP_SCRIPT.name} printed no {e.args[0]}:\n{res.stdout}") from e


def sysroot() -> Path:
    """The arm64 sysroot (runs/validates deploy/setup_arm64.sh first; raises BnnccError if unavailable)."""
    return setup().root


def _guest_env_args(guest_env: Mapping[str, str] | None) -> list[str]:
    return [a for k, v in (guest_env or {}).items() for a in ("-E", f"{k}={v}")]


def guest_safe_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without the variables that break an aarch64 guest (x86 LD_*, PYTHON*), plus ``extra``: the
    environment of a qemu process (qemu hands it on to the guest)."""
    env = {k: v for k, v in os.environ.items() if k not in _HOST_ONLY_ENV}
    env.update(extra or {})
    return env


def qemu_cmd(
    *,
    cpu: str | None = DEFAULT_CPU,
    guest_env: Mapping[str, str] | None = None,
    plugin: Path | str | None = None,
    plugin_log: Path | str | None = None,
) -> list[str]:
    """``qemu-aarch64 [-cpu CPU] -L ROOT [-E K=V ...] [-plugin P -d plugin -D LOG]``: append a guest
    program (path on the host) and its arguments."""
    env = setup()
    cmd = [str(env.qemu)]
    if cpu:
        cmd += ["-cpu", cpu]
    cmd += ["-L", str(env.root)] + _guest_env_args(guest_env)
    if plugin:
        cmd += ["-plugin", str(plugin), "-d", "plugin", "-D", str(plugin_log or "/dev/stderr")]
    return cmd


def python_cmd(*, cpu: str | None = DEFAULT_CPU, runtime_only: bool = False) -> list[str]:
    """The command running the arm64 python3.11 under qemu with PYTHONPATH=<sysroot>/opt/site.

    Append python arguments (``["-c", code]``, ``["-m", "mod"]``, a script). ``runtime_only=True`` sets
    ``TVM_USE_RUNTIME_LIB=1`` (``import tvm`` ~4 s instead of ~9 s; no compiler, no runtime_extra).
    Run it with an environment without host LD_LIBRARY_PATH/LD_PRELOAD (qemu passes its environment on
    to the guest): ``subprocess.run(python_cmd() + [...], env=bnncc.device.guest_safe_env())``.
    """
    env = setup()
    guest_env = {"PYTHONPATH": str(env.site)}
    if runtime_only:
        guest_env["TVM_USE_RUNTIME_LIB"] = "1"
    return qemu_cmd(cpu=cpu, guest_env=guest_env) + [str(env.python)]


def require_arm64() -> Arm64Env:
    """:func:`setup`, or ``pytest.skip`` with the reason when qemu cannot be installed on this machine.
    Any other setup failure is raised (a test must fail, not skip, when the device is broken)."""
    import pytest

    try:
        return setup()
    except QemuUnavailable as e:
        pytest.skip(f"no aarch64 qemu device: {e}")
