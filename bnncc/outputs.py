"""Writing what the user asked for without losing anything: every output file is written to a temporary file in
its directory and renamed over the target at once (a failure or a crash leaves the old file as it was, never a
half-written one), and an output flag may not point at an input or at a directory.

Standard library only: the CLI checks outputs before it imports TensorFlow or TVM.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from .errors import BnnccError


def check_writable(path: str | os.PathLike) -> None:
    """Fail before any work when an output file cannot be written (its directory is missing or read-only, or
    the path is a directory)."""
    path = Path(path)
    if path.is_dir():
        raise BnnccError(f"{path}: is a directory; give a file name for the output")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise BnnccError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise BnnccError(f"{path}: directory {parent} is not writable")


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], flag: str = "-o") -> None:
    """Refuse an output path that names one of the inputs (it would be overwritten by the result)."""
    out = Path(output)
    for i in inputs:
        p = Path(i)
        same = p.exists() and out.exists() and os.path.samefile(p, out)
        if same or out.resolve() == p.resolve():
            raise BnnccError(f"{flag} {output}: is also an input ({i}); write the output to another file")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file object whose content replaces ``path`` when the block ends without an exception (else ``path``
    keeps its old content and the temporary file is removed)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` at once: a reader (or a crash) never sees a half-written file."""
    with atomic_file(path, "w") as f:
        f.write(text)


def save_outputs(output: str | os.PathLike, outs: Sequence) -> list[str]:
    """Model outputs as .npy: one to exactly ``output``; several to ``<output without .npy>.<i>.npy``. Each
    written atomically, through a file object (numpy appends ".npy" to a name it is given, not to a file)."""
    import numpy as np

    if len(outs) == 1:
        paths = [os.fspath(output)]
    else:
        base = os.fspath(output).removesuffix(".npy")
        paths = [f"{base}.{i}.npy" for i in range(len(outs))]
    for path, o in zip(paths, outs, strict=True):
        with atomic_file(path) as f:
            np.save(f, o)
    return paths
