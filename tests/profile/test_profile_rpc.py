"""``bnncc profile --rpc``: per-layer times measured on a device behind a real TVM RPC tracker (an RPC server of this
machine on 127.0.0.1; the emulated aarch64 device under qemu in a slow test), each kernel timed alone there on
tensors of its recorded argument shapes. Every source layer accounted for, the report and charts written, a
library of the wrong architecture refused before upload. No assertion on a time."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import bnncc
from bnncc.elfcheck import TRAILER_BYTES, add_checksum
from bnncc.profile import profile_remote
from bnncc.testing import local_fleet, small_bnn

REPO = Path(__file__).resolve().parents[2]
KEY = "bnncc-profile-rpc"


@pytest.fixture(scope="module")
def model():
    return small_bnn()


@pytest.fixture(scope="module")
def library(model, tmp_path_factory):
    exe = bnncc.compile(model, "host", name="small_bnn")
    return exe.export_library(tmp_path_factory.mktemp("profile-rpc") / "small_bnn.so"), exe.signature


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    with local_fleet(tmp_path_factory.mktemp("profile-rpc-logs"), KEY, servers=1) as (addr, _servers, _logs):
        yield addr


def _cli(*args, cwd):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bnncc", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _check_every_layer(p, model, signature):
    assert [r["kernel"] for r in p["kernels"]] == [k["kernel"] for k in signature["kernels"]]
    assert all(r["ms"] > 0 for r in p["kernels"]) and p["end_to_end_ms"] > 0
    assert sum(r["share"] for r in p["kernels"]) == pytest.approx(1.0)
    assert {x["name"] for x in p["layers"]} == {layer.name for layer in model.layers} - {"image"}
    assert p["layers_without_kernel"] == ["drop"]  # Dropout computes nothing
    assert p["kernels_timed"] == "in isolation" and p["roofline_gmacs"] == {}
    conv1 = [r for r in p["kernels"] if "bn1" in r["layers"]]
    assert len(conv1) == 1 and {"bconv1", "add1"} <= set(conv1[0]["layers"]) and conv1[0]["gmacs"] > 0


def test_cli_profile_rpc_accounts_every_layer(model, library, tracker, tmp_path):
    lib, signature = library
    assert all(a is not None for k in signature["kernels"] for a in k["args"])
    r = _cli("profile", lib, "--rpc", tracker, "--key", KEY, "--threads", "1", "--repeats", "3", "--out",
             tmp_path / "p", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bconv1 + bn1 + add1" in r.stdout and "each kernel timed alone" in r.stdout
    p = json.loads((tmp_path / "p.json").read_text())
    _check_every_layer(p, model, signature)
    assert p["threads"] == 1 and p["runs"] == 3 and KEY in p["device"]
    for png in ("p-layers.png", "p-cumulative.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_remote_reads_the_signature_on_the_device(model, library, tracker):
    lib, signature = library
    p = profile_remote(lib, tracker, KEY, repeats=2, session_timeout=60, request_timeout=30)
    _check_every_layer(p, model, signature)


def test_library_for_another_architecture_is_refused_before_upload(library, tracker, tmp_path):
    lib, _ = library
    arm = tmp_path / "arm.so"
    data = bytearray(lib.read_bytes()[:-TRAILER_BYTES])
    struct.pack_into("<H", data, 18, 183)  # e_machine: aarch64
    arm.write_bytes(bytes(data))
    add_checksum(arm)
    r = _cli("profile", arm, "--rpc", tracker, "--key", KEY, "--repeats", "2", cwd=tmp_path)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "built for aarch64" in errors[0] and "not uploaded" in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_library_without_argument_shapes_is_refused(library):
    _, signature = library
    old = {**signature, "kernels": [{k: v for k, v in kr.items() if k != "args"} for kr in signature["kernels"]]}
    with pytest.raises(bnncc.BnnccError, match="recompile"):
        profile_remote("unused.so", "127.0.0.1:9", KEY, signature=old)  # refused before any connection


@pytest.mark.slow
def test_profile_rpc_on_the_emulated_aarch64_device(model, tmp_path):
    """The same on the qemu aarch64 RPC server (times under qemu mean nothing: the path is what is tested)."""
    from bnncc import device

    try:
        device.setup()
    except device.QemuUnavailable as e:
        pytest.skip(str(e))
    exe = bnncc.compile(model, "aarch64", name="small_bnn")
    lib = exe.export_library(tmp_path / "small_bnn-aarch64.so")
    with device.QemuRpcDevice("aarch64-qemu-profile", log_dir=tmp_path / "logs") as dev:
        p = profile_remote(lib, dev.tracker, dev.key, repeats=2, session_timeout=600, request_timeout=120)
        _check_every_layer(p, model, exe.signature)
        host = lib.with_name("host.so")
        bnncc.compile(model, "host").export_library(host)
        with pytest.raises(bnncc.BnnccError, match="built for x86_64.*not uploaded"):
            profile_remote(host, dev.tracker, dev.key, repeats=1, session_timeout=120, request_timeout=60)
