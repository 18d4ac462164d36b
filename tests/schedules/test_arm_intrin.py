"""bnncc's NEON tensor intrinsic (bnncc.schedules.arm_neon): registered by name, used by the default and the tunable
aarch64 schedules of binary conv/dense (so MetaSchedule's space contains it), still lowered to NEON ``cnt``, and
bit-exact under qemu against the numpy oracle."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm import s_tir
from tvm.s_tir import TensorIntrin

from bnncc import device, pipeline, reference, targets, tune
from bnncc.relay_ops import bconv2d, bdense, bitpack
from bnncc.schedules import arm_neon as arm
from bnncc.testing import compile_graph, graph_module

arm64_env = device.pytest_fixtures(scope="module")[0]
AARCH64_CNT = re.compile(r"\bcnt\s+v\d+\.16b\b")
needs_aarch64_llvm = pytest.mark.skipif("aarch64" not in tvm.target.codegen.llvm_get_targets(),
                                        reason="this TVM's LLVM has no AArch64 backend")


def _kernel(cin: int, cout: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, 3, cin, cout)).astype(np.float32)


def _bconv_body(kernel: np.ndarray):
    return lambda bb, xp: bconv2d(xp, kernel, padding="same", pad_value=1)


@pytest.mark.parametrize("bits", arm.WORD_BITS)
def test_intrinsic_registered_by_name(bits):
    intrin = TensorIntrin.get(arm.intrin_name(bits))
    lanes = 128 // bits
    assert arm.intrin_name(bits) == f"bnncc_neon_bxor_popc_acc_u{bits}x{lanes}"
    desc = intrin.desc.script()
    for buf, shape in (("acc", lanes), ("xw", 1), ("ww", lanes)):  # accumulators, broadcast word, weights
        assert f'{buf}: T.Buffer(({shape},), "uint{bits}"' in desc, desc
    assert "llvm.ctpop" in intrin.impl.script() and "llvm.aarch64.neon.uaddlp" in intrin.impl.script()


def _legalized_bconv(shape, kernel, target: str = "rasp4") -> tvm.IRModule:
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "uint16"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(_bconv_body(kernel)(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def _tensorizes(trace) -> list[str]:
    return [str(inst.attrs[0]) for inst in trace.insts if inst.kind.name == "Tensorize"]


def test_default_schedule_is_tensorized_and_x86_is_not():
    mod = _legalized_bconv((1, 7, 7, 4), _kernel(64, 32))
    for name, expected in (("rasp4", [arm.intrin_name(16)]), ("x86-avx512", [])):
        task = tune.extract_tasks(mod, name)[0]
        assert _tensorizes(tune.default_schedule(task.mod, targets.get_target(name).tvm_target()).trace) == expected
    lowered = pipeline.lower(mod, targets.get_target("rasp4"))
    (kernel,) = [f for gv, f in lowered.functions.items() if gv.name_hint.startswith("bnncc_bconv2d")]
    assert "llvm.aarch64.neon.uaddlp" in kernel.script()  # the intrinsic's implementation is what gets built


@needs_aarch64_llvm
def test_tensorized_assembly_uses_neon_cnt():
    exe = compile_graph(_bconv_body(_kernel(64, 32)), ((1, 7, 7, 4), "uint16"), target="rasp4")
    asm = exe.assembly()
    assert AARCH64_CNT.search(asm) and re.search(r"\buadalp\s+v\d+\.8h", asm), "no cnt .16b + uadalp .8h"


def test_metaschedule_space_contains_tensorize():
    """The tunable space MetaSchedule searches (bnncc.tune's ScheduleFn) holds the tensorize instruction, and a
    trace replays with it under other tile decisions (what MutateTileSize produces)."""
    from tvm.s_tir import meta_schedule as ms

    spec = targets.get_target("rasp4")
    target = spec.tvm_target()
    task = tune.extract_tasks(_legalized_bconv((1, 8, 8, 4), _kernel(64, 64)), spec)[0]
    space_gen = ms.space_generator.ScheduleFn(tune.tunable_space(target), sch_rules=[], postprocs=[],
                                              mutator_probs={})
    with tune.without_tensor_intrin_import():
        ctx = ms.TuneContext(mod=task.mod, target=target, space_generator=space_gen, task_name="t")
    (space,) = ctx.generate_design_space()
    assert _tensorizes(space.trace) == [arm.intrin_name(16)]
    seen = set()
    for xb, nv in ((1, 8), (8, 1), (4, 2)):
        def provider(inst, inputs, attrs, decision, xb=xb, nv=nv):
            if inst.kind.name != "SamplePerfectTile":
                return decision
            inner = xb if not seen else nv
            seen.add(inst)
            return [int(np.prod([int(d) for d in decision])) // inner, inner]

        seen.clear()
        sch = s_tir.Schedule(task.mod)
        space.trace.apply_to_schedule(sch, remove_postproc=False, decision_provider=provider)
        assert _tensorizes(sch.trace) == [arm.intrin_name(16)]


@pytest.mark.parametrize(("hw", "cin", "cout", "bits"), [((9, 7), 70, 48, 16), ((5, 6), 64, 24, 32)],
                         ids=["u16-9x7x70-48", "u32-5x6x64-24"])
def test_tensorized_bconv_bit_exact_under_qemu(arm64_env, hw, cin, cout, bits, tmp_path):
    """Partly filled last word (70 channels), row tiles of 7 pixels, and 32-bit words (the u32 intrinsic)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, *hw, cin)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    xp = reference.bitpack(x, bits=bits)
    exe = compile_graph(_bconv_body(kernel), (xp.shape, xp.dtype.name), target="rasp4")
    assert AARCH64_CNT.search(exe.assembly())
    got = device.run_deploy_app(exe.export_library(tmp_path / "bconv.so"), [xp], arch="aarch64").output
    acc = reference.bconv2d_acc(reference.binarize(x), reference.binarize(kernel.transpose(3, 0, 1, 2)),
                                padding="same", pad_value=1)
    assert np.array_equal(got, acc.astype(np.float32)), f"{np.count_nonzero(got != acc)} accumulators differ"


