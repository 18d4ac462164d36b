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


@pytest.mark.slow  # three aarch64 builds and six qemu runs: ~20 s
def test_bitserial_layers_counted_beside_the_binary_one(arm64_env, tmp_path):
    """2A1W and 2A2W layers (bitplanes → bsconv2d) built for aarch64 run exactly under qemu; their instruction
    counts per call are reported beside the 1-bit layer's (benchmarks/bench_bitserial.py measures L1–L5)."""
    import numpy as np

    from bnncc import reference as ref
    from bnncc.relay_ops import bconv2d, bitpack, bitplanes, bsconv2d
    from bnncc.testing import compile_graph

    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 1.2, (1, 8, 8, 48)).astype(np.float32)
    k = rng.standard_normal((3, 3, 48, 24)).astype(np.float32)
    tern = np.where(np.abs(k) < 0.6, 0.0, np.sign(k)).astype(np.float32)
    ohwi = k.transpose(3, 0, 1, 2)
    levels = ref.dorefa_levels(x, 2)
    graphs = {
        "1-bit": (lambda bb, x: bconv2d(bb.emit(bitpack(x, bits=16)), k, padding="same"),
                  ref.bconv2d_acc(ref.binarize(x), ref.binarize(ohwi), padding="same")),
        "2A1W": (lambda bb, x: bsconv2d(bb.emit(bitplanes(x, 2, 16)), k, k_bit=2, padding="same"),
                 ref.bsconv2d_acc(levels, ref.binarize(ohwi), padding="same")),
        "2A2W": (lambda bb, x: bsconv2d(bb.emit(bitplanes(x, 2, 16)), tern, k_bit=2, weights="ternary",
                                        padding="same"),
                 ref.bsconv2d_acc(levels, tern.transpose(3, 0, 1, 2).astype(np.int8), padding="same")),
    }
    counts = {}
    for name, (body, acc) in graphs.items():
        so = compile_graph(body, (x.shape, "float32"), target="aarch64").export_library(tmp_path / f"{name}.so")
        res = device.run_deploy_app(so, [x], arch="aarch64", repeat=2, count_insns=True)
        np.testing.assert_array_equal(res.output, acc.astype(np.float32))
        assert res.insns is not None and res.insns.vcpus == 1
        counts[name] = res.insns.region(1, 2) / 2
    assert all(c > 0 for c in counts.values())
    print("instructions per call:", {k: f"{v:,.0f}" for k, v in counts.items()})
