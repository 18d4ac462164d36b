"""Auto-tuning: MetaSchedule (XGBoost cost model, evolutionary search) over bnncc's tunable schedules.

    bnncc tune quicknet --trials 48                       # this CPU (LocalRunner) → tuning_logs/host-<cpu>/
    bnncc tune quicknet --target aarch64 --rpc 127.0.0.1:9190 --key aarch64-qemu
    bnncc compile quicknet -o q.so                        # applies tuning_logs/host-<cpu>/ when it exists

**Tasks** (:func:`extract_tasks`) are the distinct PrimFuncs of the legalized module (before scheduling) that hold
a binary conv/dense, plus the heaviest float conv/dense ones. Each is tuned in the space of
``bnncc.schedules.cpu.schedule_function(sch, target, tunable=True)`` (``sample_perfect_tile`` on the register
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

Compile side: :class:`TuningLog` (``bnncc.pipeline.build(mod, target, tuning_log="auto" | DIR)``) applies the
committed records with ``relax.transform.MetaScheduleApplyDatabase`` before bnncc's default schedules, which
leave the tuned (``tirx.is_scheduled``) PrimFuncs alone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import s_tir, tirx

from .errors import BnnccError
from .schedules import CONV_BLOCKS, is_conv_like, output_dtype, schedule_function
from .targets import TargetSpec, get_target

REPO = Path(__file__).resolve().parents[1]
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
SUMMARY_FILE = "summary.json"
TRIALS_DIR = "trials"
LOGS_DIR = "logs"

DEFAULT_TRIALS = 48
DEFAULT_FLOAT_TASKS = 2
TRIALS_PER_ITER = 8
MIN_GAIN = 0.02  # a tuned schedule must be this much faster than the default to be committed
VERIFY_ROUNDS = 5
VERIFY_TOP = 3

_BLOCK_NAMES = {"bnncc_bconv": "bconv", "bnncc_bdense": "bdense", "conv2d_nhwc": "conv",
                "group_conv2d_nhwc": "gconv", "matmul": "dense"}


class TuningError(BnnccError):
    """Tuning, or using a tuning log, failed."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _us(secs: float | None) -> str:
    return "–" if secs is None else f"{secs * 1e6:.1f} µs"


# ------------------------------------------------------------------------------------------------ locations
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


def _target_info(spec: TargetSpec) -> dict[str, Any]:
    return {"name": spec.name, "log_name": log_name(spec), "arch": spec.arch, "attrs": spec.attrs}


# ---------------------------------------------------------------------------------------------------- tasks
@dataclass
class Task:
    """One distinct PrimFunc to tune: ``mod`` is MetaSchedule's normalized workload ``{"main": func}``."""

    name: str
    mod: tvm.IRModule
    kind: str  # "binary" or "float"
    macs: int  # multiply-accumulates of one call (binary MACs for binary ops)
    funcs: list[str] = field(default_factory=list)  # the module's PrimFuncs with this workload
    calls: int = 1  # call sites in the model

    @property
    def total_macs(self) -> int:
        return self.macs * self.calls


def _normalize(func: tirx.PrimFunc) -> tvm.IRModule:
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    return _normalize_mod(func)


def _conv_block(sch: s_tir.Schedule):
    for name in CONV_BLOCKS:
        with contextlib.suppress(Exception):
            return name, sch.get_sblock(name)
    return None, None


def _describe(func: tirx.PrimFunc) -> tuple[str, str, int] | None:
    """(name, kind, MACs) of a PrimFunc bnncc's tunable space covers, None for any other."""
    sch = s_tir.Schedule(_normalize(func))
    name, block = _conv_block(sch)
    if block is None or not is_conv_like(sch, block):
        return None
    iters = sch.get(block).iter_vars
    ext = [int(it.dom.extent) for it in iters]
    spatial = [e for e, it in zip(ext, iters, strict=True) if it.iter_type == tirx.IterVar.DataPar]
    reduce = ext[len(spatial):]
    binary = name.startswith("bnncc_")
    macs = int(np.prod(ext, dtype=np.int64))
    if binary:  # the reduction runs over words
        macs *= _word_bits(func)
    # Packed when the binary op's output transform writes words (a kernel that also packs its float output,
    # see pack_in_producers, has a uint last parameter too).
    packed = any(sch.get(b).name_hint == "bnncc_output" and output_dtype(sch, b).startswith("uint")
                 for b in sch.get_child_blocks(sch.get_sblock("root")))
    if spatial and spatial[0] == 1 and len(spatial) > 2:
        spatial = spatial[1:]
    label = f"{_BLOCK_NAMES[name]}_{'x'.join(map(str, spatial))}_r{'x'.join(map(str, reduce))}"
    if packed:
        label += "_packed"
    return label, "binary" if binary else "float", macs


