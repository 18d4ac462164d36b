"""A call that native code may crash or hang on, run in a forked child process with a time limit.

Some libraries bnncc hands a user's bytes to fail natively on damaged input: HDF5 loops forever on some `.h5`
files, TVM's IR loader segfaults on some damaged tuning-log workloads (both found by tests/fuzz/). The child runs
the call and sends its picklable result back; if it does not finish in time or dies, :class:`Isolated` is raised
and this process never ran the call. Its side effects on files stay; those on memory do not.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Isolated(Exception):  # noqa: N818 - read as `except Isolated as e`
    """The isolated call hung (``timed_out``) or its process died (``how``)."""

    def __init__(self, how: str, timed_out: bool = False):
        self.how, self.timed_out = how, timed_out
        super().__init__(how)


def run_isolated(fn: Callable[[], T], timeout: float) -> T:
    """``fn()`` computed in a forked child; its exceptions are re-raised here (they must pickle)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, exit without running any of the parent's cleanup
        try:
            # SIGALRM's default action ends the process even inside a native loop: no child outlives its
            # parent's wait (e.g. when the parent is interrupted)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(timeout) + 2)
            for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL):
                signal.signal(sig, signal.SIG_DFL)  # a crash ends the child plainly (no inherited crash handler)
            os.close(r)
            try:
                result = ("ok", fn())
            except Exception as e:  # noqa: BLE001 - sent to the parent, raised there
                result = ("raise", e)
            try:
                data = pickle.dumps(result)
            except Exception as e:  # noqa: BLE001 - an exception that does not pickle
                data = pickle.dumps(("raise", RuntimeError(f"{type(e).__name__}: {e}")))
            with os.fdopen(w, "wb") as out:
                out.write(data)
        finally:
            os._exit(0)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise Isolated(f"did not finish within {timeout:g} s", timed_out=True)
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not chunks:
        raise Isolated(f"crashed (signal {-code})" if code < 0 else f"exited with status {code}")
    kind, value = pickle.loads(b"".join(chunks))  # written by our own child above
    if kind == "raise":
        raise value
    return value
