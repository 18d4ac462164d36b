"""Fuzz the tuning-log reader: bnncc's line checks (:func:`bnncc.tune.database.sanitize_database`, in-process,
without TVM's parser, which a damaged workload can crash and which bnncc runs in a child process) and
:func:`bnncc.tune.log.read_summary`: ``python -m tests.fuzz.tuning_log -runs=100000``. The inputs found so far
(tests/fuzz/regressions/tuning_log/) are replayed through the whole path by test_fuzz_targets.py. The input
is split at the first two NUL bytes into the workload file, the record file and
summary.json of a log directory."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

from tests.fuzz.harness import fuzz_main, instrumented

with instrumented():
    from bnncc.tune import database, log

_DIR = Path(tempfile.mkdtemp(prefix="bnncc-fuzz-log-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))


def one_input(data: bytes) -> None:
    parts = (data.split(b"\0", 2) + [b"", b""])[:3]
    shutil.rmtree(_DIR, ignore_errors=True)
    _DIR.mkdir()
    for name, part in zip((database.WORKLOAD_FILE, database.RECORD_FILE, log.SUMMARY_FILE), parts, strict=True):
        (_DIR / name).write_bytes(part)
    database.sanitize_database(_DIR, warn=lambda _msg: None, parse=False)
    with contextlib.redirect_stderr(io.StringIO()):  # its warning about a corrupt summary
        log.read_summary(_DIR).get("target")


def seeds() -> dict[str, bytes]:
    """A real one-record log: a tiny PrimFunc tuned with an empty trace."""
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    a = te.placeholder((4,), "float32", name="a")
    add = te.create_prim_func([a, te.compute((4,), lambda i: a[i] + 1.0, name="b")])

    with tempfile.TemporaryDirectory() as d:
        db = ms.database.JSONDatabase(f"{d}/w.json", f"{d}/r.json", allow_missing=True)
        mod = tvm.IRModule({"main": add})
        wl = db.commit_workload(mod)
        sch = tvm.s_tir.Schedule(mod)
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, wl, [0.001], tvm.target.Target("llvm"), None))
        workload, record = Path(f"{d}/w.json").read_bytes(), Path(f"{d}/r.json").read_bytes()
    summary = json.dumps({"target": {"log_name": "host-generic"}, "tasks": {}}).encode()
    return {"one-record": workload + b"\0" + record + b"\0" + summary, "empty": b"\0\0",
            "garbage-lines": b"[1, 2]\n{]\n\0[0, [1]]\n\0{"}


if __name__ == "__main__":
    fuzz_main("tuning_log", one_input, seeds)
