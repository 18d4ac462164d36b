"""bnncc analyze on two tiny models: the report, its figures and its numbers are written; the RQ3 statistics on
known points. No assertion on a time (the machine is shared)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bnncc.analyze import run
from bnncc.analyze.stats import fit, outliers
from bnncc.testing import small_bnn

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("analyze")
    files = []
    for width in (16, 32):
        path = d / f"tiny{width}.h5"
        small_bnn(width, name=f"tiny{width}").save(path)
        files.append(str(path))
    return run(files, d / "out", threads=1, repeats=2, input_size=32, rq2_shapes=((8, 32),),
               progress=lambda _msg: None)


def test_report_embeds_figures_that_exist(report):
    text = report.read_text()
    assert "tiny16" in text and "tiny32" in text
    for heading in ("## RQ1", "## RQ2", "## RQ3"):
        assert heading in text
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert len(figures) == 3
    for name in figures:
        png = report.parent / name
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000  # drawn, not empty
    assert "Pixel 1" in text and "shared" in text


def test_numbers_and_profiles_are_written(report):
    data = json.loads((report.parent / "analysis.json").read_text())
    assert [n["name"] for n in data["networks"]] == ["tiny16", "tiny32"]
    assert data["networks"][1]["binary_macs"] > data["networks"][0]["binary_macs"] > 0
    assert data["rq3"]["macs"]["r"] is not None and len(data["rq2"]) == 1
    assert data["meta"]["roofline_gmacs"]["binary"] > 0 and data["meta"]["isa_path"]
    for name in ("tiny16", "tiny32"):
        p = json.loads((report.parent / "profiles" / f"{name}.json").read_text())
        assert p["layers_without_kernel"] == ["drop"]
        assert (report.parent / "profiles" / f"{name}-layers.png").read_bytes()[:8] == PNG


def test_fit_and_outliers():
    f = fit([1, 2, 3, 4], [1.0, 2.0, 3.0, 8.0])
    assert f["slope"] == pytest.approx(2.2) and 0 < f["r"] < 1
    # predictions 0.2, 2.4, 4.6, 6.8: a is 5× slower than the fit, c 0.65× (≥ 1.5× faster)
    assert [n for n, _ in outliers("abcd", f["ratios"])] == ["a", "c"]
    assert fit([5, 5], [1.0, 2.0])["r"] is None  # no spread in MACs: no line


def test_cli_bad_model_is_one_error_line(tmp_path):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "bnncc", "analyze", "--models", "quicknet,nosuchnet", "--out",
                        tmp_path], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("bnncc: error:")]
    assert len(errors) == 1 and "nosuchnet" in errors[0] and "Traceback" not in r.stderr
