"""x86 with AVX-512 (Zen 4/5, Ice Lake and later servers, Sapphire Rapids): the schedule family.

32 zmm registers, 24 of them for accumulators. With VPOPCNTDQ (see :func:`bnncc.targets.isa`) LLVM lowers the
update's ``ctpop`` on 32/64-bit lanes to ``vpopcntd/q``; without it (Skylake-X) to a ``vpshufb`` nibble table.
"""

from .tiling import Family

FAMILY = Family("x86-avx512", vector_bits=512, registers=24)
