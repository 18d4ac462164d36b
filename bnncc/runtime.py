"""Running a compiled model: :class:`Executable` (numpy in, numpy out), :func:`load`, the thread pool.

This module does not import the compiler (ops, schedules, passes): ``bnncc run`` loads a library with
TVM's runtime alone.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from .elfcheck import add_checksum, host_machine, verify_library
from .errors import BnnccError
from .limits import check_threads
from .outputs import check_writable
from .targets import TargetSpec

SIGNATURE_FUNC = "bnncc_signature"  # the Relax function of a compiled model that returns its signature (JSON)


def set_num_threads(n: int) -> int:
    """Threads of TVM's runtime pool for the kernels run from now on in this process; returns the count in use.

    TVM caps the pool at ``TVM_NUM_THREADS`` whenever it is reconfigured, so the variable is only ever raised
    (lowering it would cap every later call: set_num_threads(1) then (2) ran on one thread).
    """
    check_threads(n, "thread count")
    cur = os.environ.get("TVM_NUM_THREADS", "")
    if not cur.isdigit() or int(cur) < n:
        os.environ["TVM_NUM_THREADS"] = str(n)
    tvm.get_global_func("runtime.config_threadpool")(1, n)
    return int(tvm.get_global_func("runtime.NumThreads")())


class Executable:
    """A compiled model: call it on numpy arrays; export it as one shared library.

    ``signature`` is what the library records of the model (:func:`bnncc.pipeline.signature_of`): bnncc
    version, model name, target, inputs (name, shape, dtype) and outputs; None for a library without one."""

    def __init__(self, ex, target: TargetSpec | None = None, path: str | None = None, stats: dict | None = None,
                 signature: dict[str, Any] | None = None):
        self._ex = ex
        self.target = target
        self.path = path
        self.stats = stats or {}
        self.signature = signature
        self._vm = None

    @property
    def vm(self) -> relax.VirtualMachine:
        if self._vm is None:
            if self.target is not None and not self.target.is_native:
                raise BnnccError(f"this library was built for {self.target.name} ({self.target.arch}); "
                                 "run it on such a device (bnncc run --rpc) instead of here")
            self._vm = relax.VirtualMachine(self._ex, tvm.cpu())
        return self._vm

    @property
    def input_shapes(self) -> list[tuple[int, ...]] | None:
        if not self.signature:
            return None
        return [tuple(i["shape"]) for i in self.signature["inputs"]]

    def __call__(self, *inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        try:
            out = self.vm["main"](*_tensors(inputs))
        except (RuntimeError, ValueError, TypeError) as e:
            raise _input_error(e, inputs) from None
        if isinstance(out, tvm.runtime.Tensor):
            return out.numpy()
        return tuple(o.numpy() for o in out)

    def time(self, *inputs: np.ndarray, repeats: int = 20, warmup: int = 3) -> list[float]:
        """Seconds per run of ``main`` (inputs already on the device), ``repeats`` samples."""
        args = _tensors(inputs)
        f = self.vm["main"]
        try:
            f(*args)
        except (RuntimeError, ValueError, TypeError) as e:
            raise _input_error(e, inputs) from None
        for _ in range(warmup):
            f(*args)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f(*args)
            samples.append(time.perf_counter() - t0)
        return samples

    def assembly(self, fmt: str = "asm") -> str:
        """The generated code of all kernels: "asm" (assembly) or "ll" (LLVM IR)."""
        return next(m for m in self._ex.mod.imports if m.kind == "llvm").inspect_source(fmt)

    def export_library(self, path: str | os.PathLike) -> Path:
        """Write one shared library (cross-compiled when the target is another architecture).

        Written to a temporary file and renamed, so a failure never leaves a half-written library behind.
        """
        path = Path(path)
        check_writable(path)
        if self.target is not None and not self.target.tvm_runtime:
            raise BnnccError(f"no TVM runtime exists for {self.target.name} ({self.target.description}) to load a "
                             "shared library: compile with --emit c-library (a runtime-free static library)")
        kwargs = {}
        if self.target is not None and not self.target.is_native and self.target.cross_compiler:
            kwargs["fcompile"] = tvm.support.cc.cross_compiler(self.target.cross_compiler)
        fd, tmp = tempfile.mkstemp(suffix=path.suffix or ".so", dir=path.parent if path.parent.exists() else None)
        os.close(fd)
        try:
            self._ex.export_library(tmp, **kwargs)
            add_checksum(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path


def load(path: str | os.PathLike) -> Executable:
    """Load a library written by :meth:`Executable.export_library`.

    Its ELF structure is checked first (:mod:`bnncc.elfcheck`): a truncated library would be mapped past the
    end of its file (SIGBUS) or run with parts missing. Loading runs the library's code: load only your own."""
    path = Path(path)
    if not path.is_file():
        raise BnnccError(f"{path}: no such compiled model")
    info = verify_library(path)
    if info.machine != host_machine():
        raise BnnccError(f"{path}: built for {info.machine}, this machine is {host_machine()}; run it on such a "
                         "device (bnncc run --rpc HOST:PORT --key KEY, or deploy/)")
    try:
        ex = tvm.runtime.load_module(str(path))
    except Exception as e:  # noqa: BLE001 - TVM raises many kinds
        raise BnnccError(f"{path}: not a library bnncc can load ({str(e).splitlines()[-1]})") from None
    if not ex.implements_function("vm_load_executable"):  # another program's library, not a Relax VM model
        raise BnnccError(f"{path}: a shared library, but not a model compiled by bnncc (no Relax VM executable)")
    exe = Executable(ex, None, str(path))
    exe.signature = read_signature(exe)
    return exe


def read_signature(exe: Executable) -> dict[str, Any] | None:
    """The signature a library records (None for libraries built before bnncc recorded one)."""
    try:
        sig = json.loads(str(exe.vm[SIGNATURE_FUNC]()))
    except (AttributeError, RuntimeError, ValueError, TypeError, KeyError):
        return None
    return sig if isinstance(sig, dict) and isinstance(sig.get("inputs"), list) else None


def _tensors(inputs) -> list:
    """numpy → TVM tensors; float64 (numpy's default) is taken as float32, the only float type models take."""
    arrays = [np.asarray(x) for x in inputs]
    return [tvm.runtime.tensor(np.ascontiguousarray(a, np.float32 if a.dtype == np.float64 else a.dtype))
            for a in arrays]


def _input_error(e: Exception, inputs) -> Exception:
    """A VM argument check failure as one clear line: which input, what was expected, what was given."""
    msg = str(e)
    m = re.search(r"loc=param\[(\d+)\], param=(\w+), annotation=R\.Tensor\(\(([^)]*)\), dtype=\"(\w+)\"\)", msg)
    if m:
        i = int(m.group(1))
        got = np.asarray(inputs[i]) if i < len(inputs) else None
        given = f"shape {tuple(got.shape)} {got.dtype}" if got is not None else "nothing"
        return BnnccError(f"input {i} ({m.group(2)}): the model expects shape ({m.group(3)}) {m.group(4)}, "
                          f"got {given}")
    if "arguments" in msg or "args" in msg:
        return BnnccError(f"the model was called with {len(inputs)} input(s): {msg.splitlines()[-1]}")
    return e
