"""Which source layers each Relax call computes, carried through the pipeline in the call's span.

The frontend gives every call it emits a span naming its layer (:func:`with_layers`); a pass that merges calls
(FuseBinaryLayers folding a BatchNorm into a binary conv) gives the result the union of their layers and MACs
(:func:`merge`). Passes that replace a binding's value but keep its variable (LegalizeOps, UseWeightLayout) are
wrapped in :func:`keep_layers`, which restores the span by the variable's name (unique in a Relax function).
FuseOps groups calls into functions it shares between identical groups (QuickNet's repeated blocks run one
function), so the spans inside a fused function name only one of its call sites: :func:`label_fused_calls` gives
each call of a fused function in ``main`` the union of the layers and MACs of the original calls it replaced, found
by following the data flow (same PrimFunc, same arguments) from the module before FuseOps. Just before FuseTIR,
every kernel call of ``main`` then names its own layers (:func:`kernel_sites`). Spans instead of a side table: they
travel with the calls through any pass that copies them, and nothing has to be kept in sync.

The payload is JSON in the span's source name: ``{"layers": [...], "macs": {"binary": n, "float": m}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import tvm
from tvm import relax, tirx

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


def _tir_args(call: relax.Call) -> list:
    args = call.args[1]
    return list(args.fields) if isinstance(args, relax.Tuple) else [args]


def _same(a, b) -> bool:
    return a.same_as(b) or (isinstance(a, relax.Var) and isinstance(b, relax.Var) and a.name == b.name)


def _is_call_tir(value) -> bool:
    return isinstance(value, relax.Call) and value.op.same_as(_CALL_TIR)


def _fused_callee(mod: tvm.IRModule, value) -> relax.Function | None:
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
        func = mod[value.op]
        return func if isinstance(func, relax.Function) else None
    return None


def label_fused_calls(before: tvm.IRModule, after: tvm.IRModule) -> tvm.IRModule:
    """``after`` (``before`` through FuseOps) whose calls of fused functions in ``main`` record the layers and
    MACs of the calls of ``before`` each replaced: every call in the fused function is matched to the original call
    running the same PrimFunc on the same arguments (the call's arguments substituted for the parameters)."""
    originals: dict[str, list[tuple[relax.Var, list, dict]]] = {}
    for b in _bindings(before["main"]):
        if _is_call_tir(b.value):
            originals.setdefault(b.value.args[0].name_hint, []).append((b.var, _tir_args(b.value), payload(b.value)))
    renamed: dict[str, Any] = {}  # a var of ``after``'s main → the original value it holds (var, or tuple of them)

    def resolve(expr, local):
        if isinstance(expr, relax.Var):
            return local[expr] if expr in local else renamed.get(expr.name, expr)
        return expr

    labels: dict[str, dict[str, Any]] = {}
    for b in _bindings(after["main"]):
        value = b.value
        if isinstance(value, relax.TupleGetItem) and isinstance(resolve(value.tuple_value, {}), tuple):
            renamed[b.var.name] = resolve(value.tuple_value, {})[value.index]
            continue
        func = _fused_callee(after, value)
        if func is None:
            continue
        local = {p: resolve(a, {}) for p, a in zip(func.params, value.args, strict=True)}
        found = []
        for inner in _bindings(func):
            if not _is_call_tir(inner.value):
                continue
            args = [resolve(a, local) for a in _tir_args(inner.value)]
            for var, orig_args, data in originals.get(inner.value.args[0].name_hint, []):
                if len(args) == len(orig_args) and all(_same(x, y) for x, y in zip(args, orig_args, strict=True)):
                    local[inner.var] = var
                    found.append(data)
                    break
        out = func.body.body
        if isinstance(out, relax.Tuple):
            renamed[b.var.name] = tuple(resolve(f, local) for f in out.fields)
        else:
            renamed[b.var.name] = resolve(out, local)
        labels[b.var.name] = union(found)
    mod = after.clone()
    mod[mod.get_global_var("main")] = _Restore(mod, labels).visit_expr(mod["main"])
    return mod


def _prim_names(mod: tvm.IRModule, call: relax.Call) -> list[str]:
    if call.op.same_as(_CALL_TIR):
        return [call.args[0].name_hint]
    return [b.value.args[0].name_hint for b in _bindings(mod[call.op]) if _is_call_tir(b.value)]


def kernel_sites(mod: tvm.IRModule) -> list[dict[str, Any]]:
    """Each kernel call of ``main`` (after :func:`label_fused_calls`, before FuseTIR), in execution order: its
    layers, its MACs per precision, and whether it runs bnncc ops (``bnncc``: bitpack, binary conv/dense/pool)."""
    sites = []
    for b in _bindings(mod["main"]):
        call = b.value
        if not (_is_call_tir(call) or _fused_callee(mod, call) is not None):
            continue
        site = union([payload(call)])
        site["bnncc"] = any(p.startswith("bnncc_") for p in _prim_names(mod, call))
        sites.append(site)
    return sites


def call_tir_callees(mod: tvm.IRModule) -> list[str]:
    """The PrimFunc each call_tir of ``main`` runs, in binding order."""
    return [b.value.args[0].name_hint for b in _bindings(mod["main"])
            if isinstance(b.value, relax.Call) and b.value.op.same_as(_CALL_TIR)]


def is_view(mod: tvm.IRModule, kernel: str) -> bool:
    """A reshape-like PrimFunc, which VM lowering may turn into a view (no kernel runs)."""
    return bool(relax.analysis.has_reshape_pattern(mod[kernel]))


def _lowered_kernel_bindings(mod: tvm.IRModule) -> list:
    return [b for b in _bindings(mod["main"]) if isinstance(b.value, relax.Call) and
            isinstance(b.value.op, tvm.ir.GlobalVar) and isinstance(mod[b.value.op], tirx.PrimFunc)]


def lowered_kernel_calls(mod: tvm.IRModule) -> list[str]:
    """The PrimFuncs the VM-lowered ``main`` calls, in order."""
    return [b.value.op.name_hint for b in _lowered_kernel_bindings(mod)]


def lowered_kernel_args(mod: tvm.IRModule) -> list[list[dict[str, Any] | None]]:
    """The arguments of each kernel call of the VM-lowered ``main`` (inputs, weights, outputs), in order:
    ``{"shape": [...], "dtype": ...}`` per static tensor, None for anything else. ``bnncc profile --rpc`` times
    each kernel on the device with tensors of these shapes."""
    def arg(a) -> dict[str, Any] | None:
        ty = getattr(a, "ty", None)
        shape = getattr(ty, "shape", None) if isinstance(ty, relax.TensorType) else None
        if shape is None or not all(isinstance(d, tirx.IntImm) for d in shape):
            return None
        return {"shape": [int(d) for d in shape], "dtype": str(ty.dtype)}

    return [[arg(a) for a in b.value.args] for b in _lowered_kernel_bindings(mod)]


def align(sites: list[dict[str, Any]], calls: list[str]) -> list[dict[str, Any]]:
    """The kernel sites recorded at FuseTIR that still run after VM lowering (``calls``, in order): a reshape-like
    site the lowering made a view is dropped (its layers then have no kernel); any other difference is a bug."""
    kept, j = [], 0
    for site in sites:
        if j < len(calls) and calls[j] == site["kernel"]:
            kept.append({k: v for k, v in site.items() if k != "view"})
            j += 1
        elif not site.get("view"):
            raise RuntimeError(f"kernel {site['kernel']} recorded at FuseTIR does not run after VM lowering")
    if j != len(calls):
        raise RuntimeError(f"VM lowering calls {len(calls) - j} kernel(s) FuseTIR did not make: {calls[j:]}")
    return kept
