"""The MetaSchedule JSON databases of a tuning log: every line checked before TVM's loader (which aborts on the
first bad one) and the bad ones moved aside, the records of a workload, their run times."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tvm

from bnncc.errors import BnnccError
from bnncc.isolated import Isolated, run_isolated

from .util import RECORD_FILE, WORKLOAD_FILE, atomic_write, say, short_error

SANITIZE_TIMEOUT = 600.0  # seconds to check a log's lines (a tuned model's log takes well under one)


def _json_line_ok(kind: str, obj: Any, n_workloads: int) -> str | None:
    """Why a parsed line is not a valid workload/record (shape only), None if it looks right."""
    if kind == "workload":
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)):
            return "not a [hash, module] pair"
        return _module_problem(obj[1])
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int) and isinstance(obj[1], list)):
        return "not a [workload index, record] pair"
    if not 0 <= obj[0] < n_workloads:
        return f"workload index {obj[0]} out of range (the workload file has {n_workloads} valid lines)"
    if len(obj[1]) != 4:
        return "a record has 4 fields (trace, run_secs, target, args_info)"
    return None


def _module_problem(module: Any) -> str | None:
    """A workload's module is base64 of an 8-byte little-endian length and that many bytes of JSON. TVM trusts
    the length: a damaged one made it allocate gigabytes (the fuzzer found it), so it is checked here first."""
    if not isinstance(module, str):
        return "its module is not a string"
    try:
        raw = base64.b64decode(module, validate=True)
    except (ValueError, TypeError):
        return "its module is not base64"
    if len(raw) < 8 or int.from_bytes(raw[:8], "little") != len(raw) - 8:
        return "its module's length header does not match its size"
    try:
        json.loads(raw[8:])
    except (ValueError, RecursionError):
        return "its module is not JSON"
    return None


def _move_aside(path: Path, lines: Sequence[tuple[int, str, str]]) -> None:
    """Append the bad lines (with where they came from and why) to ``<path>.corrupt``; nothing is lost."""
    with open(f"{path}.corrupt", "a") as f:
        for lineno, text, why in lines:
            f.write(f"# {path.name} line {lineno}: {why}\n{text.rstrip(chr(10))}\n")


def _lines(path: Path) -> list[str]:
    """The lines of a database file as TVM's loader splits them: at "\n" only (str.splitlines also splits at
    \r, \x0c, \x1c, \u2028..., and records would then point at other workloads than TVM reads: it crashed)."""
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def sanitize_database(directory: str | Path, *, warn: Callable[[str], None] = say, parse: bool = True) -> int:
    """Check every line of a MetaSchedule JSON database (``database_workload.json`` and
    ``database_tuning_record.json`` in ``directory``) and move the lines that do not parse to ``<file>.corrupt``,
    with a warning naming the file and line; records of a corrupt workload go with it, and the remaining records
    are renumbered. TVM's loader aborts on the first bad line: this runs before it. Returns the lines moved.
    ``parse=False``: bnncc's checks only, without TVM's parser (which a damaged workload can crash: the fuzz
    target of these checks runs them in-process, :func:`open_database` runs TVM's in a child)."""
    from tvm.s_tir.meta_schedule.database import TuningRecord, Workload

    directory = Path(directory)
    wpath, rpath = directory / WORKLOAD_FILE, directory / RECORD_FILE
    moved = 0
    # workloads
    wlines = _lines(wpath)
    good_w: list[str] = []
    workloads: list[Any] = []
    remap: dict[int, int] = {}
    bad_w: list[tuple[int, str, str]] = []
    index = 0
    for lineno, text in enumerate(wlines, 1):
        if not text.strip():
            continue
        why = None
        try:
            obj = json.loads(text)
            why = _json_line_ok("workload", obj, 0)
            if why is None:
                workloads.append(Workload.from_json(obj) if parse else obj)
        except Exception as e:  # noqa: BLE001 - json, TVM parse errors
            why = why or short_error(e)
        if why is None:
            remap[index] = len(good_w)
            good_w.append(text if text.endswith("\n") else text + "\n")
        else:
            bad_w.append((lineno, text, why))
        index += 1
    # records
    rlines = _lines(rpath)
    good_r: list[str] = []
    bad_r: list[tuple[int, str, str]] = []
    n_all = index
    for lineno, text in enumerate(rlines, 1):
        if not text.strip():
            continue
        why = None
        try:
            obj = json.loads(text)
            why = _json_line_ok("record", obj, n_all)
            if why is None and obj[0] not in remap:
                why = f"its workload (entry {obj[0]} of {WORKLOAD_FILE}) is corrupt"
            if why is None:
                if parse:
                    TuningRecord.from_json(obj[1], workloads[remap[obj[0]]])
                if remap[obj[0]] != obj[0]:
                    text = json.dumps([remap[obj[0]], obj[1]]) + "\n"
        except Exception as e:  # noqa: BLE001
            why = why or short_error(e)
        if why is None:
            good_r.append(text if text.endswith("\n") else text + "\n")
        else:
            bad_r.append((lineno, text, why))
    for path, bad, good in ((wpath, bad_w, good_w), (rpath, bad_r, good_r)):
        if not bad:
            # TVM must read exactly the lines checked here: a line of blanks or bytes that are not UTF-8 (which
            # the fuzzer found: TVM failed, or crashed) are dropped or replaced, silently.
            if path.is_file() and path.read_bytes() != "".join(good).encode():
                atomic_write(path, "".join(good))
            continue
        for lineno, _text, why in bad:
            warn(f"bnncc: warning: {path}:{lineno}: corrupt tuning database line skipped ({why}); "
                 f"moved to {path.name}.corrupt")
        _move_aside(path, bad)
        atomic_write(path, "".join(good))
        moved += len(bad)
    return moved


def _sanitized(directory: Path) -> list[str]:
    warnings: list[str] = []
    sanitize_database(directory, warn=warnings.append)
    return warnings


def open_database(directory: str | Path, *, create: bool = True, warn: Callable[[str], None] = say):
    """A MetaSchedule ``JSONDatabase`` on ``directory`` after :func:`sanitize_database`. Opening an existing
    log to apply it (``create=False``, compile) sanitizes in a child process: TVM's IR loader segfaults on some
    damaged workloads (found by tests/fuzz/tuning_log.py), and a log that crashes it is refused with one line
    instead of taking the compile down. The tuner (``create=True``, its own log, threads running) does not fork."""
    from tvm.s_tir.meta_schedule.database import JSONDatabase

    directory = Path(directory)
    if create:
        directory.mkdir(parents=True, exist_ok=True)
        sanitize_database(directory, warn=warn)
        return JSONDatabase(str(directory / WORKLOAD_FILE), str(directory / RECORD_FILE), allow_missing=True)
    try:
        for line in run_isolated(lambda: _sanitized(directory), SANITIZE_TIMEOUT):
            warn(line)
    except Isolated as e:
        raise BnnccError(f"{directory}: reading this tuning log {e.how} in TVM's loader: it is damaged; re-tune "
                         "into a new directory (bnncc tune --log) or compile with --no-tuning") from None
    return JSONDatabase(str(directory / WORKLOAD_FILE), str(directory / RECORD_FILE), allow_missing=create)


def records_of(db, mod: tvm.IRModule) -> list:
    """All records of a workload (failed runs included), in the database's order."""
    if not db.has_workload(mod):
        return []
    wl = db.commit_workload(mod)
    return [r for r in db.get_all_tuning_records() if r.workload.same_as(wl)]


def run_ok(r) -> bool:
    """Whether a record's run succeeded (MetaSchedule records a failed one with a run time of 1e9 s or more)."""
    return r.run_secs is not None and len(r.run_secs) > 0 and all(float(s) < 1e9 for s in r.run_secs)


def mean_secs(r) -> float:
    """Mean run time of a record (seconds)."""
    return float(np.mean([float(s) for s in r.run_secs]))
