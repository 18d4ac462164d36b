"""The compile pipeline: a Relax module with bnncc ops → one built Relax VM executable.

The pass list, in the order it runs (:data:`PHASES`; ``BNNCC_DUMP_IR=DIR`` or ``bnncc compile --dump-ir DIR``
writes the module after each phase to ``DIR/NN-<phase>.py``):

    import             the frontend's module, as given
    graph              BatchNorm/activations folded into the binary ops' output transform; activations kept packed
                       between binary layers; max-pool of signs → binary max-pool (FuseBinaryLayers); each
                       conv/dense records its MACs (AnnotateMacs)
    layout             bconv2d weights stored HWIO, output channels contiguous (UseWeightLayout)
    legalize           every op → a TE PrimFunc; compile-time constants folded (incl. padding correction tables)
    fuse               operators grouped into kernels (FuseOps)
    pack_in_producers  a bitpack of a conv's float output joins that conv's kernel (PackInProducers)
    fuse_tir           each group → one PrimFunc (FuseTIR): what tuning extracts its tasks from; each kernel call's
                       source layers and MACs recorded (``stats["kernels"]``, in execution order)
    tuning             tuned schedules of the tuning log replace the defaults where it has records
    schedule           bnncc's default schedules for the other PrimFuncs (bnncc.schedules, per target family)
    signature          the model's signature recorded in the library (function ``bnncc_signature``)
    vm                 Relax VM lowering: dataflow lowering, memory planning, shape lowering; the memory plan's
                       activation bytes and the weight bytes recorded (``stats["memory"]``, also in the signature),
                       and each kernel call's argument shapes (``stats["kernels"][i]["args"]``)

Source-layer attribution (what ``bnncc profile`` reports): every call carries the layers it computes in its span,
through every phase up to FuseTIR (:mod:`bnncc.provenance`).

then code generation: ``tvm.compile`` (the PrimFuncs through TVM's TIR pipeline and LLVM, the VM bytecode) for a
shared library, or the PrimFuncs to an object file and the VM-lowered ``main`` to C for a runtime-free static
library (:mod:`bnncc.standalone`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tvm
from tvm import relax

from . import (
    memory,
    provenance,
    relay_ops,  # noqa: F401  (registers the ops)
)
from .outputs import atomic_write
from .relay_ops.passes import AnnotateMacs, FuseBinaryLayers, PackInProducers, UseWeightLayout
from .runtime import SIGNATURE_FUNC, Executable, check_writable, load, set_num_threads
from .schedules import CONV_BLOCKS, schedule_module
from .targets import TargetSpec, get_target
from .version import __version__

__all__ = ["PHASES", "PHASE_NAMES", "Compilation", "Executable", "Phase", "build", "build_c_library",
           "check_writable", "compilation",
           "graph_stats", "legalize", "load", "lower", "run_phases", "set_num_threads", "signature_of"]


@dataclass
class Compilation:
    """What the passes of one compile share: the target, the tuning log, and the statistics they record."""

    spec: TargetSpec
    target: tvm.target.Target
    tuning: Any = None  # a bnncc.tune.log.TuningLog
    name: str = "model"
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    name: str
    passes: Callable[[Compilation], list[tvm.transform.Pass]]


def _module_pass(name: str):
    """A ``tvm.transform`` module pass from a function (mod, compilation) → mod."""
    def wrap(fn):
        def make(c: Compilation) -> tvm.transform.Pass:
            return tvm.transform.module_pass(lambda mod, _ctx: fn(mod, c), opt_level=0, name=f"bnncc.{name}")
        return make
    return wrap


@_module_pass("RecordGraphStats")
def _record_graph_stats(mod: tvm.IRModule, c: Compilation) -> tvm.IRModule:
    c.stats.update(graph_stats(mod))
    return mod


@_module_pass("ApplyTuningLog")
def _apply_tuning(mod: tvm.IRModule, c: Compilation) -> tvm.IRModule:
    mod = c.tuning.apply(mod, c.target)
    c.stats.update(c.tuning.last_report)
    return mod


@_module_pass("ScheduleKernels")
def _schedule(mod: tvm.IRModule, c: Compilation) -> tvm.IRModule:
    return schedule_module(mod, c.target)


@_module_pass("AttachSignature")
def _attach_signature(mod: tvm.IRModule, c: Compilation) -> tvm.IRModule:
    sig = signature_of(mod, c.spec, c.name)
    layers = mod.get_attr(provenance.SOURCE_LAYERS_ATTR)
    if layers is not None:
        sig["layers"] = json.loads(str(layers))
    c.stats["signature"] = sig
    bb = relax.BlockBuilder(mod)
    with bb.function(SIGNATURE_FUNC, []):
        bb.emit_func_output(relax.expr.String(json.dumps(sig)))
    return bb.get()


@_module_pass("FuseOpsLabellingCalls")
def _fuse_ops(mod: tvm.IRModule, c: Compilation) -> tvm.IRModule:
    # each fused call names the layers it computes (the fused functions are shared between call sites)
    return provenance.label_fused_calls(mod, relax.transform.FuseOps()(mod))


@_module_pass("FuseTIRRecordingKernels")
def _fuse_tir(mod: tvm.IRModule, c: Compilation) -> tvm.IRModule:
    sites = provenance.kernel_sites(mod)
    mod = relax.transform.FuseTIR()(mod)
    callees = provenance.call_tir_callees(mod)
    if len(callees) != len(sites):  # FuseTIR maps each kernel call to one call_tir; anything else is a bnncc bug
        raise RuntimeError(f"FuseTIR made {len(callees)} kernel calls of {len(sites)}")
    c.stats["kernels"] = [{"kernel": k, **s, **({"view": True} if provenance.is_view(mod, k) else {})}
                          for k, s in zip(callees, sites, strict=True)]
    return mod


def _with_signature(mod: tvm.IRModule, name: str, text: str) -> tvm.IRModule:
    """``mod`` whose VM-lowered signature function ``name`` returns ``text`` instead."""
    old = mod[name]
    mod = mod.clone()
    text_expr = relax.BlockBuilder().normalize(relax.expr.String(text))
    body = relax.SeqExpr(old.body.blocks, text_expr) if isinstance(old.body, relax.SeqExpr) else text_expr
    mod[name] = relax.BlockBuilder().normalize(relax.Function(old.params, body, old.ret_ty, old.is_pure, old.attrs))
    return mod


@_module_pass("RecordLoweredModel")
def _record_lowered(mod: tvm.IRModule, c: Compilation) -> tvm.IRModule:
    """The kernels that still run after VM lowering, and the memory plan, into the stats and the signature."""
    if "kernels" in c.stats:
        kernels = provenance.align(c.stats["kernels"], provenance.lowered_kernel_calls(mod))
        c.stats["kernels"] = [{**k, "args": a} for k, a in zip(kernels, provenance.lowered_kernel_args(mod),
                                                                 strict=True)]
    c.stats["memory"] = memory.planned(mod)
    if SIGNATURE_FUNC in [gv.name_hint for gv in mod.get_global_vars()]:
        sig = c.stats["signature"]
        sig["memory"] = c.stats["memory"]
        if "kernels" in c.stats:  # what bnncc profile attributes a library's kernel times by
            sig["kernels"] = c.stats["kernels"]
        mod = _with_signature(mod, SIGNATURE_FUNC, json.dumps(sig))
    return mod


def _legalize_passes(c: Compilation) -> list[tvm.transform.Pass]:
    T = relax.transform
    keep = provenance.keep_layers  # legalized calls keep the layers their variables had
    return [relax.backend.DispatchSampling(), relax.backend.DispatchSortScan(), keep(T.LegalizeOps()),
            T.AnnotateTIROpPattern(), keep(T.FoldConstant())]


def _vm_passes(c: Compilation) -> list[tvm.transform.Pass]:
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    return [*cpu.dataflow_lower_passes(c.target), *cpu.finalize_passes(c.target), _record_lowered(c)]


PHASES: tuple[Phase, ...] = (
    Phase("import", lambda c: []),
    Phase("graph", lambda c: [FuseBinaryLayers(), AnnotateMacs(), _record_graph_stats(c)]),
    Phase("layout", lambda c: [provenance.keep_layers(UseWeightLayout("HWIO"))]),
    Phase("legalize", _legalize_passes),
    Phase("fuse", lambda c: [_fuse_ops(c)]),
    Phase("pack_in_producers", lambda c: [PackInProducers(CONV_BLOCKS)]),
    Phase("fuse_tir", lambda c: [_fuse_tir(c)]),
    Phase("tuning", lambda c: [_apply_tuning(c)] if c.tuning is not None else []),
    Phase("schedule", lambda c: [_schedule(c)]),
    Phase("signature", lambda c: [_attach_signature(c)]),
    Phase("vm", _vm_passes),
)
PHASE_NAMES = tuple(p.name for p in PHASES)


def run_phases(mod: tvm.IRModule, c: Compilation, *, until: str = PHASE_NAMES[-1],
               dump_ir: str | os.PathLike | None = None,
               on_phase: Callable[[str, tvm.IRModule], None] | None = None) -> tvm.IRModule:
    """Run the phases up to and including ``until``. After each phase, ``on_phase(name, module)`` is called and,
    with ``dump_ir`` (default: ``$BNNCC_DUMP_IR``), the module is written to ``DIR/NN-<phase>.py``."""
    if until not in PHASE_NAMES:
        raise ValueError(f"unknown phase {until!r}; phases: {', '.join(PHASE_NAMES)}")
    dump = dump_ir or os.environ.get("BNNCC_DUMP_IR") or None
    if dump is not None:
        Path(dump).mkdir(parents=True, exist_ok=True)
    with c.target:
        for i, phase in enumerate(PHASES):
            passes = phase.passes(c)
            if passes:
                mod = tvm.transform.Sequential(passes, name=phase.name)(mod)
            if dump is not None:
                atomic_write(Path(dump) / f"{i:02d}-{phase.name}.py", mod.script())
            if on_phase is not None:
                on_phase(phase.name, mod)
            if phase.name == until:
                break
    return mod


def graph_stats(mod: tvm.IRModule) -> dict[str, int]:
    """Counts of binary, int8 (GEMM) and float operators in a Relax module after the graph phase (an int8 conv
    is its im2col + qdense: counted once; its quantize/dequantize count as float)."""
    from .relay_ops.qconv2d import IM2COL
    from .relay_ops.qdense import QDENSE

    text = mod["main"].script()
    binary = sum(text.count(f'"{op.name}"') for op in (relay_ops.BCONV2D, relay_ops.BDENSE, relay_ops.BMAXPOOL2D))
    bitpacks = text.count(f'"{relay_ops.BITPACK.name}"')
    int8, im2col = text.count(f'"{QDENSE.name}"'), text.count(f'"{IM2COL.name}"')
    calls = len(re.findall(r"= (?:R\.[a-z_.0-9]+|T\.Call)\(", text))
    return {"binary_ops": binary, "int8_ops": int8, "bitpack_ops": bitpacks,
            "packed_outputs": text.count('"out": "bitpacked"'), "float_ops": calls - binary - bitpacks - int8 - im2col}


def signature_of(mod: tvm.IRModule, spec: TargetSpec, name: str = "model") -> dict[str, Any]:
    """What a compiled library records of its model: inputs, outputs, target, model name, bnncc version."""
    main = mod["main"]

    def tensor(ty, name=None) -> dict[str, Any]:
        d = {"shape": [int(s) for s in ty.shape], "dtype": str(ty.dtype)}
        return {"name": name, **d} if name is not None else d

    ret = main.ret_ty
    outputs = [tensor(t) for t in ret.fields] if isinstance(ret, relax.TupleType) else [tensor(ret)]
    return {"bnncc_version": __version__, "model": name,
            "target": {"name": spec.name, "arch": spec.arch, "description": spec.description,
                       "attrs": {k: v for k, v in spec.attrs.items()}},
            "inputs": [tensor(p.ty, p.name) for p in main.params], "outputs": outputs}


def compilation(target: str | TargetSpec, num_cores: int | None = None, tuning=None, name: str = "model"
                ) -> Compilation:
    """The state of one compile for ``target`` (what :func:`run_phases` takes)."""
    spec = get_target(target)
    return Compilation(spec, spec.tvm_target(num_cores), tuning, name)


def legalize(mod: tvm.IRModule, target: str | TargetSpec, num_cores: int | None = None) -> tvm.IRModule:
    """The phases up to ``fuse_tir``: the unscheduled PrimFuncs (what tuning extracts its tasks from)."""
    return run_phases(mod, compilation(target, num_cores), until="fuse_tir")


def lower(mod: tvm.IRModule, target: str | TargetSpec, num_cores: int | None = None, tuning=None) -> tvm.IRModule:
    """The phases up to ``schedule``: the module with every kernel scheduled, before VM lowering.

    ``tuning`` (a :class:`bnncc.tune.log.TuningLog`): its tuned schedules replace bnncc's defaults for the
    PrimFuncs it has records for (marked scheduled, so the default schedules leave them alone)."""
    return run_phases(mod, compilation(target, num_cores, tuning), until="schedule")


def _lowered(mod: tvm.IRModule, target: str | TargetSpec, tuning_log, name: str | None, dump_ir, on_phase
             ) -> tuple[tvm.IRModule, Compilation]:
    """Every phase, for :func:`build` and :func:`build_c_library`."""
    spec = get_target(target)
    tuning = None
    if tuning_log is not None:
        from .tune.log import TuningLog

        tuning = TuningLog.resolve(tuning_log, spec)
    if name is None:
        attr = mod.get_attr("bnncc.model_name")
        name = str(attr) if attr is not None else "model"
    c = compilation(spec, None, tuning, name)
    lowered = run_phases(mod, c, dump_ir=dump_ir, on_phase=on_phase)
    if on_phase is not None:
        on_phase("codegen", None)
    return lowered, c


def build(mod: tvm.IRModule, target: str | TargetSpec = "host", *, tuning_log=None, name: str | None = None,
          dump_ir: str | os.PathLike | None = None,
          on_phase: Callable[[str, tvm.IRModule], None] | None = None) -> Executable:
    """Compile a Relax module (with bnncc ops) for ``target``.

    ``tuning_log``: None (bnncc's default schedules), ``"auto"`` (the log of ``tuning_logs/`` matching the target,
    if there is one), a log directory written by ``bnncc tune``, or a :class:`bnncc.tune.log.TuningLog`. How many
    ops it tuned is in ``Executable.stats["tuned_ops"]``. ``name`` is the model name the library records
    (default: the module's ``bnncc.model_name`` attribute, else "model"). ``on_phase(name, module)`` is called
    after each phase (progress), and with ``("codegen", None)`` before code generation."""
    lowered, c = _lowered(mod, target, tuning_log, name, dump_ir, on_phase)
    ex = tvm.compile(lowered, c.target, relax_pipeline=None)
    return Executable(ex, c.spec, stats=c.stats, signature=c.stats.pop("signature"))


def build_c_library(mod: tvm.IRModule, out: str | os.PathLike, target: str | TargetSpec = "host", *,
                    tuning_log=None, name: str | None = None, max_threads: int | None = None,
                    dump_ir: str | os.PathLike | None = None,
                    on_phase: Callable[[str, tvm.IRModule], None] | None = None):
    """Compile like :func:`build`, then write the model as a runtime-free static C library to the directory
    ``out`` (:mod:`bnncc.standalone`); returns its :class:`bnncc.standalone.Footprint` and the compile's
    statistics (as ``Executable.stats``). Same kernels, same
    memory plan as the shared library; ``max_threads`` bounds the thread pool the library's workspace is sized
    for."""
    from . import standalone

    standalone.check_output_dir(out)
    lowered, c = _lowered(mod, target, tuning_log, name, dump_ir, on_phase)
    fp = standalone.write_c_library(lowered, c, out, c.name, max_threads or standalone.DEFAULT_MAX_THREADS)
    return fp, c.stats
