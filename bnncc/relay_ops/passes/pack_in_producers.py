"""PackInProducers (after FuseOps, before FuseTIR): a bitpack joins the fused conv/dense kernel producing its input.

When the float output of a fused conv/dense kernel feeds a whole-word bitpack and also has other users (e.g. a
residual add; otherwise FuseBinaryLayers would have made the conv emit packed output), the kernel returns
(y, bitpack(y)) and FuseTIR makes one kernel writing both. The schedule then packs each pixel tile right after
its epilogue wrote it, so the float tensor is not read again by a kernel of its own. Bitpacks of partial words
stay on their own (their reads are not affine in the word index).
"""

from __future__ import annotations

from collections.abc import Iterable

import tvm
from tvm import relax, s_tir, tirx

from ...provenance import merge
from ..bitpack import BLOCK as BITPACK_BLOCK

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
    func = _tir_callee(mod, expr)
    if func is None or _block_names(func) != {BITPACK_BLOCK}:
        return False
    words, dtype = int(expr.ty.shape[-1]), str(expr.ty.dtype)
    return int(expr.args[1].fields[0].ty.shape[-1]) == words * int(dtype[4:])


def _conv_kernel(mod: tvm.IRModule, expr, conv_blocks: frozenset[str]) -> relax.Function | None:
    """The fused function a call runs if it is a conv/dense kernel with a single float tensor output."""
    if not isinstance(expr, relax.Call) or not isinstance(expr.op, tvm.ir.GlobalVar):
        return None
    func = mod[expr.op]
    if not isinstance(func, relax.Function) or func.attrs is None or "Primitive" not in func.attrs or \
            not isinstance(func.ret_ty, relax.TensorType) or not isinstance(func.body.body, relax.Var):
        return None
    calls = [b.value for block in func.body.blocks for b in block.bindings]
    if any((f := _tir_callee(mod, c)) is not None and _block_names(f) & conv_blocks for c in calls):
        return func
    return None


def _with_bitpack(func: relax.Function, pack: relax.Call) -> relax.Function:
    """``func`` returning (y, bitpack(y))."""
    func = relax.utils.copy_with_new_vars(func)
    seq = func.body
    y = seq.body
    bits = relax.Var("bits", pack.ty)
    call = relax.Call(_CALL_TIR, [pack.args[0], relax.Tuple([y])], pack.attrs, pack.ty_args, pack.span)
    last = seq.blocks[-1]
    blocks = [*seq.blocks[:-1], type(last)([*last.bindings, relax.VarBinding(bits, call)])]
    return relax.Function(func.params, relax.SeqExpr(blocks, relax.Tuple([y, bits])),
                          relax.TupleType([y.ty, bits.ty]), func.is_pure, func.attrs)


@relax.expr_functor.mutator
class _PackInProducer(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, fused: dict, packs: dict, pack_values: dict):
        super().__init__(mod)
        self.fused = fused  # producer var → the GlobalVar of its kernel with the bitpack added
        self.packs = packs  # bitpack var → producer var
        self.pack_values = pack_values  # producer var → the bitpack call it absorbs
        self.tuples: dict = {}

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        var = binding.var
        if var in self.fused:
            call = self.visit_expr(binding.value)
            # this call site now computes the bitpack's layers too (bnncc.provenance)
            both = self.builder_.emit(merge(relax.Call(self.fused[var], call.args), call, self.pack_values[var]))
            self.tuples[var] = both
            item = self.builder_.normalize(relax.TupleGetItem(both, 0))
            self.builder_.emit_normalized(relax.VarBinding(var, item))
        elif var in self.packs:
            item = self.builder_.normalize(relax.TupleGetItem(self.tuples[self.packs[var]], 1))
            self.builder_.emit_normalized(relax.VarBinding(var, item))
        else:
            super().visit_var_binding_(binding)


@tvm.transform.module_pass(opt_level=0, name="bnncc.PackInProducers")
class PackInProducers:
    """``conv_blocks``: the reduction blocks whose kernels the schedules can make pack their output
    (:data:`bnncc.schedules.CONV_BLOCKS`)."""

    def __init__(self, conv_blocks: Iterable[str]):
        self.conv_blocks = frozenset(conv_blocks)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        mod = mod.clone()
        made: dict = {}  # (kernel, bitpack) → the kernel returning both
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, relax.Function) or (func.attrs is not None and "Primitive" in func.attrs):
                continue
            values = {b.var: b.value for block in func.body.blocks for b in block.bindings}
            fused, packs, pack_values = {}, {}, {}
            for var, value in values.items():
                if not _is_whole_word_bitpack(mod, value):
                    continue
                y = value.args[1].fields[0]
                producer = values.get(y)
                kernel = _conv_kernel(mod, producer, self.conv_blocks) if y not in fused else None
                if kernel is None:
                    continue
                key = (producer.op, value.args[0])
                if key not in made:
                    bb = relax.BlockBuilder(mod)
                    made[key] = bb.add_func(_with_bitpack(kernel, value), "_".join(k.name_hint for k in key))
                    mod = bb.get()
                fused[y], packs[var], pack_values[y] = made[key], y, value
            if fused:
                mod[gv] = _PackInProducer(mod, fused, packs, pack_values).visit_expr(func)
        return relax.transform.DeadCodeElimination()(mod)
