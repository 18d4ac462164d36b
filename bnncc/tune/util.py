"""Small helpers of the tuner: messages on stderr, one-line errors, atomic file writes."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def say(msg: str) -> None:
    """A progress or warning line on stderr (the tuner's default ``progress``/``warn``)."""
    print(msg, file=sys.stderr, flush=True)


def short_error(e: BaseException) -> str:
    """The last non-empty line of an error (TVM's carry a traceback), at most 200 characters."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(e).__name__
    return msg[:200]


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` at once: a reader (or a crash) never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
