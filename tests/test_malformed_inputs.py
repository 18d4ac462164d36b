"""The malformed-file sweep: every format bnncc reads (compiled libraries, .npy inputs, .h5/.keras/SavedModel
models, tuning logs, arguments) broken in the ways of tests/malformed_cases.py, each run through the CLI as a
user would. Each must end with exit code 2 and exactly one ``bnncc: error:`` line naming the file and reason, no
traceback, no crash or hang, no output file written or changed, and no Lambda code run.

The cases run in one worker process (tests/cli_batch.py: TensorFlow and TVM imported once), which a crash or a
hang ends for its case only; the results are made once per session and each case is a test of its own.
"""

from __future__ import annotations

import json

import pytest
from cli_batch import run_batch
from malformed_cases import all_cases
from model_files import LAMBDA_MARKER
from test_cli import LEAK, TF_LOG_LINE

from bnncc.testing import shared_dir

CASES = all_cases()
USER_DATA = b"the user's existing file\n"


def _snapshot(directory):
    return {p.relative_to(directory).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(directory.rglob("*"))}


@pytest.fixture(scope="module")
def sweep(model_dir, tmp_path_factory):
    """Case id → (result, files before, files after), for every case."""
    with shared_dir(tmp_path_factory, "bnncc-malformed-sweep") as root:
        done = root / "results.json"
        if not done.exists():
            dirs = []
            for case in CASES:
                d = root / case.id
                d.mkdir()
                case.make(model_dir, d)
                for name in case.outputs:
                    if not (d / name).exists():
                        (d / name).write_bytes(USER_DATA)
                dirs.append(d)
            before = {c.id: {k: v.hex() if v is not None else None for k, v in _snapshot(d).items()}
                      for c, d in zip(CASES, dirs, strict=True)}
            results = run_batch([(d, c.argv) for c, d in zip(CASES, dirs, strict=True)])
            out = {c.id: {"rc": r.rc, "output": r.output, "crash": r.crash, "before": before[c.id],
                          "after": {k: v.hex() if v is not None else None for k, v in _snapshot(d).items()}}
                   for c, d, r in zip(CASES, dirs, results, strict=True)}
            done.write_text(json.dumps(out))
    return json.loads(done.read_text())


def test_the_sweep_has_at_least_100_cases():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(sweep, case):
    r = sweep[case.id]
    shown = f"bnncc {' '.join(case.argv)}: exit {r['rc']}\n{r['output']}\n{r['crash']}"
    assert not r["crash"], shown
    assert not LEAK.search(r["output"]), shown
    assert LAMBDA_MARKER not in r["after"], "the model's Lambda code ran"
    lines = [ln for ln in r["output"].splitlines() if ln.strip() and not TF_LOG_LINE.match(ln)]
    errors = [ln for ln in lines if ln.startswith("bnncc: error:")]
    if case.expect is None and r["rc"] == 0:  # a flip in bytes no reader looks at: the file is still good
        return
    assert r["rc"] == 2 and len(errors) == 1, shown
    assert errors[0] == lines[-1], shown  # nothing after the error
    if case.expect:
        assert case.expect in errors[0], shown
    assert r["after"] == r["before"], f"files changed:\n{shown}"  # no output written, none overwritten
