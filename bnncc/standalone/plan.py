"""The program of a static C library, read off the VM-lowered Relax ``main``: which tensors exist (each an
input, a slice of the static activation arena, or a slice of the weights), and the kernel calls in order.

After the pipeline's ``vm`` phase, ``main`` is straight-line code: storages allocated with their planned sizes
(``R.vm.alloc_storage``), tensors placed in them at planned offsets (``R.vm.alloc_tensor``), calls of the
PrimFuncs with those tensors and the constant weights, reshapes (views), tuples, and bookkeeping the C
library does not need (shape checks of the input, which its fixed signature guarantees; ``kill_object``, since
nothing is freed). Anything else cannot become C: a clear error names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import tvm
from tvm import relax

from ..errors import BnnccError

ALIGN = 64  # every arena and weight slice starts on a cache line (the kernels' vector loads assume alignment)
_SKIPPED_PACKED = {"vm.builtin.check_tensor_info", "vm.builtin.match_shape"}
_SKIPPED_OPS = {"relax.null_value", "relax.vm.kill_object"}


class EmitError(BnnccError):
    """A compiled model that cannot be written as a runtime-free C library."""


def aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class Tensor:
    """A DLTensor of the program: ``where`` is "input" (offset = input index), "arena" or "weights" (byte offset;
    while reading, an arena tensor's offset is within its ``storage``)."""

    index: int
    shape: tuple[int, ...]
    dtype: str
    where: str
    offset: int
    storage: int = -1

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * tvm.runtime.DataType(self.dtype).bits // 8


@dataclass(frozen=True)
class Call:
    kernel: str  # the PrimFunc's name in the module
    args: tuple[Tensor | int, ...]


@dataclass
class Program:
    inputs: list[Tensor] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    arena_bytes: int = 0
    weights: bytearray = field(default_factory=bytearray)
    input_stage: list[int] = field(default_factory=list)  # arena offset of an aligned copy of each input
    call_workspace: list[tuple[int, int]] = field(default_factory=list)  # per call: (arena offset, bytes)

    def tensor(self, shape, dtype: str, where: str, offset: int, storage: int = -1) -> Tensor:
        t = Tensor(len(self.tensors), tuple(shape), dtype, where, offset, storage)
        self.tensors.append(t)
        return t


def pack_storages(sizes: list[int], lifetimes: list[tuple[int, int]]) -> tuple[list[int], int]:
    """Arena offsets for storages alive over ``lifetimes`` (first, last step, inclusive): storages whose lifetimes
    overlap never share bytes; the others may. Largest first, each at the lowest offset that fits (the usual
    greedy static allocator); returns (offsets, arena bytes)."""
    offsets = [0] * len(sizes)
    placed: list[int] = []
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        busy = sorted((offsets[j], offsets[j] + sizes[j]) for j in placed
                      if lifetimes[j][0] <= lifetimes[i][1] and lifetimes[i][0] <= lifetimes[j][1])
        at = 0
        for lo, hi in busy:
            if at + sizes[i] <= lo:
                break
            at = max(at, aligned(hi))
        offsets[i] = at
        placed.append(i)
    return offsets, max((offsets[i] + sizes[i] for i in placed), default=0)


def _static_shape(expr, what: str) -> tuple[int, ...]:
    values = expr.values if isinstance(expr, relax.ShapeExpr) else None
    if values is None or not all(isinstance(v, tvm.tirx.IntImm) for v in values):
        raise EmitError(f"{what} has a dynamic shape ({expr}); a C library needs static shapes")
    return tuple(int(v) for v in values)


def _callee(value) -> str:
    op = value.op
    return getattr(op, "name", None) or getattr(op, "global_symbol", None) or type(op).__name__


class _Reader:
    def __init__(self, main: relax.Function):
        self.p = Program()
        # storages of the arena: the memory plan's, one per input (an aligned copy, for callers whose buffer is
        # not on a 64-byte boundary; it dies with the input's last reader) and, later, each call's workspace
        self.storage_sizes: list[int] = []
        self.lifetimes: list[list[int]] = []  # per storage: [allocated at step, last used at step]
        self.step = 0
        self.env: dict = {}  # relax Var → Tensor | ("storage", index) | tuple
        self.constants: list[tuple[object, Tensor]] = []
        self.call_steps: list[int] = []
        for param in main.params:
            ty = param.ty
            if not isinstance(ty, relax.TensorType) or ty.shape is None:
                raise EmitError(f"input {param.name} is not a tensor of known shape")
            shape = _static_shape(ty.shape, f"input {param.name}")
            t = self.p.tensor(shape, str(ty.dtype), "input", len(self.p.inputs),
                              self.new_storage(aligned(int(np.prod(shape)) * tvm.runtime.DataType(str(ty.dtype)).bits
                                                       // 8)))
            self.p.inputs.append(t)
            self.p.input_names.append(param.name)
            self.env[param] = t

    def new_storage(self, size: int) -> int:
        self.storage_sizes.append(size)
        self.lifetimes.append([self.step, self.step])
        return len(self.storage_sizes) - 1

    def constant(self, c) -> Tensor:
        for seen, t in self.constants:
            if seen.same_as(c):
                return t
        data = np.ascontiguousarray(c.value.numpy())
        offset = aligned(len(self.p.weights))
        self.p.weights.extend(b"\0" * (offset - len(self.p.weights)))
        self.p.weights.extend(data.tobytes())
        t = self.p.tensor(data.shape, str(data.dtype) if data.dtype != np.bool_ else "bool", "weights", offset)
        self.constants.append((c, t))
        return t

    def arg(self, a, kernel: str) -> Tensor | int:
        if isinstance(a, tvm.ir.expr.Constant) and hasattr(a.value, "numpy"):
            return self.constant(a)
        if isinstance(a, tvm.tirx.IntImm):
            return int(a)
        found = self.env.get(a)
        if isinstance(found, Tensor):
            return found
        raise EmitError(f"kernel {kernel} takes an argument a C library cannot pass: {a}")

    def bind(self, var, value) -> None:
        self.step += 1
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
            name = value.op.name_hint
            call = Call(name, tuple(self.arg(a, name) for a in value.args))
            for a in call.args:
                self.use(a)
            self.p.calls.append(call)
            self.call_steps.append(self.step)
            return
        if isinstance(value, relax.Tuple):
            self.env[var] = tuple(self.env.get(f) for f in value.fields)
            return
        if isinstance(value, relax.TupleGetItem):
            self.env[var] = self.env[value.tuple_value][value.index]
            return
        if not isinstance(value, relax.Call):
            if value in self.env:  # an alias
                self.env[var] = self.env[value]
                return
            raise EmitError(f"main binds {var.name} to {type(value).__name__}, which a C library cannot express")
        name = _callee(value)
        if name == "relax.vm.alloc_storage":
            size = int(np.prod(_static_shape(value.args[0], f"storage {var.name}")))
            self.env[var] = ("storage", len(self.storage_sizes))
            self.storage_sizes.append(aligned(size))
            self.lifetimes.append([self.step, self.step])
        elif name == "relax.vm.alloc_tensor":
            _, storage = self.env[value.args[0]]
            offset = int(value.args[1])
            shape = _static_shape(value.args[2], f"tensor {var.name}")
            self.env[var] = self.p.tensor(shape, str(value.args[3].value), "arena", offset, storage)
            self.use(self.env[var])
        elif name == "vm.builtin.reshape":
            src = self.env[value.args[0]]
            shape = _static_shape(value.args[1], f"reshape {var.name}")
            self.env[var] = self.p.tensor(shape, src.dtype, src.where, src.offset, src.storage)
        elif name not in _SKIPPED_PACKED and name not in _SKIPPED_OPS:
            raise EmitError(f"main calls {name}, which bnncc cannot emit as C (binding {var.name})")

    def use(self, a) -> None:
        if isinstance(a, Tensor) and a.storage >= 0:
            self.lifetimes[a.storage][1] = self.step

    def place(self, workspace: list[int]) -> None:
        """Storages → arena offsets by lifetime (the VM frees a storage when its last tensor dies; a static arena
        lets storages that are never alive together share bytes), then every arena tensor's absolute offset.
        ``workspace``: bytes each call holds on the caller's thread, alive during that call only."""
        first_ws = len(self.storage_sizes)
        for step, size in zip(self.call_steps, workspace, strict=True):
            self.storage_sizes.append(aligned(size))
            self.lifetimes.append([step, step])
        offsets, self.p.arena_bytes = pack_storages(self.storage_sizes, [tuple(t) for t in self.lifetimes])
        self.p.input_stage = [offsets[t.storage] for t in self.p.inputs]
        self.p.call_workspace = [(offsets[first_ws + i], self.storage_sizes[first_ws + i])
                                 for i in range(len(workspace))]
        moved = {t.index: replace(t, offset=offsets[t.storage] + t.offset, storage=-1)
                 for t in self.p.tensors if t.storage >= 0 and t.where == "arena"}
        self.p.tensors = [moved.get(t.index, t) for t in self.p.tensors]
        self.p.outputs = [moved.get(t.index, t) for t in self.p.outputs]
        self.p.calls = [Call(c.kernel, tuple(moved.get(a.index, a) if isinstance(a, Tensor) else a for a in c.args))
                        for c in self.p.calls]

    def outputs(self, result) -> list[Tensor]:
        if isinstance(result, tvm.ir.expr.Constant):
            return [self.constant(result)]
        found = self.env.get(result)
        items = found if isinstance(found, tuple) else (found,)
        if not all(isinstance(t, Tensor) for t in items):
            raise EmitError(f"main returns {result}, which is not a tensor or a tuple of tensors")
        self.step += 1
        for t in items:  # read after the last kernel
            self.use(t)
        return list(items)


def read_program(mod: tvm.IRModule, workspace: Callable[[str], int] = lambda kernel: 0) -> Program:
    """The program of ``mod["main"]`` after the pipeline's ``vm`` phase; ``workspace(kernel)``: the bytes of
    workspace a call of that PrimFunc holds on the caller's thread (:mod:`.workspace`)."""
    main = mod["main"]
    reader = _Reader(main)
    for block in main.body.blocks:
        for b in block.bindings:
            if isinstance(b, relax.MatchCast):
                raise EmitError(f"main has a match_cast ({b.var.name}): dynamic shapes cannot become C")
            reader.bind(b.var, b.value)
    reader.p.outputs = reader.outputs(main.body.body)
    reader.place([workspace(call.kernel) for call in reader.p.calls])
    return reader.p
