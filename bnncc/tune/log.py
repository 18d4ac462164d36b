"""The compile side of tuning: where the per-target logs live, and :class:`TuningLog`, a log directory applied at
compile time (``bnncc.pipeline.build(mod, target, tuning_log="auto" | DIR)``) with
``relax.transform.MetaScheduleApplyDatabase`` before bnncc's default schedules, which leave the tuned
(``tirx.is_scheduled``) PrimFuncs alone. Imported by the pipeline: it must not import it back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import tvm
from tvm import tirx

from bnncc.errors import BnnccError
from bnncc.targets import TargetSpec, get_target

from .database import RECORD_FILE, open_database
from .describe import call_counts, describe, normalize
from .util import check_log_dir, say, short_error

REPO = Path(__file__).resolve().parents[2]  # the source tree: this file is bnncc/tune/log.py in it
SUMMARY_FILE = "summary.json"
TRIALS_DIR = "trials"
LOGS_DIR = "logs"


class TuningError(BnnccError):
    """Tuning, or using a tuning log, failed."""


def logs_root() -> Path:
    """Where the per-target logs live: ``$BNNCC_TUNING_LOGS``, else ``tuning_logs/`` of the bnncc source tree."""
    env = os.environ.get("BNNCC_TUNING_LOGS")
    return Path(env) if env else REPO / "tuning_logs"


def log_name(target: str | TargetSpec) -> str:
    """The log directory name of a target: ``host-<cpu>`` for the detected host CPU, else the target's name."""
    spec = get_target(target)
    if spec.name == "host":
        return f"host-{spec.attrs.get('mcpu', 'generic')}"
    return spec.name


def default_log_dir(target: str | TargetSpec) -> Path:
    return logs_root() / log_name(target)


def target_info(spec: TargetSpec) -> dict[str, Any]:
    return {"name": spec.name, "log_name": log_name(spec), "arch": spec.arch, "attrs": spec.attrs}


def read_summary(log_dir: str | Path) -> dict[str, Any]:
    path = Path(log_dir) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict):
            raise ValueError(f"a JSON {type(summary).__name__}, not an object")
        return summary
    except (OSError, ValueError, RecursionError) as e:
        say(f"bnncc: warning: {path}: unreadable ({str(e)[:200]}); starting a new summary (old one kept as "
            ".corrupt)")
        shutil.copy(path, f"{path}.corrupt")
        return {}


class TuningLog:
    """A log directory applied at compile time (see :func:`bnncc.pipeline.build`'s ``tuning_log``)."""

    def __init__(self, path: Path | None, spec: TargetSpec):
        self.path = path
        self.spec = spec
        self._db = None
        self.last_report: dict[str, Any] = {"tuned_ops": 0, "tuning_log": None, "log_name": log_name(spec)}
        self.applied: dict[str, Any] = {}  # PrimFunc name → the trace applied to it

    @classmethod
    def resolve(cls, arg: str | Path | TuningLog, target: str | TargetSpec) -> TuningLog:
        """``"auto"``: the log of ``tuning_logs/`` for the target (an empty log if there is none); a directory:
        that log, which must have been tuned for the target."""
        spec = get_target(target)
        if isinstance(arg, TuningLog):
            return arg
        if arg == "auto":
            path = default_log_dir(spec)
            return cls(path if (path / RECORD_FILE).is_file() else None, spec)
        try:
            path = check_log_dir(arg)
        except BnnccError as e:
            raise TuningError(str(e)) from None
        meta = read_summary(path).get("target", {})
        if meta and meta.get("log_name") != log_name(spec):
            raise TuningError(f"{path} was tuned for {meta.get('log_name')}, not for {log_name(spec)} "
                              f"(target {spec.name}); use the log of this target or --no-tuning")
        want = target_key(spec.tvm_target())
        for r in open_database(path, create=False).get_all_tuning_records():
            if r.target is not None and target_key(r.target) != want:
                raise TuningError(f"{path} was tuned for {target_desc(r.target)}, not for {log_name(spec)} "
                                  f"({target_desc(spec.tvm_target())}); use the log of this target or --no-tuning")
        return cls(path, spec)

    def database(self):
        """The log's committed records that still replay on their workload, in memory. A record whose trace no
        longer replays (bnncc's schedules changed since tuning) is skipped with a warning instead of failing
        the compile; its task keeps the default schedule until it is tuned again."""
        if self._db is None and self.path is not None:
            from tvm.s_tir.meta_schedule.database import MemoryDatabase

            disk = open_database(self.path, create=False)
            self._db = MemoryDatabase()
            for r in disk.get_all_tuning_records():
                try:
                    r.as_measure_candidate()  # replays the trace on the workload
                except Exception as e:  # noqa: BLE001 - TVM schedule errors
                    say(f"bnncc: warning: {self.path}: a record no longer replays ({short_error(e)}): skipped; "
                        "re-tune (bnncc tune)")
                    continue
                wl = self._db.commit_workload(r.workload.mod)
                self._db.commit_tuning_record(type(r)(r.trace, wl, r.run_secs, r.target, r.args_info))
        return self._db

    def apply(self, mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
        """Replace the PrimFuncs the log has a record for by their tuned schedule (marked scheduled)."""
        from tvm import relax

        db = self.database()
        calls = call_counts(mod)
        tunable = {gv.name_hint for gv, f in mod.functions_items()
                   if isinstance(f, tirx.PrimFunc) and describe(f) is not None}
        self.last_report = {"tuned_ops": 0, "tunable_ops": sum(calls.get(n, 1) for n in tunable),
                            "tuning_log": str(self.path) if self.path else None, "log_name": log_name(self.spec)}
        if db is None or len(db) == 0:
            return mod
        with target, db:
            new = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        tuned = []
        for gv, f in new.functions_items():
            if not isinstance(f, tirx.PrimFunc) or gv.name_hint not in tunable:
                continue
            if f.attrs is not None and f.attrs.get("tirx.is_scheduled", False) and not mod[gv].same_as(f):
                tuned.append(gv.name_hint)
                rec = db.query_tuning_record(normalize(mod[gv]), target, "main")
                self.applied[gv.name_hint] = rec.trace if rec is not None else None
        self.last_report["tuned_ops"] = sum(calls.get(n, 1) for n in tuned)
        self.last_report["tuned_funcs"] = sorted(tuned)
        return new


def target_key(t: tvm.target.Target) -> tuple:
    """What makes a schedule measured on one target right for another: the CPU, its features, the arch."""
    attrs = dict(t.attrs)
    triple = str(attrs.get("mtriple", "")) or None
    return (t.kind.name, str(attrs.get("mcpu", "")), tuple(sorted(str(a) for a in attrs.get("mattr", ()) or ())),
            triple.split("-")[0] if triple else None)


def target_desc(t: tvm.target.Target) -> str:
    kind, mcpu, mattr, arch = target_key(t)
    return " ".join(x for x in (kind, f"mcpu={mcpu}" if mcpu else "", ",".join(mattr), arch or "") if x)


def describe_tuning(stats: dict[str, Any]) -> str:
    """One line for compile's report."""
    if "tuning_log" not in stats:
        return "tuning: off (bnncc's default schedules)"
    if stats["tuning_log"] is None:
        return (f"tuning: no log for {stats.get('log_name', 'this target')} in {logs_root()} (bnncc's default "
                "schedules; bnncc tune writes one)")
    return (f"tuning: {stats.get('tuned_ops', 0)} of {stats.get('tunable_ops', 0)} conv/dense ops tuned "
            f"({stats['tuning_log']})")
