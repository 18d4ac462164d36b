"""``bnncc rpc`` (bnncc.rpc.cli): TVM's own tracker and servers on 127.0.0.1, started from Python and from the
command line, listed by ``bnncc rpc status``, stopped with their processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from bnncc.rpc import cli as rpc_cli
from bnncc.testing import local_fleet

KEY = "x86-local"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A TVM RPC tracker and two RPC servers (this machine) registered as KEY, all on 127.0.0.1."""
    with local_fleet(tmp_path_factory.mktemp("fleet-logs"), KEY) as fleet:
        yield fleet


def test_rpc_status_cli(fleet):
    addr, _servers, _logs = fleet
    res = subprocess.run([sys.executable, "-m", "bnncc", "rpc", "status", "--tracker", addr], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if KEY in ln)
    assert line.split()[1] == "2"  # two servers under the key


def test_rpc_cli_tracker_and_servers(tmp_path):
    """``bnncc rpc tracker`` and ``bnncc rpc server -n 2`` in the foreground; Ctrl-C / SIGTERM stop what they
    started (the servers leave the tracker, the tracker's port closes)."""
    import socket

    from bnncc.rpc import free_port

    port = free_port()
    addr = f"127.0.0.1:{port}"
    cli = [sys.executable, "-m", "bnncc", "rpc"]
    tracker = subprocess.Popen([*cli, "tracker", "--port", str(port)], stderr=subprocess.PIPE, text=True)
    servers = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                rpc_cli.status(addr)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.3)
        servers = subprocess.Popen([*cli, "server", "--tracker", addr, "--key", "cli-test", "-n", "2"],
                                   stderr=subprocess.PIPE, text=True)
        for line in servers.stderr:  # until both are registered and it waits in the foreground
            if "Ctrl-C stops" in line:
                break
        assert len(rpc_cli.status(addr)["servers"]["cli-test"]) == 2
        servers.send_signal(signal.SIGINT)
        assert servers.wait(timeout=30) == 0
        time.sleep(1)
        assert "cli-test" not in rpc_cli.status(addr)["servers"]
        tracker.send_signal(signal.SIGTERM)
        assert tracker.wait(timeout=30) == 0
        time.sleep(0.5)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        for p in (servers, tracker):
            if p is not None and p.poll() is None:
                p.terminate()  # the command stops the processes it started (SIGKILL would orphan them)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
