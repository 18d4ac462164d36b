"""UseWeightLayout: store every bconv2d's constant weights in the layout the schedules want."""

from __future__ import annotations

import tvm
from tvm import relax

from ..bconv2d import BCONV2D, WEIGHT_LAYOUTS, with_weight_layout


@relax.expr_functor.mutator
class _WeightLayout(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, layout: str):
        super().__init__(mod)
        self.layout = layout

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        return with_weight_layout(call, self.layout) if call.op == BCONV2D else call


@tvm.transform.module_pass(opt_level=0, name="bnncc.UseWeightLayout")
class UseWeightLayout:
    """Rewrite the constant weights of every bconv2d into ``layout`` ("OHWI" or "HWIO") at compile time; HWIO
    keeps output channels contiguous, which vectorizing over output channels wants."""

    def __init__(self, layout: str = "HWIO"):
        if layout not in WEIGHT_LAYOUTS:
            raise ValueError(f"layout must be one of {WEIGHT_LAYOUTS}, got {layout!r}")
        self.layout = layout

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        mod = mod.clone()
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mod[gv] = _WeightLayout(mod, self.layout).visit_expr(func)
        return mod
