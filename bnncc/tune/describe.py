"""What a PrimFunc is to the tuner: whether bnncc's tunable space covers it, its label and its MACs, and how often a
Relax module calls it. Used by task extraction and, at compile time, by :class:`bnncc.tune.log.TuningLog` (so
this module sits below the pipeline)."""

from __future__ import annotations

import contextlib

import numpy as np
import tvm
from tvm import s_tir, tirx

from bnncc.relay_ops import BCONV_BLOCK, BDENSE_BLOCK, BSCONV_BLOCK, OUTPUT_BLOCK
from bnncc.schedules import CONV_BLOCKS, is_conv_like, output_dtype

_BLOCK_NAMES = {BCONV_BLOCK: "bconv", BDENSE_BLOCK: "bdense", BSCONV_BLOCK: "bsconv", "conv2d_nhwc": "conv",
                "group_conv2d_nhwc": "gconv", "matmul": "dense"}
_BINARY_BLOCKS = (BCONV_BLOCK, BDENSE_BLOCK, BSCONV_BLOCK)  # a bsconv's "MACs" are its k·MACs 1-bit ones


def normalize(func: tirx.PrimFunc) -> tvm.IRModule:
    """MetaSchedule's workload of a PrimFunc (``{"main": func}``, normalized as its tune context does)."""
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    return _normalize_mod(func)


def _conv_block(sch: s_tir.Schedule):
    for name in CONV_BLOCKS:
        with contextlib.suppress(Exception):
            return name, sch.get_sblock(name)
    return None, None


def describe(func: tirx.PrimFunc) -> tuple[str, str, int] | None:
    """(name, kind, MACs) of a PrimFunc bnncc's tunable space covers, None for any other."""
    sch = s_tir.Schedule(normalize(func))
    name, block = _conv_block(sch)
    if block is None or not is_conv_like(sch, block):
        return None
    iters = sch.get(block).iter_vars
    ext = [int(it.dom.extent) for it in iters]
    spatial = [e for e, it in zip(ext, iters, strict=True) if it.iter_type == tirx.IterVar.DataPar]
    reduce = ext[len(spatial):]
    binary = name in _BINARY_BLOCKS
    macs = int(np.prod(ext, dtype=np.int64))
    if binary:  # the reduction runs over words
        macs *= _word_bits(func)
    # Packed when the binary op's output transform writes words (a kernel that also packs its float output,
    # see pack_in_producers, has a uint last parameter too).
    packed = any(sch.get(b).name_hint == OUTPUT_BLOCK and output_dtype(sch, b).startswith("uint")
                 for b in sch.get_child_blocks(sch.get_sblock("root")))
    if spatial and spatial[0] == 1 and len(spatial) > 2:
        spatial = spatial[1:]
    label = f"{_BLOCK_NAMES[name]}_{'x'.join(map(str, spatial))}_r{'x'.join(map(str, reduce))}"
    if packed:
        label += "_packed"
    return label, "binary" if binary else "float", macs


def _word_bits(func: tirx.PrimFunc) -> int:
    """Bits of the packed word type of a binary PrimFunc (its first uint input)."""
    for p in func.params:
        dt = str(p.dtype)
        if dt.startswith("uint"):
            return int(dt[4:])
    return 1


def call_counts(mod: tvm.IRModule) -> dict[str, int]:
    """Calls of each PrimFunc from the Relax functions of ``mod`` (R.call_tir sites)."""
    from tvm import relax

    counts: dict[str, int] = {}
    call_tir = tvm.ir.Op.get("relax.call_tir")

    @relax.expr_functor.visitor
    class _Count(relax.PyExprVisitor):
        def visit_call_(self, call):  # noqa: N802 - TVM's visitor naming
            if call.op.same_as(call_tir) and isinstance(call.args[0], tvm.ir.GlobalVar):
                name = call.args[0].name_hint
                counts[name] = counts.get(name, 0) + 1
            for a in call.args:
                self.visit_expr(a)

    for _gv, f in mod.functions_items():
        if isinstance(f, relax.Function):
            _Count().visit_expr(f)
    return counts
