"""Target-independent tensor intrinsics of bnncc (registered with ``TensorIntrin.register`` on import).

``bnncc_bitpack_u{16,32,64}``: one packed word from ``bits`` floats, bit i = (x[i] < 0). The description is the
bit loop of :func:`bnncc.relay_ops.bitpack.compute` (a shift-and-add reduction LLVM can only half-vectorize:
≈ 1 instruction per float on AVX-512); the implementation compares a whole vector and reinterprets the
``<bits x i1>`` mask as the word, which LLVM lowers to the best mask extraction of each target — AVX-512:
4 ``vcmpps`` → k-registers, ``kunpck`` ×3, one ``kmovq`` store per 64 floats; AVX2: ``vcmpltps`` +
``vpackss*`` + ``vpmovmskb``; NEON: ``fcmlt`` + ``uzp1`` + ``and`` + ``addv``.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

WORD_BITS = (16, 32, 64)


def bitpack_intrin_name(bits: int) -> str:
    return f"bnncc_bitpack_u{bits}"


def _bitpack_intrin(bits: int):
    dtype = f"uint{bits}"

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((bits,), "float32", offset_factor=1), c: T.Buffer((1,), dtype, offset_factor=1)):
        with T.sblock("root"):
            T.reads(c[0], a[0:bits])
            T.writes(c[0])
            for i in T.serial(bits):
                with T.sblock("update"):
                    vi = T.axis.remap("R", [i])
                    c[0] = c[0] + (T.if_then_else(a[vi] < T.float32(0), T.Cast(dtype, 1), T.Cast(dtype, 0))
                                   << T.Cast(dtype, vi))

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((bits,), "float32", offset_factor=1), c: T.Buffer((1,), dtype, offset_factor=1)):
        with T.sblock("root"):
            T.reads(c[0], a[0:bits])
            T.writes(c[0])
            # bits are disjoint, so + is |; -0.0 and NaN compare false, as in the description
            c[0] = c[0] + T.reinterpret(dtype, T.Cast(f"uint1x{bits}", a.vload([0], f"float32x{bits}")
                                                      < T.Broadcast(T.float32(0), bits)))

    return desc, impl


for _bits in WORD_BITS:
    TensorIntrin.register(bitpack_intrin_name(_bits), *_bitpack_intrin(_bits), override=True)
