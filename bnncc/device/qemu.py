"""An aarch64 device without an aarch64 machine: an arm64 Debian sysroot run under qemu-user.

Everything is prepared by ``deploy/setup_arm64.sh`` (cached under ``$BNNCC_CACHE``, default
``~/.cache/bnncc``); :func:`setup` runs it (a no-op once done) and parses what it prints.

What the device offers:

* a TVM RPC server under qemu, registered with a TVM RPC tracker: :func:`start_tracker`,
  :func:`start_rpc_server`, or both at once with :class:`QemuRpcDevice` (a context manager meant to be
  used from a module/session-scoped pytest fixture), and :func:`run_vm_remote` to run a Relax
  executable exported for aarch64 (:func:`export_aarch64`) on it;
* the C++ deploy app of ``deploy/cpp`` cross-built and run under qemu: :func:`build_deploy_app`,
  :func:`run_deploy_app`;
* exact dynamic instruction counts of guest programs (qemu-insncount TCG plugin): :func:`insncount`.

Timings under qemu mean nothing; outputs and instruction counts do.

Two traps handled here: ``tvm.exec.rpc_server`` re-launches ``sys.executable`` for its worker and
binfmt_misc is not mounted, so an aarch64 ``sys.executable`` cannot be exec'ed: the server is started
through a bootstrap that points ``sys.executable`` at a host shell wrapper calling qemu. And
``TVM_USE_RUNTIME_LIB=1`` (skip the 230 MB compiler library: ``import tvm`` ~4 s instead of ~9 s under
qemu) does not load ``libtvm_runtime_extra.so`` (contrib sort/topk/random, disco), so the server gets it
with ``--load-library``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bnncc.errors import BnnccError

# The source tree holding deploy/ (this file is bnncc/device/qemu.py in it; BNNCC_REPO overrides).
REPO = Path(os.environ.get("BNNCC_REPO") or Path(__file__).resolve().parents[2])
SETUP_SCRIPT = REPO / "deploy" / "setup_arm64.sh"
DEPLOY_CPP = REPO / "deploy" / "cpp"

#: qemu CPU model: the Raspberry Pi 4's core (also the CPU the qemu-insncount anchors were measured on).
DEFAULT_CPU = "cortex-a72"
#: RPC key the qemu server registers under.
DEFAULT_KEY = "aarch64-qemu"
#: TVM target for code that runs on this device.
AARCH64_TARGET = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
AARCH64_CXX = "aarch64-linux-gnu-g++"

MARK_SYSCALL = 0x4D41  # qemu-insncount's marker syscall number

# Host variables that must not leak into the guest (x86 libraries, x86 python paths).
_HOST_ONLY_ENV = ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")


class DeviceError(BnnccError):
    """The qemu aarch64 device failed (setup, server start, remote run)."""


class QemuUnavailable(DeviceError):
    """qemu-user / the cross toolchain is missing and cannot be installed on this machine."""


# --------------------------------------------------------------------------------------------- setup
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


def _clean_host_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a qemu process: qemu hands it to the guest, so drop the host-only variables."""
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
    to the guest): ``subprocess.run(python_cmd() + [...], env=bnncc.device.qemu.guest_safe_env())``.
    """
    env = setup()
    guest_env = {"PYTHONPATH": str(env.site)}
    if runtime_only:
        guest_env["TVM_USE_RUNTIME_LIB"] = "1"
    return qemu_cmd(cpu=cpu, guest_env=guest_env) + [str(env.python)]


def guest_safe_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without the variables that break an aarch64 guest (x86 LD_*, PYTHON*), plus ``extra``."""
    return _clean_host_env(extra)


# -------------------------------------------------------------------------------------------- insncount
@dataclass
class InsnCount:
    """Result of :func:`insncount`: TOTAL and MARK lines of the qemu-insncount plugin."""

    total: int
    vcpus: int
    marks: list[tuple[int, int]]  # (tag, instructions so far), in order
    returncode: int
    stdout: str
    stderr: str

    def mark(self, tag: int, occurrence: int = 0) -> int:
        """Count at the ``occurrence``-th marker with ``tag``."""
        hits = [c for t, c in self.marks if t == tag]
        if len(hits) <= occurrence:
            raise DeviceError(f"marker {tag} (occurrence {occurrence}) not seen; marks: {self.marks}")
        return hits[occurrence]

    def region(self, start_tag: int = 1, end_tag: int = 2) -> int:
        """Instructions between the first ``start_tag`` marker and the first ``end_tag`` after it."""
        for i, (t, c) in enumerate(self.marks):
            if t == start_tag:
                for t2, c2 in self.marks[i + 1 :]:
                    if t2 == end_tag:
                        return c2 - c
        raise DeviceError(f"no marker pair {start_tag}..{end_tag}; marks: {self.marks}")


