"""Background processes of the RPC fleet (trackers, servers): started in their own session with their output in a
log file, stopped with their whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], env: dict[str, str], log_path: Path | str | None, prefix: str) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group) with stdout and stderr to ``log_path`` (default: a
    temporary file named ``<prefix>*.log``), kept as ``proc.bnncc_log``. Stop it with :func:`stop_process`."""
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


def stop_process(proc: subprocess.Popen | None, *, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
    """Signal the process group of a process started here (start_new_session=True: a server, its worker and the
    forked session processes) and reap it."""
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


def log_tail(proc: subprocess.Popen, n: int = 40) -> str:
    """The last ``n`` lines of a :func:`spawn`-ed process's log, as a paragraph to append to an error ("" if
    there is none)."""
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
