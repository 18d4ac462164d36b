"""x86 with AVX2 and no AVX-512 (Zen 2/3, Haswell to Alder Lake client CPUs): the schedule family.

16 ymm registers, 12 of them for accumulators (the rest hold the weight vector, the nibble table and
temporaries). LLVM lowers the update's ``ctpop`` to the ``vpshufb`` nibble-table popcount.
"""

from .tiling import Family

FAMILY = Family("x86-avx2", vector_bits=256, registers=12)
