"""``bnncc profile``: where a compiled model's time goes, per source layer.

:func:`profile` runs a compiled model with its kernels timed in place (:mod:`.measure`), measures this machine's
binary and float roofline at the same thread count, and joins both with the kernel-to-layer table the library
records (:mod:`bnncc.provenance`) into :func:`.report.build_profile`'s dict; :mod:`.plots` draws it.
:func:`profile_remote` does the same on a device behind a TVM RPC tracker, each kernel timed there in isolation
(:func:`bnncc.rpc.remote.time_kernels_remote`); :func:`profile_emulated` counts instructions on the emulated
aarch64 device instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .report import build_insn_profile, build_profile, format_insn_profile, format_profile, kernel_record

__all__ = ["build_insn_profile", "build_profile", "format_insn_profile", "format_profile", "measure_roofline",
           "profile", "profile_emulated", "profile_remote"]


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


def profile_remote(library, tracker: str, key: str, inputs: Sequence[np.ndarray] | None = None, *,
                   signature: dict[str, Any] | None = None, threads: int | None = None, repeats: int = 20,
                   session_timeout: float = 120.0, request_timeout: float = 60.0) -> dict[str, Any]:
    """The per-layer profile of the compiled library ``library`` (a path) on the device registered as ``key`` at
    the tracker ``HOST:PORT``. Unlike :func:`profile`, each kernel is timed alone on the device (TVM's time
    evaluator on random tensors of its argument shapes, repeated back-to-back: caches warm), not in place; the
    whole model is timed there too. No roofline is measured on the device (no fractions of it). ``signature``:
    the library's (default: read on the device)."""
    from ..compare.results import collect_meta
    from ..errors import BnnccError
    from ..rpc.remote import remote_signature, time_kernels_remote
    from .measure import Timings

    timeouts = {"session_timeout": session_timeout, "request_timeout": request_timeout}
    sig = signature or remote_signature(library, tracker, key, **timeouts)
    kernels = kernel_record(sig)
    for k in kernels:
        if "args" not in k:
            raise BnnccError("this library records no kernel argument shapes (built by an older bnncc): recompile "
                             "it to profile it over RPC")
        if None in k["args"]:
            raise BnnccError(f"kernel {k['kernel']} takes an argument that is not a static tensor: it cannot be "
                             "timed alone on a device")
    res = time_kernels_remote(library, inputs if inputs is not None else _random_inputs(sig),
                              [(k["kernel"], k["args"]) for k in kernels], tracker, key, repeats=repeats,
                              threads=threads, **timeouts)
    timings = Timings(np.array(res["kernel_s"]), np.array(res["end_to_end_s"]))
    meta = collect_meta(res["threads"], cpu=res["cpu"], device=f"RPC key {key!r} at {tracker}",
                        kernels_timed="in isolation")
    return build_profile(sig, timings, {}, meta)