def parse_insncount(text: str) -> tuple[int | None, int, list[tuple[int, int]]]:
    total, vcpus, marks = None, 0, []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "MARK":
            marks.append((int(parts[1]), int(parts[2])))
        elif len(parts) == 4 and parts[0] == "TOTAL" and parts[2] == "vcpus":
            total, vcpus = int(parts[1]), int(parts[3])
    return total, vcpus, marks


def insncount(
    cmd_args: Sequence[str | os.PathLike],
    *,
    cpu: str | None = DEFAULT_CPU,
    guest_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = 600.0,
    check: bool = True,
) -> InsnCount:
    """Run a guest program under qemu with the qemu-insncount plugin and parse its counts.

    ``cmd_args``: the aarch64 program (a host path, or a path inside the sysroot such as
    ``sysroot()/"usr/bin/python3.11"``) and its arguments. ``guest_env``: variables for the guest
    (``-E``), e.g. ``{"PYTHONPATH": str(setup().site)}`` for python, ``{"LD_LIBRARY_PATH": ...}``.
    The guest marks regions with ``syscall(0x4d41, tag)`` (C) or
    ``ctypes.CDLL(None).syscall(0x4d41, tag)`` (python); see :meth:`InsnCount.region`.
    The plugin log goes to a temporary file: with ``-D /dev/stderr`` qemu opens stderr anew with its
    own file offset, and when stderr is a regular file the guest's writes overwrite the MARK lines.
    """
    env = setup()
    if env.insncount_plugin is None or not env.insncount_plugin.is_file():
        raise DeviceError("the qemu-insncount plugin is not built (see deploy/setup_arm64.sh)")
    with tempfile.TemporaryDirectory(prefix="bnncc-insn-") as td:
        log = Path(td) / "plugin.log"
        cmd = qemu_cmd(cpu=cpu, guest_env=guest_env, plugin=env.insncount_plugin, plugin_log=log)
        cmd += [str(a) for a in cmd_args]
        try:
            res = subprocess.run(cmd, cwd=cwd, env=_clean_host_env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(f"insncount: {cmd_args[0]} did not finish in {timeout} s") from e
        text = log.read_text() if log.exists() else ""
    total, vcpus, marks = parse_insncount(text)
    what = " ".join(map(str, cmd_args))
    if check and res.returncode != 0:
        raise DeviceError(f"insncount: {what} exited {res.returncode}:\n{res.stderr[-3000:]}")
    if total is None:
        raise DeviceError(f"insncount: no TOTAL line from the plugin for {what}:\n{res.stderr[-3000:]}")
    return InsnCount(total, vcpus, marks, res.returncode, res.stdout, res.stderr)


# ----------------------------------------------------------------------------------------- processes
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, *, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
    """Signal the process group of a process started here (start_new_session=True: the qemu server, its
    qemu worker and the forked session processes) and reap it."""
    if proc is None:
        return
    # Even if the leader is gone, its group (worker, session processes) may still be alive.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=wait)
    # The other members (reparented to init once the leader is gone) take a moment to disappear.
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.05)
    log = getattr(proc, "bnncc_log_file", None)
    if log is not None and not log.closed:
        log.close()


def _log_tail(proc: subprocess.Popen, n: int = 40) -> str:
    path = getattr(proc, "bnncc_log", None)
    if path is None:
        return ""
    try:
        f = getattr(proc, "bnncc_log_file", None)
        if f is not None and not f.closed:
            f.flush()
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"\n--- last lines of {path} ---\n" + "\n".join(lines[-n:])


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path | str | None, prefix: str) -> subprocess.Popen:
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(fd)
    log_file = open(log_path, "w")  # noqa: SIM115 -- owned by the process object, closed in stop_process
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.bnncc_log = Path(log_path)  # type: ignore[attr-defined]
    proc.bnncc_log_file = log_file  # type: ignore[attr-defined]
    return proc


