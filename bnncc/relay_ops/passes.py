"""Graph passes over Relax modules holding bnncc ops."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, s_tir, tirx

from .. import reference
from ..schedules.cpu import CONV_BLOCKS
from .ops import BCONV2D, BDENSE, BITPACK, _attrs, bconv2d, bdense, bitpack, bmaxpool2d


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


# ------------------------------------------------------------------------------------------ fusion passes
def _const_value(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None


def _unpacked_kernel(call: relax.Call) -> np.ndarray:
    """The ±1 kernel of a bconv2d (OHWI) or bdense ([O, K]) call, from its packed constant weights."""
    w = _const_value(call.args[1])
    cin = int(call.attrs["channels_in"])
    bits = int(str(w.dtype)[4:])
    if call.op == BCONV2D:
        if str(call.attrs["weight_layout"]) != "OHWI":
            w = w.transpose(3, 0, 1, 2)
        return reference.unpack(w, cin // int(call.attrs["groups"]), bits)
    return reference.unpack(w, cin, bits)


def _rebuild(call: relax.Call, data: relax.Expr, multiplier, bias, clamp, out: str) -> relax.Call:
    """The same binary op with another output transform (builders re-derive thresholds and packing)."""
    kernel = _unpacked_kernel(call)
    a = call.attrs
    o = int(call.ty.shape[-1]) if str(a["out"]) == "float32" else None
    if o is not None:
        kernel = kernel[:o]
    if call.op == BDENSE:
        return bdense(data, kernel.T, multiplier, bias, clamp=clamp, out=out)
    return bconv2d(data, kernel, multiplier, bias, strides=tuple(a["strides"]), dilation=tuple(a["dilation"]),
                   padding=tuple(a["padding"]), pad_value=int(a["pad_value"]), groups=int(a["groups"]),
                   clamp=clamp, out=out, kernel_layout="OHWI")


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
    """Rewrites a dataflow graph so that binary layers do their own epilogue:

    - ``bconv2d/bdense(float) → multiply(c) → add(d)`` (a folded BatchNorm) and ``→ relu`` become the op's
      output transform (multiplier, bias, clamp);
    - ``max_pool2d → bitpack`` becomes ``bitpack → bmaxpool2d`` (sign is monotone, so it commutes with max);
    - ``flatten → bitpack`` becomes ``bitpack → flatten`` when channels are whole words;
    - ``bconv2d/bdense(float) → bitpack`` becomes one op with bitpacked output (integer thresholds), so the
      activations between consecutive binary layers stay packed.
    A rewrite only happens when the intermediate value has no other user.
    """

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
            return new
        return call

    def _fuse(self, call: relax.Call):
        op = call.op
        if not isinstance(op, tvm.ir.Op) or not call.args:
            return None
        prod = self._producer(call.args[0])
        binary_float = prod is not None and prod.op in (BCONV2D, BDENSE) and str(prod.attrs["out"]) == "float32"
        name = op.name
        if binary_float and name in ("relax.multiply", "relax.add"):
            o = int(prod.ty.shape[-1])
            v = _channel_vector(call.args[1], o)
            if v is None:
                return None
            m, b, clamp = _float_transform(prod)
            m, b = (m * v, b * v) if name == "relax.multiply" else (m, b + v)
            return _rebuild(prod, prod.args[0], m, b, clamp, "float32")
        if binary_float and name == "relax.nn.relu":
            m, b, (lo, hi) = _float_transform(prod)
            if np.any(b != 0) or np.any(m < 0):  # relu(m·a) = m·max(a, 0) only without bias, m ≥ 0
                return None
            return _rebuild(prod, prod.args[0], m, b, (max(lo, 0), hi), "float32")
        if op == BITPACK and prod is not None:
            bits, groups = int(call.attrs["bits"]), int(call.attrs["groups"])
            if binary_float and (groups == 1 or int(prod.ty.shape[-1]) // groups % bits == 0):
                if str(prod.args[0].ty.dtype) == f"uint{bits}":
                    m, b, clamp = _float_transform(prod)
                    return _rebuild(prod, prod.args[0], m, b, clamp, "bitpacked")
            src = prod.args[0]
            if prod.op.name == "relax.reshape" and groups == 1 and len(src.ty.shape) == 4 and \
                    len(prod.ty.shape) == 2 and int(src.ty.shape[-1]) % bits == 0:
                # Flatten of whole words: packing commutes with it, so the producer can emit packed words.
                packed = self.builder_.emit(bitpack(src, bits=bits))
                n = int(prod.ty.shape[0])
                return relax.op.reshape(packed, (n, int(np.prod([int(d) for d in packed.ty.shape])) // n))
            if prod.op.name == "relax.nn.max_pool2d" and str(prod.attrs["layout"]) == "NHWC" and \
                    all(int(d) == 1 for d in prod.attrs["dilation"]) and not prod.attrs["ceil_mode"]:
                packed = self.builder_.emit(bitpack(prod.args[0], bits=bits, groups=groups))
                a = prod.attrs
                return bmaxpool2d(packed, tuple(a["pool_size"]), tuple(a["strides"]), tuple(a["padding"]))
        return None


def fuse_binary_layers(mod: tvm.IRModule) -> tvm.IRModule:
    """Apply :class:`_FuseBinary` until nothing changes, then drop the dead intermediate values."""
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


# ------------------------------------------------------------------ bitpack inside its producer's kernel
_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def _block_names(func: tirx.PrimFunc) -> set[str]:
    sch = s_tir.Schedule(func)
    return {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}


def _tir_callee(mod: tvm.IRModule, expr) -> tirx.PrimFunc | None:
    if isinstance(expr, relax.Call) and expr.op.same_as(_CALL_TIR):
        func = mod[expr.args[0]]
        return func if isinstance(func, tirx.PrimFunc) else None
    return None


def _is_whole_word_bitpack(mod: tvm.IRModule, expr) -> bool:
    """A bitpack whose groups are whole words: its reads are affine in the word index, which the schedule
    needs to place it in the producer's pixel loop (partial words clamp the channel index)."""
    func = _tir_callee(mod, expr)
    if func is None or _block_names(func) != {"bnncc_bitpack"}:
        return False
    words, dtype = int(expr.ty.shape[-1]), str(expr.ty.dtype)
    return int(expr.args[1].fields[0].ty.shape[-1]) == words * int(dtype[4:])


