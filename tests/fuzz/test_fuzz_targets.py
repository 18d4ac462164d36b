"""The fuzz targets of tests/fuzz/ in the default suite: each target runs a few seconds of atheris on its seed
corpus (in a subprocess: a crash must not take pytest down), and every input a fuzzer found a bug with
(tests/fuzz/regressions/<target>/) is replayed. The long mode is documented in benchmarks/results/fuzz.md."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.fuzz.<target> as `python -m` names them

from tests.fuzz.harness import TARGETS, checked  # noqa: E402

REGRESSIONS = sorted((REPO / "tests" / "fuzz" / "regressions").glob("*/*"))


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_run(target, tmp_path):
    pytest.importorskip("atheris")
    env = {**os.environ, "BNNCC_FUZZ_CORPUS": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    # -rss_limit_mb=0: Linux hands a child the peak RSS of the process it was forked from (a pytest worker that
    # has loaded TensorFlow, TVM and PyTorch: 3.6 GB), which libFuzzer's 2 GB check then reads as its own.
    # The long runs (benchmarks/results/fuzz.md) start from a shell and keep the limit.
    r = subprocess.run([sys.executable, "-m", f"tests.fuzz.{target}", "-runs=3000", "-max_total_time=5",
                        "-rss_limit_mb=0"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Done " in r.stderr, r.stderr[-4000:]
    assert not list(tmp_path.glob(f"{target}-crash-*"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[f"{p.parent.name}/{p.name}" for p in REGRESSIONS])
def test_found_input_is_handled(path):
    module = importlib.import_module(f"tests.fuzz.{path.parent.name}")
    checked(module.one_input)(path.read_bytes())  # raises for anything but a one-line BnnccError


@pytest.mark.parametrize("path", sorted((REPO / "tests" / "fuzz" / "regressions" / "tuning_log").glob("*")),
                         ids=lambda p: p.name)
def test_found_tuning_log_is_handled_by_the_compile_path(path, tmp_path):
    """The whole path of `compile --tuning-log`: bnncc's checks and TVM's loader (in a child process)."""
    from bnncc.errors import BnnccError
    from bnncc.tune import database, log

    parts = (path.read_bytes().split(b"\0", 2) + [b"", b""])[:3]
    for name, part in zip((database.WORKLOAD_FILE, database.RECORD_FILE, log.SUMMARY_FILE), parts, strict=True):
        (tmp_path / name).write_bytes(part)
    try:
        database.open_database(tmp_path, create=False, warn=lambda _msg: None).get_all_tuning_records()
    except BnnccError as e:
        assert "\n" not in str(e)


@pytest.mark.parametrize("target", TARGETS)
def test_seeds_are_accepted_or_refused_cleanly(target):
    module = importlib.import_module(f"tests.fuzz.{target}")
    seeds = module.seeds()
    assert seeds
    for data in seeds.values():
        checked(module.one_input)(data)
