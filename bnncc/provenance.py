"""Which source layers each Relax call computes, carried through the pipeline in the call's span.

The frontend gives every call it emits a span naming its layer (:func:`with_layers`); a pass that merges calls
(FuseBinaryLayers folding a BatchNorm into a binary conv) gives the result the union of their layers and MACs
(:func:`merge`). Passes that replace a binding's value but keep its variable (LegalizeOps, UseWeightLayout) are
wrapped in :func:`keep_layers`, which restores the span by the variable's name (unique in a Relax function).
FuseOps keeps the spans of the calls it groups, so just before FuseTIR every kernel's layers and MACs are the union
of its calls' (:func:`kernel_sites`). A span instead of a side table: it travels with the call through any pass
that copies calls, and nothing has to be kept in sync.

The payload is JSON in the span's source name: ``{"layers": [...], "macs": {"binary": n, "float": m}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import tvm
from tvm import relax

_PREFIX = "bnncc:"
SOURCE_LAYERS_ATTR = "bnncc.source_layers"  # module attribute: JSON [[layer name, kind], ...] in graph order
PRECISIONS = ("binary", "int8", "float")  # the MAC precisions a kernel can compute in


def payload(expr: Any) -> dict[str, Any]:
    """The layers and MACs an expression's span records ({} when it records none)."""
    span = getattr(expr, "span", None)
    name = span.source_name.name if span is not None and span.source_name is not None else ""
    return json.loads(name[len(_PREFIX):]) if name.startswith(_PREFIX) else {}


def layers_of(expr: Any) -> list[str]:
    return list(payload(expr).get("layers", []))


def _span(data: dict[str, Any]) -> tvm.ir.Span:
    return tvm.ir.Span(tvm.ir.SourceName(_PREFIX + json.dumps(data, sort_keys=True)), 0, 0, 0, 0)


def _with_payload(call: relax.Call, data: dict[str, Any]) -> relax.Call:
    return relax.Call(call.op, call.args, call.attrs, call.ty_args, _span(data))


def union(payloads: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Layers in first-seen order, MACs summed per precision."""
    layers: dict[str, None] = {}
    macs: dict[str, int] = {}
    for p in payloads:
        layers.update(dict.fromkeys(p.get("layers", [])))
        for k, v in p.get("macs", {}).items():
            macs[k] = macs.get(k, 0) + int(v)
    out: dict[str, Any] = {"layers": list(layers)}
    if macs:
        out["macs"] = macs
    return out


def with_layers(expr: relax.Expr, layers: Iterable[str]) -> relax.Expr:
    """``expr`` (if a call) with a span naming ``layers``."""
    if not isinstance(expr, relax.Call):
        return expr
    return _with_payload(expr, union([payload(expr), {"layers": list(layers)}]))


def with_macs(call: relax.Call, precision: str, macs: int) -> relax.Call:
    data = payload(call)
    data["macs"] = {precision: int(macs)}
    return _with_payload(call, data)


def merge(new: relax.Expr, *sources: relax.Expr) -> relax.Expr:
    """``new`` (a call replacing ``sources``) recording the union of their layers and MACs."""
    if not isinstance(new, relax.Call):
        return new
    return _with_payload(new, union(payload(s) for s in (new, *sources)))


# ------------------------------------------------------------------------------------- keeping spans across passes
def _bindings(func: relax.Function):
    body = func.body
    return [b for block in body.blocks for b in block.bindings] if isinstance(body, relax.SeqExpr) else []


def _spans_by_var(mod: tvm.IRModule) -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            found[gv.name_hint] = {b.var.name: p for b in _bindings(func) if (p := payload(b.value))}
    return found


@relax.expr_functor.mutator
class _Restore(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, spans: dict[str, dict[str, Any]]):
        super().__init__(mod)
        self.spans = spans

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = self.visit_expr(binding.value)
        saved = self.spans.get(binding.var.name)
        if saved and isinstance(value, relax.Call) and not payload(value):
            value = self.builder_.normalize(_with_payload(value, saved))
        self.builder_.emit_normalized(relax.VarBinding(binding.var, value))


def keep_layers(inner: tvm.transform.Pass) -> tvm.transform.Pass:
    """``inner``, then each binding whose value lost its span gets the one its variable had before."""
    def run(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        before = _spans_by_var(mod)
        mod = inner(mod)
        for gv, func in list(mod.functions_items()):
            spans = before.get(gv.name_hint)
            if isinstance(func, relax.Function) and spans:
                mod[gv] = _Restore(mod, spans).visit_expr(func)
        return mod

    return tvm.transform.module_pass(run, opt_level=0, name=f"bnncc.KeepLayers({inner.info.name})")


# ------------------------------------------------------------------------------------------- kernels before FuseTIR
_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def _call_payloads(mod: tvm.IRModule, call: relax.Call) -> tuple[list[dict[str, Any]], list[str]]:
    """(payloads, PrimFunc names) of the calls a main-level call runs: itself, or a fused function's calls."""
    if call.op.same_as(_CALL_TIR):
        return [payload(call)], [call.args[0].name_hint]
    func = mod[call.op]
    inner = [b.value for b in _bindings(func) if isinstance(b.value, relax.Call)]
    return [payload(c) for c in inner], [c.args[0].name_hint for c in inner if c.op.same_as(_CALL_TIR)]


def kernel_sites(mod: tvm.IRModule) -> list[dict[str, Any]]:
    """Each kernel call of ``main`` (after FuseOps, before FuseTIR), in execution order: its layers, its MACs per
    precision, and whether it runs bnncc ops (``bnncc``: bitpack, binary conv/dense/max-pool)."""
    sites = []
    for b in _bindings(mod["main"]):
        call = b.value
        if not isinstance(call, relax.Call):
            continue
        if not (call.op.same_as(_CALL_TIR) or (isinstance(call.op, tvm.ir.GlobalVar) and
                                              isinstance(mod[call.op], relax.Function))):
            continue
        payloads, prims = _call_payloads(mod, call)
        site = union(payloads)
        site["bnncc"] = any(p.startswith("bnncc_") for p in prims)
        sites.append(site)
    return sites


def call_tir_callees(mod: tvm.IRModule) -> list[str]:
    """The PrimFunc each call_tir of ``main`` runs, in binding order."""
    return [b.value.args[0].name_hint for b in _bindings(mod["main"])
            if isinstance(b.value, relax.Call) and b.value.op.same_as(_CALL_TIR)]
