"""Auto-tuning: MetaSchedule (XGBoost cost model, evolutionary search) over bnncc's tunable schedules.

    bnncc tune quicknet --trials 48                       # this CPU (LocalRunner) → tuning_logs/host-<cpu>/
    bnncc tune quicknet --target aarch64 --rpc 127.0.0.1:9190 --key aarch64-qemu
    bnncc compile quicknet -o q.so                        # applies tuning_logs/host-<cpu>/ when it exists

**Tasks** (:func:`extract_tasks`) are the distinct PrimFuncs of the legalized module (before scheduling) that hold
a binary conv/dense, plus the heaviest float conv/dense ones. Each is tuned in the space of
``bnncc.schedules.schedule_function(sch, target, tunable=True)`` (``sample_perfect_tile`` on the register
tile; bitpacks and, on aarch64, the popcount update are tensorized with bnncc's intrinsics in every
candidate, so traces replay them under any tile), mutated by
``MutateTileSize`` and searched by MetaSchedule's evolutionary search with an XGBoost cost model, tasks one after
the other (heaviest first), with ``LocalRunner`` or, given a tracker, ``RPCRunner`` (all servers under the key
share the trials).

**Never slower than the default.** After a task's search, its default schedule and its best tuned schedules
(top 3 of the database) are checked for the same output on random data (exact for integer and packed outputs)
and timed again, interleaved, ``verify_rounds`` rounds with the same runner. A tuned schedule is committed only
when its median beats the default's by ``min_gain`` (2 %); otherwise nothing is committed for the task and bnncc's
default schedule stays.

**A log directory** (one per target; host targets are named after the detected CPU, ``host-znver5``, so that a
log is never applied to another CPU)::

    database_workload.json, database_tuning_record.json   MetaSchedule JSON database: the committed schedule of
                                                          each task whose tuned schedule won (what compile applies)
    trials/database_*.json                                every measured trial (the search's history)
    summary.json                                          per task: default vs tuned time, trials, decision
    logs/                                                 MetaSchedule's own (very verbose) logs

**Resume and faults.** MetaSchedule's JSON database appends each measured record to its file as soon as it is
measured, so an interrupted run (Ctrl-C, a crash, a killed server) keeps every trial so far; rerunning counts
the distinct schedules already measured for each task and runs only the rest (a task whose space is exhausted
is not searched again), and tasks already decided are skipped. A record that cannot be parsed (a truncated line,
an edit gone wrong) is moved to ``<file>.corrupt`` with a warning naming the file and line; the rest loads.
A tracker restarted mid-run (same address) costs at most the trials measured while it was away: TVM's servers
register again and its runner reconnects. When a whole batch of trials fails (or a verification run) and the
tracker does not answer for 20 s, tuning stops with one error line, the trials so far kept: rerun to continue
(tests/tune/test_tracker_restart.py). The runner's worker processes log to ``logs/rpc-runner.log``.

Compile side: :class:`TuningLog` (``bnncc.pipeline.build(mod, target, tuning_log="auto" | DIR)``) applies the
committed records with ``relax.transform.MetaScheduleApplyDatabase`` before bnncc's default schedules, which
leave the tuned (``tirx.is_scheduled``) PrimFuncs alone.

The package by concern: :mod:`~bnncc.tune.log` (the compile side, below the pipeline), :mod:`~bnncc.tune.tasks`,
:mod:`~bnncc.tune.space`, :mod:`~bnncc.tune.database`, :mod:`~bnncc.tune.measure`, :mod:`~bnncc.tune.check`,
:mod:`~bnncc.tune.search` and :mod:`~bnncc.tune.driver` (:func:`tune`). The names below are resolved on first
use: the pipeline imports :mod:`bnncc.tune.log`, and importing this package must not import the modules that
import the pipeline back.
"""

from bnncc.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".log": ("LOGS_DIR", "SUMMARY_FILE", "TRIALS_DIR", "TuningError", "TuningLog", "default_log_dir",
             "describe_tuning", "log_name", "logs_root", "read_summary"),
    ".database": ("RECORD_FILE", "WORKLOAD_FILE", "open_database", "records_of", "sanitize_database"),
    ".tasks": ("DEFAULT_FLOAT_TASKS", "Task", "extract_tasks", "tasks_of", "tvm_ffi_hash"),
    ".space": ("decisions", "default_schedule", "measured", "space_size", "tunable_space"),
    ".measure": ("Measurer", "build_tir", "export_aarch64", "export_native", "run_evaluator_local",
                 "run_evaluator_rpc"),
    ".check": ("check_outputs",),
    ".search": ("commit_best", "search", "verify", "without_tensor_intrin_import"),
    ".driver": ("DEFAULT_TRIALS", "MIN_GAIN", "TRIALS_PER_ITER", "VERIFY_ROUNDS", "VERIFY_TOP", "TaskResult",
                "TuneReport", "tune"),
    "bnncc.targets": ("TargetSpec", "get_target"),  # as tune.py imported them (benchmarks use tune.get_target)
})