def _word_bits(func: tirx.PrimFunc) -> int:
    """Bits of the packed word type of a binary PrimFunc (its first uint input)."""
    for p in func.params:
        dt = str(p.dtype)
        if dt.startswith("uint"):
            return int(dt[4:])
    return 1


def _call_counts(mod: tvm.IRModule) -> dict[str, int]:
    """Calls of each PrimFunc from the Relax functions of ``mod`` (R.call_tir sites)."""
    from tvm import relax

    counts: dict[str, int] = {}
    call_tir = tvm.ir.Op.get("relax.call_tir")

    @relax.expr_functor.visitor
    class _Count(relax.PyExprVisitor):
        def visit_call_(self, call):  # noqa: N802 - TVM's visitor naming
            if call.op.same_as(call_tir) and isinstance(call.args[0], tvm.ir.GlobalVar):
                name = call.args[0].name_hint
                counts[name] = counts.get(name, 0) + 1
            for a in call.args:
                self.visit_expr(a)

    for _gv, f in mod.functions_items():
        if isinstance(f, relax.Function):
            _Count().visit_expr(f)
    return counts


def tasks_of(legalized: tvm.IRModule, *, float_tasks: int = DEFAULT_FLOAT_TASKS) -> list[Task]:
    """The tasks of a legalized module (see :func:`bnncc.pipeline.legalize`): every distinct binary conv/dense
    PrimFunc and the ``float_tasks`` heaviest distinct float ones (by MACs × calls), heaviest first."""
    calls = _call_counts(legalized)
    by_hash: dict[int, Task] = {}
    for gv, func in sorted(legalized.functions_items(), key=lambda kv: kv[0].name_hint):
        if not isinstance(func, tirx.PrimFunc):
            continue
        desc = _describe(func)
        if desc is None:
            continue
        mod = _normalize(func)
        h = tvm_ffi_hash(mod)
        n = calls.get(gv.name_hint, 1)
        if h in by_hash:
            by_hash[h].funcs.append(gv.name_hint)
            by_hash[h].calls += n
            continue
        label, kind, macs = desc
        by_hash[h] = Task(label + _epilogue_suffix(gv.name_hint), mod, kind, macs, [gv.name_hint], n)
    tasks = list(by_hash.values())
    binary = [t for t in tasks if t.kind == "binary"]
    floats = sorted((t for t in tasks if t.kind == "float"), key=lambda t: -t.total_macs)[:max(0, float_tasks)]
    chosen = sorted(binary + floats, key=lambda t: -t.total_macs)
    seen: dict[str, int] = {}
    for t in chosen:  # distinct names (two workloads can share shapes, e.g. another epilogue)
        k = seen[t.name] = seen.get(t.name, 0) + 1
        if k > 1:
            t.name = f"{t.name}_{k}"
    return chosen


def _epilogue_suffix(func_name: str) -> str:
    """``fused_bnncc_bconv2d1_add5_relu2`` → ``_add_relu``: the ops fused after the conv/dense."""
    if not func_name.startswith("fused_"):
        return ""
    parts = [p.rstrip("0123456789") for p in func_name.removeprefix("fused_").split("_")]
    for i, p in enumerate(parts):
        if p in ("bconv2d", "bdense", "conv2d", "matmul", "dense"):
            rest = [q for q in parts[i + 1:] if q]
            return "_" + "_".join(rest) if rest else ""
    return ""


def tvm_ffi_hash(mod: tvm.IRModule) -> int:
    import tvm_ffi

    return int(tvm_ffi.structural_hash(mod))


def extract_tasks(mod: tvm.IRModule, target: str | TargetSpec = "host", *,
                  float_tasks: int = DEFAULT_FLOAT_TASKS) -> list[Task]:
    """The tasks of a Relax module with bnncc ops (see :func:`tasks_of`)."""
    from .pipeline import legalize

    return tasks_of(legalize(mod, get_target(target)), float_tasks=float_tasks)


