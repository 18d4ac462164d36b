"""Many ``bnncc`` command lines in one process, each as a user would run it, each result kept apart.

:func:`run_batch` starts ``python tests/cli_batch.py``, which calls :func:`bnncc.cli.main` for each case in its own
working directory with file descriptors 1 and 2 redirected to a file (so TVM/TensorFlow C++ output is captured
too), and reports one JSON line per case. TensorFlow and TVM are imported once for all cases, yet a case that
kills the process (SIGBUS, SIGSEGV) or hangs only ends that case: the parent records it and starts a new worker
for the remaining ones.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    rc: int | None  # None: the worker died (signal) or hung on this case
    output: str  # everything written to stdout and stderr
    crash: str = ""  # how the worker died, or the Python exception that escaped main()


def _worker() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    from bnncc.cli import main

    for line in sys.stdin:
        case = json.loads(line)
        os.chdir(case["cwd"])
        with tempfile.TemporaryFile("w+") as out:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            crash = ""
            try:
                rc = main(case["argv"])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException:  # noqa: BLE001 - reported to the parent as the case's failure
                rc, crash = 1, traceback.format_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            out.seek(0)
            proto.write(json.dumps({"rc": rc, "output": out.read(), "crash": crash}) + "\n")


def _env() -> dict[str, str]:
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def run_batch(cases: list[tuple[Path, list[str]]], timeout: float = 120.0) -> list[Result]:
    """Run each (working directory, argv) case; a case silent for ``timeout`` seconds counts as a hang."""
    results: list[Result] = []
    while len(results) < len(cases):
        proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=_env(), cwd=REPO)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            for cwd, argv in cases[len(results):]:
                proc.stdin.write(json.dumps({"cwd": str(cwd), "argv": [str(a) for a in argv]}) + "\n")
                proc.stdin.flush()
                if not sel.select(timeout):
                    results.append(Result(None, "", f"no result within {timeout:.0f} s (hang)"))
                    break
                line = proc.stdout.readline()
                if not line:
                    proc.wait(10)
                    results.append(Result(None, "", f"worker died with exit status {proc.returncode}"))
                    break
                r = json.loads(line)
                results.append(Result(r["rc"], r["output"], r["crash"]))
        except BrokenPipeError:
            proc.wait(10)
            results.append(Result(None, "", f"worker died with exit status {proc.returncode}"))
        finally:
            sel.close()
            proc.kill()
            proc.wait()
    return results


if __name__ == "__main__":
    _worker()
