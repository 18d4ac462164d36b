"""A tracker restart during ``bnncc tune --rpc`` loses no committed record: a real TVM RPC tracker and server on
127.0.0.1, ``python -m bnncc tune`` in a subprocess, the tracker killed (SIGKILL) once trials are in the database
and started again on the same port a few seconds later. Afterwards every line of the databases written before the
kill is still there byte for byte, the databases load, and the tuner either finished (exit 0) or stopped with one
clear error line (exit 2) — no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bnncc import tune as T
from bnncc.rpc import cli as rpc_cli
from bnncc.rpc import servers, split_addr, start_tracker, tracker_summary
from bnncc.tune.database import sanitize_database

REPO = Path(__file__).resolve().parents[2]
KEY = "bnncc-tracker-restart"
OUTAGE_S = 6.0  # the tracker is away longer than a server's 2 s ping and a trial's measurement


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.is_file() else []


def _registered(addr: str) -> bool:
    try:
        return bool(servers(tracker_summary(addr, timeout=2), KEY))
    except OSError:
        return False


def test_tracker_restart_during_tuning_loses_no_record(model_dir, tmp_path):
    log = tmp_path / "log"
    trials_db = log / T.TRIALS_DIR / T.RECORD_FILE
    tracker, addr = start_tracker(log_path=tmp_path / "tracker.log")
    server = rpc_cli.start_server(addr, KEY, log_path=tmp_path / "server.log")
    tuner = None
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        tuner = subprocess.Popen([sys.executable, "-m", "bnncc", "tune", model_dir / "tiny.h5", "--rpc", addr,
                                  "--key", KEY, "--trials", "8", "--float-tasks", "0", "--session-timeout", "30",
                                  "--seed", "3", "--log", log], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        deadline = time.monotonic() + 240
        while not _lines(trials_db) and time.monotonic() < deadline and tuner.poll() is None:
            time.sleep(0.1)
        assert _lines(trials_db), f"no trial recorded before the kill: {tuner.poll()} {tuner.stderr.read()}"
        rpc_cli.stop(tracker)  # SIGKILL, mid-run
        before = {p: _lines(p) for p in (trials_db, log / T.TRIALS_DIR / T.WORKLOAD_FILE,
                                          log / T.RECORD_FILE, log / T.WORKLOAD_FILE)}
        time.sleep(OUTAGE_S)
        tracker, _ = start_tracker(port=split_addr(addr)[1], log_path=tmp_path / "tracker2.log")
        t0 = time.monotonic()
        while not _registered(addr) and time.monotonic() - t0 < 30:
            time.sleep(0.2)
        if not _registered(addr):  # the stock server gave up on the tracker: a new one, as an operator would
            rpc_cli.stop(server)
            server = rpc_cli.start_server(addr, KEY, log_path=tmp_path / "server2.log")
        out, err = tuner.communicate(timeout=400)
    finally:
        if tuner is not None and tuner.poll() is None:
            tuner.kill()
            tuner.wait()
        rpc_cli.stop(server)
        rpc_cli.stop(tracker)
    assert "Traceback" not in err, err[-3000:]
    if tuner.returncode == 0:
        assert json.loads(out.splitlines()[-1])["tasks"] >= 1
    else:
        errors = [ln for ln in err.splitlines() if ln.startswith("bnncc: error:")]
        assert tuner.returncode == 2 and len(errors) == 1, err[-3000:]
    # every line written before the kill is still there, byte for byte (appended to, never rewritten)
    for path, lines in before.items():
        after = _lines(path)
        if path.parent == log / T.TRIALS_DIR:
            assert after[:len(lines)] == lines, path
        else:  # the committed log is rewritten per task: its records of tasks decided before the kill stay
            assert set(lines) <= set(after) or not lines, path
    # every line whole and loadable: nothing moved aside, TVM's loader reads all of them
    for directory in (log / T.TRIALS_DIR, log):
        assert all(ln.endswith(b"\n") for p in directory.glob("database_*.json") for ln in _lines(p))
        assert sanitize_database(directory, warn=lambda m: None) == 0
        assert not list(directory.glob("*.corrupt"))
    db = T.open_database(log / T.TRIALS_DIR, create=False)
    assert len(db.get_all_tuning_records()) == len(_lines(trials_db)) >= len(before[trials_db])
