"""The emulated aarch64 device as a TVM RPC server: ``tvm.exec.rpc_server`` under qemu, registered with a TVM RPC
tracker (:func:`start_rpc_server`, or a tracker and a server at once with :class:`QemuRpcDevice`, a context
manager meant to be used from a module/session-scoped pytest fixture), and :func:`run_vm_remote` to run a Relax
executable exported for aarch64 (:func:`export_aarch64`) on it.

Two traps handled here: ``tvm.exec.rpc_server`` re-launches ``sys.executable`` for its worker and
binfmt_misc is not mounted, so an aarch64 ``sys.executable`` cannot be exec'ed: the server is started
through a bootstrap that points ``sys.executable`` at a host shell wrapper calling qemu. And
``TVM_USE_RUNTIME_LIB=1`` (skip the 230 MB compiler library: ``import tvm`` ~4 s instead of ~9 s under
qemu) does not load ``libtvm_runtime_extra.so`` (contrib sort/topk/random, disco), so the server gets it
with ``--load-library``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bnncc.rpc.process import free_port, spawn, stop_process
from bnncc.rpc.remote import to_numpy
from bnncc.rpc.tracker import (
    RpcError,
    await_server,
    reach_tracker,
    request_session,
    servers,
    start_tracker,
    tracker_summary,
)

from .arm64 import DEFAULT_CPU, DeviceError, guest_safe_env, python_cmd, setup

#: RPC key the qemu server registers under.
DEFAULT_KEY = "aarch64-qemu"
#: The bnncc target of code that runs on this device (bnncc.targets): generic aarch64 with NEON.
TARGET = "aarch64"

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
        before = set(servers(reach_tracker(tracker), key))
    except RpcError as e:
        raise DeviceError(str(e)) from None
    cmd = python_cmd(cpu=cpu, runtime_only=True) + [
        "-c", _RPC_BOOTSTRAP, str(env.python_wrapper),
        "--tracker", tracker, "--key", key, "--host", host,
        "--port", str(port), "--port-end", str(port_end or port + 100),
    ]  # fmt: skip
    if load_extra:
        cmd += ["--load-library", str(env.tvm_libdir / "libtvm_runtime_extra.so")]
    # Inherited by the worker (host wrapper -> qemu): same runtime mode, same CPU model.
    penv = guest_safe_env({"TVM_USE_RUNTIME_LIB": "1", "BNNCC_QEMU_OPTS": f"-cpu {cpu}" if cpu else ""})
    proc = spawn(cmd, penv, log_path, "bnncc-rpc-server-")
    try:
        return await_server(proc, tracker, key, before, what="qemu RPC server", timeout=timeout, interval=0.5)
    except RpcError as e:
        raise DeviceError(str(e)) from None


class QemuRpcDevice:
    """A TVM RPC tracker (started here unless ``tracker`` is given) + a qemu aarch64 RPC server.

    Use from a module-scoped fixture (``import tvm`` under qemu takes seconds)::

        @pytest.fixture(scope="module")
        def arm_device():
            try:
                bnncc.device.setup()
            except bnncc.device.QemuUnavailable as e:
                pytest.skip(str(e))
            with bnncc.device.QemuRpcDevice() as dev:
                yield dev

        def test_x(arm_device):
            remote = arm_device.connect(session_timeout=60)
            out = bnncc.device.run_vm_remote(remote, "model.so", [x])
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
                try:
                    self.tracker_proc, self.tracker = start_tracker(log_path=self._log("tracker.log"))
                except RpcError as e:
                    raise DeviceError(str(e)) from None
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
            if tuple(old) not in servers(tracker_summary(self.tracker), self.key):
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
        A dead server (e.g. killed by an earlier test) is restarted first. Raises :class:`DeviceError`.
        """
        assert self.tracker is not None, "start() first"
        self.ensure_server()
        try:
            return request_session(self.tracker, self.key, session_timeout=session_timeout, priority=priority,
                                   request_timeout=request_timeout)
        except RpcError as e:
            raise DeviceError(str(e)) from None

    def close(self) -> None:
        stop_process(self.server)
        self.server = None
        stop_process(self.tracker_proc)
        self.tracker_proc = None

    def __enter__(self) -> QemuRpcDevice:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def aarch64_target():
    """The TVM target of code for this device: bnncc's ``aarch64`` target."""
    from bnncc.targets import get_target

    return get_target(TARGET).tvm_target()


def export_aarch64(executable, path: Path | str) -> Path:
    """``executable.export_library(path)`` cross-compiled with the ``aarch64`` target's g++ (for this device,
    a Raspberry Pi 4 or any aarch64 Linux). ``executable``: ``tvm.compile(mod, aarch64_target())``."""
    import tvm.support.cc

    from bnncc.targets import get_target

    path = Path(path)
    executable.export_library(str(path), fcompile=tvm.support.cc.cross_compiler(get_target(TARGET).cross_compiler))
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
    return to_numpy(vm[func](*args), list)
