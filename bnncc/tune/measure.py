"""Measuring schedules: MetaSchedule's builder and runner for a target (``LocalRunner``, or ``RPCRunner`` through
a tracker). The builder/runner functions are module-level: MetaSchedule's popen workers get them pickled by
qualified name (``bnncc.tune.measure.build_tir``) and import this module."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Sequence

import tvm

from bnncc.rpc.tracker import RpcError, reach_tracker, servers, split_addr, tracker_keys
from bnncc.targets import TargetSpec, get_target

from .log import TuningError
from .util import short_error

TRACKER_WAIT = 20.0  # seconds an unreachable tracker is waited for (a restart) before tuning stops


def build_tir(mod: tvm.IRModule, target: tvm.target.Target, _params=None):
    """MetaSchedule builder function: ``tvm.tirx.build``. (MetaSchedule's default also imports
    ``tvm.s_tir.tensor_intrin``, which parses every tensor intrinsic's TVMScript: 15–20 s in each fresh builder
    worker on a busy 2-core machine, past the build timeout; bnncc's schedules use no tensor intrinsic.)"""
    return tvm.tirx.build(mod, target)


def export_aarch64(rt_mod) -> str:
    """MetaSchedule builder export for aarch64 devices: a shared library cross-compiled with the ``aarch64``
    target's g++."""
    import tvm.support.cc

    path = os.path.join(tempfile.mkdtemp(prefix="bnncc-ms-"), "tvm_tmp_mod.so")
    rt_mod.export_library(path, fcompile=tvm.support.cc.cross_compiler(get_target("aarch64").cross_compiler))
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


def quiet_worker(log_path: str) -> None:
    """Initializer of the RPC runner's worker processes: their stderr (TVM's "Cannot connect to tracker, retry"
    warnings, tracebacks of its connection threads while a tracker is away) goes to the log directory, not to
    the console, where bnncc tune reports one line per event."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


class Measurer:
    """MetaSchedule's builder and runner for a target: ``LocalRunner`` or ``RPCRunner`` through a tracker."""

    def __init__(self, spec: TargetSpec, *, rpc: str | None = None, key: str | None = None,
                 session_timeout: float = 60.0, runner_workers: int | None = None,
                 builder_workers: int | None = None, evaluator=None, worker_log: str | os.PathLike | None = None):
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
            try:
                host, port = split_addr(rpc)
            except RpcError as e:
                raise TuningError(str(e)) from None
            self.workers = runner_workers or max(1, self.servers())
            self.runner = ms.runner.RPCRunner(
                rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                               session_timeout_sec=int(session_timeout)),
                evaluator_config=self.evaluator, max_workers=self.workers, f_run_evaluator=run_evaluator_rpc,
                initializer=functools.partial(quiet_worker, os.fspath(worker_log)) if worker_log else None)
        else:
            self.workers = 1
            self.runner = ms.runner.LocalRunner(timeout_sec=session_timeout, evaluator_config=self.evaluator,
                                                f_run_evaluator=run_evaluator_local)

    def servers(self) -> int:
        """Servers registered under the key at the tracker (raises a clear error if there are none)."""
        try:
            summary = reach_tracker(self.rpc, timeout=10.0)
        except RpcError as e:
            raise TuningError(str(e)) from None
        n = len(servers(summary, self.key))
        if n == 0:
            keys = ", ".join(tracker_keys(summary)) or "none"
            raise TuningError(f"no RPC server with key {self.key!r} at the tracker {self.rpc} "
                              f"(registered keys: {keys})")
        return n

    def tracker_lost(self, wait: float = TRACKER_WAIT) -> str | None:
        """After measurements failed: why the tracker is gone (it did not answer for ``wait`` seconds), None when
        it answers (it may have restarted: TVM's servers register again, its runner reconnects) or without RPC."""
        if not self.rpc:
            return None
        deadline = time.monotonic() + wait
        while True:
            try:
                reach_tracker(self.rpc, timeout=5.0)
                return None
            except RpcError as e:
                if time.monotonic() >= deadline:
                    return f"{e} (for {wait:.0f} s)"
            time.sleep(1.0)

    def lost_error(self, why: str) -> TuningError:
        return TuningError(f"{why}: the trials measured so far are kept in the log; rerun when the tracker is back "
                           "to continue")

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
            lost = self.tracker_lost()
            if lost:
                raise self.lost_error(lost)
            return None, short_error(Exception(res.error_msg))
        return [float(s) for s in res.run_secs], None


def cleanup_artifact(path: str | None) -> None:
    """Remove a builder artifact (its temporary directory)."""
    if path:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
