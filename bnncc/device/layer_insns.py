"""Instruction counts per kernel call of an aarch64 library, on the emulated device (qemu-user with the
qemu-insncount plugin): ``bnncc profile --target aarch64`` reports these instead of times (times under qemu mean
nothing; instruction counts are exact).

The guest (the device's arm64 python with TVM's runtime) runs the library's ``main`` once to warm up, then once
more with a VM instrument that issues the plugin's marker syscall before and after every recorded kernel, and
once without (marked as a whole): the end-to-end count the kernels are reconciled against. The instrument's own
instructions between a kernel's two markers (leaving one Python call, entering the next) are measured by two
back-to-back markers from the same code path and subtracted.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .arm64 import DeviceError, setup
from .insncount import MARK_SYSCALL, insncount

BEFORE, AFTER, RUN_START, RUN_END, IDLE_START, IDLE_END = 1, 2, 3, 4, 5, 6

_GUEST = r'''
import ctypes, json, sys
import numpy as np
import tvm

so, inputs, kernels = sys.argv[1], sys.argv[2:-1], json.loads(open(sys.argv[-1]).read())
mark = ctypes.CDLL(None).syscall
lib = tvm.runtime.load_module(so)
args = [tvm.runtime.tensor(np.load(p)) for p in inputs]


def vm():  # tvm.relax.VirtualMachine's setup, with the runtime alone (the device has no compiler)
    m = lib["vm_load_executable"]()
    m["vm_initialization"](tvm.cpu().dlpack_device_type(), 0, 2)  # CPU 0, pooled allocator
    return m


plain, traced = vm(), vm()
wanted = set(kernels)

def instrument(_f, symbol, before, *_rest):
    if symbol in wanted:
        mark(MARK, BEFORE if before else AFTER)
    return 0

def idle(_f, symbol, before, *_rest):  # the same path, no kernel between the markers
    mark(MARK, IDLE_START)
    mark(MARK, IDLE_END)
    return 0

plain["main"](*args)
mark(MARK, RUN_START)
plain["main"](*args)
mark(MARK, RUN_END)
traced["set_instrument"](instrument)
traced["main"](*args)
for _ in range(8):
    idle(None, "", True)
'''


def _guest_script() -> str:
    consts = dict(MARK=MARK_SYSCALL, BEFORE=BEFORE, AFTER=AFTER, RUN_START=RUN_START, RUN_END=RUN_END,
                  IDLE_START=IDLE_START, IDLE_END=IDLE_END)
    return "".join(f"{k} = {v}\n" for k, v in consts.items()) + _GUEST


def kernel_insns(library: str | Path, inputs: Sequence[np.ndarray], kernels: Sequence[str],
                 timeout: float = 1800.0) -> dict:
    """``{"kernels": [instructions per kernel call], "end_to_end": instructions of a plain run, "marker_overhead":
    instructions subtracted from each kernel}`` of an aarch64 library on the emulated device."""
    env = setup()
    with tempfile.TemporaryDirectory(prefix="bnncc-layer-insns-") as td:
        tdp = Path(td)
        (tdp / "guest.py").write_text(_guest_script())
        (tdp / "kernels.json").write_text(json.dumps(list(kernels)))
        paths = []
        for i, x in enumerate(inputs):
            paths.append(tdp / f"in{i}.npy")
            np.save(paths[-1], np.ascontiguousarray(x))
        res = insncount([env.python, tdp / "guest.py", Path(library).resolve(), *paths, tdp / "kernels.json"],
                        guest_env={"PYTHONPATH": str(env.site), "TVM_USE_RUNTIME_LIB": "1", "TVM_NUM_THREADS": "1"},
                        timeout=timeout)
    marks = res.marks
    before = [c for t, c in marks if t == BEFORE]
    after = [c for t, c in marks if t == AFTER]
    idle = [c2 - c1 for (t1, c1), (t2, c2) in zip(marks, marks[1:], strict=False)
            if t1 == IDLE_START and t2 == IDLE_END]
    if len(before) != len(kernels) or len(after) != len(kernels) or not idle:
        raise DeviceError(f"the emulated device marked {len(before)} kernel calls of {len(kernels)} recorded")
    overhead = int(np.median(idle))
    counts = [max(0, a - b - overhead) for b, a in zip(before, after, strict=True)]
    return {"kernels": counts, "end_to_end": res.region(RUN_START, RUN_END), "marker_overhead": overhead}
