"""One task's search, verification and commit: MetaSchedule's evolutionary search with an XGBoost cost model
(resuming where the trials database left off; Ctrl-C stops at a safe point), then the default schedule and the
best tuned ones checked and timed again, interleaved, and the winner (if any) committed to the log."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tvm

from bnncc.targets import TargetSpec

from .check import check_outputs
from .database import RECORD_FILE, WORKLOAD_FILE, mean_secs, open_database, records_of, run_ok
from .log import LOGS_DIR
from .measure import Measurer, cleanup_artifact
from .space import decisions, default_schedule, tunable_space
from .tasks import Task
from .util import say


def _progress_callback(on_batch: Callable[[list], None]):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class _Progress(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            on_batch(list(runner_results))

    return _Progress()


def _skip_measured(inner, measured: set):
    """A search strategy that never sends a schedule measured before (``measured``: decision tuples, e.g. from an
    interrupted run's records) nor one twice. MetaSchedule's evolutionary search only remembers what it measured
    in the current run, so a resumed run would otherwise spend its trials on schedules the database already has;
    the inner search is asked again (up to 8 times per batch) for schedules it has not measured."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import RunnerResult
    from tvm.s_tir.meta_schedule.search_strategy import PySearchStrategy

    @derived_object
    class _SkipMeasured(PySearchStrategy):
        def __init__(self, inner, measured: set):
            self.inner, self.measured = inner, measured
            self.per_iter, self.left = 1, 0

        def _initialize_with_tune_context(self, context) -> None:
            self.inner._initialize_with_tune_context(context)

        def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None):
            self.per_iter, self.left = num_trials_per_iter, max_trials
            # room for the known schedules the inner search will propose and this wrapper will skip
            room = max_trials + len(self.measured) + 8 * num_trials_per_iter
            self.inner.pre_tuning(room, num_trials_per_iter, design_spaces, database, cost_model)

        def post_tuning(self) -> None:
            self.inner.post_tuning()

        def generate_measure_candidates(self):
            want = min(self.per_iter, self.left)
            out: list = []
            for _ in range(8):
                if len(out) >= want:
                    break
                cands = self.inner.generate_measure_candidates()
                if cands is None:
                    break
                known = []
                for c in cands:
                    d = decisions(c.sch.trace)
                    if d in self.measured or len(out) >= want:
                        known.append(c)
                    else:
                        self.measured.add(d)
                        out.append(c)
                if known:  # the inner search counts what it proposed: tell it these were not run
                    self.inner.notify_runner_results(known, [RunnerResult(None, "skipped: measured before")
                                                             for _ in known])
            return out or None

        def notify_runner_results(self, measure_candidates, results) -> None:
            self.left -= len(results)
            self.inner.notify_runner_results(measure_candidates, results)

        def clone(self):
            return _SkipMeasured(self.inner.clone(), set(self.measured))

    return _SkipMeasured(inner, measured)


@contextlib.contextmanager
def without_tensor_intrin_import():
    """``TuneContext()`` imports ``tvm.s_tir.tensor_intrin``, which parses the TVMScript of every tensor intrinsic
    TVM ships: 25 s of CPU (over a minute on a busy 2-core machine) per process. bnncc's spaces use none of them,
    so a placeholder module stands in for it while the context is created, and is removed again (a later real
    import still works)."""
    import types

    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    stub = types.ModuleType(name)
    sys.modules[name] = stub
    try:
        yield
    finally:
        if sys.modules.get(name) is stub:
            del sys.modules[name]


