"""Memory of a compiled model, read off the VM-lowered module: the activation memory its static memory plan
allocates (peak of the storages alive at once, and their total) and the bytes of its constant weights.

After Relax's memory planning, ``main`` allocates storages (``R.vm.alloc_storage``), places tensors in them
(``R.vm.alloc_tensor``, reusing a storage for tensors whose lifetimes do not overlap) and drops references
(``R.vm.kill_object``). A storage is alive until it and every tensor placed in it are dropped; the peak is the
largest sum of live storages over the program, i.e. what the VM's allocator holds at most for activations (the
model's input, given by the caller, is not counted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax

_ALLOC_STORAGE = "relax.vm.alloc_storage"
_ALLOC_TENSOR = "relax.vm.alloc_tensor"
_KILL = "relax.vm.kill_object"


def _op_name(value) -> str:
    return value.op.name if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) else ""


def _weights(func: relax.Function) -> list:
    """The constant tensors the kernel calls of a VM-lowered function read (each once)."""
    found: list = []
    for block in func.body.blocks:
        for b in block.bindings:
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.GlobalVar):
                found += [a for a in b.value.args if isinstance(a, tvm.ir.expr.Constant) and
                          hasattr(a.value, "numpy") and not any(a.same_as(f) for f in found)]
    return found


def activation_bytes(func: relax.Function) -> tuple[int, int]:
    """(peak bytes of live storages, total bytes of all storages) of a VM-lowered function."""
    sizes: dict[Any, int] = {}  # storage var → bytes
    refs: dict[Any, int] = {}  # storage var → live references (itself and its tensors)
    owner: dict[Any, Any] = {}  # tensor var → its storage var
    live = peak = 0
    for block in func.body.blocks:
        for b in block.bindings:
            name, value = _op_name(b.value), b.value
            if name == _ALLOC_STORAGE:
                sizes[b.var] = int(np.prod([int(d) for d in value.args[0].values]))
                refs[b.var] = 1
                live += sizes[b.var]
                peak = max(peak, live)
            elif name == _ALLOC_TENSOR and value.args[0] in sizes:
                owner[b.var] = value.args[0]
                refs[value.args[0]] += 1
            elif name == _KILL:
                storage = owner.pop(value.args[0], value.args[0])
                if storage in refs:
                    refs[storage] -= 1
                    if refs[storage] == 0:
                        live -= sizes[storage]
    return peak, sum(sizes.values())


def planned(mod: tvm.IRModule) -> dict[str, int]:
    """``peak_activation_bytes``, ``planned_activation_bytes`` and ``weight_bytes`` of ``main``."""
    main = mod["main"]
    peak, total = activation_bytes(main)
    weights = sum(c.value.numpy().nbytes for c in _weights(main))
    return {"peak_activation_bytes": peak, "planned_activation_bytes": total, "weight_bytes": int(weights)}
