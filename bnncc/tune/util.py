"""Small helpers of the tuner: messages on stderr, one-line errors, atomic file writes."""

from __future__ import annotations

import sys
from pathlib import Path

from bnncc.errors import BnnccError
from bnncc.outputs import atomic_write

__all__ = ["RECORD_FILE", "WORKLOAD_FILE", "atomic_write", "check_log_dir", "say", "short_error"]

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


def say(msg: str) -> None:
    """A progress or warning line on stderr (the tuner's default ``progress``/``warn``)."""
    print(msg, file=sys.stderr, flush=True)


def short_error(e: BaseException) -> str:
    """The last non-empty line of an error (TVM's carry a traceback), at most 200 characters."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(e).__name__
    return msg[:200]




def check_log_dir(path: str | Path) -> Path:
    """A tuning log directory given by the user must exist and hold a record file (checked before any import
    of TVM; its records are checked line by line when it is opened)."""
    path = Path(path)
    if not path.is_dir():
        raise BnnccError(f"{path}: no such tuning log directory")
    if not (path / RECORD_FILE).is_file():
        raise BnnccError(f"{path}: not a tuning log (no {RECORD_FILE}; bnncc tune writes one)")
    return path
