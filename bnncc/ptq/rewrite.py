"""Find the float layers post-training quantization can take, tap their inputs, and rewrite them to int8.

Quantizable: an NHWC/HWIO ``conv2d`` with groups = 1 and a ``matmul`` of a 2-D input, each with constant float
weights (the float layers bnncc's frontends emit; binary layers are already ``bnncc.bconv2d``/``bdense`` and are
left alone — a model comes out mixed: binary, int8 and float). Depthwise/grouped convs stay float for now.

Each taken layer becomes ``quantize`` (uint8, calibrated) → int8 conv/dense (``bnncc.qdense``, int32) →
``dequantize`` (· s_x·s_w[o]); whatever followed it (bias add, BatchNorm, activation) stays as it was, in float.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from ..relay_ops.qconv2d import dequantize, qconv2d, quantize
from ..relay_ops.qdense import qdense
from .ranges import QParams, weight_qparams


@dataclass(frozen=True)
class Layer:
    index: int
    kind: str  # "conv2d" | "dense"
    name: str
    weight: np.ndarray  # float HWIO / [K, N]
    attrs: Mapping  # conv geometry


def _const(e) -> np.ndarray | None:
    return e.value.numpy() if isinstance(e, tvm.ir.expr.Constant) else None


def _span_name(call: relax.Call) -> str | None:
    span = getattr(call, "span", None)
    name = getattr(getattr(span, "source_name", None), "name", None) if span is not None else None
    return str(name) if name else None


def layer_of(call: relax.Call, index: int) -> Layer | None:
    """The quantizable layer ``call`` is, else None."""
    if not isinstance(call.op, tvm.ir.Op):
        return None
    w = _const(call.args[1]) if len(call.args) > 1 else None
    if w is None or w.dtype != np.float32:
        return None
    if call.op.name == "relax.nn.conv2d":
        a = call.attrs
        if (str(a.data_layout), str(a.kernel_layout), int(a.groups)) != ("NHWC", "HWIO", 1):
            return None
        geo = dict(strides=tuple(int(s) for s in a.strides), dilation=tuple(int(s) for s in a.dilation),
                   padding=tuple(int(s) for s in a.padding))
        return Layer(index, "conv2d", _span_name(call) or f"conv2d_{index}", w, geo)
    if call.op.name == "relax.matmul" and w.ndim == 2 and len(call.args[0].ty.shape) == 2:
        return Layer(index, "dense", _span_name(call) or f"dense_{index}", w, {})
    return None


@relax.expr_functor.visitor
class _Find(relax.PyExprVisitor):
    def __init__(self):
        super().__init__()
        self.layers: list[tuple[Layer, relax.Expr]] = []

    def visit_call_(self, call: relax.Call) -> None:
        super().visit_call_(call)
        layer = layer_of(call, len(self.layers))
        if layer is not None:
            self.layers.append((layer, call.args[0]))


def find_layers(mod: tvm.IRModule) -> list[Layer]:
    """The quantizable layers of ``mod``'s main, in program order (their ``index`` names them below)."""
    f = _Find()
    f.visit_expr(mod["main"])
    return [layer for layer, _ in f.layers]


def tap_module(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` whose main returns the float input of every quantizable layer (a tuple, in program order)."""
    flat = relax.transform.ToNonDataflow()(mod)
    main = flat["main"]
    f = _Find()
    f.visit_expr(main)
    outs = [x for _, x in f.layers]
    out = relax.Tuple(outs)
    body = relax.SeqExpr(main.body.blocks, out)
    func = relax.Function(main.params, body, relax.TupleType([x.ty for x in outs]))
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


@relax.expr_functor.mutator
class _Quantize(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, qparams: Mapping[int, QParams]):
        super().__init__(mod)
        self.qparams, self.seen = qparams, 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        new = super().visit_call_(call)
        layer = layer_of(call, self.seen)
        if layer is None:
            return new
        self.seen += 1
        q = self.qparams.get(layer.index)
        if q is None:  # kept float (policy)
            return new
        bb = self.builder_
        wq, sw = weight_qparams(layer.weight)
        xq = quantize(bb, new.args[0], q.scale, q.zero_point)
        if layer.kind == "conv2d":
            acc = qconv2d(bb, xq, wq, q.zero_point, **layer.attrs)
        else:
            acc = bb.emit(qdense(xq, wq, q.zero_point))
        return dequantize(bb, acc, (np.float32(q.scale) * sw).astype(np.float32))


def quantize_layers(mod: tvm.IRModule, qparams: Mapping[int, QParams]) -> tvm.IRModule:
    """``mod`` with every layer in ``qparams`` (by index) in int8."""
    out = mod.clone()
    out["main"] = _Quantize(out, qparams).visit_expr(out["main"])
    return relax.transform.DeadCodeElimination()(out) if hasattr(relax.transform, "DeadCodeElimination") else out
