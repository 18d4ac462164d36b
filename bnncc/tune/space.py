"""The tunable space of a task: bnncc's schedule with ``tunable=True`` (``sample_perfect_tile`` on the register
tile), its size, and the tile decisions that identify a point of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import tvm
from tvm import s_tir

from bnncc.schedules import schedule_function

from .database import records_of, run_ok
from .log import TuningError

if TYPE_CHECKING:
    from .tasks import Task


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


def measured(db, mod: tvm.IRModule) -> set:
    """The points of a workload's space the database has a successful measurement of (failed runs, e.g. on a server
    that was killed, are tried again)."""
    return {decisions(r.trace) for r in records_of(db, mod) if run_ok(r)}
