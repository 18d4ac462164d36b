"""Graph passes over Relax modules holding bnncc ops."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .ops import BCONV2D, _attrs


@relax.expr_functor.mutator
class _WeightLayout(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, layout: str):
        super().__init__(mod)
        self.layout = layout

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if call.op != BCONV2D or str(call.attrs["weight_layout"]) == self.layout:
            return call
        w = call.args[1]
        if not isinstance(w, tvm.ir.expr.Constant):
            return call
        perm = (1, 2, 3, 0) if self.layout == "HWIO" else (3, 0, 1, 2)
        data = np.ascontiguousarray(w.value.numpy().transpose(perm))
        attrs = {k: call.attrs[k] for k in call.attrs.keys()}
        attrs["weight_layout"] = self.layout
        return relax.Call(BCONV2D, [call.args[0], relax.const(data), call.args[2]], _attrs(**attrs))


def use_weight_layout(mod: tvm.IRModule, layout: str) -> tvm.IRModule:
    """Rewrite the constant weights of every bconv2d into ``layout`` ("OHWI" or "HWIO") at compile time."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mod[gv] = _WeightLayout(mod, layout).visit_expr(func)
    return mod
