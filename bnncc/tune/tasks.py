"""Tuning tasks: the distinct PrimFuncs of the legalized module (before scheduling) that hold a binary conv/dense,
plus the heaviest float conv/dense ones."""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import tirx

from bnncc.targets import TargetSpec, get_target

from .describe import call_counts, describe, normalize

DEFAULT_FLOAT_TASKS = 2


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


def tasks_of(legalized: tvm.IRModule, *, float_tasks: int = DEFAULT_FLOAT_TASKS) -> list[Task]:
    """The tasks of a legalized module (see :func:`bnncc.pipeline.legalize`): every distinct binary conv/dense
    PrimFunc and the ``float_tasks`` heaviest distinct float ones (by MACs × calls), heaviest first."""
    calls = call_counts(legalized)
    by_hash: dict[int, Task] = {}
    for gv, func in sorted(legalized.functions_items(), key=lambda kv: kv[0].name_hint):
        if not isinstance(func, tirx.PrimFunc):
            continue
        desc = describe(func)
        if desc is None:
            continue
        mod = normalize(func)
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
    from bnncc.pipeline import legalize

    return tasks_of(legalize(mod, get_target(target)), float_tasks=float_tasks)
