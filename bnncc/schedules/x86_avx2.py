"""x86 with AVX2 and no AVX-512 (Zen 2/3, Haswell to Alder Lake client CPUs): the schedule family.

16 ymm registers, 12 of them for accumulators (the rest hold the weight vector, the nibble table and
temporaries). LLVM lowers the update's ``ctpop`` to the ``vpshufb`` nibble-table popcount.
"""

from .tiling import Family

FAMILY = Family("x86-avx2", vector_bits=256, registers=12)


# ------------------------------------------------------------------- int8: the exact AVX2 update of bnncc.qdense
# Without VNNI, x86's u8·s8 product is vpmaddubsw, whose int16 pair sums saturate (255·(−128)·2 < −32768): not
# exact. This update widens both operands to int16 and uses vpmaddwd (pair sums in int32: exact). Its 8 int32
# lanes are 4 columns × 2 depth pairs, so the accumulator keeps the two half-sums of each column apart
# (C[16, 2], from rfactor over the depth pairs) and adds them once, after the whole reduction — no horizontal add
# in the inner loop. The row's 4 bytes, zero-extended, are broadcast; each 16-byte quarter of the packed weights
# (4 columns × 4 depths) is sign-extended to one ymm.
from tvm.s_tir import TensorIntrin  # noqa: E402
from tvm.script import tirx as T  # noqa: E402

INT8_INTRIN = "bnncc_dot_16x2x2_avx2"


@T.prim_func(s_tir=True)
def _dot_desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
              c: T.Buffer((16, 2), "int32", offset_factor=1)) -> None:
    with T.sblock("root"):
        T.reads(c[0:16, 0:2], a[0:4], b[0:16, 0:4])
        T.writes(c[0:16, 0:2])
        for i, h, k in T.grid(16, 2, 2):
            with T.sblock("update"):
                vh, vi, vk = T.axis.remap("SSR", [h, i, k])  # the order of rfactor's block vars
                c[vi, vh] = c[vi, vh] + T.cast(a[vh * 2 + vk], "int32") * T.cast(b[vi, vh * 2 + vk], "int32")


@T.prim_func(s_tir=True)
def _dot_avx2(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
              c: T.Buffer((16, 2), "int32", offset_factor=1)) -> None:
    with T.sblock("root"):
        T.reads(c[0:16, 0:2], a[0:4], b[0:16, 0:4])
        T.writes(c[0:16, 0:2])
        row = T.reinterpret(T.broadcast(T.reinterpret(T.cast(a.vload([0], "uint8x4"), "int16x4"), dtype="int64"),
                                        4), dtype="int16x16")
        for g in T.unroll(4):  # columns 4g..4g+3: 8 int32 = c[4g:4g+4, 0:2]
            c.vstore([g * 4, 0], c.vload([g * 4, 0], "int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), row,
                T.cast(b.vload([g * 4, 0], "int8x16"), "int16x16"), dtype="int32x8"))


TensorIntrin.register(INT8_INTRIN, _dot_desc, _dot_avx2, override=True)
