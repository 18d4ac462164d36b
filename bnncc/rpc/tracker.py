"""TVM's RPC tracker from the client side, every step bounded in time: its summary, the servers registered under a
key, a session on one of them, and starting a tracker on this machine.

``tvm.rpc.connect_tracker`` has no socket timeout, retries an unreachable tracker for 60 s and waits forever in
the tracker's queue; this module talks the tracker protocol (``tvm.rpc.base``) directly instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bnncc.errors import BnnccError

from .process import free_port, log_tail, spawn, stop_process

T = TypeVar("T")


class RpcError(BnnccError):
    """Talking to a TVM RPC tracker or server failed (unreachable, no server under the key, refused session)."""


def split_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; a :class:`RpcError` for anything else."""
    try:
        host, port = addr.rsplit(":", 1)
        return host, int(port)
    except ValueError:
        raise RpcError(f"bad RPC tracker address {addr!r}: expected HOST:PORT") from None


@contextlib.contextmanager
def _tracker_socket(tracker: str, timeout: float):
    """A socket to the tracker ``"host:port"`` past the magic handshake, every operation bounded by ``timeout``."""
    import struct

    from tvm.rpc import base

    with socket.create_connection(split_addr(tracker), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(sock, 4))[0]
        if magic != base.RPC_TRACKER_MAGIC:
            raise RpcError(f"{tracker} is not a TVM RPC tracker")
        yield sock