def _conv_kernel(mod: tvm.IRModule, expr) -> relax.Function | None:
    """The fused function a call runs if it is a conv/dense kernel with a single float tensor output."""
    if not isinstance(expr, relax.Call) or not isinstance(expr.op, tvm.ir.GlobalVar):
        return None
    func = mod[expr.op]
    if not isinstance(func, relax.Function) or func.attrs is None or "Primitive" not in func.attrs or \
            not isinstance(func.ret_ty, relax.TensorType) or not isinstance(func.body.body, relax.Var):
        return None
    calls = [b.value for block in func.body.blocks for b in block.bindings]
    if any((f := _tir_callee(mod, c)) is not None and _block_names(f) & set(CONV_BLOCKS) for c in calls):
        return func
    return None


def _with_bitpack(func: relax.Function, pack: relax.Call) -> relax.Function:
    """``func`` returning (y, bitpack(y)): FuseTIR then makes one kernel writing both."""
    func = relax.utils.copy_with_new_vars(func)
    seq = func.body
    y = seq.body
    bits = relax.Var("bits", pack.ty)
    call = relax.Call(_CALL_TIR, [pack.args[0], relax.Tuple([y])], pack.attrs, pack.ty_args)
    last = seq.blocks[-1]
    blocks = [*seq.blocks[:-1], type(last)([*last.bindings, relax.VarBinding(bits, call)])]
    return relax.Function(func.params, relax.SeqExpr(blocks, relax.Tuple([y, bits])),
                          relax.TupleType([y.ty, bits.ty]), func.is_pure, func.attrs)


@relax.expr_functor.mutator
class _PackInProducer(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, fused: dict, packs: dict):
        super().__init__(mod)
        self.fused = fused  # producer var → the GlobalVar of its kernel with the bitpack added
        self.packs = packs  # bitpack var → producer var
        self.tuples: dict = {}

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        var = binding.var
        if var in self.fused:
            call = self.visit_expr(binding.value)
            both = self.builder_.emit(relax.Call(self.fused[var], call.args))
            self.tuples[var] = both
            item = self.builder_.normalize(relax.TupleGetItem(both, 0))
            self.builder_.emit_normalized(relax.VarBinding(var, item))
        elif var in self.packs:
            item = self.builder_.normalize(relax.TupleGetItem(self.tuples[self.packs[var]], 1))
            self.builder_.emit_normalized(relax.VarBinding(var, item))
        else:
            super().visit_var_binding_(binding)


def pack_in_producers(mod: tvm.IRModule) -> tvm.IRModule:
    """After FuseOps, before FuseTIR: a bitpack of the float output of a fused conv/dense kernel (the output also
    has other users, e.g. a residual add, or the bconv→bitpack rewrite would have applied) joins that kernel,
    which then returns (y, bits). The schedule packs each pixel tile right after its epilogue wrote it, so the
    float tensor is not read again by a kernel of its own. Bitpacks of partial words stay on their own."""
    made: dict = {}  # (kernel, bitpack) → the kernel returning both
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, relax.Function) or (func.attrs is not None and "Primitive" in func.attrs):
            continue
        values = {b.var: b.value for block in func.body.blocks for b in block.bindings}
        fused, packs = {}, {}
        for var, value in values.items():
            if not _is_whole_word_bitpack(mod, value):
                continue
            y = value.args[1].fields[0]
            producer = values.get(y)
            kernel = _conv_kernel(mod, producer) if y not in fused else None
            if kernel is None:
                continue
            key = (producer.op, value.args[0])
            if key not in made:
                bb = relax.BlockBuilder(mod)
                made[key] = bb.add_func(_with_bitpack(kernel, value), "_".join(k.name_hint for k in key))
                mod = bb.get()
            fused[y], packs[var] = made[key], y
        if fused:
            mod[gv] = _PackInProducer(mod, fused, packs).visit_expr(func)
    return relax.transform.DeadCodeElimination()(mod)
