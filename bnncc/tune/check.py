"""Correctness of tuned schedules: the same output as bnncc's default schedule on random inputs (exact for integer
and packed outputs), run here or, for another architecture, on the device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tvm
from tvm import tirx

from bnncc.rpc.tracker import request_session
from bnncc.targets import TargetSpec, get_target

from .log import TuningError
from .measure import TRACKER_WAIT, Measurer
from .space import default_schedule
from .tasks import Task


def _random_args(func: tirx.PrimFunc, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for p in func.params:
        buf = p
        shape = [int(s) for s in buf.shape]
        dt = np.dtype(str(buf.dtype))
        if dt.kind in "ui":
            a = rng.integers(0, 256, size=(*shape, dt.itemsize), dtype=np.uint8).view(dt).reshape(shape)
            if dt.kind == "i":  # accumulators and indices: keep them small
                a = (a % 64).astype(dt)
        else:
            a = rng.standard_normal(shape).astype(dt)
        arrays.append(np.ascontiguousarray(a))
    return arrays


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    if got.dtype.kind in "ui":
        return bool(np.array_equal(got, want))
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    return bool(np.allclose(got, want, rtol=1e-5, atol=1e-5 * scale))


def _run_local(mod: tvm.IRModule, target: tvm.target.Target, args: list[np.ndarray]) -> np.ndarray:
    return _run_lib(tvm.tirx.build(mod, target), args)


def _run_lib(lib, args: list[np.ndarray], dev=None) -> np.ndarray:
    tensors = [tvm.runtime.tensor(a, device=dev) if dev is not None else tvm.runtime.tensor(a) for a in args]
    lib["main"](*tensors)
    return tensors[-1].numpy()


def check_outputs(task: Task, artifacts: Sequence[str | None], spec: TargetSpec, measurer: Measurer | None = None,
                  seed: int = 0, reference: str | None = None) -> list[bool]:
    """Run each built schedule of ``task`` (MetaSchedule builder artifacts) on random inputs and compare its output
    with bnncc's default schedule built for this machine (exact for integer and packed outputs). Libraries for
    another architecture run on the device through ``measurer``'s tracker. A missing artifact is not correct.
    ``reference``: the default schedule already built for this machine."""
    func = task.mod["main"]
    args = _random_args(func, seed)
    if reference is not None:
        want = _run_lib(tvm.runtime.load_module(reference), args)
    else:
        host = get_target("host").tvm_target()
        want = _run_local(default_schedule(task.mod, host).mod, host, args)
    if spec.is_native:
        return [art is not None and _same(_run_lib(tvm.runtime.load_module(art), args), want)
                for art in artifacts]
    if measurer is None or not measurer.rpc:
        raise TuningError(f"checking {spec.name} schedules needs the device (RPC)")
    sess = request_session(measurer.rpc, measurer.key, session_timeout=600.0, request_timeout=600.0,
                           tracker_wait=TRACKER_WAIT)  # a tracker restarting meanwhile
    try:
        ok = []
        for i, art in enumerate(artifacts):
            if art is None:
                ok.append(False)
                continue
            # A name per library: overwriting a library the device process has loaded, then loading it again,
            # gets the old (now corrupt) mapping back from dlopen (the session segfaults).
            name = f"bnncc_check{i}.so"
            sess.upload(art, name)
            ok.append(_same(_run_lib(sess.load_module(name), args, sess.cpu()), want))
        return ok
    finally:
        del sess