def tracker_summary(tracker: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The tracker's summary (``{"server_info": [...], "queue_info": {...}}``), ``tracker="host:port"``.

    Raises ``OSError`` when the tracker does not answer within ``timeout``, :class:`RpcError` when what answers
    is not a tracker."""
    from tvm.rpc import base

    with _tracker_socket(tracker, timeout) as sock:
        base.sendjson(sock, [base.TrackerCode.SUMMARY])
        value = base.recvjson(sock)
    if value[0] != base.TrackerCode.SUCCESS:
        raise RpcError(f"tracker {tracker}: bad summary reply {value!r}")
    return value[1]


def reach_tracker(tracker: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """:func:`tracker_summary`, with a tracker that cannot be reached as one :class:`RpcError` line."""
    split_addr(tracker)
    try:
        return tracker_summary(tracker, timeout=timeout)
    except (OSError, RpcError) as e:
        raise RpcError(f"cannot reach the RPC tracker {tracker}: {e}") from None


def tracker_keys(summary: Mapping[str, Any]) -> list[str]:
    """The keys of the servers registered in a tracker summary (each key once, sorted)."""
    keys = {str(s.get("key", "")).removeprefix("server:") for s in summary.get("server_info", [])}
    return sorted(k for k in keys if k)


def servers(summary: Mapping[str, Any], key: str) -> list[tuple[str, int]]:
    """The addresses of the servers registered under ``key`` in a tracker summary."""
    return [tuple(s["addr"]) for s in summary.get("server_info", []) if s.get("key") == f"server:{key}"]


def request_session(
    tracker: str,
    key: str,
    *,
    session_timeout: float = 0,
    priority: int = 1,
    request_timeout: float = 60.0,
    wait_registered: float = 10.0,
    tracker_wait: float = 0.0,
):
    """A ``tvm.rpc.RPCSession`` on a server registered under ``key`` at the tracker ``"host:port"``,
    every step bounded in time.

    Raises :class:`RpcError` (a :class:`bnncc.errors.BnnccError`) with a one-line reason when the tracker
    does not answer, when no server with ``key`` is registered within ``wait_registered`` seconds, when none
    becomes free within ``request_timeout`` seconds, or when the server handed out refuses the session.
    ``session_timeout``: the server ends the session (and tells the client) after that many seconds (0: never).
    ``tracker_wait``: how long an unreachable tracker is tried again (one restarting), within ``request_timeout``.
    """
    import tvm.rpc
    from tvm.rpc import base

    split_addr(tracker)
    start = time.monotonic()
    deadline = start + request_timeout

    def remaining() -> float:
        return max(deadline - time.monotonic(), 0.1)

    while True:
        try:
            info = reach_tracker(tracker, timeout=min(10.0, remaining()))
            break
        except RpcError:
            if time.monotonic() > min(deadline, start + tracker_wait):
                raise
            time.sleep(1.0)
    start = time.monotonic()  # the servers of a restarted tracker register again within seconds
    while not servers(info, key):
        if time.monotonic() > min(deadline, start + wait_registered):
            keys = ", ".join(repr(k) for k in tracker_keys(info)) or "none"
            raise RpcError(f"no RPC server with key {key!r} is registered at the tracker {tracker} "
                           f"(registered keys: {keys})")
        time.sleep(0.5)
        info = reach_tracker(tracker, timeout=min(10.0, remaining()))
    last = "no attempt"
    for _attempt in range(3):  # the server handed out may have died since it registered: ask again
        try:
            with _tracker_socket(tracker, remaining()) as sock:
                base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", priority])
                value = base.recvjson(sock)  # closing the socket on timeout withdraws the request
        except TimeoutError:
            n = len(servers(info, key))
            raise RpcError(f"no {key!r} server became free at the tracker {tracker} within "
                           f"{request_timeout:.0f} s ({n} registered, all busy)") from None
        except OSError as e:
            raise RpcError(f"lost the RPC tracker {tracker} while requesting {key!r}: {e}") from None
        if not value or value[0] != base.TrackerCode.SUCCESS:
            raise RpcError(f"the tracker {tracker} refused the request for {key!r}: {value!r}")
        url, port, matchkey = value[1]
        try:
            return tvm.rpc.connect(url, port, matchkey, session_timeout)
        except Exception as e:  # noqa: BLE001 -- TVM raises RuntimeError/InternalError/OSError here
            last = f"{url}:{port}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
        if time.monotonic() >= deadline:
            break
    raise RpcError(f"the {key!r} server given by the tracker {tracker} refused the session ({last})")


def _wait_until(proc: subprocess.Popen, ready: Callable[[], T | None], *, exited: str, late: str, timeout: float,
                interval: float = 0.2) -> T:
    """Poll ``ready()`` until it returns a value; stop ``proc`` and raise :class:`RpcError` (``exited``, where
    ``{rc}`` becomes the exit code, or ``late``, then the log tail) if it exits first or ``timeout`` seconds pass,
    or if ``ready`` raises an RpcError."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            msg = exited.replace("{rc}", str(proc.returncode)) + log_tail(proc)
            stop_process(proc)
            raise RpcError(msg)
        try:
            value = ready()
        except RpcError:
            stop_process(proc)
            raise
        if value is not None:
            return value
        if time.monotonic() > deadline:
            msg = f"{late} in {timeout:.0f} s{log_tail(proc)}"
            stop_process(proc)
            raise RpcError(msg)
        time.sleep(interval)


def await_server(proc: subprocess.Popen, tracker: str, key: str, before: set, *, what: str, timeout: float,
                 interval: float = 0.2) -> subprocess.Popen:
    """Wait until the tracker lists a server under ``key`` that is not in ``before`` (the servers listed before
    ``proc`` started): it is ``proc``, whose address becomes ``proc.bnncc_addr``. Stops ``proc`` and raises
    :class:`RpcError` with its log tail if it exits first or is not listed within ``timeout`` seconds."""
    proc.bnncc_key = key  # type: ignore[attr-defined]

    def registered():
        try:
            now = set(servers(tracker_summary(tracker), key))
        except OSError as e:
            raise RpcError(f"lost the RPC tracker {tracker}: {e}") from None
        return sorted(now - before)[0] if now - before else None

    proc.bnncc_addr = _wait_until(  # type: ignore[attr-defined]
        proc, registered, exited=f"the {what} exited with {{rc}} before registering",
        late=f"the {what} did not register with {tracker} as {key!r}", timeout=timeout, interval=interval)
    return proc


def tracker_cmd(host: str = "127.0.0.1", port: int = 9190, port_end: int | None = None) -> list[str]:
    """``python -m tvm.exec.rpc_tracker`` (this interpreter) on ``host:port``."""
    return [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", host, "--port", str(port),
            "--port-end", str(port_end or port + 1)]


def start_tracker(
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    timeout: float = 60.0,
    log_path: Path | str | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``python -m tvm.exec.rpc_tracker`` on the host (this interpreter) and wait until it answers.

    Returns ``(process, "host:port")``; stop it with :func:`bnncc.rpc.process.stop_process`."""
    port = port or free_port(host)
    # The tracker needs no compiler: runtime-only import (~0.7 s instead of ~1.8 s).
    proc = spawn(tracker_cmd(host, port), dict(os.environ, TVM_USE_RUNTIME_LIB="1"), log_path, "bnncc-rpc-tracker-")
    addr = f"{host}:{port}"

    def answers():
        try:
            tracker_summary(addr, timeout=2.0)
            return addr
        except (OSError, RpcError):
            return None

    _wait_until(proc, answers, exited="the RPC tracker exited with {rc}",
                late=f"the RPC tracker on {addr} did not answer", timeout=timeout)
    return proc, addr
