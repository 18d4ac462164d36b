"""The generated machine code: the binary conv's kernel must use the vector popcount instruction of its target.

The assembly of a built executable is the text of its LLVM module: ``ex.mod.imports[0].inspect_source("asm")`` on
the ``relax.VMExecutable`` (``bnncc.pipeline.Executable._ex``); the import is the one whose ``kind`` is ``"llvm"``.
LLVM emits the assembly for any target it was built with, so the cross targets need no cross compiler here.
"""

import re

import numpy as np
import pytest
import tvm
from tvm import relax

from bnncc import pipeline, targets
from bnncc.relay_ops import bconv2d, bitpack
from bnncc.testing import compile_graph

SHAPE, OUT_CHANNELS = (1, 14, 14, 256), 256
X86_VPOPCNT = re.compile(r"\bvpopcnt[dq]\s+[^\n]*%[yz]mm\d+")  # AT&T syntax: vpopcntd %zmm1, %zmm2
AARCH64_CNT = re.compile(r"\bcnt\s+v\d+\.(?:16|8)b\b")  # cnt v0.16b, v1.16b


def _kernel() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((3, 3, SHAPE[-1], OUT_CHANNELS)).astype(np.float32)


def _conv_graph(bb, x):
    return bconv2d(bb.emit(bitpack(x)), _kernel(), padding="same")


def llvm_assembly(vm_executable) -> str:
    """The assembly of the (single) LLVM module imported by a ``relax.VMExecutable``."""
    mods = [m for m in vm_executable.mod.imports if m.kind == "llvm"]
    assert len(mods) == 1, [m.kind for m in vm_executable.mod.imports]
    return mods[0].inspect_source("asm")


def functions(asm: str) -> dict[str, str]:
    """Split assembly into functions: name → text from its ``.type name,@function`` to the next one."""
    parts = re.split(r"^\s*\.type\s+([^,\s]+)\s*,\s*[@%]function\s*$", asm, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def kernel_code(asm: str, prefix: str) -> str:
    """Text of the functions named ``prefix…`` plus the local functions they reference (parallel lambdas)."""
    funcs = functions(asm)
    todo = [name for name in funcs if name.startswith(prefix)]
    assert todo, f"no function {prefix}* in {sorted(funcs)}"
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for other in funcs:
            if other.startswith(".L") and re.search(re.escape(other) + r"(?![\w.$])", funcs[name]):
                todo.append(other)
    return "\n".join(funcs[name] for name in sorted(seen))


def _cross_assembly(target_name: str, graph=_conv_graph, shape=SHAPE) -> str:
    """Lower and codegen for another architecture (no run, no export): LLVM alone writes the assembly."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(graph(bb, x))
        bb.emit_func_output(out)
    spec = targets.get_target(target_name)
    ex = tvm.compile(pipeline.lower(bb.get(), spec), spec.tvm_target())
    return llvm_assembly(ex)


def test_host_conv_uses_avx512_vpopcnt():
    spec = targets.get_target("host")
    if not tvm.target.codegen.llvm_cpu_has_features(["avx512vpopcntdq"], spec.tvm_target()):
        pytest.skip(f"host CPU {spec.attrs.get('mcpu')} lacks AVX-512 VPOPCNTDQ (avx512vpopcntdq)")
    ex = compile_graph(_conv_graph, (SHAPE, "float32"), target="host")
    asm = llvm_assembly(ex._ex)
    conv = kernel_code(asm, "bnncc_bconv2d")
    hits = X86_VPOPCNT.findall(conv)
    assert hits, "the bconv2d kernel has no vpopcntd/vpopcntq on ymm/zmm registers"
    assert not X86_VPOPCNT.search(kernel_code(asm, "bnncc_bitpack")), "bitpack should not count bits"


def test_x86_avx512_cross_target_conv_uses_vpopcnt():
    """The named icelake-server target gets VPOPCNTDQ whatever CPU compiles it."""
    conv = kernel_code(_cross_assembly("x86-avx512"), "bnncc_bconv2d")
    assert X86_VPOPCNT.search(conv), "the bconv2d kernel has no vpopcntd/vpopcntq on ymm/zmm registers"


@pytest.mark.parametrize("target_name", ["aarch64", "rasp4"])
def test_aarch64_conv_uses_neon_cnt(target_name):
    if "aarch64" not in tvm.target.codegen.llvm_get_targets():
        pytest.skip("this TVM's LLVM has no AArch64 backend")
    conv = kernel_code(_cross_assembly(target_name), "bnncc_bconv2d")
    assert AARCH64_CNT.search(conv), "the bconv2d kernel has no NEON cnt on .16b/.8b vector registers"


def test_checker_sees_no_vpopcnt_without_avx512():
    """Control: for haswell (AVX2, no VPOPCNTDQ) the same search finds nothing, so the tests above can fail."""
    asm = _cross_assembly("x86")
    assert not X86_VPOPCNT.search(kernel_code(asm, "bnncc_bconv2d"))
    assert not AARCH64_CNT.search(asm)


# Mask extraction of a whole-word bitpack (the bnncc_bitpack_u* tensor intrinsics): AVX-512 compares into mask
# registers and joins them (kunpck); AVX2 moves the byte signs out (vpmovmskb); NEON sums bit-weighted lanes (addv).
BITPACK_MASK = {"x86-avx512": r"\bkunpck", "x86": r"\bvpmovmskb\b", "aarch64": r"\baddv\b"}


@pytest.mark.parametrize("target_name", sorted(BITPACK_MASK))
@pytest.mark.parametrize("channels", [64, 63])
def test_whole_word_bitpack_is_a_vector_compare(target_name, channels):
    """Whole words are packed by the tensor intrinsic; a partial word (63 channels) keeps the generic bit loop,
    which has none of these instructions (the control that shows the search can fail)."""
    if targets.get_target(target_name).arch == "aarch64" and "aarch64" not in tvm.target.codegen.llvm_get_targets():
        pytest.skip("this TVM's LLVM has no AArch64 backend")
    asm = _cross_assembly(target_name, lambda bb, x: bitpack(x, bits=64), (1, 7, 7, channels))
    found = re.search(BITPACK_MASK[target_name], kernel_code(asm, "bnncc_bitpack"))
    assert bool(found) == (channels == 64), f"{target_name}, {channels} channels: {found}"