# ------------------------------------------------------------------------------------------ the search space
def tunable_space(target: tvm.target.Target) -> Callable[[s_tir.Schedule], None]:
    def space(sch: s_tir.Schedule) -> None:
        if not schedule_function(sch, target, tunable=True):
            raise TuningError("not a PrimFunc bnncc's tunable schedule covers")

    return space


def default_schedule(mod: tvm.IRModule, target: tvm.target.Target) -> s_tir.Schedule:
    """bnncc's default schedule of a task (what compile uses without a tuning log), traced."""
    sch = s_tir.Schedule(mod)
    with target:
        schedule_function(sch, target, tunable=False)
    return sch


def _tile_options(extent: int, n: int, max_innermost: int) -> int:
    """Number of ``sample_perfect_tile`` outcomes: ordered factorizations of ``extent`` into ``n`` factors with
    the innermost ≤ ``max_innermost``."""
    divisors = [d for d in range(1, extent + 1) if extent % d == 0]

    def count(e: int, k: int) -> int:
        if k == 1:
            return 1
        return sum(count(e // d, k - 1) for d in divisors if e % d == 0)

    return sum(count(extent // d, n - 1) for d in divisors if d <= max_innermost)


def space_size(task: Task, target: tvm.target.Target) -> int:
    """Number of distinct schedules in a task's tunable space (product of its tile decisions' outcomes)."""
    sch = s_tir.Schedule(task.mod)
    tunable_space(target)(sch)
    size = 1
    fresh = s_tir.Schedule(task.mod)

    def provider(inst, inputs, attrs, decision):
        nonlocal size
        if inst.kind.name == "SamplePerfectTile":
            size *= _tile_options(int(fresh.get(inputs[0]).extent), int(attrs[0]), int(attrs[1]))
        return decision

    sch.trace.apply_to_schedule(fresh, remove_postproc=False, decision_provider=provider)
    return size


def decisions(trace) -> tuple:
    """The sampled tile decisions of a trace (identifies a point of the tunable space)."""
    return tuple(tuple(int(v) for v in trace.decisions[inst]) for inst in trace.insts
                 if inst.kind.name == "SamplePerfectTile" and inst in trace.decisions)


# ------------------------------------------------------------------------------------------------ databases
def _json_line_ok(kind: str, obj: Any, n_workloads: int) -> str | None:
    """Why a parsed line is not a valid workload/record (shape only), None if it looks right."""
    if kind == "workload":
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)):
            return "not a [hash, module] pair"
        return None
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int) and isinstance(obj[1], list)):
        return "not a [workload index, record] pair"
    if not 0 <= obj[0] < n_workloads:
        return f"workload index {obj[0]} out of range (the workload file has {n_workloads} valid lines)"
    if len(obj[1]) != 4:
        return "a record has 4 fields (trace, run_secs, target, args_info)"
    return None


def _move_aside(path: Path, lines: Sequence[tuple[int, str, str]]) -> None:
    """Append the bad lines (with where they came from and why) to ``<path>.corrupt``; nothing is lost."""
    with open(f"{path}.corrupt", "a") as f:
        for lineno, text, why in lines:
            f.write(f"# {path.name} line {lineno}: {why}\n{text.rstrip(chr(10))}\n")


