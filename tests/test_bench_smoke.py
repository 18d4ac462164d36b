"""Smoke test of benchmarks/bench_x86.py and benchmarks/roofline.py: tiny shapes, 2 repeats, no timing assertions
(a test never fails on a timing)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# `benchmarks` is not an installed package: make the repository root importable under plain `pytest` too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_x86 as B  # noqa: E402
from benchmarks import contenders as C  # noqa: E402
from benchmarks import roofline as R  # noqa: E402

TINY = C.BconvLayer("T1", (1, 5, 6, 80), 24)  # 80 channels: two 64-bit words, the second one padded


def _threads():
    """(1, 2) where TVM's pool can give 2 threads; (1,) on one core or when the pool was made smaller earlier."""
    if R.cores_available() < 2:
        return (1,)
    try:
        R.set_tvm_threads(2)
    except RuntimeError:
        return (1,)
    return (1, 2)


def _finite_positive(v):
    return isinstance(v, float) and np.isfinite(v) and v > 0


@pytest.fixture(scope="module")
def roof():
    return {1: R.measure(1, seconds=0.002, repeats=2)}


def test_roofline_probe(roof):
    r = roof[1]
    assert _finite_positive(r.gmacs) and _finite_positive(r.gmacs_median)
    assert r.accumulators >= 12 and r.macs_per_call > 0


def test_roofline_probe_asm():
    probe = R.Probe(1)
    probe.check(reps=2)
    summary = R.asm_summary(probe.asm())
    assert summary["stack_refs"] == 0, summary  # accumulators stay in registers
    acc = probe.shape.accumulators
    from tvm.target import codegen

    if codegen.llvm_cpu_has_features(["avx512vpopcntdq"], probe.target):
        assert summary["vpopcntq_zmm"] == acc, summary
    else:
        assert summary["vpopcntq_zmm"] + summary["vpopcntq_ymm"] + summary["popcount_other"] > 0, summary


def test_set_tvm_threads():
    assert R.set_tvm_threads(1) == 1 == R.num_tvm_threads()
    with pytest.raises(ValueError):
        R.set_tvm_threads(0)


def test_bn_fold_matches_keras():
    model = C.bconv_layer_model(TINY.input_shape, TINY.filters, seed=2)
    bn = model.get_layer("bn")
    m, b = B.bn_fold(bn)
    acc = np.random.default_rng(0).normal(0, 20, (1, 2, 3, TINY.filters)).astype(np.float32)
    np.testing.assert_allclose(acc * m + b, bn(acc, training=False).numpy(), rtol=1e-5, atol=1e-4)


def test_bench_layer_rows(roof):
    threads = _threads()
    rows = B.bench_layer(TINY, threads, repeats=2, warmup=1, roofline=roof)
    assert [r["threads"] for r in rows] == list(threads)
    for row in rows:
        assert set(B.LAYER_COLUMNS) <= set(row), set(B.LAYER_COLUMNS) - set(row)
        assert row["layer"] == "T1"
        for col in B.LAYER_COLUMNS[2:]:
            assert isinstance(row[col], float) and np.isfinite(row[col]), (col, row[col])
        assert row["rel err vs LCE"] <= B.REL_TOL
    text = C.format_table(rows, B.LAYER_COLUMNS)
    assert "fraction of roofline" in text


def test_bench_networks_rows():
    entry = B.standin_entry((1, 6, 6, 64), 32, seed=1)
    rows = B.bench_networks([entry], (1,), repeats=2, warmup=1, burst_ms=0.2)  # warm bursts
    assert len(rows) == 1
    row = rows[0]
    assert set(B.NETWORK_COLUMNS) <= set(row), set(B.NETWORK_COLUMNS) - set(row)
    assert row["network"] == entry[0]
    for col in B.NETWORK_COLUMNS[2:]:
        assert isinstance(row[col], float) and np.isfinite(row[col]), (col, row[col])
    assert row["rel err vs LCE"] <= B.REL_TOL


def test_bench_networks_plain_callable():
    """The bnncc side of an entry may be any callable on a numpy array (a stand-in for bnncc.compile)."""
    name, model, ex = B.standin_entry((1, 4, 4, 64), 8, seed=3)
    rows = B.bench_networks([(name, model, lambda x: ex(x))], (1,), repeats=2, warmup=0, lce_xnnpack=False)
    assert rows[0]["LCE-indirect+XNNPACK ms"] is None
    assert _finite_positive(rows[0]["bnncc ms"])


def test_main_writes_results(tmp_path):
    assert B.main(["--layers", "", "--threads", "1", "--repeats", "2", "--roofline-seconds", "0.002",
                   "--networks", "standin", "--out", str(tmp_path / "x86")]) == 0
    assert (tmp_path / "x86-networks.md").read_text().count("standin-bconv") == 1
    assert (tmp_path / "x86-networks.json").exists()
