"""Run a compiled model on a remote device through a TVM RPC tracker (``bnncc run --rpc HOST:PORT --key KEY``).

The device runs the stock TVM RPC server (``python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY``; see
``deploy/README.md``), e.g. a Raspberry Pi, a phone, or the emulated arm64 device of :mod:`bnncc.device`.
:func:`run_remote` requests a session for ``key`` from the tracker, uploads the library written by
``bnncc compile --target aarch64|rasp4|pixel1``, runs the Relax VM's ``main`` there and returns numpy arrays;
:func:`time_remote` measures it there with TVM's time evaluator, :func:`time_kernels_remote` each of its kernels
(``bnncc profile --rpc``, with the signature :func:`remote_signature` reads there).

Every failure is a :class:`bnncc.errors.BnnccError` with a one-line reason (no TVM traceback), and every step is
bounded in time: an unreachable tracker, no server registered under the key, no server free within
``request_timeout``, a library the device cannot load, inputs of the wrong shape, a run longer than
``session_timeout`` and a server that dies mid-request all end in an error, never in a hang.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bnncc.elfcheck import ELF_MACHINES, LibraryError, elf_machine, verify_library
from bnncc.errors import BnnccError

from .tracker import RpcError, request_session

DEFAULT_SESSION_TIMEOUT = 120.0
DEFAULT_REQUEST_TIMEOUT = 60.0
_GRACE = 30.0  # beyond the session timeout: the server's own timeout message should come first

T = TypeVar("T")


class RemoteError(RpcError):
    """Running a model on a remote device failed (tracker, session, upload, run)."""


# -------------------------------------------------------------------------------------------- helpers
def library_arch(path: str | Path) -> str | None:
    """The machine of an ELF shared library ("aarch64", "x86_64", ...), None if it is not ELF."""
    try:
        with open(path, "rb") as f:
            return elf_machine(f.read(20))
    except OSError:
        return None


def device_machine(sess, key: str) -> str | None:
    """The architecture of the device behind an RPC session: asked from its TVM when the server has the compiler
    library, else the key's first word when it names one (``aarch64-qemu``); None if neither tells."""
    try:
        triple = str(sess.get_function("target.llvm_get_system_triple")())
        return _machine_name(triple.split("-")[0])
    except Exception:  # noqa: BLE001 - a runtime-only server has no such function
        pass
    word = _machine_name(key.split("-")[0].lower())
    return word if word in ELF_MACHINES.values() else None


def _machine_name(word: str) -> str:
    return {"arm64": "aarch64", "amd64": "x86_64", "aarch64_be": "aarch64"}.get(word, word)