def sanitize_database(directory: str | Path, *, warn: Callable[[str], None] = _say) -> int:
    """Check every line of a MetaSchedule JSON database (``database_workload.json`` and
    ``database_tuning_record.json`` in ``directory``) and move the lines that do not parse to ``<file>.corrupt``,
    with a warning naming the file and line; records of a corrupt workload go with it, and the remaining records
    are renumbered. TVM's loader aborts on the first bad line: this runs before it. Returns the lines moved."""
    from tvm.s_tir.meta_schedule.database import TuningRecord, Workload

    directory = Path(directory)
    wpath, rpath = directory / WORKLOAD_FILE, directory / RECORD_FILE
    moved = 0
    # workloads
    wlines = wpath.read_text(errors="replace").splitlines(keepends=True) if wpath.is_file() else []
    good_w: list[str] = []
    workloads: list[Any] = []
    remap: dict[int, int] = {}
    bad_w: list[tuple[int, str, str]] = []
    index = 0
    for lineno, text in enumerate(wlines, 1):
        if not text.strip():
            continue
        why = None
        try:
            obj = json.loads(text)
            why = _json_line_ok("workload", obj, 0)
            if why is None:
                workloads.append(Workload.from_json(obj))
        except Exception as e:  # noqa: BLE001 - json, TVM parse errors
            why = why or _short(e)
        if why is None:
            remap[index] = len(good_w)
            good_w.append(text if text.endswith("\n") else text + "\n")
        else:
            bad_w.append((lineno, text, why))
        index += 1
    # records
    rlines = rpath.read_text(errors="replace").splitlines(keepends=True) if rpath.is_file() else []
    good_r: list[str] = []
    bad_r: list[tuple[int, str, str]] = []
    n_all = index
    for lineno, text in enumerate(rlines, 1):
        if not text.strip():
            continue
        why = None
        try:
            obj = json.loads(text)
            why = _json_line_ok("record", obj, n_all)
            if why is None and obj[0] not in remap:
                why = f"its workload (entry {obj[0]} of {WORKLOAD_FILE}) is corrupt"
            if why is None:
                TuningRecord.from_json(obj[1], workloads[remap[obj[0]]])
                if remap[obj[0]] != obj[0]:
                    text = json.dumps([remap[obj[0]], obj[1]]) + "\n"
        except Exception as e:  # noqa: BLE001
            why = why or _short(e)
        if why is None:
            good_r.append(text if text.endswith("\n") else text + "\n")
        else:
            bad_r.append((lineno, text, why))
    for path, bad, good in ((wpath, bad_w, good_w), (rpath, bad_r, good_r)):
        if not bad:
            continue
        for lineno, _text, why in bad:
            warn(f"bnncc: warning: {path}:{lineno}: corrupt tuning database line skipped ({why}); "
                 f"moved to {path.name}.corrupt")
        _move_aside(path, bad)
        _atomic_write(path, "".join(good))
        moved += len(bad)
    return moved