def _split_addr(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


@contextlib.contextmanager
def _tracker_socket(tracker: str, timeout: float):
    """A socket to the tracker ``"host:port"`` past the magic handshake, every operation bounded by ``timeout``."""
    import struct

    from tvm.rpc import base

    with socket.create_connection(_split_addr(tracker), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(sock, 4))[0]
        if magic != base.RPC_TRACKER_MAGIC:
            raise DeviceError(f"{tracker} is not a TVM RPC tracker")
        yield sock


def tracker_summary(tracker: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The tracker's summary (``{"server_info": [...], "queue_info": {...}}``), ``tracker="host:port"``.

    Talks the tracker protocol directly (bounded by ``timeout``) instead of ``tvm.rpc.connect_tracker``,
    whose socket has no timeout."""
    from tvm.rpc import base

    with _tracker_socket(tracker, timeout) as sock:
        base.sendjson(sock, [base.TrackerCode.SUMMARY])
        value = base.recvjson(sock)
    if value[0] != base.TrackerCode.SUCCESS:
        raise DeviceError(f"tracker {tracker}: bad summary reply {value!r}")
    return value[1]


def tracker_keys(summary: Mapping[str, Any]) -> list[str]:
    """The keys of the servers registered in a tracker summary (each key once, sorted)."""
    keys = {str(s.get("key", "")).removeprefix("server:") for s in summary.get("server_info", [])}
    return sorted(k for k in keys if k)


def request_session(
    tracker: str,
    key: str,
    *,
    session_timeout: float = 0,
    priority: int = 1,
    request_timeout: float = 60.0,
    wait_registered: float = 10.0,
):
    """A ``tvm.rpc.RPCSession`` on a server registered under ``key`` at the tracker ``"host:port"``,
    every step bounded in time (``tvm.rpc.connect_tracker(...).request(...)`` retries an unreachable
    tracker for 60 s and waits forever in the tracker's queue).

    Raises :class:`DeviceError` (a :class:`bnncc.errors.BnnccError`) with a one-line reason when the tracker
    does not answer, when no server with ``key`` is registered within ``wait_registered`` seconds, when none
    becomes free within ``request_timeout`` seconds, or when the server handed out refuses the session.
    ``session_timeout``: the server ends the session (and tells the client) after that many seconds (0: never).
    """
    import tvm.rpc
    from tvm.rpc import base

    try:
        _split_addr(tracker)
    except ValueError:
        raise DeviceError(f"bad RPC tracker address {tracker!r}: expected HOST:PORT") from None
    start = time.monotonic()
    deadline = start + request_timeout

    def remaining() -> float:
        return max(deadline - time.monotonic(), 0.1)

    def summary() -> dict[str, Any]:
        try:
            return tracker_summary(tracker, timeout=min(10.0, remaining()))
        except (OSError, DeviceError) as e:
            raise DeviceError(f"cannot reach the RPC tracker {tracker}: {e}") from None

    info = summary()
    while not _servers(info, key):
        if time.monotonic() > min(deadline, start + wait_registered):
            keys = ", ".join(repr(k) for k in tracker_keys(info)) or "none"
            raise DeviceError(f"no RPC server with key {key!r} is registered at the tracker {tracker} "
                              f"(registered keys: {keys})")
        time.sleep(0.5)
        info = summary()
    last = "no attempt"
    for _attempt in range(3):  # the server handed out may have died since it registered: ask again
        try:
            with _tracker_socket(tracker, remaining()) as sock:
                base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", priority])
                value = base.recvjson(sock)  # closing the socket on timeout withdraws the request
        except TimeoutError:
            n = len(_servers(info, key))
            raise DeviceError(f"no {key!r} server became free at the tracker {tracker} within "
                              f"{request_timeout:.0f} s ({n} registered, all busy)") from None
        except OSError as e:
            raise DeviceError(f"lost the RPC tracker {tracker} while requesting {key!r}: {e}") from None
        if not value or value[0] != base.TrackerCode.SUCCESS:
            raise DeviceError(f"the tracker {tracker} refused the request for {key!r}: {value!r}")
        url, port, matchkey = value[1]
        try:
            return tvm.rpc.connect(url, port, matchkey, session_timeout)
        except Exception as e:  # noqa: BLE001 -- TVM raises RuntimeError/InternalError/OSError here
            last = f"{url}:{port}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
        if time.monotonic() >= deadline:
            break
    raise DeviceError(f"the {key!r} server given by the tracker {tracker} refused the session ({last})")


def _servers(summary: Mapping[str, Any], key: str) -> list[tuple[str, int]]:
    return [tuple(s["addr"]) for s in summary.get("server_info", []) if s.get("key") == f"server:{key}"]


def start_tracker(
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    timeout: float = 60.0,
    log_path: Path | str | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``python -m tvm.exec.rpc_tracker`` on the host (this interpreter) and wait until it answers.

    Returns ``(process, "host:port")``; stop it with :func:`stop_process`."""
    port = port or free_port(host)
    cmd = [
        sys.executable,
        "-m",
        "tvm.exec.rpc_tracker",
        "--host",
        host,
        "--port",
        str(port),
        "--port-end",
        str(port + 1),
    ]
    # The tracker needs no compiler: runtime-only import (~0.7 s instead of ~1.8 s).
    proc = _spawn(cmd, dict(os.environ, TVM_USE_RUNTIME_LIB="1"), log_path, "bnncc-rpc-tracker-")
    addr = f"{host}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            msg = f"the RPC tracker exited with {proc.returncode}{_log_tail(proc)}"
            stop_process(proc)
            raise DeviceError(msg)
        try:
            tracker_summary(addr, timeout=2.0)
            return proc, addr
        except (OSError, DeviceError):
            pass
        if time.monotonic() > deadline:
            msg = f"the RPC tracker on {addr} did not answer in {timeout:.0f} s{_log_tail(proc)}"
            stop_process(proc)
            raise DeviceError(msg)
        time.sleep(0.2)


# Runs in the guest: make the server's worker re-launch go through the host wrapper (argv[1]).
_RPC_BOOTSTRAP = (
    "import runpy, sys\n"
    "sys.executable = sys.argv.pop(1)\n"
    "runpy.run_module('tvm.exec.rpc_server', run_name='__main__', alter_sys=True)\n"
)


def start_rpc_server(
    tracker: str,
    key: str = DEFAULT_KEY,
    port: int = 9300,
    *,
    host: str = "127.0.0.1",
    port_end: int | None = None,
    cpu: str | None = DEFAULT_CPU,
    timeout: float = 180.0,
    log_path: Path | str | None = None,
    load_extra: bool = True,
) -> subprocess.Popen:
    """Start ``tvm.exec.rpc_server`` under qemu (arm64 python + aarch64 TVM runtime), registered with
    the tracker ``"host:port"`` under ``key``, and wait until the tracker lists it.

    The server binds the first free port in ``[port, port_end)`` (default ``port + 100``) on ``host``.
    Its output goes to ``log_path`` (default: a temporary file, ``proc.bnncc_log``). Raises
    :class:`DeviceError` with the log tail if it exits or is not listed within ``timeout`` seconds.
    Stop it with :func:`stop_process` (kills its process group: the qemu server, worker, sessions).
    """
    env = setup()
    try:
        before = set(_servers(tracker_summary(tracker), key))
    except OSError as e:
        raise DeviceError(f"cannot reach the RPC tracker {tracker}: {e}") from e
    cmd = python_cmd(cpu=cpu, runtime_only=True) + [
        "-c", _RPC_BOOTSTRAP, str(env.python_wrapper),
        "--tracker", tracker, "--key", key, "--host", host,
        "--port", str(port), "--port-end", str(port_end or port + 100),
    ]  # fmt: skip
    if load_extra:
        cmd += ["--load-library", str(env.tvm_libdir / "libtvm_runtime_extra.so")]
    # Inherited by the worker (host wrapper -> qemu): same runtime mode, same CPU model.
    penv = _clean_host_env({"TVM_USE_RUNTIME_LIB": "1", "BNNCC_QEMU_OPTS": f"-cpu {cpu}" if cpu else ""})
    proc = _spawn(cmd, penv, log_path, "bnncc-rpc-server-")
    proc.bnncc_key = key  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            msg = f"the qemu RPC server exited with {proc.returncode} before registering{_log_tail(proc)}"
            stop_process(proc)
            raise DeviceError(msg)
        try:
            now = set(_servers(tracker_summary(tracker), key))
        except OSError as e:
            stop_process(proc)
            raise DeviceError(f"lost the RPC tracker {tracker}: {e}") from e
        if now - before:
            proc.bnncc_addr = sorted(now - before)[0]  # type: ignore[attr-defined]
            return proc
        if time.monotonic() > deadline:
            msg = f"the qemu RPC server did not register with {tracker} as {key!r} in {timeout:.0f} s{_log_tail(proc)}"
            stop_process(proc)
            raise DeviceError(msg)
        time.sleep(0.5)


class QemuRpcDevice:
    """A TVM RPC tracker (started here unless ``tracker`` is given) + a qemu aarch64 RPC server.

    Use from a module-scoped fixture (``import tvm`` under qemu takes seconds)::

        @pytest.fixture(scope="module")
        def arm_device():
            try:
                bnncc.device.qemu.setup()
            except bnncc.device.qemu.QemuUnavailable as e:
                pytest.skip(str(e))
            with bnncc.device.qemu.QemuRpcDevice() as dev:
                yield dev

        def test_x(arm_device):
            remote = arm_device.connect(session_timeout=60)
            out = bnncc.device.qemu.run_vm_remote(remote, "model.so", [x])
    """

    def __init__(
        self,
        key: str = DEFAULT_KEY,
        *,
        tracker: str | None = None,
        cpu: str | None = DEFAULT_CPU,
        startup_timeout: float = 180.0,
        log_dir: Path | str | None = None,
    ):
        self.key, self.cpu, self.startup_timeout = key, cpu, startup_timeout
        self.log_dir = Path(log_dir) if log_dir else None
        self.tracker_proc: subprocess.Popen | None = None
        self.tracker: str | None = tracker
        self.server: subprocess.Popen | None = None

    def _log(self, name: str) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / name

    def start(self) -> QemuRpcDevice:
        setup()
        try:
            if self.tracker is None:
                self.tracker_proc, self.tracker = start_tracker(log_path=self._log("tracker.log"))
            self.start_server()
        except BaseException:
            self.close()
            raise
        return self

    def start_server(self) -> subprocess.Popen:
        assert self.tracker is not None, "start() first"
        self.server = start_rpc_server(
            self.tracker, self.key, free_port(), cpu=self.cpu, timeout=self.startup_timeout,
            log_path=self._log("server.log"),
        )  # fmt: skip
        return self.server

    def kill_server(self, sig: int = signal.SIGKILL) -> None:
        """Kill the server's whole process group (qemu server, worker, session processes)."""
        stop_process(self.server, sig=sig)

    def restart_server(self) -> subprocess.Popen:
        old = getattr(self.server, "bnncc_addr", None)
        self.kill_server()
        deadline = time.monotonic() + 30
        while self.tracker and old is not None and time.monotonic() < deadline:
            if tuple(old) not in _servers(tracker_summary(self.tracker), self.key):
                break
            time.sleep(0.2)  # let the tracker drop the dead server first
        return self.start_server()

    def server_alive(self) -> bool:
        return self.server is not None and self.server.poll() is None

    def ensure_server(self) -> subprocess.Popen:
        """Restart the server if it died (or was killed by a test)."""
        if not self.server_alive():
            return self.restart_server()
        assert self.server is not None
        return self.server

    def summary(self) -> dict[str, Any]:
        assert self.tracker is not None
        return tracker_summary(self.tracker)

    def connect(self, session_timeout: float = 60.0, priority: int = 1, request_timeout: float = 60.0):
        """A ``tvm.rpc.RPCSession`` on the device, requested through the tracker.

        ``session_timeout``: the server ends the session (and tells the client) after that long.
        ``request_timeout``: fail instead of waiting forever in the tracker queue when no server is free.
        A dead server (e.g. killed by an earlier test) is restarted first.
        """
        assert self.tracker is not None, "start() first"
        self.ensure_server()
        return request_session(self.tracker, self.key, session_timeout=session_timeout, priority=priority,
                               request_timeout=request_timeout)

    def close(self) -> None:
        stop_process(self.server)
        self.server = None
        stop_process(self.tracker_proc)
        self.tracker_proc = None

    def __enter__(self) -> QemuRpcDevice:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------- compiling
def aarch64_target():
    import tvm

    return tvm.target.Target(AARCH64_TARGET)


def export_aarch64(executable, path: Path | str) -> Path:
    """``executable.export_library(path)`` cross-compiled with aarch64-linux-gnu-g++ (for this device,
    a Raspberry Pi 4 or any aarch64 Linux). ``executable``: ``tvm.compile(mod, aarch64_target())``."""
    import tvm.support.cc

    path = Path(path)
    executable.export_library(str(path), fcompile=tvm.support.cc.cross_compiler(AARCH64_CXX))
    return path


def run_vm_remote(
    remote, lib_path: Path | str, inputs: Iterable[np.ndarray] | np.ndarray, *, func: str = "main"
) -> np.ndarray | list[np.ndarray]:
    """Upload an exported Relax library to ``remote`` (a tvm.rpc session), run ``func`` in a Relax VM
    on ``remote.cpu()`` and return the output(s) as numpy (a list for a tuple output)."""
    import tvm
    from tvm import relax

    lib_path = Path(lib_path)
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    remote.upload(str(lib_path))
    rexec = remote.load_module(lib_path.name)
    dev = remote.cpu()
    vm = relax.VirtualMachine(rexec, dev)
    args = [tvm.runtime.tensor(np.ascontiguousarray(x), device=dev) for x in inputs]
    out = vm[func](*args)
    return _to_numpy(out)


def _to_numpy(out):
    if hasattr(out, "numpy"):
        return out.numpy()
    return [_to_numpy(o) for o in out]


# ---------------------------------------------------------------------------------------- deploy app
def _host_site() -> Path:
    import tvm_ffi

    return Path(tvm_ffi.__file__).resolve().parent.parent


def _cache_dir() -> Path:
    return Path(os.environ.get("BNNCC_CACHE") or Path.home() / ".cache" / "bnncc")


def build_deploy_app(arch: str = "aarch64", out_dir: Path | str | None = None) -> Path:
    """Build deploy/cpp/bnncc_run with its Makefile (incremental) and return the binary.

    ``arch="aarch64"``: cross-built against the sysroot's aarch64 wheels; ``"native"``: against the host
    wheels of this interpreter. Default output: ``$BNNCC_CACHE/deploy/<arch>/bnncc_run``."""
    if arch == "aarch64":
        site = setup().site
    elif arch == "native":
        site = _host_site()
    else:
        raise DeviceError(f"unknown deploy arch {arch!r} (aarch64 or native)")
    out = Path(out_dir) if out_dir else _cache_dir() / "deploy" / arch
    cmd = ["make", "-s", "-C", str(DEPLOY_CPP), f"ARCH={arch}", f"SITE={site}", f"OUT={out}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise DeviceError(f"building the deploy app failed: {' '.join(cmd)}\n{res.stdout}{res.stderr}")
    return out / "bnncc_run"


@dataclass
class DeployResult:
    outputs: list[np.ndarray]  # one per model output (a tuple output gives several)
    stderr: str
    insns: InsnCount | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> np.ndarray:
        return self.outputs[0]


def run_deploy_app(
    model_so: Path | str,
    inputs: Iterable[np.ndarray] | np.ndarray,
    *,
    arch: str = "aarch64",
    func: str = "main",
    repeat: int = 0,
    count_insns: bool = False,
    cpu: str | None = DEFAULT_CPU,
    guest_env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> DeployResult:
    """Run ``model_so`` (exported Relax library) through the deploy app: under qemu for
    ``arch="aarch64"`` (libs from the sysroot's wheels via LD_LIBRARY_PATH), natively for ``"native"``.

    ``repeat``: timed runs after the first (``--repeat``). ``count_insns`` (aarch64 only): run under the
    qemu-insncount plugin; with ``repeat`` the app marks the timed runs, so ``result.insns.region(1, 2)
    / repeat`` is the instruction count of one run of ``func``; counting sets ``TVM_NUM_THREADS=1``
    (the plugin's count is exact for one thread only; ``result.insns.vcpus`` tells). ``guest_env``: extra
    environment for the app (aarch64: passed with qemu -E; native: added to the process environment)."""
    app = build_deploy_app(arch)
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    with tempfile.TemporaryDirectory(prefix="bnncc-deploy-") as td:
        tdp = Path(td)
        in_paths = []
        for i, x in enumerate(inputs):
            in_paths.append(tdp / f"in{i}.npy")
            np.save(in_paths[-1], np.ascontiguousarray(x))
        out_path = tdp / "out.npy"
        args = [str(app), "--func", func] + (["--repeat", str(repeat)] if repeat else [])
        if count_insns and repeat:
            args.append("--mark")
        args += [str(Path(model_so).resolve()), str(out_path)] + [str(p) for p in in_paths]
        insns = None
        if arch == "aarch64":
            env = setup()
            genv = {"LD_LIBRARY_PATH": env.ld_library_path}
            if count_insns:
                genv["TVM_NUM_THREADS"] = "1"
            genv.update(guest_env or {})
            if count_insns:
                insns = insncount(args, cpu=cpu, guest_env=genv, timeout=timeout, check=False)
                rc, stderr = insns.returncode, insns.stderr
            else:
                res = subprocess.run(
                    qemu_cmd(cpu=cpu, guest_env=genv) + args,
                    env=_clean_host_env(), capture_output=True, text=True, timeout=timeout,
                )  # fmt: skip
                rc, stderr = res.returncode, res.stderr
        else:
            if count_insns:
                raise DeviceError("instruction counts need arch='aarch64'")
            site = _host_site()
            henv = dict(os.environ, LD_LIBRARY_PATH=f"{site / 'tvm' / 'lib'}:{site / 'tvm_ffi' / 'lib'}")
            henv.update(guest_env or {})
            res = subprocess.run(args, env=henv, capture_output=True, text=True, timeout=timeout)
            rc, stderr = res.returncode, res.stderr
        if rc != 0:
            raise DeviceError(f"bnncc_run ({arch}) exited {rc}:\n{stderr[-3000:]}")
        if out_path.exists():
            outputs = [np.load(out_path)]
        else:
            outputs, i = [], 0
            while (tdp / f"out.{i}.npy").exists():
                outputs.append(np.load(tdp / f"out.{i}.npy"))
                i += 1
        if not outputs:
            raise DeviceError(f"bnncc_run ({arch}) wrote no output:\n{stderr[-3000:]}")
        return DeployResult(outputs, stderr, insns)


# ------------------------------------------------------------------------------------ pytest helpers
def require_arm64() -> Arm64Env:
    """:func:`setup`, or ``pytest.skip`` with the reason when qemu cannot be installed on this machine.
    Any other setup failure is raised (a test must fail, not skip, when the device is broken)."""
    import pytest

    try:
        return setup()
    except QemuUnavailable as e:
        pytest.skip(f"no aarch64 qemu device: {e}")


def pytest_fixtures(scope: str = "module", key: str = DEFAULT_KEY, prefix: str = "arm64"):
    """Fixtures for a test module (or a conftest.py)::

        from bnncc.device.qemu import pytest_fixtures
        arm64_env, arm64_rpc = pytest_fixtures()   # fixture names: "arm64_env", "arm64_rpc"

    ``arm64_env`` -> :class:`Arm64Env` (skips when qemu cannot be installed); ``arm64_rpc`` -> a started
    :class:`QemuRpcDevice` (tracker + qemu RPC server) shared by the ``scope``; server logs under pytest's
    tmp dir. ``prefix`` renames both fixtures (``<prefix>_env``, ``<prefix>_rpc``).
    """
    import pytest

    @pytest.fixture(scope=scope, name=f"{prefix}_env")
    def _env() -> Arm64Env:
        return require_arm64()

    @pytest.fixture(scope=scope, name=f"{prefix}_rpc")
    def _rpc(request, tmp_path_factory):
        request.getfixturevalue(f"{prefix}_env")
        with QemuRpcDevice(key, log_dir=tmp_path_factory.mktemp(f"{prefix}-rpc-logs")) as dev:
            yield dev

    return _env, _rpc
