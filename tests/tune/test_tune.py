"""Auto-tuning (bnncc.tune): real TVM RPC tracker and servers on 127.0.0.1, MetaSchedule + XGBoost over bnncc's
tunable schedules, the tuned trace applied at compile time, faults (a killed server, an interrupted run). The qemu
aarch64 device test is slow-marked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tvm
from tune_cases import body_equal, layer, oracle, records

from bnncc import tune as T
from bnncc.pipeline import build, lower
from bnncc.rpc import cli as rpc_cli
from bnncc.targets import get_target
from bnncc.testing import local_fleet

KEY = "x86-local"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A TVM RPC tracker and two RPC servers (this machine) registered as KEY, all on 127.0.0.1."""
    with local_fleet(tmp_path_factory.mktemp("fleet-logs"), KEY) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def fleet_tuned(fleet, tmp_path_factory):
    """One small binary conv tuned for a handful of trials through the two servers."""
    addr, _servers, logs = fleet
    mod, kernel = layer()
    log_dir = tmp_path_factory.mktemp("tuned") / "host-log"
    lines: list[str] = []
    report = T.tune(mod, "host", log_dir=log_dir, trials=6, trials_per_iter=3, rpc=addr, key=KEY, verify_rounds=3,
                    fallback=False, seed=1, progress=lines.append)
    return mod, kernel, log_dir, report, lines, logs


def test_tune_through_rpc_fleet_then_compile_uses_the_tuned_trace(fleet_tuned):
    mod, kernel, log_dir, report, lines, logs = fleet_tuned
    (task,) = report.tasks
    assert task.kind == "binary" and task.new_trials >= 6 and task.checked and task.choice == "tuned"
    assert any("6/6 trials" in ln for ln in lines), lines  # a progress line per batch
    # every trial is in the trials database, the winner in the committed one
    assert len(records(log_dir / T.TRIALS_DIR)) >= 6
    assert len(records(log_dir)) == 1
    summary = json.loads((log_dir / T.SUMMARY_FILE).read_text())
    assert summary["target"]["log_name"] == T.log_name("host")
    # both servers under the key measured trials
    for i in range(2):
        assert "load_module" in (logs / f"server{i}.log").read_text(), f"server {i} ran no trial"
    # MetaSchedule's logging went to the log directory, not to the console
    assert (log_dir / T.LOGS_DIR / "metaschedule.log").stat().st_size > 0

    spec = get_target("host")
    tlog = T.TuningLog.resolve(log_dir, spec)
    lowered = lower(mod, spec, tuning=tlog)
    assert tlog.last_report["tuned_ops"] == 1
    (name,) = tlog.last_report["tuned_funcs"]
    # the compiled PrimFunc is exactly the committed record's trace replayed, not bnncc's default schedule
    (rec,) = T.open_database(log_dir).get_all_tuning_records()
    tuned = rec.as_measure_candidate().sch.mod["main"]
    assert body_equal(lowered[name], tuned)
    default = T.default_schedule(rec.workload.mod, spec.tvm_target()).mod["main"]
    assert T.decisions(rec.trace) and not body_equal(lowered[name], default)

    exe = build(mod, spec, tuning_log=log_dir)
    assert exe.stats["tuned_ops"] == 1 and exe.stats["tunable_ops"] == 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 8, 64)).astype(np.float32)
    np.testing.assert_array_equal(exe(x), oracle(x, kernel))  # bit-exact
    if tvm.target.codegen.llvm_cpu_has_features(["avx512vpopcntdq"], spec.tvm_target()):
        assert "vpopcnt" in exe.assembly()  # the popcount instruction is still there