def _short(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(e).__name__
    return msg[:200]


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def open_database(directory: str | Path, *, create: bool = True, warn: Callable[[str], None] = _say):
    """A MetaSchedule ``JSONDatabase`` on ``directory`` after :func:`sanitize_database`."""
    from tvm.s_tir.meta_schedule.database import JSONDatabase

    directory = Path(directory)
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    sanitize_database(directory, warn=warn)
    return JSONDatabase(str(directory / WORKLOAD_FILE), str(directory / RECORD_FILE), allow_missing=create)


def records_of(db, mod: tvm.IRModule) -> list:
    """All records of a workload (failed runs included), in the database's order."""
    if not db.has_workload(mod):
        return []
    wl = db.commit_workload(mod)
    return [r for r in db.get_all_tuning_records() if r.workload.same_as(wl)]


def _run_ok(r) -> bool:
    return r.run_secs is not None and len(r.run_secs) > 0 and all(float(s) < 1e9 for s in r.run_secs)


def _measured(db, task: Task) -> set:
    """The points of the task's space the database has a successful measurement of (failed runs, e.g. on a server
    that was killed, are tried again)."""
    return {decisions(r.trace) for r in records_of(db, task.mod) if _run_ok(r)}


def _mean(r) -> float:
    return float(np.mean([float(s) for s in r.run_secs]))


# --------------------------------------------------------------------------------------------- measurement
def build_tir(mod: tvm.IRModule, target: tvm.target.Target, _params=None):
    """MetaSchedule builder function: ``tvm.tirx.build``. (MetaSchedule's default also imports
    ``tvm.s_tir.tensor_intrin``, which parses every tensor intrinsic's TVMScript: 15–20 s in each fresh builder
    worker on a busy 2-core machine, past the build timeout; bnncc's schedules use no tensor intrinsic.)"""
    return tvm.tirx.build(mod, target)


def export_aarch64(rt_mod) -> str:
    """MetaSchedule builder export for aarch64 devices: a shared library cross-compiled with g++."""
    import tvm.support.cc

    path = os.path.join(tempfile.mkdtemp(prefix="bnncc-ms-"), "tvm_tmp_mod.so")
    rt_mod.export_library(path, fcompile=tvm.support.cc.cross_compiler("aarch64-linux-gnu-g++"))
    return path


def export_native(rt_mod) -> str:
    """MetaSchedule builder export for this machine: a shared library (loads without a compiler on a server)."""
    path = os.path.join(tempfile.mkdtemp(prefix="bnncc-ms-"), "tvm_tmp_mod.so")
    rt_mod.export_library(path)
    return path


def run_evaluator_local(rt_mod, device, evaluator_config, repeated_args) -> list[float]:
    """MetaSchedule run evaluator reporting the best of its repeats: on a shared machine other processes only ever
    add time, so the minimum of many short repeats is the most reproducible measure (the mean is not)."""
    from tvm.s_tir.meta_schedule.runner.utils import run_evaluator_common

    return [min(run_evaluator_common(rt_mod, device, evaluator_config, repeated_args))]


def run_evaluator_rpc(session, rt_mod, device, evaluator_config, repeated_args) -> list[float]:
    """:func:`run_evaluator_local` for ``RPCRunner``."""
    return run_evaluator_local(rt_mod, device, evaluator_config, repeated_args)


def _split_addr(addr: str) -> tuple[str, int]:
    try:
        host, port = addr.rsplit(":", 1)
        return host, int(port)
    except ValueError:
        raise TuningError(f"bad RPC tracker address {addr!r}: expected HOST:PORT") from None


class Measurer:
    """MetaSchedule's builder and runner for a target: ``LocalRunner`` or ``RPCRunner`` through a tracker."""

    def __init__(self, spec: TargetSpec, *, rpc: str | None = None, key: str | None = None,
                 session_timeout: float = 60.0, runner_workers: int | None = None,
                 builder_workers: int | None = None, evaluator=None):
        from tvm.s_tir import meta_schedule as ms

        self.spec, self.rpc, self.key = spec, rpc, key
        # Many short repeats, the best one reported (run_evaluator_local).
        self.evaluator = evaluator or ms.runner.EvaluatorConfig(number=1, repeat=15, min_repeat_ms=8,
                                                                enable_cpu_cache_flush=False)
        if not spec.is_native and not rpc:
            raise TuningError(f"target {spec.name} ({spec.arch}) is not this machine: tuning needs its device "
                              "(--rpc HOST:PORT --key KEY of a tracker it is registered at)")
        f_export = export_aarch64 if spec.arch == "aarch64" and not spec.is_native else export_native
        self.builder = ms.builder.LocalBuilder(max_workers=builder_workers or min(2, os.cpu_count() or 1),
                                               timeout_sec=120.0, f_build=build_tir, f_export=f_export)
        if rpc:
            if not key:
                raise TuningError("--rpc needs --key (the device key the servers registered under)")
            host, port = _split_addr(rpc)
            servers = self.servers()
            self.workers = runner_workers or max(1, servers)
            self.runner = ms.runner.RPCRunner(
                rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                               session_timeout_sec=int(session_timeout)),
                evaluator_config=self.evaluator, max_workers=self.workers, f_run_evaluator=run_evaluator_rpc)
        else:
            self.workers = 1
            self.runner = ms.runner.LocalRunner(timeout_sec=session_timeout, evaluator_config=self.evaluator,
                                                f_run_evaluator=run_evaluator_local)

    def servers(self) -> int:
        """Servers registered under the key at the tracker (raises a clear error if there are none)."""
        from .device.qemu import DeviceError, _servers, tracker_keys, tracker_summary

        try:
            summary = tracker_summary(self.rpc, timeout=10.0)
        except (OSError, DeviceError) as e:
            raise TuningError(f"cannot reach the RPC tracker {self.rpc}: {e}") from None
        n = len(_servers(summary, self.key))
        if n == 0:
            keys = ", ".join(tracker_keys(summary)) or "none"
            raise TuningError(f"no RPC server with key {self.key!r} at the tracker {self.rpc} "
                              f"(registered keys: {keys})")
        return n

    @property
    def where(self) -> str:
        return f"RPC {self.rpc} key {self.key!r} ({self.workers} server(s))" if self.rpc else "local"

    def build(self, mods: Sequence[tvm.IRModule], target: tvm.target.Target) -> list[tuple[str | None, str | None]]:
        """(artifact path, error) per module."""
        from tvm.s_tir.meta_schedule.builder import BuilderInput

        res = self.builder.build([BuilderInput(m, target) for m in mods])
        return [(r.artifact_path, r.error_msg) for r in res]

    def run(self, artifact: str, args_info) -> tuple[list[float] | None, str | None]:
        from tvm.s_tir.meta_schedule.runner import RunnerInput

        (fut,) = self.runner.run([RunnerInput(artifact, "cpu", args_info)])
        res = fut.result()
        if res.error_msg:
            return None, _short(Exception(res.error_msg))
        return [float(s) for s in res.run_secs], None


