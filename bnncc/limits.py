"""Bounds on what a user may ask for, checked before any work (and documented in README.md):

* threads: 1 to :func:`max_threads`, the cores of this machine. TVM's thread pool spins while it waits, so
  more threads than cores only slow every kernel down (8 threads on 2 busy cores took 14x as long as 1), and
  ``--threads 100000`` started as many OS threads and hung; 0 is refused rather than meaning "all cores":
  omitting ``--threads`` uses every core.
* tensors: at most :data:`MAX_TENSOR_ELEMENTS` elements in any model input (a bigger one cannot be allocated
  on the machines bnncc targets, and TVM's kernels index with 32-bit integers).
"""

from __future__ import annotations

import os

from .errors import BnnccError

MAX_TENSOR_ELEMENTS = 2**31 - 1


def max_threads() -> int:
    return os.cpu_count() or 1


def check_threads(n: int, what: str = "--threads") -> int:
    """``n`` if it is a usable thread count, else a :class:`BnnccError` stating the range."""
    if not 1 <= n <= max_threads():
        raise BnnccError(f"{what} must be between 1 and {max_threads()} (the cores of this machine), got {n}; "
                         "omit it to use every core")
    return n