def _sampled_trials(directory: Path, task, n: int) -> None:
    """``n`` distinct points of the task's tunable space as trial records (sampled, not measured: cheap)."""
    from tvm import s_tir
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.database import JSONDatabase, TuningRecord

    target = get_target("host").tvm_target()
    directory.mkdir(parents=True, exist_ok=True)
    db = JSONDatabase(work_dir=str(directory))
    wl = db.commit_workload(task.mod)
    seen: set = set()
    for seed in range(1, 1000):
        if len(seen) == n:
            break
        sch = s_tir.Schedule(task.mod, seed=seed)
        T.tunable_space(target)(sch)
        if T.decisions(sch.trace) not in seen:
            seen.add(T.decisions(sch.trace))
            db.commit_tuning_record(TuningRecord(sch.trace, wl, [1e-6 * len(seen)], target,
                                                 ArgInfo.from_prim_func(task.mod["main"])))


def test_default_kept_when_not_faster(tmp_path):
    """Never slower than the default: when no tuned schedule beats it (here: by a 1000x margin no schedule
    reaches), nothing is committed and compile keeps bnncc's default schedule."""
    mod, kernel = layer(seed=8)
    (task,) = T.extract_tasks(mod)
    log = tmp_path / "log"
    _sampled_trials(log / T.TRIALS_DIR, task, 3)  # three "measured" schedules: nothing left to search
    report = T.tune(mod, "host", log_dir=log, trials=3, verify_rounds=1, min_gain=0.999, progress=None)
    (res,) = report.tasks
    assert res.new_trials == 0 and res.checked and res.choice == "default"
    assert res.tuned_s is not None and res.default_s is not None  # both were timed, the default kept
    assert records(log) == []
    exe = build(mod, "host", tuning_log=log)
    assert exe.stats["tuned_ops"] == 0
    x = np.random.default_rng(4).standard_normal((1, 8, 8, 64)).astype(np.float32)
    np.testing.assert_array_equal(exe(x), oracle(x, kernel))


def test_killed_server_tuning_completes(tmp_path):
    """One of two servers is killed mid-run: its trial fails, the other server takes the rest."""
    with local_fleet(tmp_path, KEY) as (addr, servers, _logs):
        killed = []

        def progress(line: str) -> None:
            if " trials, best " in line and not killed:  # after the first batch
                rpc_cli.stop(servers[0])
                killed.append(time.monotonic())

        mod, kernel = layer(seed=5)
        report = T.tune(mod, "host", log_dir=tmp_path / "log", trials=6, trials_per_iter=2, rpc=addr, key=KEY,
                        session_timeout=20, verify_rounds=2, fallback=False, progress=progress)
        assert killed, "the server was never killed"
        (task,) = report.tasks
        assert task.new_trials >= 6 and task.checked
        trials = [json.loads(ln) for ln in records(tmp_path / "log" / T.TRIALS_DIR)]
        ok = [t for t in trials if t[1][1] is not None and all(s < 1e9 for s in t[1][1])]
        assert len(ok) >= 4  # the surviving server measured the batches after the kill
        assert len(rpc_cli.status(addr)["servers"].get(KEY, [])) == 1
        exe = build(mod, "host", tuning_log=tmp_path / "log")
        x = np.random.default_rng(6).standard_normal((1, 8, 8, 64)).astype(np.float32)
        np.testing.assert_array_equal(exe(x), oracle(x, kernel))


_RESUME_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from tune_cases import layer
    from bnncc import tune as T
    T.tune(layer(h=8, c=64, o=128)[0], "host", log_dir={log!r}, trials=8, trials_per_iter=2, verify_rounds=1,
           seed=2)
