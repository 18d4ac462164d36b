"""The compile pipeline: Relax module with bnncc ops → scheduled, built Relax VM executable."""

from __future__ import annotations

import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from . import relay_ops  # noqa: F401  (registers the ops)
from .errors import BnnccError
from .relay_ops.passes import FuseBinaryLayers, PackInProducers, UseWeightLayout, fuse_binary_layers
from .schedules import schedule_module
from .targets import TargetSpec, get_target


def optimize(mod: tvm.IRModule) -> tvm.IRModule:
    """Graph-level passes: fuse binary layers (BN/activations, packed outputs, binary max-pool)."""
    return fuse_binary_layers(mod)


def graph_stats(mod: tvm.IRModule) -> dict[str, int]:
    """Counts of binary and float operators in an (optimized) Relax module."""
    text = mod["main"].script()
    binary = sum(text.count(f'"bnncc.{op}"') for op in ("bconv2d", "bdense", "bmaxpool2d"))
    calls = len(re.findall(r"= (?:R\.[a-z_.0-9]+|T\.Call)\(", text))
    return {"binary_ops": binary, "bitpack_ops": text.count('"bnncc.bitpack"'),
            "packed_outputs": text.count('"out": "bitpacked"'),
            "float_ops": calls - binary - text.count('"bnncc.bitpack"')}


def legalize(mod: tvm.IRModule, target: TargetSpec, num_cores: int | None = None) -> tvm.IRModule:
    """Graph passes, legalization and fusion: the unscheduled PrimFuncs (what tuning extracts its tasks from)."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    tvm_target = target.tvm_target(num_cores)
    mod = UseWeightLayout("HWIO")(optimize(mod))
    passes = cpu.library_dispatch_passes(tvm_target) + cpu.legalize_passes(tvm_target)
    # Bitpacks join the conv kernels producing their input once FuseOps has grouped those kernels.
    fuse_tir = next(i for i, p in enumerate(passes) if p.info.name == "FuseTIR")
    from .schedules import CONV_BLOCKS

    pack = PackInProducers(CONV_BLOCKS)
    with tvm_target:
        return tvm.transform.Sequential([*passes[:fuse_tir], pack, *passes[fuse_tir:]])(mod)


def lower(mod: tvm.IRModule, target: TargetSpec, num_cores: int | None = None, tuning=None) -> tvm.IRModule:
    """Graph passes, legalization, fusion and scheduling; returns the module ready for codegen.

    ``tuning`` (a :class:`bnncc.tune.TuningLog`): its tuned schedules replace bnncc's defaults for the PrimFuncs
    it has records for (marked scheduled, so :func:`schedule_module` leaves them alone)."""
    tvm_target = target.tvm_target(num_cores)
    mod = legalize(mod, target, num_cores)
    # --- tuning (bnncc.tune): apply the log's best records before the default schedules
    if tuning is not None:
        mod = tuning.apply(mod, tvm_target)
    # ---
    return schedule_module(mod, tvm_target)


def build(mod: tvm.IRModule, target: str | TargetSpec = "host", *, tuning_log=None) -> Executable:
    """Compile a Relax module (with bnncc ops) for ``target``.

    ``tuning_log``: None (bnncc's default schedules), ``"auto"`` (the log of ``tuning_logs/`` matching the target,
    if there is one), a log directory written by ``bnncc tune``, or a :class:`bnncc.tune.TuningLog`. How many
    ops it tuned is in ``Executable.stats["tuned_ops"]``."""
    spec = get_target(target)
    stats = graph_stats(optimize(mod))
    # --- tuning (bnncc.tune)
    tuning = None
    if tuning_log is not None:
        from .tune.log import TuningLog

        tuning = TuningLog.resolve(tuning_log, spec)
    ex = tvm.compile(lower(mod, spec, tuning=tuning), spec.tvm_target())
    if tuning is not None:
        stats.update(tuning.last_report)
    # ---
    return Executable(ex, spec, stats=stats)


def set_num_threads(n: int) -> int:
    """Threads of TVM's runtime pool for the kernels run from now on in this process; returns the count in use.

    TVM caps the pool at ``TVM_NUM_THREADS`` whenever it is reconfigured, so the variable is only ever raised
    (lowering it would cap every later call: set_num_threads(1) then (2) ran on one thread).
    """
    if n < 1:
        raise BnnccError(f"thread count must be at least 1, got {n}")
    cur = os.environ.get("TVM_NUM_THREADS", "")
    if not cur.isdigit() or int(cur) < n:
        os.environ["TVM_NUM_THREADS"] = str(n)
    tvm.get_global_func("runtime.config_threadpool")(1, n)
    return int(tvm.get_global_func("runtime.NumThreads")())


class Executable:
    """A compiled model: call it on numpy arrays; export it as one shared library."""

    def __init__(self, ex, target: TargetSpec | None = None, path: str | None = None, stats: dict | None = None):
        self._ex = ex
        self.target = target
        self.path = path
        self.stats = stats or {}
        self._vm = None

    @property
    def vm(self) -> relax.VirtualMachine:
        if self._vm is None:
            if self.target is not None and not self.target.is_native:
                raise BnnccError(f"this library was built for {self.target.name} ({self.target.arch}); "
                                 "run it on such a device (bnncc run --rpc) instead of here")
            self._vm = relax.VirtualMachine(self._ex, tvm.cpu())
        return self._vm

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
        kwargs = {}
        if self.target is not None and not self.target.is_native and self.target.cross_compiler:
            kwargs["fcompile"] = tvm.support.cc.cross_compiler(self.target.cross_compiler)
        fd, tmp = tempfile.mkstemp(suffix=path.suffix or ".so", dir=path.parent if path.parent.exists() else None)
        os.close(fd)
        try:
            self._ex.export_library(tmp, **kwargs)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path


def check_writable(path: Path) -> None:
    """Fail before any work when an output file cannot be written (e.g. its directory does not exist)."""
    parent = path.resolve().parent
    if not parent.is_dir():
        raise BnnccError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise BnnccError(f"{path}: directory {parent} is not writable")


def load(path: str | os.PathLike) -> Executable:
    """Load a library written by :meth:`Executable.export_library`."""
    path = Path(path)
    if not path.is_file():
        raise BnnccError(f"{path}: no such compiled model")
    from .rpc import library_arch

    arch = library_arch(path)
    if arch is not None and arch != platform.machine():
        raise BnnccError(f"{path}: built for {arch}, this machine is {platform.machine()}; run it on such a "
                         "device (bnncc run --rpc HOST:PORT --key KEY, or deploy/)")
    try:
        ex = tvm.runtime.load_module(str(path))
    except Exception as e:  # noqa: BLE001 - TVM raises many kinds
        raise BnnccError(f"{path}: not a library bnncc can load ({str(e).splitlines()[-1]})") from None
    return Executable(ex, None, str(path))


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
