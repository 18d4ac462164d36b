"""``bnncc tune``: the tasks of a model searched one after the other (heaviest first), each verified against
bnncc's default schedule and committed only when faster, with a summary of every task and run in the log."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm

from bnncc.targets import TargetSpec, get_target

from .database import open_database
from .log import (
    LOGS_DIR,
    SUMMARY_FILE,
    TRIALS_DIR,
    TuningError,
    default_log_dir,
    log_name,
    read_summary,
    target_info,
)
from .measure import Measurer
from .search import commit_best, ctrl_c, search, stop_if_interrupted, verify
from .space import measured, space_size
from .tasks import DEFAULT_FLOAT_TASKS, Task, extract_tasks, tvm_ffi_hash
from .util import atomic_write, say

DEFAULT_TRIALS = 48
TRIALS_PER_ITER = 8
MIN_GAIN = 0.02  # a tuned schedule must be this much faster than the default to be committed
VERIFY_ROUNDS = 5
VERIFY_TOP = 3


def _us(secs: float | None) -> str:
    return "–" if secs is None else f"{secs * 1e6:.1f} µs"


@dataclass
class TaskResult:
    name: str
    kind: str
    macs: int
    calls: int
    space: int
    trials: int  # distinct schedules measured for the task (all runs)
    new_trials: int  # measured by this run
    default_s: float | None
    tuned_s: float | None
    choice: str  # "tuned" or "default"
    checked: bool
    seconds: float
    note: str = ""
    search_seconds: float = 0.0  # of the search alone (trials measured / this = the fleet's throughput)

    @property
    def speedup(self) -> float | None:
        if self.default_s and self.tuned_s:
            return self.default_s / self.tuned_s
        return None

    def as_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        d["default_us"] = None if self.default_s is None else round(self.default_s * 1e6, 2)
        d["tuned_us"] = None if self.tuned_s is None else round(self.tuned_s * 1e6, 2)
        d["speedup"] = None if self.speedup is None else round(self.speedup, 3)
        d["seconds"], d["search_seconds"] = round(self.seconds, 1), round(self.search_seconds, 1)
        del d["default_s"], d["tuned_s"]
        return d


@dataclass
class TuneReport:
    log_dir: Path
    target: str
    runner: str
    tasks: list[TaskResult]
    seconds: float
    trials: int  # measured in this run

    @property
    def tuned(self) -> int:
        return sum(t.choice == "tuned" for t in self.tasks)


@contextlib.contextmanager
def _metaschedule_logs(log_dir: Path):
    """Route MetaSchedule's Python loggers to ``log_dir/logs/metaschedule.log`` (off the console)."""
    (log_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    lg = logging.getLogger("tvm.s_tir.meta_schedule")
    saved = (lg.handlers[:], lg.level, lg.propagate)
    handler = logging.FileHandler(log_dir / LOGS_DIR / "metaschedule.log")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    lg.handlers = [handler]
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    try:
        yield lg
    finally:
        handler.close()
        lg.handlers, lg.level, lg.propagate = saved


def _write_summary(log_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write(log_dir / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")


def tune(model: tvm.IRModule | Sequence[Task], target: str | TargetSpec = "host", *,
         log_dir: str | Path | None = None, trials: int = DEFAULT_TRIALS, rpc: str | None = None,
         key: str | None = None, float_tasks: int = DEFAULT_FLOAT_TASKS, trials_per_iter: int = TRIALS_PER_ITER,
         session_timeout: float = 60.0, verify_rounds: int = VERIFY_ROUNDS, min_gain: float = MIN_GAIN,
         fallback: bool = True, seed: int | None = None, runner_workers: int | None = None,
         threads: int | None = None, progress: Callable[[str], None] | None = say,
         model_name: str = "") -> TuneReport:
    """Tune a Relax module (or given tasks) for ``target``; the log goes to ``log_dir`` (default
    ``tuning_logs/<target>/``). ``trials``: per task (fewer when the task's space is smaller). ``threads``: of
    the kernels measured by the local runner (default ``TVM_NUM_THREADS``, which bnncc sets to every core: tune
    with the thread count the model will run with).
    ``fallback=False`` commits the best tuned schedule even when it is not faster than the default (tests)."""
    t_start = time.monotonic()
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)  # read by the local runner's worker when it starts
    say = progress or (lambda _m: None)
    spec = get_target(target)
    tvm_target = spec.tvm_target()
    log_dir = Path(log_dir) if log_dir else default_log_dir(spec)
    log_dir.mkdir(parents=True, exist_ok=True)
    summary = read_summary(log_dir)
    if summary.get("target") and summary["target"].get("log_name") != log_name(spec):
        raise TuningError(f"{log_dir} holds a log for {summary['target'].get('log_name')}, not "
                          f"{log_name(spec)}: choose another --log")
    summary.setdefault("bnncc_tuning_log", 1)
    summary["target"] = target_info(spec)
    summary.setdefault("tasks", {})
    summary.setdefault("runs", [])
    tasks = list(model) if not isinstance(model, tvm.IRModule) else extract_tasks(model, spec,
                                                                                  float_tasks=float_tasks)
    if not tasks:
        raise TuningError("the model has no binary conv/dense (nor float conv/dense) to tune")
    (log_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    measurer = Measurer(spec, rpc=rpc, key=key, session_timeout=session_timeout, runner_workers=runner_workers,
                        worker_log=log_dir / LOGS_DIR / "rpc-runner.log")
    results: list[TaskResult] = []
    say(f"bnncc tune: {len(tasks)} task(s) for {log_name(spec)} ({measurer.where}), up to {trials} trials each; "
        f"log {log_dir}")
    with _metaschedule_logs(log_dir), ctrl_c(say) as sigint:
        try:
            _tune_tasks(tasks, summary, results, spec, tvm_target, log_dir, measurer, trials, trials_per_iter,
                        verify_rounds, min_gain, fallback, seed, say, sigint)
        except Exception:
            if sigint["hit"]:  # Ctrl-C, come back through TVM's FFI as another exception
                raise KeyboardInterrupt from None
            raise
    run_trials = sum(r.new_trials for r in results)
    wall = time.monotonic() - t_start
    summary["runs"].append({"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                            "model": model_name, "runner": measurer.where, "trials_per_task": trials,
                            "threads": threads or os.environ.get("TVM_NUM_THREADS") or "TVM default",
                            "new_trials": run_trials, "wall_seconds": round(wall, 1),
                            "tasks": [r.name for r in results]})
    _write_summary(log_dir, summary)
    _write_gitignore(log_dir)
    say(f"bnncc tune: {sum(r.choice == 'tuned' for r in results)} of {len(results)} task(s) tuned faster than "
        f"the default; {run_trials} trials in {wall:.0f} s → {log_dir}")
    return TuneReport(log_dir, log_name(spec), measurer.where, results, wall, run_trials)


def _tune_tasks(tasks, summary, results, spec, tvm_target, log_dir, measurer, trials, trials_per_iter,
                verify_rounds, min_gain, fallback, seed, say, sigint=None) -> None:
    """The tasks one after the other: search, verify, commit (each task's result is saved as soon as it is
    decided, so an interruption loses nothing decided)."""
    trials_db = open_database(log_dir / TRIALS_DIR)
    for i, task in enumerate(tasks, 1):
        stop_if_interrupted(sigint)
        t0 = time.monotonic()
        head = f"bnncc tune: [{i}/{len(tasks)}] {task.name} ({task.kind}, {task.calls} call(s), " \
               f"{task.macs / 1e6:.0f} M MACs)"
        size = space_size(task, tvm_target)
        points = measured(trials_db, task.mod)
        goal = min(trials, size)
        remaining = max(0, goal - len(points))
        skey = _summary_key(summary, task)
        prev = summary["tasks"].get(skey, {})
        if remaining == 0 and prev.get("choice") and prev.get("trials", 0) >= goal:
            say(f"{head}: done earlier ({prev['trials']} trials, {prev['choice']} kept)")
            results.append(TaskResult(task.name, task.kind, task.macs, task.calls, size, len(points), 0,
                                      _sec(prev.get("default_us")), _sec(prev.get("tuned_us")),
                                      prev["choice"], prev.get("checked", False), 0.0, "done earlier"))
            continue
        new, search_s = 0, 0.0
        if remaining:
            resumed = f", resuming after {len(points)}" if points else ""
            say(f"{head}: space of {size}, {remaining} trial(s) to run{resumed}")

            done = len(points)

            def report(n, best, _head=head, _done=done, _goal=goal):
                say(f"{_head}: {_done + n}/{_goal} trials, best {_us(best)}")

            t_search = time.monotonic()
            new = search(task, remaining, size, measurer, trials_db, tvm_target, log_dir, seed,
                         trials_per_iter, report, points, sigint)
            stop_if_interrupted(sigint)
            search_s = time.monotonic() - t_search
        winner, d_t, t_t, checked, note = verify(task, trials_db, measurer, spec, tvm_target, verify_rounds,
                                                 VERIFY_TOP, min_gain, fallback)
        commit_best(log_dir, task, winner)
        choice = "tuned" if winner is not None else "default"
        n_measured = len(measured(trials_db, task.mod))
        res = TaskResult(task.name, task.kind, task.macs, task.calls, size, n_measured, new, d_t, t_t, choice,
                         checked, time.monotonic() - t0, note, search_s)
        results.append(res)
        summary["tasks"][skey] = {**res.as_json(), "workload": _workload_id(task)}
        _write_summary(log_dir, summary)
        sp = f" ({res.speedup:.2f}x)" if res.speedup else ""
        say(f"{head}: tuned {_us(t_t)} vs default {_us(d_t)}{sp} → "
            f"{'tuned schedule committed' if winner is not None else 'default kept'}")


def _workload_id(task: Task) -> str:
    return f"{tvm_ffi_hash(task.mod) & (2**64 - 1):016x}"


def _summary_key(summary: dict[str, Any], task: Task) -> str:
    """The task's entry in summary.json: its name, unless another workload already has that name."""
    wid = _workload_id(task)
    entry = summary["tasks"].get(task.name)
    if entry is None or entry.get("workload") in (None, wid):
        return task.name
    return f"{task.name}#{wid[:8]}"


def _sec(us: float | None) -> float | None:
    return None if us is None else us * 1e-6


def _write_gitignore(log_dir: Path) -> None:
    path = log_dir / ".gitignore"
    if not path.exists():
        path.write_text(f"{LOGS_DIR}/\n")