""")


def test_resume_after_interrupt(tmp_path):
    """Ctrl-C mid-run keeps every measured record (MetaSchedule's JSON database appends each one as it comes);
    the rerun measures only the rest."""
    log = tmp_path / "log"
    script = _RESUME_SCRIPT.format(tests=str(Path(__file__).parent), log=str(log))
    # SIGINT's default disposition in the child (a shell's background job would otherwise ignore it), so that
    # Python turns it into KeyboardInterrupt as at a terminal
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    trials = log / T.TRIALS_DIR
    snapshots = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and len(records(trials)) < 4:
            assert proc.poll() is None, proc.stderr.read()
            text = (trials / T.RECORD_FILE).read_text() if (trials / T.RECORD_FILE).is_file() else ""
            if text and (not snapshots or snapshots[-1] != text):
                snapshots.append(text)
            time.sleep(0.2)
        assert len(records(trials)) >= 4
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        rc = proc.wait(timeout=60)
        err = proc.stderr.read()
        # stopped at a safe point, with a KeyboardInterrupt (not a crash, nor the RuntimeError TVM's FFI turns
        # one into inside the search)
        assert rc in (-signal.SIGINT, 130) and "KeyboardInterrupt" in err, (rc, err[-3000:])
        assert "Ctrl-C: stopping after the trials being measured" in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # appended, never rewritten: each snapshot is a prefix of the next, every line a whole record
    final = (trials / T.RECORD_FILE).read_text()
    for a, b in zip(snapshots, [*snapshots[1:], final], strict=True):
        assert b.startswith(a)
    kept = [json.loads(ln) for ln in records(trials)]
    assert len(kept) >= 4
    # Ctrl-C reaches the whole process group, the runner's worker too: a trial it was measuring may be recorded
    # as failed; those are measured again
    ok = [r for r in kept if r[1][1] is not None and all(t < 1e9 for t in r[1][1])]
    assert len(ok) >= 3
    lines: list[str] = []
    mod = layer(h=8, c=64, o=128)[0]
    report = T.tune(mod, "host", log_dir=log, trials=8, trials_per_iter=2, verify_rounds=1, progress=lines.append)
    (task,) = report.tasks
    assert any(f"resuming after {len(ok)}" in ln for ln in lines) or task.new_trials == 0, lines
    assert task.trials == min(8, task.space)
    assert task.new_trials <= min(8, task.space) - len(ok)
    # a third run has nothing left to do
    again = T.tune(mod, "host", log_dir=log, trials=8, progress=None)
    assert again.tasks[0].new_trials == 0 and again.trials == 0


def test_space_size_counts_the_tile_decisions():
    (task,) = T.extract_tasks(layer(h=8)[0])
    # 8 columns: pixel tiles {1, 2, 4, 8}; 64 channels = 4 vectors of 16 (32-bit words, 512-bit registers on
    # AVX-512, else 8 vectors of 8): channel tiles = the divisors ≤ 8 of the vector count
    vectors = 64 // (16 if tvm.target.codegen.llvm_cpu_has_features(["avx512f"], get_target("host").tvm_target())
                     else 8)
    assert T.space_size(task, get_target("host").tvm_target()) == 4 * len([d for d in (1, 2, 4, 8)
                                                                         if vectors % d == 0])


# ------------------------------------------------------------------------------------------- aarch64 (qemu)
@pytest.mark.slow
def test_tune_aarch64_through_qemu_device(tmp_path):
    """A tiny bconv tuned for the aarch64 target against the emulated device: the builder cross-compiles, the
    candidates are checked on the device against this machine's default schedule, and the tuned model's output on
    the device is bit-exact (emulated timings are not meaningful and never committed)."""
    from bnncc import device

    device.require_arm64()
    with device.QemuRpcDevice(key="aarch64-tune", log_dir=tmp_path / "dev") as dev:
        mod, kernel = layer(h=4, c=64, o=32, bits=16)  # the aarch64 word size
        report = T.tune(mod, "aarch64", log_dir=tmp_path / "aarch64", trials=3, trials_per_iter=3,
                        rpc=dev.tracker, key="aarch64-tune", session_timeout=300, verify_rounds=1, fallback=False)
        (task,) = report.tasks
        assert task.new_trials >= 2 and task.checked and task.choice == "tuned"
        exe = build(mod, "aarch64", tuning_log=tmp_path / "aarch64")
        assert exe.stats["tuned_ops"] == 1
        so = exe.export_library(tmp_path / "m.so")
        x = np.random.default_rng(7).standard_normal((1, 4, 4, 64)).astype(np.float32)
        remote = dev.connect(session_timeout=300)
        got = device.run_vm_remote(remote, so, [x])
        np.testing.assert_array_equal(got, oracle(x, kernel))
