"""Kernel times measured in place: the compiled model runs as it always does, and a VM instrument (called by the
Relax VM before and after each call instruction) reads the clock around every kernel call.

TVM 0.27's Relax VM has no profiling mode (``VirtualMachine(..., profile=True)`` and ``vm.profile`` are gone), but
``VirtualMachine.set_instrument`` is there. Each kernel is timed with its real arguments, in the real memory plan,
after the kernels that ran before it (so with the caches they left). The instrument's own cost (a Python call
per VM call instruction, a few µs) is outside the kernels' intervals; it is why instrumented runs are longer
than plain ones, and why the end-to-end latency is timed in separate, uninstrumented runs (interleaved with the
instrumented ones, so both see the same machine load).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import BnnccError


@dataclass
class Timings:
    kernel_s: np.ndarray  # [runs, kernel calls] seconds, in execution order
    end_to_end_s: np.ndarray  # [runs] seconds of uninstrumented runs

    def kernel_median_s(self) -> np.ndarray:
        return np.median(self.kernel_s, axis=0)


def time_kernels(executable, inputs: Sequence[np.ndarray], kernels: Sequence[str], *, repeats: int = 20,
                 warmup: int = 3) -> Timings:
    """Time each call of ``kernels`` (the PrimFunc names in execution order, as the library records them) and
    the whole model, ``repeats`` runs each. Raises BnnccError if the VM calls other kernels than recorded."""
    import tvm
    from tvm import relax

    from ..runtime import _tensors

    args = _tensors(inputs)
    plain = relax.VirtualMachine(executable, tvm.cpu())
    timed = relax.VirtualMachine(executable, tvm.cpu())
    wanted = set(kernels)
    seen: list[tuple[str, float]] = []
    clock = time.perf_counter

    def instrument(_func, symbol, _before, *_rest) -> int:
        if symbol in wanted:
            seen.append((symbol, clock()))
        return 0  # VMInstrumentReturnKind.NO_OP: run the call

    timed.set_instrument(instrument)
    main, traced = plain["main"], timed["main"]
    for _ in range(warmup):
        main(*args)
        traced(*args)
    seen.clear()
    traced(*args)
    order = [s for s, _ in seen[::2]]
    if order != list(kernels):
        raise BnnccError(f"the library ran {len(order)} kernel calls, its record lists {len(kernels)}: the "
                         "kernel record does not match this library (built by another bnncc?)")
    per_kernel, e2e = [], []
    for _ in range(repeats):
        seen.clear()
        traced(*args)
        stamps = np.array([t for _, t in seen])
        per_kernel.append(stamps[1::2] - stamps[0::2])
        t0 = clock()
        main(*args)
        e2e.append(clock() - t0)
    return Timings(np.array(per_kernel), np.array(e2e))
