"""Any other CPU (128-bit SIMD assumed, e.g. x86-64 baseline SSE2): the fallback schedule family."""

from .tiling import Family

FAMILY = Family("generic", vector_bits=128, registers=12)
