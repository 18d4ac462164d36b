"""FuseBinaryLayers: binary layers do their own epilogue, and activations stay packed between them.

- ``bconv2d/bdense(float) → multiply(c) → add(d)`` (a folded BatchNorm) and ``→ relu`` become the op's output
  transform (multiplier, bias, clamp);
- ``max_pool2d → bitpack`` becomes ``bitpack → bmaxpool2d`` (sign is monotone, so it commutes with max);
- ``flatten → bitpack`` becomes ``bitpack → flatten`` when channels are whole words;
- ``bconv2d/bdense(float) → bitpack`` becomes one op with bitpacked output (integer thresholds), so the
  activations between consecutive binary layers stay packed.

A rewrite only happens when the intermediate value has no other user; rewrites repeat until none applies.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ...provenance import merge
from ..bconv2d import BCONV2D
from ..bconv2d import rebuild as rebuild_bconv2d
from ..bdense import BDENSE
from ..bdense import rebuild as rebuild_bdense
from ..bitpack import BITPACK, bitpack
from ..bmaxpool2d import bmaxpool2d

_REBUILD = {BCONV2D: rebuild_bconv2d, BDENSE: rebuild_bdense}


def _const_value(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def _float_transform(call: relax.Call):
    post = _const_value(call.args[2])
    return post[0], post[1], tuple(int(v) for v in call.attrs["clamp"])


def _channel_vector(expr, channels: int) -> np.ndarray | None:
    """A constant that broadcasts as one value per channel (last axis), as a [channels] vector."""
    v = _const_value(expr)
    if v is None or v.dtype != np.float32 or (v.ndim and v.shape[-1] not in (1, channels)) or \
            any(d != 1 for d in v.shape[:-1]):
        return None
    return np.broadcast_to(v.reshape(-1), (channels,)).astype(np.float32)


def _users(func: relax.Function) -> dict[relax.Var, int]:
    """How many times each variable is used (function outputs count as a use)."""
    counts: dict = {}

    @relax.expr_functor.visitor
    class _Count(relax.PyExprVisitor):
        def visit_var_(self, var):
            counts[var] = counts.get(var, 0) + 1

        def visit_dataflow_var_(self, var):
            counts[var] = counts.get(var, 0) + 1

    _Count().visit_expr(func)
    return counts


@relax.expr_functor.mutator
class _FuseBinary(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, users: dict):
        super().__init__(mod)
        self.users = users
        self.changed = 0

    def _producer(self, expr):
        if not isinstance(expr, relax.Var) or self.users.get(expr, 0) != 1:
            return None
        value = self.lookup_binding(expr)
        return value if isinstance(value, relax.Call) else None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        new = self._fuse(call)
        if new is not None:
            self.changed += 1
            # the fused call computes both layers (the profiler reports them together)
            return merge(new, call, self._producer(call.args[0]))
        return call

    def _fuse(self, call: relax.Call):
        op = call.op
        if not isinstance(op, tvm.ir.Op) or not call.args:
            return None
        prod = self._producer(call.args[0])
        binary_float = prod is not None and prod.op in _REBUILD and str(prod.attrs["out"]) == "float32"
        name = op.name
        if binary_float and name in ("relax.multiply", "relax.add"):
            o = int(prod.ty.shape[-1])
            v = _channel_vector(call.args[1], o)
            if v is None:
                return None
            m, b, clamp = _float_transform(prod)
            m, b = (m * v, b * v) if name == "relax.multiply" else (m, b + v)
            return _REBUILD[prod.op](prod, prod.args[0], m, b, clamp, "float32")
        if binary_float and name == "relax.nn.relu":
            m, b, (lo, hi) = _float_transform(prod)
            if np.any(b != 0) or np.any(m < 0):  # relu(m·a) = m·max(a, 0) only without bias, m ≥ 0
                return None
            return _REBUILD[prod.op](prod, prod.args[0], m, b, (max(lo, 0), hi), "float32")
        if op == BITPACK and prod is not None:
            bits, groups = int(call.attrs["bits"]), int(call.attrs["groups"])
            if binary_float and (groups == 1 or int(prod.ty.shape[-1]) // groups % bits == 0):
                if str(prod.args[0].ty.dtype) == f"uint{bits}":
                    m, b, clamp = _float_transform(prod)
                    return _REBUILD[prod.op](prod, prod.args[0], m, b, clamp, "bitpacked")
            src = prod.args[0]
            if prod.op.name == "relax.reshape" and groups == 1 and len(src.ty.shape) == 4 and \
                    len(prod.ty.shape) == 2 and int(src.ty.shape[-1]) % bits == 0:
                # Flatten of whole words: packing commutes with it, so the producer can emit packed words.
                packed = self.builder_.emit(merge(bitpack(src, bits=bits), call, prod))
                n = int(prod.ty.shape[0])
                return relax.op.reshape(packed, (n, int(np.prod([int(d) for d in packed.ty.shape])) // n))
            if prod.op.name == "relax.nn.max_pool2d" and str(prod.attrs["layout"]) == "NHWC" and \
                    all(int(d) == 1 for d in prod.attrs["dilation"]) and not prod.attrs["ceil_mode"]:
                packed = self.builder_.emit(merge(bitpack(prod.args[0], bits=bits, groups=groups), call, prod))
                a = prod.attrs
                return bmaxpool2d(packed, tuple(a["pool_size"]), tuple(a["strides"]), tuple(a["padding"]))
        return None


@tvm.transform.module_pass(opt_level=0, name="bnncc.FuseBinaryLayers")
class FuseBinaryLayers:
    """Apply the rewrites of this module to every Relax function until nothing changes, then drop the dead
    intermediate values."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        mod = mod.clone()
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, relax.Function):
                continue
            while True:
                mutator = _FuseBinary(mod, _users(func))
                func = mutator.visit_expr(func)
                func = relax.analysis.remove_all_unused(func)
                if not mutator.changed:
                    break
            mod[gv] = func
        return mod


def fuse_binary_layers(mod: tvm.IRModule) -> tvm.IRModule:
    """:class:`FuseBinaryLayers` applied to ``mod`` (a new module; ``mod`` is unchanged)."""
    return FuseBinaryLayers()(mod)
