"""Per-target schedules of the binary operators."""

from . import intrinsics  # noqa: F401  (registers bnncc's tensor intrinsics: tuning logs replay them by name)
from .cpu import BinaryOps, ConvTile, CpuInfo, schedule_function, schedule_module

__all__ = ["BinaryOps", "ConvTile", "CpuInfo", "schedule_function", "schedule_module"]
