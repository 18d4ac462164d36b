"""The float32 FMA roofline of this machine: the binary probe's register-tile loop (:func:`.roofline.probe_func`)
with fused multiply-adds on float32 lanes instead of XOR + popcount + add.

``xb`` broadcast floats × ``nv`` vectors of weights give ``xb·nv`` independent vector accumulators; each lane step
is one FMA (``T.fma``: LLVM emits ``vfmadd*ps`` without needing fast-math contraction) = one float MAC. The
profiler divides a float kernel's achieved MAC/s by this, as it divides a binary kernel's by the popcount probe.
"""

from __future__ import annotations

import numpy as np

from . import roofline as R


def float_shape(target=None) -> R.ProbeShape:
    """The binary probe's register tile for the target, on float32 lanes (16 per zmm, 8 per ymm)."""
    s = R.default_shape(target)
    return R.ProbeShape(s.xb, s.nv, s.k, s.lanes * 2)


class FloatProbe(R.Probe):
    """The compiled float probe; timing and calibration are the binary probe's."""

    def __init__(self, tasks: int = 1, target=None, shape: R.ProbeShape | None = None, seed: int = 0):
        import tvm

        self.tasks = int(tasks)
        self.target = R.tvm_target(target)
        self.isa_path = f"fma-f32x{(shape or float_shape(self.target)).lanes}"
        self.shape = shape or float_shape(self.target)
        self.executable = tvm.compile(R.probe_func(self.tasks, self.shape, "float32"), target=self.target)
        self.module = self.executable.mod
        self.func = self.module["probe"]
        s = self.shape
        rng = np.random.default_rng(seed)
        # small values so that reps·k products stay far from float32 overflow and denormals
        self.x_np = rng.uniform(0.5, 1.0, (self.tasks, s.k, s.xb)).astype(np.float32) * np.float32(1e-3)
        self.w_np = rng.uniform(0.5, 1.0, (self.tasks, s.k, s.nv * s.lanes)).astype(np.float32) * np.float32(1e-3)
        self.x = tvm.runtime.tensor(self.x_np)
        self.w = tvm.runtime.tensor(self.w_np)
        self.out = tvm.runtime.tensor(np.zeros((self.tasks, s.xb, s.nv * s.lanes), np.float32))

    def macs(self, reps: int) -> int:
        s = self.shape
        return self.tasks * int(reps) * s.k * s.xb * s.nv * s.lanes

    def check(self, reps: int = 3) -> None:
        want = np.einsum("tjp,tjc->tpc", self.x_np.astype(np.float64), self.w_np.astype(np.float64)) * reps
        if not np.allclose(self(reps), want, rtol=1e-4):
            raise AssertionError("float roofline probe computed wrong sums")


def measure(threads: int = 1, *, seconds: float = 0.05, repeats: int = 10, target=None) -> R.Roofline:
    """Float32 MACs/s of the FMA probe on ``threads`` TVM threads (best and median of ``repeats`` calls)."""
    return R.measure(threads, seconds=seconds, repeats=repeats, target=target,
                     probe=FloatProbe(threads, target))