def _cleanup_artifact(path: str | None) -> None:
    if path:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


# ------------------------------------------------------------------------------------------- correctness
def _random_args(func: tirx.PrimFunc, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for p in func.params:
        buf = p
        shape = [int(s) for s in buf.shape]
        dt = np.dtype(str(buf.dtype))
        if dt.kind in "ui":
            a = rng.integers(0, 256, size=(*shape, dt.itemsize), dtype=np.uint8).view(dt).reshape(shape)
            if dt.kind == "i":  # accumulators and indices: keep them small
                a = (a % 64).astype(dt)
        else:
            a = rng.standard_normal(shape).astype(dt)
        arrays.append(np.ascontiguousarray(a))
    return arrays


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    if got.dtype.kind in "ui":
        return bool(np.array_equal(got, want))
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    return bool(np.allclose(got, want, rtol=1e-5, atol=1e-5 * scale))


def _run_local(mod: tvm.IRModule, target: tvm.target.Target, args: list[np.ndarray]) -> np.ndarray:
    return _run_lib(tvm.tirx.build(mod, target), args)


def _run_lib(lib, args: list[np.ndarray], dev=None) -> np.ndarray:
    tensors = [tvm.runtime.tensor(a, device=dev) if dev is not None else tvm.runtime.tensor(a) for a in args]
    lib["main"](*tensors)
    return tensors[-1].numpy()


def check_outputs(task: Task, artifacts: Sequence[str | None], spec: TargetSpec, measurer: Measurer | None = None,
                  seed: int = 0, reference: str | None = None) -> list[bool]:
    """Run each built schedule of ``task`` (MetaSchedule builder artifacts) on random inputs and compare its output
    with bnncc's default schedule built for this machine (exact for integer and packed outputs). Libraries for
    another architecture run on the device through ``measurer``'s tracker. A missing artifact is not correct.
    ``reference``: the default schedule already built for this machine."""
    func = task.mod["main"]
    args = _random_args(func, seed)
    if reference is not None:
        want = _run_lib(tvm.runtime.load_module(reference), args)
    else:
        host = get_target("host").tvm_target()
        want = _run_local(default_schedule(task.mod, host).mod, host, args)
    if spec.is_native:
        return [art is not None and _same(_run_lib(tvm.runtime.load_module(art), args), want) for art in artifacts]
    if measurer is None or not measurer.rpc:
        raise TuningError(f"checking {spec.name} schedules needs the device (RPC)")
    from .device.qemu import request_session

    sess = request_session(measurer.rpc, measurer.key, session_timeout=600.0, request_timeout=600.0)
    try:
        ok = []
        for i, art in enumerate(artifacts):
            if art is None:
                ok.append(False)
                continue
            # A name per library: overwriting a library the device process has loaded, then loading it again,
            # gets the old (now corrupt) mapping back from dlopen (the session segfaults).
            name = f"bnncc_check{i}.so"
            sess.upload(art, name)
            ok.append(_same(_run_lib(sess.load_module(name), args, sess.cpu()), want))
        return ok
    finally:
        del sess


# ------------------------------------------------------------------------------------------------- tuning
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
def _without_tensor_intrin_import():
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
def _ctrl_c(say: Callable[[str], None]):
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


def _stop_if_interrupted(state: dict | None) -> None:
    if state and state["hit"]:
        raise KeyboardInterrupt


def _search(task: Task, trials: int, space: int, measurer: Measurer, trials_db, target: tvm.target.Target,
            log_dir: Path, seed: int | None, per_iter: int, report: Callable[[int, float | None], None],
            measured: set, sigint: dict | None = None) -> int:
    """MetaSchedule's evolutionary search with an XGBoost model on one task; returns the trials measured."""
    from tvm.s_tir import meta_schedule as ms

    count = 0
    best = [None]

    def on_batch(results) -> None:
        nonlocal count
        count += len(results)
        for r in results:
            if r.error_msg is None and r.run_secs:
                t = float(np.mean([float(s) for s in r.run_secs]))
                best[0] = t if best[0] is None else min(best[0], t)
        report(count, best[0])
        _stop_if_interrupted(sigint)  # a safe point: this batch's records are in the database

    population = int(min(256, max(32, 4 * space)))
    evolutionary = ms.search_strategy.EvolutionarySearch(
        population_size=population, init_measured_ratio=0.2, init_min_unmeasured=max(1, min(32, space // 2)),
        max_fail_count=5, genetic_num_iters=3, genetic_mutate_prob=0.85, genetic_max_fail_count=10,
        eps_greedy=0.05)
    strategy = _skip_measured(evolutionary, set(measured))
    space_gen = ms.space_generator.ScheduleFn(tunable_space(target), sch_rules=[], postprocs=[],
                                              mutator_probs={ms.mutator.MutateTileSize(): 1.0})
    lg = logging.getLogger(f"tvm.s_tir.meta_schedule.bnncc.{task.name}")
    with _without_tensor_intrin_import():
        ctx = ms.TuneContext(mod=task.mod, target=target, space_generator=space_gen, search_strategy=strategy,
                             task_name=task.name, logger=lg, rand_state=-1 if seed is None else seed,
                             num_threads=min(2, os.cpu_count() or 1)).clone()
    ms.tune.tune_tasks(
        tasks=[ctx], task_weights=[1.0], work_dir=str(log_dir / LOGS_DIR), max_trials_global=trials,
        max_trials_per_task=trials, num_trials_per_iter=per_iter, builder=measurer.builder,
        runner=measurer.runner, database=trials_db,
        cost_model=ms.cost_model.XGBModel(num_tuning_cores=min(2, os.cpu_count() or 1), adaptive_training=True),
        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), _progress_callback(on_batch)],
        task_scheduler="round-robin")
    return count


def _verify(task: Task, trials_db, measurer: Measurer, spec: TargetSpec, target: tvm.target.Target,
            rounds: int, top: int, min_gain: float, fallback: bool):
    """Check and time the default schedule and the ``top`` best tuned ones, interleaved; returns
    (winner record or None, default median, best tuned median, checked, note)."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    recs, seen = [], set()
    ok = sorted((r for r in records_of(trials_db, task.mod) if _run_ok(r)), key=_mean)
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
            _say(f"bnncc tune: {task.name}: {note}")
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
            _cleanup_artifact(art)
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


def _commit_best(log_dir: Path, task: Task, record) -> None:
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


def read_summary(log_dir: str | Path) -> dict[str, Any]:
    path = Path(log_dir) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        _say(f"bnncc: warning: {path}: unreadable ({e}); starting a new summary (old one kept as .corrupt)")
        shutil.copy(path, f"{path}.corrupt")
        return {}


def _write_summary(log_dir: Path, summary: dict[str, Any]) -> None:
    _atomic_write(log_dir / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")


def tune(model: tvm.IRModule | Sequence[Task], target: str | TargetSpec = "host", *,
         log_dir: str | Path | None = None, trials: int = DEFAULT_TRIALS, rpc: str | None = None,
         key: str | None = None, float_tasks: int = DEFAULT_FLOAT_TASKS, trials_per_iter: int = TRIALS_PER_ITER,
         session_timeout: float = 60.0, verify_rounds: int = VERIFY_ROUNDS, min_gain: float = MIN_GAIN,
         fallback: bool = True, seed: int | None = None, runner_workers: int | None = None,
         threads: int | None = None, progress: Callable[[str], None] | None = _say,
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
    summary["target"] = _target_info(spec)
    summary.setdefault("tasks", {})
    summary.setdefault("runs", [])
    tasks = list(model) if not isinstance(model, tvm.IRModule) else extract_tasks(model, spec,
                                                                                  float_tasks=float_tasks)
    if not tasks:
        raise TuningError("the model has no binary conv/dense (nor float conv/dense) to tune")
    measurer = Measurer(spec, rpc=rpc, key=key, session_timeout=session_timeout, runner_workers=runner_workers)
    results: list[TaskResult] = []
    say(f"bnncc tune: {len(tasks)} task(s) for {log_name(spec)} ({measurer.where}), up to {trials} trials each; "
        f"log {log_dir}")
    with _metaschedule_logs(log_dir), _ctrl_c(say) as sigint:
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
        _stop_if_interrupted(sigint)
        t0 = time.monotonic()
        head = f"bnncc tune: [{i}/{len(tasks)}] {task.name} ({task.kind}, {task.calls} call(s), " \
               f"{task.macs / 1e6:.0f} M MACs)"
        size = space_size(task, tvm_target)
        measured = _measured(trials_db, task)
        goal = min(trials, size)
        remaining = max(0, goal - len(measured))
        skey = _summary_key(summary, task)
        prev = summary["tasks"].get(skey, {})
        if remaining == 0 and prev.get("choice") and prev.get("trials", 0) >= goal:
            say(f"{head}: done earlier ({prev['trials']} trials, {prev['choice']} kept)")
            results.append(TaskResult(task.name, task.kind, task.macs, task.calls, size, len(measured), 0,
                                      _sec(prev.get("default_us")), _sec(prev.get("tuned_us")),
                                      prev["choice"], prev.get("checked", False), 0.0, "done earlier"))
            continue
        new, search_s = 0, 0.0
        if remaining:
            resumed = f", resuming after {len(measured)}" if measured else ""
            say(f"{head}: space of {size}, {remaining} trial(s) to run{resumed}")

            done = len(measured)

            def report(n, best, _head=head, _done=done, _goal=goal):
                say(f"{_head}: {_done + n}/{_goal} trials, best {_us(best)}")

            t_search = time.monotonic()
            new = _search(task, remaining, size, measurer, trials_db, tvm_target, log_dir, seed,
                          trials_per_iter, report, measured, sigint)
            _stop_if_interrupted(sigint)
            search_s = time.monotonic() - t_search
        winner, d_t, t_t, checked, note = _verify(task, trials_db, measurer, spec, tvm_target, verify_rounds,
                                                  VERIFY_TOP, min_gain, fallback)
        _commit_best(log_dir, task, winner)
        choice = "tuned" if winner is not None else "default"
        n_measured = len(_measured(trials_db, task))
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


# -------------------------------------------------------------------------------------------- compile side
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
        path = Path(arg)
        if not path.is_dir():
            raise TuningError(f"{path}: no such tuning log directory")
        if not (path / RECORD_FILE).is_file():
            raise TuningError(f"{path}: not a tuning log (no {RECORD_FILE}; bnncc tune writes one)")
        meta = read_summary(path).get("target", {})
        if meta and meta.get("log_name") != log_name(spec):
            raise TuningError(f"{path} was tuned for {meta.get('log_name')}, not for {log_name(spec)} "
                              f"(target {spec.name}); use the log of this target or --no-tuning")
        want = _target_key(spec.tvm_target())
        for r in open_database(path, create=False).get_all_tuning_records():
            if r.target is not None and _target_key(r.target) != want:
                raise TuningError(f"{path} was tuned for {_target_desc(r.target)}, not for {log_name(spec)} "
                                  f"({_target_desc(spec.tvm_target())}); use the log of this target or --no-tuning")
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
                    _say(f"bnncc: warning: {self.path}: a record no longer replays ({_short(e)}): skipped; "
                         "re-tune (bnncc tune)")
                    continue
                wl = self._db.commit_workload(r.workload.mod)
                self._db.commit_tuning_record(type(r)(r.trace, wl, r.run_secs, r.target, r.args_info))
        return self._db

    def apply(self, mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
        """Replace the PrimFuncs the log has a record for by their tuned schedule (marked scheduled)."""
        from tvm import relax

        db = self.database()
        calls = _call_counts(mod)
        tunable = {gv.name_hint for gv, f in mod.functions_items()
                   if isinstance(f, tirx.PrimFunc) and _describe(f) is not None}
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
                rec = db.query_tuning_record(_normalize(mod[gv]), target, "main")
                self.applied[gv.name_hint] = rec.trace if rec is not None else None
        self.last_report["tuned_ops"] = sum(calls.get(n, 1) for n in tuned)
        self.last_report["tuned_funcs"] = sorted(tuned)
        return new


def _target_key(t: tvm.target.Target) -> tuple:
    """What makes a schedule measured on one target right for another: the CPU, its features, the arch."""
    attrs = dict(t.attrs)
    triple = str(attrs.get("mtriple", "")) or None
    return (t.kind.name, str(attrs.get("mcpu", "")), tuple(sorted(str(a) for a in attrs.get("mattr", ()) or ())),
            triple.split("-")[0] if triple else None)


def _target_desc(t: tvm.target.Target) -> str:
    kind, mcpu, mattr, arch = _target_key(t)
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
