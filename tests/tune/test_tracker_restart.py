"""The tracker lost during ``bnncc tune --rpc``: a real TVM RPC tracker and server on 127.0.0.1, ``python -m bnncc
tune`` in a subprocess, the tracker killed (SIGKILL) mid-run. Started again on the same port a few seconds later,
tuning resumes and finishes; gone for good, tuning stops with one clear error line (exit 2). Either way every line
of the databases written before the kill is still there byte for byte, every line is whole, the databases load,
and there is no traceback. Slow: a tuning run through RPC takes a minute or two on 2 shared cores."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnncc import tune as T
from bnncc.rpc import cli as rpc_cli
from bnncc.rpc import servers, split_addr, start_tracker, tracker_summary
from bnncc.tune.database import sanitize_database

REPO = Path(__file__).resolve().parents[2]
KEY = "bnncc-tracker-restart"
OUTAGE_S = 6.0  # the tracker is away longer than a server's 2 s ping and a trial's measurement

pytestmark = pytest.mark.slow


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.is_file() else []


def _registered(addr: str) -> bool:
    try:
        return bool(servers(tracker_summary(addr, timeout=2), KEY))
    except OSError:
        return False


def _tune(model: Path, addr: str, log: Path, session_timeout: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "bnncc", "tune", model, "--rpc", addr, "--key", KEY, "--trials",
                             "8", "--float-tasks", "0", "--session-timeout", str(session_timeout), "--seed", "3",
                             "--log", log], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=log.parent)


@contextlib.contextmanager
def _fleet(tmp_path: Path):
    """A tracker and a server on 127.0.0.1; yields (address, processes): a test puts its tuner in ``procs`` and
    may replace the tracker; all are stopped at the end."""
    procs: dict[str, subprocess.Popen | None] = {}
    procs["tracker"], addr = start_tracker(log_path=tmp_path / "tracker.log")
    procs["server"] = rpc_cli.start_server(addr, KEY, log_path=tmp_path / "server.log")
    try:
        yield addr, procs
    finally:
        tuner = procs.get("tuner")
        if tuner is not None and tuner.poll() is None:
            tuner.kill()
            tuner.wait()
        rpc_cli.stop(procs["server"])
        rpc_cli.stop(procs["tracker"])


def _databases(log: Path) -> list[Path]:
    return [d / f for d in (log / T.TRIALS_DIR, log) for f in (T.WORKLOAD_FILE, T.RECORD_FILE)]


def _check_kept_and_readable(log: Path, before: dict[Path, list[bytes]]) -> None:
    for path, lines in before.items():
        after = _lines(path)
        if path.parent == log / T.TRIALS_DIR:  # appended to, never rewritten
            assert after[:len(lines)] == lines, path
        else:  # the committed log is rewritten per task decided: what it held stays
            assert set(lines) <= set(after), path
    for directory in (log / T.TRIALS_DIR, log):
        assert all(ln.endswith(b"\n") for p in directory.glob("database_*.json") for ln in _lines(p))
        assert sanitize_database(directory, warn=lambda m: None) == 0  # nothing to move aside
        assert not list(directory.glob("*.corrupt"))
    trials = log / T.TRIALS_DIR / T.RECORD_FILE
    if trials.is_file():
        db = T.open_database(log / T.TRIALS_DIR, create=False)
        assert len(db.get_all_tuning_records()) == len(_lines(trials))


def test_tracker_restart_during_tuning_loses_no_record(model_dir, tmp_path):
    log = tmp_path / "log"
    trials_db = log / T.TRIALS_DIR / T.RECORD_FILE
    with _fleet(tmp_path) as (addr, procs):
        tuner = procs["tuner"] = _tune(model_dir / "tiny.h5", addr, log, 30)
        deadline = time.monotonic() + 240
        while not _lines(trials_db) and time.monotonic() < deadline and tuner.poll() is None:
            time.sleep(0.1)
        assert _lines(trials_db), f"no trial recorded before the kill: {tuner.poll()} {tuner.stderr.read()}"
        rpc_cli.stop(procs["tracker"])  # SIGKILL, mid-run: the default and tuned schedules are still to be timed
        before = {p: _lines(p) for p in _databases(log)}
        time.sleep(OUTAGE_S)
        procs["tracker"], _ = start_tracker(port=split_addr(addr)[1], log_path=tmp_path / "tracker2.log")
        t0 = time.monotonic()
        while not _registered(addr) and time.monotonic() - t0 < 30:
            time.sleep(0.2)
        assert _registered(addr), "the server did not register with the restarted tracker"
        out, err = tuner.communicate(timeout=400)
    assert tuner.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert json.loads(out.splitlines()[-1])["tasks"] == 1
    assert "committed" in err or "default kept" in err
    _check_kept_and_readable(log, before)


def test_tracker_gone_for_good_ends_in_one_error_line(model_dir, tmp_path):
    log = tmp_path / "log"
    with _fleet(tmp_path) as (addr, procs):
        tuner = procs["tuner"] = _tune(model_dir / "tiny.h5", addr, log, 10)
        seen = []
        for line in tuner.stderr:  # the search is starting: kill the tracker before its trials are measured
            seen.append(line)
            if "trial(s) to run" in line:
                break
        assert seen and "trial(s) to run" in seen[-1], "".join(seen)
        rpc_cli.stop(procs["tracker"])
        before = {p: _lines(p) for p in _databases(log)}
        out, err = tuner.communicate(timeout=400)
    errors = [ln for ln in err.splitlines() if ln.startswith("bnncc: error:")]
    assert tuner.returncode == 2 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert "cannot reach the RPC tracker" in errors[0] and "rerun" in errors[0]
    assert "Cannot connect to tracker" in (log / T.LOGS_DIR / "rpc-runner.log").read_text()  # TVM's, off the console
    _check_kept_and_readable(log, before)
