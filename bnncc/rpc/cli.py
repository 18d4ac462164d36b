"""``bnncc rpc tracker | server | status``: TVM's own RPC tracker and servers, for ``bnncc tune --rpc``.

    bnncc rpc tracker                          # python -m tvm.exec.rpc_tracker --host 127.0.0.1 --port 9190
    bnncc rpc server --key x86-local -n 2      # 2 x python -m tvm.exec.rpc_server --tracker 127.0.0.1:9190 --key ...
    bnncc rpc server --key aarch64-qemu --qemu # the emulated aarch64 device (bnncc.device)
    bnncc rpc status                           # servers per key, queue (the tracker's summary)

Everything binds to 127.0.0.1 unless ``--host`` says otherwise (a tracker or server on 0.0.0.0 lets anyone on the
network run code on this machine). ``tracker`` and ``server`` run in the foreground until Ctrl-C, which stops the
processes they started. Several servers registered under one key share the trials of ``bnncc tune --rpc``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .process import free_port, spawn, stop_process
from .tracker import await_server, reach_tracker, servers, start_tracker

DEFAULT_TRACKER = "127.0.0.1:9190"

__all__ = ["DEFAULT_TRACKER", "add_rpc_parser", "server_cmd", "start_server", "start_tracker", "status", "stop"]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def server_cmd(tracker: str, key: str, host: str = "127.0.0.1", port: int = 9091, port_end: int | None = None,
               custom_addr: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "tvm.exec.rpc_server", "--tracker", tracker, "--key", key, "--host", host,
           "--port", str(port), "--port-end", str(port_end or port + 100)]
    if custom_addr:
        cmd += ["--custom-addr", custom_addr]
    return cmd


def start_server(tracker: str, key: str, *, host: str = "127.0.0.1", port: int | None = None, log_path=None,
                 timeout: float = 60.0, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start one TVM RPC server on this machine (``python -m tvm.exec.rpc_server``), registered at ``tracker`` under
    ``key``, and wait until the tracker lists it (``proc.bnncc_addr``). Stop it with :func:`stop` (kills its
    process group: the server and its session workers)."""
    before = set(servers(reach_tracker(tracker), key))
    port = port or free_port(host)
    penv = dict(os.environ, **(env or {}))
    proc = spawn(server_cmd(tracker, key, host, port, port + 100), penv, log_path, "bnncc-rpc-server-")
    return await_server(proc, tracker, key, before, what="RPC server", timeout=timeout)


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGKILL) -> None:
    """Stop a tracker or server started here (its whole process group)."""
    stop_process(proc, sig=sig)


def status(tracker: str = DEFAULT_TRACKER) -> dict[str, Any]:
    """``{"servers": {key: [(host, port), ...]}, "queue": {key: {"free": n, "pending": m}}}`` of a tracker."""
    summary = reach_tracker(tracker)
    by_key: dict[str, list] = {}
    for s in summary.get("server_info", []):
        key = str(s.get("key", "")).removeprefix("server:")
        by_key.setdefault(key, []).append(tuple(s.get("addr", ())))
    return {"servers": by_key, "queue": summary.get("queue_info", {})}


# --------------------------------------------------------------------------------------------- commands
def _stop_signal(signum, _frame):
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP stop the command like Ctrl-C (SIGINT, also when a shell started it in the background)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _stop_signal)


def _wait(procs: list[subprocess.Popen], what: str) -> int:
    """Foreground until Ctrl-C (or SIGTERM/SIGHUP) or until every process has exited; stops them on the way out
    (they run in their own sessions, so nothing else would)."""
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
        _say(f"bnncc rpc: the {what} exited")
        return 1
    except KeyboardInterrupt:
        _say(f"bnncc rpc: stopping the {what}")
        return 0
    finally:
        for p in procs:
            stop(p, sig=signal.SIGTERM)


def cmd_tracker(args) -> int:
    _stop_on_signals()
    proc, addr = start_tracker(args.host, args.port)
    _say(f"bnncc rpc: tracker on {addr} (Ctrl-C stops it); servers: bnncc rpc server --tracker {addr} --key KEY")
    return _wait([proc], "tracker")


def cmd_server(args) -> int:
    _stop_on_signals()
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(args.n):
            if args.qemu:
                from bnncc.device import start_rpc_server

                procs.append(start_rpc_server(args.tracker, args.key, args.port or free_port(args.host),
                                              host=args.host))
            else:
                procs.append(start_server(args.tracker, args.key, host=args.host, port=args.port))
            addr = getattr(procs[-1], "bnncc_addr", "?")
            _say(f"bnncc rpc: server {len(procs)}/{args.n} ({'qemu aarch64' if args.qemu else 'this machine'}) "
                 f"registered at {args.tracker} as {args.key!r} ({addr[0]}:{addr[1]})")
            if args.port:
                args.port += 101  # the next server's port range
    except BaseException:
        for p in procs:
            stop(p)
        raise
    _say("bnncc rpc: Ctrl-C stops the server(s)")
    return _wait(procs, "server(s)")


def cmd_status(args) -> int:
    st = status(args.tracker)
    if not st["servers"]:
        print(f"tracker {args.tracker}: no servers registered")
        return 0
    print(f"tracker {args.tracker}:")
    print(f"  {'key':24s} {'servers':>7s} {'free':>5s} {'pending':>7s}  addresses")
    for key, addrs in sorted(st["servers"].items()):
        q = st["queue"].get(key, {})
        where = ", ".join(f"{a[0]}:{a[1]}" for a in addrs if len(a) == 2)
        print(f"  {key:24s} {len(addrs):7d} {q.get('free', '?')!s:>5s} {q.get('pending', '?')!s:>7s}  {where}")
    return 0


def add_rpc_parser(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("rpc", help="TVM RPC tracker/servers for bnncc tune --rpc (tracker | server | status)")
    rs = rp.add_subparsers(dest="rpc_command", required=True)
    t = rs.add_parser("tracker", help="run TVM's RPC tracker (foreground)")
    t.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    t.add_argument("--port", type=int, default=9190)
    t.set_defaults(func=cmd_tracker)
    s = rs.add_parser("server", help="run TVM RPC server(s) registered at a tracker (foreground)")
    s.add_argument("--key", required=True, help="device key the servers register under (e.g. x86-local)")
    s.add_argument("--tracker", default=DEFAULT_TRACKER, help=f"HOST:PORT (default {DEFAULT_TRACKER})")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="first port (default: a free one)")
    s.add_argument("-n", type=int, default=1, help="servers to start (they share the trials)")
    s.add_argument("--qemu", action="store_true", help="the emulated aarch64 device instead of this machine")
    s.set_defaults(func=cmd_server)
    q = rs.add_parser("status", help="servers and queue of a tracker")
    q.add_argument("--tracker", default=DEFAULT_TRACKER, help=f"HOST:PORT (default {DEFAULT_TRACKER})")
    q.set_defaults(func=cmd_status)
