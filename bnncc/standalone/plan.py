"""The program of a static C library, read off the VM-lowered Relax ``main``: which tensors exist (each an
input, a slice of the static activation arena, or a slice of the weights), and the kernel calls in order.

After the pipeline's ``vm`` phase, ``main`` is straight-line code: storages allocated with their planned sizes
(``R.vm.alloc_storage``), tensors placed in them at planned offsets (``R.vm.alloc_tensor``), calls of the
PrimFuncs with those tensors and the constant weights, reshapes (views), tuples, and bookkeeping the C
library does not need (shape checks of the input, which its fixed signature guarantees; ``kill_object``, since
nothing is freed). Anything else cannot become C: a clear error names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """A DLTensor of the program: ``where`` is "input" (offset = input index), "arena" or "weights" (byte offset)."""

    index: int
    shape: tuple[int, ...]
    dtype: str
    where: str
    offset: int

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

    def tensor(self, shape, dtype: str, where: str, offset: int) -> Tensor:
        t = Tensor(len(self.tensors), tuple(shape), dtype, where, offset)
        self.tensors.append(t)
        return t


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
        self.env: dict = {}  # relax Var → Tensor | ("storage", arena offset) | tuple
        self.constants: list[tuple[object, Tensor]] = []
        for param in main.params:
            ty = param.ty
            if not isinstance(ty, relax.TensorType) or ty.shape is None:
                raise EmitError(f"input {param.name} is not a tensor of known shape")
            shape = _static_shape(ty.shape, f"input {param.name}")
            t = self.p.tensor(shape, str(ty.dtype), "input", len(self.p.inputs))
            self.p.inputs.append(t)
            self.p.input_names.append(param.name)
            self.env[param] = t

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
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
            name = value.op.name_hint
            self.p.calls.append(Call(name, tuple(self.arg(a, name) for a in value.args)))
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
            self.env[var] = ("storage", self.p.arena_bytes)
            self.p.arena_bytes += aligned(size)
        elif name == "relax.vm.alloc_tensor":
            kind, base = self.env[value.args[0]]
            offset = int(value.args[1])
            shape = _static_shape(value.args[2], f"tensor {var.name}")
            self.env[var] = self.p.tensor(shape, str(value.args[3].value), "arena", base + offset)
        elif name == "vm.builtin.reshape":
            src = self.env[value.args[0]]
            shape = _static_shape(value.args[1], f"reshape {var.name}")
            self.env[var] = self.p.tensor(shape, src.dtype, src.where, src.offset)
        elif name not in _SKIPPED_PACKED and name not in _SKIPPED_OPS:
            raise EmitError(f"main calls {name}, which bnncc cannot emit as C (binding {var.name})")

    def outputs(self, result) -> list[Tensor]:
        if isinstance(result, tvm.ir.expr.Constant):
            return [self.constant(result)]
        found = self.env.get(result)
        items = found if isinstance(found, tuple) else (found,)
        if not all(isinstance(t, Tensor) for t in items):
            raise EmitError(f"main returns {result}, which is not a tensor or a tuple of tensors")
        return list(items)


def read_program(mod: tvm.IRModule) -> Program:
    """The program of ``mod["main"]`` after the pipeline's ``vm`` phase."""
    main = mod["main"]
    reader = _Reader(main)
    for block in main.body.blocks:
        for b in block.bindings:
            if isinstance(b, relax.MatchCast):
                raise EmitError(f"main has a match_cast ({b.var.name}): dynamic shapes cannot become C")
            reader.bind(b.var, b.value)
    reader.p.outputs = reader.outputs(main.body.body)
    return reader.p
