"""Per-kernel time breakdown of a compiled model: each scheduled PrimFunc built alone and timed."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import tvm
from tvm import relax, tirx

from .pipeline import lower
from .targets import get_target


def _call_counts(mod: tvm.IRModule) -> Counter:
    counts: Counter = Counter()
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            for name in re.findall(r"call_tir\((?:cls\.)?(\w+),", func.script()):
                counts[name] += 1
    return counts


def _random_arg(buf, rng) -> tvm.runtime.Tensor:
    shape = [int(s) for s in buf.shape]
    dtype = str(buf.dtype)
    if dtype.startswith("float"):
        data = rng.standard_normal(shape).astype(dtype)
    else:
        data = rng.integers(0, 2**31, size=shape).astype(dtype)
    return tvm.runtime.tensor(data)


def kernel_times(mod: tvm.IRModule, target: str = "host", repeats: int = 20) -> list[dict]:
    """[{kernel, calls, ms_per_call, ms_total, binary}] sorted by total time, for the host target."""
    spec = get_target(target)
    lowered = lower(mod, spec)
    counts = _call_counts(lowered)
    rng = np.random.default_rng(0)
    rows = []
    for gv, func in lowered.functions_items():
        if not isinstance(func, tirx.PrimFunc) or gv.name_hint not in counts:
            continue
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), spec.tvm_target())
        args = [_random_arg(p, rng) for p in func.params]
        t = lib.mod.time_evaluator("main", tvm.cpu(), number=max(1, repeats // 4), repeat=4)(*args)
        ms = float(np.median(t.results)) * 1e3
        rows.append(dict(kernel=gv.name_hint, calls=counts[gv.name_hint], ms_per_call=ms,
                         ms_total=ms * counts[gv.name_hint],
                         # by the kernel's main op: a float conv that also packs its output is a float kernel
                         binary=gv.name_hint.startswith(("bnncc_", "fused_bnncc_"))))
    return sorted(rows, key=lambda r: -r["ms_total"])
