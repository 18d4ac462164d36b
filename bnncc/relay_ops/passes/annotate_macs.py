"""AnnotateMacs (after FuseBinaryLayers): each conv/dense call records its MACs and their precision in its span.

Counted on the ops as they will run (after FuseBinaryLayers decided what is binary): ``bconv2d``/``bdense`` are
binary MACs (one XNOR-popcount bit each), ``conv2d``/``matmul``/``dense`` float MACs. bnncc has no int8 kernels,
so int8 stays 0. The counts travel with the call (:mod:`bnncc.provenance`) to the kernel it ends up in.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ...provenance import with_macs
from ..bconv2d import BCONV2D
from ..bdense import BDENSE


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


def _out_channels(call: relax.Call, weights_o: int) -> int:
    return int(call.ty.shape[-1]) if str(call.attrs["out"]) == "float32" else weights_o


def macs(call: relax.Call) -> tuple[str, int] | None:
    """(precision, MACs) of a conv/dense call, None for any other call."""
    op = call.op
    if op == BCONV2D:
        w = _shape(call.args[1])
        kh, kw, o = (w[0], w[1], w[3]) if str(call.attrs["weight_layout"]) == "HWIO" else (w[1], w[2], w[0])
        n, h, wd = _shape(call)[:3]
        cin = int(call.attrs["channels_in"]) // int(call.attrs["groups"])
        return "binary", n * h * wd * _out_channels(call, o) * kh * kw * cin
    if op == BDENSE:
        n = _shape(call)[0]
        return "binary", n * _out_channels(call, _shape(call.args[1])[0]) * int(call.attrs["channels_in"])
    if not isinstance(op, tvm.ir.Op):
        return None
    if op.name == "relax.nn.conv2d":  # kernel HWIO (the frontend's layout): I is input channels per group
        kh, kw, i, _ = _shape(call.args[1]) if str(call.attrs["kernel_layout"]) == "HWIO" else \
            np.array(_shape(call.args[1]))[[2, 3, 1, 0]]
        return "float", int(np.prod(_shape(call))) * int(kh) * int(kw) * int(i)
    if op.name in ("relax.matmul", "relax.nn.dense", "relax.linear"):
        return "float", int(np.prod(_shape(call))) * _shape(call.args[0])[-1]
    return None


@relax.expr_functor.mutator
class _Annotate(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        found = macs(call)
        return call if found is None else with_macs(call, *found)


@tvm.transform.module_pass(opt_level=0, name="bnncc.AnnotateMacs")
class AnnotateMacs:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        mod = mod.clone()
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                mod[gv] = _Annotate(mod).visit_expr(func)
        return mod
