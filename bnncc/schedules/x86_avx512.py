"""x86 with AVX-512 (Zen 4/5, Ice Lake and later servers, Sapphire Rapids): the schedule family.

32 zmm registers, 24 of them for accumulators. With VPOPCNTDQ (see :func:`bnncc.targets.isa`) LLVM lowers the
update's ``ctpop`` on 32/64-bit lanes to ``vpopcntd/q``; without it (Skylake-X) to a ``vpshufb`` nibble table.
"""

from .tiling import Family

FAMILY = Family("x86-avx512", vector_bits=512, registers=24)


# ------------------------------------------------------------------- int8: the VNNI update of bnncc.qdense
from tvm.s_tir import TensorIntrin  # noqa: E402
from tvm.script import tirx as T  # noqa: E402

VNNI_INTRIN = "bnncc_dot_16x4_vnni"


@T.prim_func(s_tir=True)
def _dot_16x4_desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
                   c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
    with T.sblock("root"):
        T.reads(c[0:16], a[0:4], b[0:16, 0:4])
        T.writes(c[0:16])
        for i, k in T.grid(16, 4):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, k])
                c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _dot_16x4_vnni(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
                   c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
    # LLVM ≥ 19 types vpdpbusd's operands as <64 x i8> (TVM's own dot_16x4_vnni still passes <16 x i32>).
    with T.sblock("root"):
        T.reads(c[0:16], a[0:4], b[0:16, 0:4])
        T.writes(c[0:16])
        row = T.broadcast(T.reinterpret(a.vload([0], "uint8x4"), dtype="int32"), 16)
        c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), c.vload([0], dtype="int32x16"),
            T.reinterpret(row, dtype="uint8x64"), b.vload([0, 0], dtype="int8x64"), dtype="int32x16")


TensorIntrin.register(VNNI_INTRIN, _dot_16x4_desc, _dot_16x4_vnni, override=True)
