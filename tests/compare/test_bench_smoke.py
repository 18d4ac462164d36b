"""Smoke test of the x86 comparison (bnncc.compare: layers, networks, the command line) and of the roofline probe:
tiny shapes, 2 repeats, no timing assertions (a test never fails on a timing)."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bnncc.compare import contenders as C  # noqa: E402
from bnncc.compare import layers as L  # noqa: E402
from bnncc.compare import networks as N  # noqa: E402
from bnncc.compare import roofline as R  # noqa: E402
from bnncc.compare import x86  # noqa: E402
from bnncc.compare.results import format_table  # noqa: E402
from bnncc.targets import isa  # noqa: E402

TINY = L.BconvLayer("T1", (1, 5, 6, 80), 24)  # 80 channels: two 64-bit words, the second one padded


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
    # AVX2's 16 ymm registers hold 10 accumulators beside the nibble table's registers (roofline._TILES)
    assert r.accumulators >= (10 if r.isa_path == "avx2-lut" else 12) and r.macs_per_call > 0
    assert r.isa_path == R.isa_path() == isa("host").popcount_path  # the results say which path was measured


def _check_asm_form(summary, path, acc):
    """The hot loop computes ``acc`` popcounts the way ``path`` does, with every accumulator in a register."""
    assert summary["isa_path"] == path, summary
    assert summary["stack_refs"] == 0, summary  # accumulators stay in registers
    if path == "avx512-vpopcntdq":
        assert summary["vpopcntq_zmm"] == acc and summary["lut_vpshufb"] == 0, summary
    elif path in ("avx2-lut", "avx512bw-lut"):  # the nibble table: split, look up twice, add, sum the bytes
        assert summary["vpopcntq_zmm"] + summary["vpopcntq_ymm"] + summary["popcount_other"] == 0, summary
        assert summary["register"] == ("ymm" if path == "avx2-lut" else "zmm"), summary
        assert summary["lut_vpshufb"] == summary["lut_vpand"] == 2 * acc, summary
        assert summary["lut_vpsrlw"] == summary["lut_vpaddb"] == summary["lut_vpsadbw"] == acc, summary
    else:
        assert summary["vpopcntq_zmm"] + summary["vpopcntq_ymm"] + summary["popcount_other"] > 0, summary
    if path != "scalar":
        assert summary["popcounts"] == summary["xor"] == summary["add"] == acc, summary


def test_roofline_probe_asm():
    probe = R.Probe(1)
    probe.check(reps=2)
    assert probe.isa_path == isa("host").popcount_path
    _check_asm_form(R.asm_summary(probe.asm()), probe.isa_path, probe.shape.accumulators)


@pytest.mark.parametrize("target, path", [("x86-avx512", "avx512-vpopcntdq"), ("x86", "avx2-lut")])
def test_roofline_probe_asm_of_named_targets(target, path):
    """Each x86 form on any host: the probe compiled for a named target (icelake-server, haswell), not run."""
    assert R.isa_path(target) == path
    shape = R.default_shape(target)
    _check_asm_form(R.asm_summary(R.probe_asm(target, shape)), path, shape.accumulators)


def test_set_tvm_threads():
    assert R.set_tvm_threads(1) == 1 == R.num_tvm_threads()
    with pytest.raises(ValueError):
        R.set_tvm_threads(0)


def test_bn_fold_matches_keras():
    model = C.bconv_layer_model(TINY.input_shape, TINY.filters, seed=2)
    bn = model.get_layer("bn")
    m, b = L.bn_fold(bn)
    acc = np.random.default_rng(0).normal(0, 20, (1, 2, 3, TINY.filters)).astype(np.float32)
    np.testing.assert_allclose(acc * m + b, bn(acc, training=False).numpy(), rtol=1e-5, atol=1e-4)


def test_bench_layer_rows(roof):
    threads = _threads()
    rows = L.bench_layer(TINY, threads, repeats=2, warmup=1, roofline=roof)
    assert [r["threads"] for r in rows] == list(threads)
    for row in rows:
        assert set(L.LAYER_COLUMNS) <= set(row), set(L.LAYER_COLUMNS) - set(row)
        assert row["layer"] == "T1"
        for col in L.LAYER_COLUMNS[2:]:
            assert isinstance(row[col], float) and np.isfinite(row[col]), (col, row[col])
        assert row["rel err vs LCE"] <= L.REL_TOL
    text = format_table(rows, L.LAYER_COLUMNS)
    assert "fraction of roofline" in text


def test_bench_networks_rows():
    entry = N.standin_entry((1, 6, 6, 64), 32, seed=1)
    rows = N.bench_networks([entry], (1,), repeats=2, warmup=1, burst_ms=0.2)  # warm bursts
    assert len(rows) == 1
    row = rows[0]
    assert set(N.NETWORK_COLUMNS) <= set(row), set(N.NETWORK_COLUMNS) - set(row)
    assert row["network"] == entry[0]
    for col in N.NETWORK_COLUMNS[2:]:
        assert isinstance(row[col], float) and np.isfinite(row[col]), (col, row[col])
    assert row["rel err vs LCE"] <= L.REL_TOL


def test_bench_networks_plain_callable():
    """The bnncc side of an entry may be any callable on a numpy array (a stand-in for bnncc.compile)."""
    name, model, ex = N.standin_entry((1, 4, 4, 64), 8, seed=3)
    rows = N.bench_networks([(name, model, lambda x: ex(x))], (1,), repeats=2, warmup=0, lce_xnnpack=False)
    assert rows[0]["LCE-indirect+XNNPACK ms"] is None
    assert _finite_positive(rows[0]["bnncc ms"])


def test_main_writes_results(tmp_path):
    assert x86.main(["--layers", "", "--threads", "1", "--repeats", "2", "--roofline-seconds", "0.002",
                   "--networks", "standin", "--out", str(tmp_path / "x86")]) == 0
    assert (tmp_path / "x86-networks.md").read_text().count("standin-bconv") == 1
    assert (tmp_path / "x86-networks.json").exists()


def test_frontends_benchmark_smoke():
    """benchmarks/bench_frontends' code path on a small Keras/Larq model: the Keras import and the LCE .tflite
    import compiled, both timed with LCE's interpreter, their outputs close (not a timing assertion)."""
    from bnncc.compare import frontends
    from bnncc.testing import small_bnn

    (row,) = frontends.bench_frontends([("small_bnn", small_bnn())], repeats=2, warmup=1, burst_ms=0.0,
                                       tuning_log=None)
    for col in ("Keras import ms", ".tflite import ms", "LCE ms", ".tflite / Keras", "LCE / Keras"):
        assert _finite_positive(row[col]), (col, row)
    assert row["binary ops Keras/.tflite"] == "3/3", row
    assert row["rel err .tflite vs Keras"] < 1e-4 and row["rel err Keras vs LCE"] < 1e-4, row
    assert set(row) == set(frontends.COLUMNS)