def _last_line(e: BaseException) -> str:
    """The message of a TVM error without its traceback: its last non-empty line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


# How TVM 0.27 reports a dead peer: "Check failed: (code == RPCCode::kReturn) is false: code=kShutdown" (the
# server process killed mid-call), socket errors from the RPC channel, or a Python ConnectionError.
_LOST = ("kShutdown", "RPCCode::", "Connection reset", "connection reset", "Broken pipe", "broken pipe",
         "SockChannel", "Socket closed", "socket closed", "Connection refused")


def _connection_lost(e: BaseException) -> bool:
    return isinstance(e, ConnectionError | EOFError) or any(s in str(e) for s in _LOST)


def _as_inputs(inputs: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """numpy arrays as the model takes them: float64 (numpy's default) is taken as float32, like bnncc.load."""
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    arrays = [np.asarray(x) for x in inputs]
    return [np.ascontiguousarray(a, np.float32 if a.dtype == np.float64 else a.dtype) for a in arrays]


def _argument_error(e: BaseException, inputs: list[np.ndarray]) -> RemoteError | None:
    """The Relax VM's argument check failing on the device, as one line naming the input and the shapes."""
    msg = str(e)
    m = re.search(r"loc=param\[(\d+)\], param=(\w+), annotation=R\.Tensor\(\(([^)]*)\), dtype=\"(\w+)\"\)", msg)
    if m:
        i = int(m.group(1))
        given = f"shape {tuple(inputs[i].shape)} {inputs[i].dtype}" if i < len(inputs) else "nothing"
        return RemoteError(f"input {i} ({m.group(2)}): the model expects shape ({m.group(3)}) {m.group(4)}, "
                           f"got {given}")
    m = re.search(r"expects (\d+) arguments? \(([^)]*)\), but (\d+) arguments? (?:were|was) provided", msg)
    if m:
        return RemoteError(f"the model takes {m.group(1)} input(s) ({m.group(2)}), got {len(inputs)}")
    return None


def _bounded(fn: Callable[[], T], seconds: float, what: str) -> T:
    """``fn()`` in a daemon thread; a :class:`RemoteError` if it has not returned after ``seconds``.

    A last resort: the RPC server's session timeout and a closed socket normally end a call first; this also
    covers a device that vanishes without closing its connection (a network cable pulled)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BnnccError as e:
            # Without its traceback and context (the TVM error): their frames would keep the remote objects,
            # hence the session and the server, alive until a garbage collection.
            e.__context__ = e.__cause__ = None
            result["error"] = e.with_traceback(None)
        except BaseException as e:  # noqa: BLE001 -- re-raised in the caller's thread
            result["error"] = e

    t = threading.Thread(target=run, name="bnncc-rpc", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise RemoteError(f"{what}: no answer from the device within {seconds:.0f} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


# ------------------------------------------------------------------------------------------ sessions
def connect(tracker: str, key: str, *, session_timeout: float = DEFAULT_SESSION_TIMEOUT,
            request_timeout: float = DEFAULT_REQUEST_TIMEOUT, priority: int = 1):
    """A ``tvm.rpc.RPCSession`` on a server registered as ``key`` at the tracker ``HOST:PORT`` (bounded waits;
    see :func:`bnncc.rpc.tracker.request_session`)."""
    try:
        return request_session(tracker, key, session_timeout=session_timeout, priority=priority,
                               request_timeout=request_timeout)
    except RpcError as e:
        raise RemoteError(str(e)) from None


class _Remote:
    """One session with the model loaded: upload → load → Relax VM, each failure explained.

    Everything that references the session (module, VM, device, remote tensors) is held here and dropped by
    :meth:`close`: a TVM RPC server serves one session at a time, and a session stays open (the server busy)
    as long as any of those objects lives."""

    def __init__(self, model_so: Path, tracker: str, key: str, session_timeout: float, request_timeout: float):
        self.session_timeout = session_timeout
        self.where = f"device {key!r} (tracker {tracker})"
        self.sess = self.dev = self.vm = None
        self.args: list = []
        self.sess = connect(tracker, key, session_timeout=session_timeout, request_timeout=request_timeout)
        self.started = time.monotonic()
        try:
            self._check_arch(model_so, key)
            self._load(model_so)
        except BaseException:
            self.close()
            raise

    def _check_arch(self, model_so: Path, key: str) -> None:
        """Refuse, before uploading it, a library built for another architecture than the device's."""
        lib = library_arch(model_so)
        device = device_machine(self.sess, key)
        if lib is not None and device is not None and lib != device:
            raise RemoteError(f"{model_so}: built for {lib}, but {self.where} is {device}: not uploaded (compile "
                              "it with the device's --target, e.g. rasp4 or aarch64)")

    def _load(self, model_so: Path) -> None:
        from tvm import relax

        try:
            self.sess.upload(str(model_so))
            rexec = self.sess.load_module(model_so.name)
        except Exception as e:  # noqa: BLE001 -- TVM raises many kinds
            if self._lost(e):
                raise self._lost_error(e, "loading the model") from None
            arch = library_arch(model_so)
            hint = (f" (it is an {arch} library: compile it with the device's --target, e.g. rasp4 or aarch64)"
                    if arch else " (not an ELF shared library)")
            raise RemoteError(f"{self.where} cannot load {model_so.name}{hint}: {_last_line(e)}") from None
        self.dev = self.sess.cpu()
        try:
            self.vm = relax.VirtualMachine(rexec, self.dev)
        except Exception as e:  # noqa: BLE001
            if self._lost(e):
                raise self._lost_error(e, "loading the model") from None
            raise RemoteError(f"{self.where}: {model_so.name} is not a bnncc/Relax model: {_last_line(e)}") from None

    def close(self) -> None:
        self.args = []
        self.vm = self.dev = self.sess = None

    def _lost(self, e: BaseException) -> bool:
        import tvm

        return isinstance(e, tvm.error.RPCSessionTimeoutError) or _connection_lost(e)

    def _lost_error(self, e: BaseException, when: str) -> RemoteError:
        import tvm

        if isinstance(e, tvm.error.RPCSessionTimeoutError) or (
            self.session_timeout and time.monotonic() - self.started >= 0.95 * self.session_timeout
        ):
            return RemoteError(f"{self.where}: the session timeout ({self.session_timeout:g} s) expired while "
                               f"{when} (a slow device needs a longer session_timeout)")
        return RemoteError(f"{self.where}: the connection was lost while {when} (the RPC server died or closed the "
                           f"session): {_last_line(e)}")

    def call(self, fn: Callable[[], T], inputs: list[np.ndarray], what: str) -> T:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            bad_input = _argument_error(e, inputs)
            if bad_input is not None:
                raise bad_input from None
            if self._lost(e):
                raise self._lost_error(e, what) from None
            raise RemoteError(f"{self.where}: {what} failed: {_last_line(e)}") from None

    def send(self, inputs: list[np.ndarray]) -> None:
        import tvm

        self.args = self.call(lambda: [tvm.runtime.tensor(x, device=self.dev) for x in inputs], inputs,
                              "sending the inputs")

    def run(self, func: str, inputs: list[np.ndarray]) -> np.ndarray | tuple[np.ndarray, ...]:
        return self.call(lambda: to_numpy(self.vm[func](*self.args)), inputs, f"running {func}")


def to_numpy(out, container: type = tuple) -> np.ndarray | tuple[np.ndarray, ...] | list:
    """A Relax VM output (a tensor or a nested tuple of them) as numpy: a tuple output as ``container``."""
    if hasattr(out, "numpy"):
        return out.numpy()
    return container(to_numpy(o, container) for o in out)


def _check_model(model_so: str | Path) -> Path:
    """The library must be a complete ELF shared library (any architecture) before a session is requested."""
    path = Path(model_so)
    if not path.is_file():
        raise RemoteError(f"{path}: no such compiled model")
    try:
        verify_library(path)
    except LibraryError as e:
        raise RemoteError(str(e)) from None
    return path


# -------------------------------------------------------------------------------------------- public
def run_remote(model_so: str | Path, inputs: Sequence[np.ndarray] | np.ndarray, tracker: str, key: str,
               session_timeout: float = DEFAULT_SESSION_TIMEOUT, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
               func: str = "main") -> np.ndarray | tuple[np.ndarray, ...]:
    """Run the compiled model ``model_so`` on the device registered as ``key`` at the tracker ``HOST:PORT``.

    Returns the output as numpy (a tuple for a tuple output), like calling a local :class:`bnncc.Executable`.
    ``session_timeout``: the whole session (upload, load, run) must finish within it (the server enforces it;
    ``0`` means no limit); ``request_timeout``: how long to wait for a free server. Raises :class:`RemoteError`.
    """
    path = _check_model(model_so)
    arrays = _as_inputs(inputs)
    return _in_session(path, tracker, key, session_timeout, request_timeout, f"running {path.name} on {key!r}",
                       lambda remote: remote.run(func, arrays), arrays)


def _in_session(path: Path, tracker: str, key: str, session_timeout: float, request_timeout: float, what: str,
                work: Callable[[_Remote], Any], arrays: list[np.ndarray]):
    """``work(remote)`` in one session with the model loaded and ``arrays`` uploaded; the session is always
    closed, and the whole call is bounded by the request and session timeouts (never a hang)."""

    def session():
        remote = _Remote(path, tracker, key, session_timeout, request_timeout)
        try:
            remote.send(arrays)
            return work(remote)
        finally:
            remote.close()

    limit = request_timeout + (session_timeout or 24 * 3600) + _GRACE
    return _bounded(session, limit, what)


def time_remote(model_so: str | Path, inputs: Sequence[np.ndarray] | np.ndarray, tracker: str, key: str, *,
                repeats: int = 20, number: int = 1, min_repeat_ms: int = 0,
                session_timeout: float = DEFAULT_SESSION_TIMEOUT, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                func: str = "main") -> list[float]:
    """Seconds per run of ``func`` measured on the device (TVM's time evaluator, inputs already there):
    ``repeats`` samples, each the mean of ``number`` runs, after one warm-up run. Raises :class:`RemoteError`.

    (``bnncc bench --rpc`` reports their median; on the qemu device timings mean nothing.)
    """
    path = _check_model(model_so)
    arrays = _as_inputs(inputs)

    def work(remote: _Remote) -> list[float]:
        remote.run(func, arrays)  # warm-up; checks the inputs

        def evaluate():
            remote.vm.save_function(func, "bnncc_timed", *remote.args, include_return=False)
            ev = remote.vm.time_evaluator("bnncc_timed", remote.dev, number=number, repeat=repeats,
                                          min_repeat_ms=min_repeat_ms)
            return [float(r) for r in ev().results]

        return remote.call(evaluate, arrays, "timing")

    return _in_session(path, tracker, key, session_timeout, request_timeout, f"timing {path.name} on {key!r}",
                       work, arrays)


def remote_signature(model_so: str | Path, tracker: str, key: str, *,
                     session_timeout: float = DEFAULT_SESSION_TIMEOUT,
                     request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> dict[str, Any] | None:
    """The signature ``model_so`` records (:func:`bnncc.runtime.read_signature`), read on the device: a library
    of another architecture cannot be loaded here. None for a library that records none."""
    import json

    path = _check_model(model_so)

    def work(remote: _Remote):
        try:
            sig = json.loads(str(remote.vm["bnncc_signature"]()))
        except Exception:  # noqa: BLE001 -- no such function (an older library), or not JSON
            return None
        return sig if isinstance(sig, dict) and isinstance(sig.get("inputs"), list) else None

    return _in_session(path, tracker, key, session_timeout, request_timeout,
                       f"reading the signature of {path.name} on {key!r}", work, [])


# ------------------------------------------------------------------------------------- kernels timed on the device
# A Relax VM library loads as the VM executable, whose kernels are functions of the library module it imports.
# TVM's time evaluator looks a function up in the module it is given, not in that module's imports, and over RPC
# an import cannot be reached. A copy of the library with its import tree hidden (the loader's symbol renamed,
# same length) loads as the bare library module: its kernels are then functions of the module itself.
_IMPORT_TREE_SYMBOL = b"__tvm_ffi__library_bin\x00"
_HIDDEN_SYMBOL = b"__bnncc_kernels_only__\x00"


def kernels_only_copy(model_so: Path, out: Path) -> Path:
    """A copy of ``model_so`` that loads as its kernel library (see above), written to ``out``."""
    data = model_so.read_bytes()
    if _IMPORT_TREE_SYMBOL not in data:
        raise RemoteError(f"{model_so}: not a TVM library (it has no import tree)")
    out.write_bytes(data.replace(_IMPORT_TREE_SYMBOL, _HIDDEN_SYMBOL))
    return out


def _random_array(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Data of a kernel argument: normal floats, integers over their whole range (bit-packed words, counts)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


def time_kernels_remote(model_so: str | Path, inputs: Sequence[np.ndarray] | np.ndarray,
                        kernels: Sequence[tuple[str, Sequence[dict[str, Any]]]], tracker: str, key: str, *,
                        repeats: int = 20, threads: int | None = None, min_sample_ms: float = 1.0,
                        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
                        request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> dict[str, Any]:
    """Each kernel of ``model_so`` and its whole ``main`` timed on the device registered as ``key``.

    ``kernels``: (PrimFunc name, argument shapes ``{"shape", "dtype"}``) per kernel call, in execution order, as
    the library records them. Each kernel runs alone, on random tensors of its argument shapes, with TVM's time
    evaluator on the device: one sample is the mean of enough back-to-back calls to last ``min_sample_ms`` (so
    its caches are warm). ``repeats`` rounds, each timing every kernel once and then ``main`` once (the inputs
    already on the device): both see the same load. Returns ``{"kernel_s": [round][kernel] seconds,
    "end_to_end_s": [round] seconds, "threads": TVM threads on the device, "cpu": its LLVM CPU name or None}``.
    Raises :class:`RemoteError`."""
    import tempfile

    import tvm

    path = _check_model(model_so)
    arrays = _as_inputs(inputs)
    rng = np.random.default_rng(0)

    def work(remote: _Remote) -> dict[str, Any]:
        remote.run("main", arrays)  # warm-up; checks the inputs
        sess, dev = remote.sess, remote.dev

        def setup():
            if threads:
                sess.get_function("runtime.config_threadpool")(1, threads)
            with tempfile.TemporaryDirectory(prefix="bnncc-kernels-") as td:
                copy = kernels_only_copy(path, Path(td) / f"kernels-{path.name}")
                sess.upload(str(copy))
                lib = sess.load_module(copy.name)
            evaluators = []
            for name, args in kernels:
                try:
                    lib.get_function(name)
                except Exception:  # noqa: BLE001 -- TVM raises AttributeError/RuntimeError
                    raise RemoteError(f"{path.name} has no kernel {name}, which its kernel record lists (built by "
                                      "another bnncc?)") from None
                tensors = [tvm.runtime.tensor(_random_array(rng, a["shape"], a["dtype"]), device=dev) for a in args]
                once = min(lib.time_evaluator(name, dev, number=1, repeat=3)(*tensors).results)
                number = int(min(10_000, max(1, np.ceil(min_sample_ms * 1e-3 / max(once, 1e-9)))))
                evaluators.append((lib.time_evaluator(name, dev, number=number, repeat=1), tensors))
            remote.vm.save_function("main", "bnncc_timed", *remote.args, include_return=False)
            whole = remote.vm.time_evaluator("bnncc_timed", dev, number=1, repeat=1)
            return evaluators, whole

        evaluators, whole = remote.call(setup, arrays, "preparing the kernels")

        def measure():
            per_kernel, e2e = [], []
            for _ in range(repeats):
                per_kernel.append([ev(*tensors).results[0] for ev, tensors in evaluators])
                e2e.append(whole().results[0])
            return per_kernel, e2e

        per_kernel, e2e = remote.call(measure, arrays, "timing the kernels")
        used = int(sess.get_function("runtime.NumThreads")())
        try:
            cpu = str(sess.get_function("target.llvm_get_system_cpu")())
        except Exception:  # noqa: BLE001 - a runtime-only server has no compiler library
            cpu = None
        return {"kernel_s": per_kernel, "end_to_end_s": e2e, "threads": used, "cpu": cpu}

    return _in_session(path, tracker, key, session_timeout, request_timeout,
                       f"timing the kernels of {path.name} on {key!r}", work, arrays)
