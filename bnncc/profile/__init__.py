"""``bnncc profile``: where a compiled model's time goes, per source layer.

:func:`profile` runs a compiled model with its kernels timed in place (:mod:`.measure`), measures this machine's
binary and float roofline at the same thread count, and joins both with the kernel-to-layer table the library
records (:mod:`bnncc.provenance`) into :func:`.report.build_profile`'s dict; :mod:`.plots` draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .report import build_insn_profile, build_profile, format_insn_profile, format_profile, kernel_record

__all__ = ["build_insn_profile", "build_profile", "format_insn_profile", "format_profile", "measure_roofline",
           "profile", "profile_emulated"]


def measure_roofline(threads: int) -> dict[str, float]:
    """G-MAC/s per precision on ``threads`` threads: binary (popcount probe), float (FMA probe); int8 is not
    measured (bnncc has no int8 kernels)."""
    from ..compare import roofline, roofline_float

    roofline.ensure_thread_pool(max(threads, roofline.num_tvm_threads()))
    # many short samples, the best kept: on a shared machine a long sample is rarely free of preemption
    kw = {"seconds": 0.005, "repeats": 60}
    return {"binary": roofline.measure(threads, **kw).gmacs, "float": roofline_float.measure(threads, **kw).gmacs}


def profile(executable, inputs: Sequence[np.ndarray] | None = None, *, threads: int | None = None,
            repeats: int = 20, warmup: int = 3, roofline: dict[str, float] | None = None) -> dict[str, Any]:
    """The per-layer profile of ``executable`` (a :class:`bnncc.runtime.Executable`, built or loaded) on random
    inputs of its recorded shapes (or ``inputs``), on ``threads`` TVM threads (default: all)."""
    from ..compare import roofline as R
    from ..compare.results import collect_meta
    from ..runtime import set_num_threads
    from .measure import time_kernels

    sig = executable.signature or {}
    kernels = kernel_record(sig)
    threads = threads or R.cores_available()
    if roofline is None:
        roofline = measure_roofline(threads)
    set_num_threads(threads)
    if inputs is None:
        inputs = _random_inputs(sig)
    timings = time_kernels(executable._ex, inputs, [k["kernel"] for k in kernels], repeats=repeats, warmup=warmup)
    meta = collect_meta(threads, isa_path=R.isa_path())
    return build_profile(sig, timings, roofline, meta)


def _random_inputs(sig: dict[str, Any]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(i["shape"]).astype(i["dtype"]) for i in sig["inputs"]]


def profile_emulated(executable) -> dict[str, Any]:
    """The instruction-count profile of an aarch64 :class:`bnncc.runtime.Executable` (built, not loaded) on the
    emulated device (:mod:`bnncc.device.layer_insns`): exact counts per kernel call, one thread."""
    import tempfile
    from pathlib import Path

    from ..compare.results import collect_meta
    from ..device.layer_insns import kernel_insns

    sig = executable.signature or {}
    kernels = kernel_record(sig)
    with tempfile.TemporaryDirectory(prefix="bnncc-profile-") as td:
        lib = executable.export_library(Path(td) / "model.so")
        counts = kernel_insns(lib, _random_inputs(sig), [k["kernel"] for k in kernels])
    target = executable.target
    return build_insn_profile(sig, counts, collect_meta(1, device="qemu-aarch64 (emulated)",
                                                        target_description=target.description if target else None))
