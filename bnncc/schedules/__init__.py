"""Per-target schedules of bnncc's kernels: a target-free tiling core and one module per target family.

:mod:`.tiling` holds the register-tiled (pixels × output channels) schedule of binary and float conv/dense
reductions and of bitpack/max-pool; the family modules (:mod:`.x86_avx512`, :mod:`.x86_avx2`, :mod:`.arm_neon`,
:mod:`.generic`) say what differs per target (vector width, accumulator registers, tensorized updates), chosen by
:func:`bnncc.targets.isa`. The int8 kernels (``bnncc.qdense``, im2col, the int8-boundary elementwise ops) are
scheduled by :mod:`.qgemm` with the families' int8 updates (VNNI in :mod:`.x86_avx512`, exact ``vpmaddwd`` in
:mod:`.x86_avx2`); on AMX targets :mod:`.x86_amx` replaces qdense functions by its tile kernel. Tensor intrinsics
sit beside the schedules that use them (:mod:`.bitpack_intrin`, the NEON update in :mod:`.arm_neon`) and are
registered on import (tuning logs replay them by name).
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from ..targets import isa
from . import arm_neon, generic, qgemm, x86_amx, x86_avx2, x86_avx512
from .tiling import CONV_BLOCKS, ConvTile, Family, is_conv_like, output_dtype, schedule_function_for

FAMILIES = {f.name: f for f in (x86_avx512.FAMILY, x86_avx2.FAMILY, arm_neon.FAMILY, arm_neon.ARMV7_FAMILY,
                                 generic.FAMILY)}


def family_of(target: Target) -> Family:
    """The schedule family of a TVM target."""
    return FAMILIES[isa(target).family]


def schedule_function(sch: s_tir.Schedule, target: Target, tunable: bool = False) -> bool:
    """Schedule one PrimFunc in place if it holds a block bnncc knows; False if it does not.

    ``tunable`` samples the register tile (``sample_perfect_tile``) instead of picking it: MetaSchedule's space."""
    family = family_of(target)
    if qgemm.schedule_qdense(sch, family, tunable) or qgemm.schedule_im2col(sch) or qgemm.schedule_int8_boundary(sch):
        return True  # the int8 kernels (:mod:`.qgemm`)
    return schedule_function_for(sch, family, tunable)


class BinaryOps(ScheduleRule):
    """dlight rule: schedules every PrimFunc that holds a bnncc block or a float conv/dense; leaves the rest."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        return sch if schedule_function(sch, target, tunable) else None


def schedule_module(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    """Apply the bnncc rules to every unscheduled PrimFunc; the rest is left to LLVM.

    TVM's generic ``dlight.cpu.Reduction`` is not used: on a softmax it recomputes the whole reduction for
    every output element (O(n²), 4 ms for 1000 classes).
    """
    from tvm.s_tir import dlight

    if isa(target).amx_int8:
        mod = x86_amx.use_amx(mod)
    with target:
        return dlight.ApplyDefaultSchedule(BinaryOps())(mod)


__all__ = ["CONV_BLOCKS", "FAMILIES", "BinaryOps", "ConvTile", "Family", "family_of", "is_conv_like", "output_dtype",
           "schedule_function", "schedule_module"]
