"""Per-target schedules of the binary operators."""

from . import intrinsics  # noqa: F401  (registers bnncc's tensor intrinsics: tuning logs replay them by name)
from .cpu import (CONV_BLOCKS, BinaryOps, ConvTile, CpuInfo, is_conv_like, output_dtype, schedule_function,
                  schedule_module)

__all__ = ["CONV_BLOCKS", "BinaryOps", "ConvTile", "CpuInfo", "is_conv_like", "output_dtype", "schedule_function",
           "schedule_module"]
