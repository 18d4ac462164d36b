"""Per-target schedules of the binary operators."""

from .cpu import BinaryOps, ConvTile, CpuInfo, schedule_function, schedule_module

__all__ = ["BinaryOps", "ConvTile", "CpuInfo", "schedule_function", "schedule_module"]
