"""bnncc profile: every source layer of a Keras model attributed to the kernels that compute it through fusion,
MACs per precision, the memory plan, the report and its charts. No assertion on a time (the machine is shared):
only that times were measured and add up consistently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bnncc
from bnncc.profile import profile
from bnncc.profile.measure import Timings
from bnncc.profile.report import build_profile, format_profile
from bnncc.testing import small_bnn

REPO = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def model():
    return small_bnn()


@pytest.fixture(scope="module")
def exe(model):
    return bnncc.compile(model, "host")


def _kernel_of(kernels, layer):
    return [k for k in kernels if layer in k["layers"]]


def test_every_layer_is_recorded_in_graph_order(model, exe):
    names = [name for name, _ in exe.signature["layers"]]
    assert names == [layer.name for layer in model.layers if not layer.name == "image"]
    kinds = dict(exe.signature["layers"])
    assert kinds["bconv1"] == "QuantConv2D" and kinds["drop"] == "Dropout"


def test_fused_layers_are_grouped_with_their_kernel(exe):
    kernels = exe.stats["kernels"]
    assert kernels == exe.signature["kernels"]
    # the BatchNorm folded into the binary conv is reported with it, and so is the residual add
    conv1 = [k for k in _kernel_of(kernels, "bconv1") if k.get("macs", {}).get("binary")]
    assert len(conv1) == 1 and {"bconv1", "bn1", "add1"} <= set(conv1[0]["layers"])
    # bconv2 is in two kernels: its input quantizer (a bitpack) joined the kernel before it, its conv runs with bn2
    conv2 = _kernel_of(kernels, "bn2")
    assert len(conv2) == 1 and "bconv2" in conv2[0]["layers"]
    assert conv2[0]["macs"] == {"binary": 16 * 16 * 64 * 9 * 32}
    # the identical second block runs the same fused function, and its call names its own layers
    twin = _kernel_of(kernels, "bn1b")
    assert len(twin) == 1 and {"bconv1b", "bn1b", "add1b"} <= set(twin[0]["layers"])
    assert twin[0]["kernel"] == conv1[0]["kernel"] and not {"bn1", "add1"} & set(twin[0]["layers"])
    stem = [k for k in _kernel_of(kernels, "stem") if k.get("macs", {}).get("float")]
    assert len(stem) == 1 and "stem_bn" in stem[0]["layers"]
    covered = {name for k in kernels for name in k["layers"]}
    assert covered == {name for name, _ in exe.signature["layers"]} - {"drop"}  # Dropout computes nothing


def test_macs_by_precision_match_the_layers(exe):
    kernels = exe.stats["kernels"]
    binary = sum(k.get("macs", {}).get("binary", 0) for k in kernels)
    floating = sum(k.get("macs", {}).get("float", 0) for k in kernels)
    assert binary == 2 * 16 * 16 * 32 * 9 * 32 + 16 * 16 * 64 * 9 * 32
    assert floating == 16 * 16 * 32 * 9 * 3 + 64 * 10


def test_memory_plan_and_weights(exe):
    mem = exe.stats["memory"]
    assert 0 < mem["peak_activation_bytes"] <= mem["planned_activation_bytes"]
    # the widest activation (16×16×64 float32) is live at some point; packed binary weights are small
    assert mem["peak_activation_bytes"] >= 16 * 16 * 64 * 4
    assert 0 < mem["weight_bytes"] < (3 * 3 * 3 * 32 + 9 * 32 * 32 + 9 * 32 * 64 + 64 * 10) * 4
    assert exe.signature["memory"] == mem


def test_profile_in_place_accounts_every_layer(model, exe):
    p = profile(exe, threads=1, repeats=3, warmup=1, roofline={"binary": 1000.0, "float": 100.0})
    assert len(p["kernels"]) == len(exe.stats["kernels"])
    assert all(r["ms"] > 0 for r in p["kernels"])
    assert p["sum_of_kernels_ms"] == pytest.approx(sum(r["ms"] for r in p["kernels"]))
    assert sum(r["share"] for r in p["kernels"]) == pytest.approx(1.0)
    assert 0 < p["end_to_end_best_ms"] <= p["end_to_end_ms"] and p["kernels_per_run_median_ms"] > 0
    assert p["layers_without_kernel"] == ["drop"]
    by_name = {x["name"]: x for x in p["layers"]}
    assert set(by_name) == {layer.name for layer in model.layers} - {"image"}
    binary_rows = [r for r in p["kernels"] if r["category"] == "binary"]
    assert len(binary_rows) == 3 and all(r["gmacs"] > 0 and r["roofline_fraction"] > 0 for r in binary_rows)
    text = format_profile(p)
    assert "bconv1 + bn1 + add1" in text and "end-to-end median" in text and "drop" in text


def test_report_rejects_a_library_without_kernel_record():
    with pytest.raises(bnncc.BnnccError, match="recompile"):
        build_profile({"model": "m"}, Timings(np.ones((1, 1)), np.ones(1)), {})


def _cli(*args, cwd):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bnncc", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_writes_table_json_and_charts(tmp_path, model, exe):
    lib = exe.export_library(tmp_path / "small.so")
    r = _cli("profile", lib, "--threads", "1", "--repeats", "3", "--out", tmp_path / "p", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bconv1 + bn1 + add1" in r.stdout
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["roofline_gmacs"]["binary"] > 0 and p["roofline_gmacs"]["float"] > 0 and p["isa_path"]
    assert p["cpu"] and p["memory"]["weight_bytes"] > 0
    for png in ("p-layers.png", "p-cumulative.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / png).stat().st_size > 10_000  # drawn, not empty


@pytest.mark.parametrize("args, message", [
    (("--repeats", "0"), "--repeats must be at least 1"),
    (("--target", "aarch64"), "give the model, not a .so"),
    (("--rpc", "127.0.0.1"), "expected HOST:PORT"),
    (("--rpc", "127.0.0.1:9", "--threads", "100000"), "--threads must be between 1 and"),
    (("--rpc", "127.0.0.1:9"), "no such compiled model"),
    (("--out", "/no/such/dir/p"), "does not exist"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, args, message):
    r = _cli("profile", tmp_path / "missing.so", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("bnncc: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in r.stderr