@contextlib.contextmanager
def ctrl_c(say: Callable[[str], None]):
    """Ctrl-C during tuning stops at the next safe point: after the batch being measured (its records are in the
    database), or between tasks. A KeyboardInterrupt raised at an arbitrary point of the Python callbacks that
    MetaSchedule's C++ search calls (cost model, search space, progress) can reach C++ code that cannot unwind it
    (std::terminate: seen as a segfault), and otherwise comes back through TVM's FFI as a plain RuntimeError. A
    second Ctrl-C stops at once."""
    import signal
    import threading

    state = {"hit": False}
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield state
        return

    def handler(signum, frame):
        if state["hit"]:
            raise KeyboardInterrupt
        state["hit"] = True
        say("bnncc tune: Ctrl-C: stopping after the trials being measured (Ctrl-C again to stop now)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_if_interrupted(state: dict | None) -> None:
    if state and state["hit"]:
        raise KeyboardInterrupt


def search(task: Task, trials: int, space: int, measurer: Measurer, trials_db, target: tvm.target.Target,
           log_dir: Path, seed: int | None, per_iter: int, report: Callable[[int, float | None], None],
           measured: set, sigint: dict | None = None) -> int:
    """MetaSchedule's evolutionary search with an XGBoost model on one task; returns the trials measured."""
    from tvm.s_tir import meta_schedule as ms

    count = 0
    best = [None]
    lost: list[str] = []

    def on_batch(results) -> None:
        nonlocal count
        count += len(results)
        for r in results:
            if r.error_msg is None and r.run_secs:
                t = float(np.mean([float(s) for s in r.run_secs]))
                best[0] = t if best[0] is None else min(best[0], t)
        report(count, best[0])
        stop_if_interrupted(sigint)  # a safe point: this batch's records are in the database
        # a whole batch failed: if the tracker is gone (not just restarting), stop here, at the same safe point
        if results and all(r.error_msg for r in results) and (why := measurer.tracker_lost()):
            lost.append(why)
            raise measurer.lost_error(why)

    population = int(min(256, max(32, 4 * space)))
    evolutionary = ms.search_strategy.EvolutionarySearch(
        population_size=population, init_measured_ratio=0.2, init_min_unmeasured=max(1, min(32, space // 2)),
        max_fail_count=5, genetic_num_iters=3, genetic_mutate_prob=0.85, genetic_max_fail_count=10,
        eps_greedy=0.05)
    strategy = _skip_measured(evolutionary, set(measured))
    space_gen = ms.space_generator.ScheduleFn(tunable_space(target), sch_rules=[], postprocs=[],
                                              mutator_probs={ms.mutator.MutateTileSize(): 1.0})
    lg = logging.getLogger(f"tvm.s_tir.meta_schedule.bnncc.{task.name}")
    with without_tensor_intrin_import():
        ctx = ms.TuneContext(mod=task.mod, target=target, space_generator=space_gen, search_strategy=strategy,
                             task_name=task.name, logger=lg, rand_state=-1 if seed is None else seed,
                             num_threads=min(2, os.cpu_count() or 1)).clone()
    try:
        ms.tune.tune_tasks(
            tasks=[ctx], task_weights=[1.0], work_dir=str(log_dir / LOGS_DIR), max_trials_global=trials,
            max_trials_per_task=trials, num_trials_per_iter=per_iter, builder=measurer.builder,
            runner=measurer.runner, database=trials_db,
            cost_model=ms.cost_model.XGBModel(num_tuning_cores=min(2, os.cpu_count() or 1), adaptive_training=True),
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), _progress_callback(on_batch)],
            task_scheduler="round-robin")
    except Exception:
        if lost:  # raised in on_batch, back through TVM's FFI as another exception
            raise measurer.lost_error(lost[0]) from None
        raise
    return count


def verify(task: Task, trials_db, measurer: Measurer, spec: TargetSpec, target: tvm.target.Target,
           rounds: int, top: int, min_gain: float, fallback: bool):
    """Check and time the default schedule and the ``top`` best tuned ones, interleaved; returns
    (winner record or None, default median, best tuned median, checked, note)."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    recs, seen = [], set()
    ok = sorted((r for r in records_of(trials_db, task.mod) if run_ok(r)), key=mean_secs)
    for r in ok:
        d = decisions(r.trace)
        if d not in seen:
            seen.add(d)
            recs.append(r)
        if len(recs) == top:
            break
    if not recs:
        return None, None, None, False, "no tuned schedule ran"
    args_info = ArgInfo.from_prim_func(task.mod["main"])
    mods = [default_schedule(task.mod, target).mod] + [r.as_measure_candidate().sch.mod for r in recs]
    built = measurer.build(mods, target)
    try:
        ref = built[0][0] if spec.is_native and built[0][1] is None else None
        checked = check_outputs(task, [art if err is None else None for art, err in built[1:]], spec, measurer,
                                reference=ref)
        note = ""
        if not all(checked):
            note = f"{checked.count(False)} tuned schedule(s) gave wrong outputs (a bnncc schedule bug): dropped"
            say(f"bnncc tune: {task.name}: {note}")
        names: list[Any] = ["default"] + [i for i, c in enumerate(checked) if c]
        if len(names) == 1:
            return None, None, None, False, note or "no tuned schedule passed the output check"
        samples: dict[Any, list[float]] = {name: [] for name in names}
        for _ in range(rounds):  # interleaved: machine drift hits all alike
            for name in names:
                art, err = built[0 if name == "default" else name + 1]
                if err is None and art is not None:
                    secs, _err = measurer.run(art, args_info)
                    if secs:
                        samples[name].append(float(np.median(secs)))
    finally:
        for art, _ in built:
            cleanup_artifact(art)
    med = {k: float(np.median(v)) for k, v in samples.items() if v}
    default_t = med.pop("default", None)
    if not med:
        return None, default_t, None, True, note or "the tuned schedules did not run"
    best_i = min(med, key=med.get)
    tuned_t = med[best_i]
    rec = recs[best_i]
    from tvm.s_tir.meta_schedule.database import TuningRecord

    winner = TuningRecord(rec.trace, rec.workload, samples[best_i], rec.target, rec.args_info)
    if default_t is not None and tuned_t > default_t * (1.0 - min_gain) and fallback:
        return None, default_t, tuned_t, True, note
    return winner, default_t, tuned_t, True, note


def commit_best(log_dir: Path, task: Task, record) -> None:
    """Rewrite the committed database with ``record`` as the task's only record (none: the default stays)."""
    from tvm.s_tir.meta_schedule.database import JSONDatabase, TuningRecord

    old = open_database(log_dir)
    keep = []
    wl_task = old.commit_workload(task.mod) if old.has_workload(task.mod) else None
    for r in old.get_all_tuning_records():
        if wl_task is not None and r.workload.same_as(wl_task):
            continue
        keep.append(r)
    if record is not None:
        keep.append(record)
    with tempfile.TemporaryDirectory(dir=log_dir, prefix=".commit-") as td:
        new = JSONDatabase(work_dir=td)
        for r in keep:
            wl = new.commit_workload(r.workload.mod)
            new.commit_tuning_record(TuningRecord(r.trace, wl, r.run_secs, r.target, r.args_info))
        del new
        os.replace(os.path.join(td, WORKLOAD_FILE), log_dir / WORKLOAD_FILE)
        os.replace(os.path.join(td, RECORD_FILE), log_dir / RECORD_FILE)
