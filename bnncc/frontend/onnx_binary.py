"""BinarizeOnnxLayers: the binary convs and dense layers of an imported ONNX graph → bnncc's popcount ops.

After TVM's importer, constant folding and the NHWC layout conversion, a binary layer of a PyTorch BNN reads
``conv2d(sign(s), W)`` / ``matmul(sign(s), W)`` with a constant ``W = α·sign(W₀)`` per output channel (the STE
arithmetic around both was removed by :mod:`.onnx_ste` before import). Such a call becomes
``bitpack(s) → bconv2d / bdense`` through :mod:`bnncc.frontend.bnn` (the vocabulary every frontend shares), with
ONNX's zero padding as ``pad_value = 0``. A sign feeding anything else, a float kernel, or a depthwise conv stays a
float op (``relax.sign`` keeps ONNX's ``Sign(0) = 0`` there); so does a kernel with an exact 0 weight
(``Sign(W) = 0``), listed in the report. In a binary layer ``sign(0) = +1`` (a bit has two
values; see docs/semantics.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from . import bnn
from .base import Graph

# An exporter that folded ``α·sign(W) - clamp(W) + clamp(W)`` (|clamp| ≤ 1) rounded twice near 2 and α: a few
# float32 ulps of max(1, α). Real float kernels are nowhere near equal magnitudes.
FOLDED_STE_ROUNDING = 8 * float(np.finfo(np.float32).eps)
_SIGN = tvm.ir.Op.get("relax.sign")
_CONV = tvm.ir.Op.get("relax.nn.conv2d")
_MATMUL = tvm.ir.Op.get("relax.matmul")
_PERMUTE = tvm.ir.Op.get("relax.permute_dims")
_RESHAPE = tvm.ir.Op.get("relax.reshape")


@dataclass
class BinarizeReport:
    """What the pass found: binary convs / dense layers it emitted, and sign-input layers left float (why)."""

    convs: int = 0
    dense: int = 0
    float_with_sign_input: list[str] = field(default_factory=list)

    @property
    def binary_layers(self) -> int:
        return self.convs + self.dense


def _const(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


@relax.expr_functor.mutator
class _Binarize(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, bits: int, source: str | None, report: BinarizeReport):
        super().__init__(mod)
        self.graph = Graph(bits=bits, source=source, bb=self.builder_)
        self.report = report

    def _sign_source(self, expr) -> relax.Expr | None:
        """``s`` if ``expr`` is a variable bound to ``sign(s)``; through a transpose or reshape of a sign (the
        layout conversion puts one after a sign of the NCHW input), that of ``s``."""
        if not isinstance(expr, relax.Var):
            return None
        value = self.lookup_binding(expr)
        if not isinstance(value, relax.Call):
            return None
        if value.op == _SIGN:
            return value.args[0]
        if value.op in (_PERMUTE, _RESHAPE):
            inner = self._sign_source(value.args[0])
            if inner is not None:  # unused (and removed) unless the layer turns out binary
                return self.builder_.emit(relax.Call(value.op, [inner, *value.args[1:]], value.attrs))
        return None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if call.op == _CONV:
            return self._conv(call)
        if call.op == _MATMUL:
            return self._dense(call)
        return call

    def _kernel(self, call: relax.Call, axis: int, what: str):
        """(source, ±1 kernel, α, kernel) of a sign-input call with a ±α constant kernel, else None."""
        source, kernel = self._sign_source(call.args[0]), _const(call.args[1])
        if source is None:
            return None
        found = None if kernel is None else bnn.binary_kernel(kernel, axis, rounding=FOLDED_STE_ROUNDING)
        if found is None:
            if kernel is None:
                why = "kernel not constant"
            elif np.any(kernel == 0):  # e.g. α·Sign(W) with an exact 0 in W: a bit has no 0, so stay exact
                why = f"kernel has {int(np.sum(kernel == 0))} zero weights (Sign(0) = 0), not ±α"
            else:
                why = "kernel not ±α per channel"
            self.report.float_with_sign_input.append(f"{what}: {why}")
            return None
        return source, found[1], kernel

    def _conv(self, call: relax.Call) -> relax.Expr:
        a = call.attrs
        if (str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) != ("NHWC", "HWIO", "NHWC"):
            return call
        groups = int(a.groups)
        if groups > 1 and groups == int(call.args[0].ty.shape[-1]):
            return call  # depthwise: one channel per packed word (bnn.conv2d keeps those float as well)
        found = self._kernel(call, -1, "conv2d")
        if found is None:
            return call
        source, alpha, kernel = found
        self.report.convs += 1
        return bnn.conv2d(self.graph.layer("bconv"), source, kernel, alpha=alpha, sign_input=True,
                          strides=[int(v) for v in a.strides], dilation=[int(v) for v in a.dilation],
                          padding=[int(v) for v in a.padding], pad_value=0.0, groups=groups)

    def _dense(self, call: relax.Call) -> relax.Expr:
        if len(call.args[0].ty.shape) != 2 or len(call.args[1].ty.shape) != 2:
            return call
        found = self._kernel(call, -1, "matmul")
        if found is None:
            return call
        source, alpha, kernel = found
        self.report.dense += 1
        return bnn.dense(self.graph.layer("bdense"), source, kernel, alpha=alpha, sign_input=True)


_BATCH_NORM = tvm.ir.Op.get("relax.nn.batch_norm")


@relax.expr_functor.mutator
class _FoldBatchNorm(relax.PyExprMutator):
    """Inference BatchNorm with constant statistics → ``x · s + t`` (per channel), the form FuseBinaryLayers
    folds into a preceding binary layer's output transform."""

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        op = super().visit_tuple_getitem_(op)
        bound = self.lookup_binding(op.tuple_value) if isinstance(op.tuple_value, relax.Var) else None
        if op.index != 0 or not isinstance(bound, relax.Call) or bound.op != _BATCH_NORM:
            return op
        x, *stats = bound.args
        gamma, beta, mean, var = (_const(v) for v in stats)
        if any(v is None for v in (gamma, beta, mean, var)):
            return op
        a = bound.attrs
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(a.epsilon))
        shift = beta - mean * scale
        ndim, axis = len(x.ty.shape), int(a.axis) % len(x.ty.shape)
        shape = [-1] + [1] * (ndim - 1 - axis)
        s, t = (relax.const(v.astype(np.float32).reshape(shape)) for v in (scale, shift))
        return relax.op.add(self.builder_.emit(relax.op.multiply(x, s)), t)


def fold_batch_norm(mod: tvm.IRModule) -> tvm.IRModule:
    """Every constant-statistics ``batch_norm`` of ``mod`` as a multiply and an add."""
    mod = mod.clone()
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gv] = _FoldBatchNorm(mod).visit_expr(func)
    return relax.transform.DeadCodeElimination()(mod)


def binarize(mod: tvm.IRModule, *, bits: int = 32, source: str | None = None
             ) -> tuple[tvm.IRModule, BinarizeReport]:
    """``mod`` (NHWC, constants folded) with every binary conv/matmul as bnncc ops, and what was found."""
    report = BinarizeReport()
    mod = mod.clone()
    mutator = _Binarize(mod, bits, source, report)
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gv] = mutator.visit_expr(func)
    mod = relax.transform.CanonicalizeBindings()(mod)
    return relax.transform.DeadCodeElimination()(mod), report
