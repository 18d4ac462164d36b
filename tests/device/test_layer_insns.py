"""Instruction counts per kernel call on the emulated aarch64 device (``bnncc profile --target aarch64``): every
kernel counted, the source layers attributed as on x86, the counts reconciled against a whole run."""

from __future__ import annotations

import pytest

import bnncc
from bnncc import device
from bnncc.profile import format_insn_profile, profile_emulated
from bnncc.testing import small_bnn

arm64_env, arm64_rpc = device.pytest_fixtures(scope="module")


@pytest.fixture(scope="module")
def emulated(arm64_env):
    return profile_emulated(bnncc.compile(small_bnn(), "aarch64"))


def test_every_kernel_counted_and_reconciled(emulated):
    p = emulated
    assert p["metric"] == "instructions" and all(r["insns"] > 0 for r in p["kernels"])
    # exact counts: the kernels are all of a run but the VM's own instructions (and the marker estimate)
    assert 0.9 < p["sum_over_end_to_end"] < 1.1
    assert p["layers_without_kernel"] == ["drop"]
    binary = [r for r in p["kernels"] if r["category"] == "binary"]
    assert len(binary) == 3 and all(r["macs_per_insn"] > 1 for r in binary)  # a NEON word: many MACs per insn
    text = format_insn_profile(p)
    assert "bconv1 + bn1 + add1" in text and "M instructions" in text