def test_tensorized_bdense_bit_exact_under_qemu(arm64_env, tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 200)).astype(np.float32)
    kernel = rng.standard_normal((200, 40)).astype(np.float32)
    exe = compile_graph(lambda bb, xf: bdense(bb.emit(bitpack(xf, bits=16)), kernel), (x.shape, "float32"),
                        target="rasp4")
    got = device.run_deploy_app(exe.export_library(tmp_path / "bdense.so"), [x], arch="aarch64").output
    want = reference.bdense_acc(reference.binarize(x), reference.binarize(kernel.T))
    assert np.array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize(("weights", "k_bit", "bits", "hw", "cin", "cout"),
                         [("binary", 2, 16, (9, 7), 70, 48), ("ternary", 2, 16, (5, 6), 64, 24),
                          ("ternary", 3, 32, (4, 5), 40, 16)],
                         ids=["2A1W-u16-9x7x70-48", "2A2W-u16-5x6x64-24", "3A2W-u32-4x5x40-16"])
def test_tensorized_bsconv_bit_exact_under_qemu(arm64_env, weights, k_bit, bits, hw, cin, cout, tmp_path):
    """The bit-serial update (planes combined in bytes) is the default aarch64 schedule and exact under qemu."""
    from bnncc.relay_ops import bsconv2d

    rng = np.random.default_rng(7)
    x = rng.uniform(-0.2, 1.2, (1, *hw, cin)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    kernel[np.abs(kernel) < (0.6 if weights == "ternary" else 0)] = 0.0
    levels = reference.dorefa_levels(x, k_bit)
    xp = reference.bitplanes(levels, k_bit, bits)
    body = lambda bb, xp: bsconv2d(xp, kernel, k_bit=k_bit, weights=weights, padding="same")  # noqa: E731
    mod = tune.extract_tasks(graph_module(body, (xp.shape, xp.dtype.name)), "rasp4")[0].mod
    schedule = tune.default_schedule(mod, targets.get_target("rasp4").tvm_target())
    assert _tensorizes(schedule.trace) == [arm.bs_intrin_name(bits, k_bit, weights == "ternary")]
    exe = compile_graph(body, (xp.shape, xp.dtype.name), target="rasp4")
    got = device.run_deploy_app(exe.export_library(tmp_path / "bsconv.so"), [xp], arch="aarch64").output
    w = kernel.transpose(3, 0, 1, 2)
    w_int = reference.binarize(w) if weights == "binary" else np.sign(w).astype(np.int8)
    acc = reference.bsconv2d_acc(levels, w_int, padding="same")
    assert np.array_equal(got, acc.astype(np.float32)), f"{np.count_nonzero(got != acc)} accumulators differ"
