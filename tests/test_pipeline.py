"""The pass pipeline: its phases in order, each phase's output well-formed, IR dumps, the statistics it records,
the signature a library carries, and commands that run libraries without the compiler or TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tvm import relax

from bnncc import pipeline, reference
from bnncc.cli import main
from bnncc.relay_ops import bconv2d, bitpack
from bnncc.testing import compile_graph, graph_module

EXPECTED_PHASES = ("import", "graph", "layout", "legalize", "fuse", "pack_in_producers", "fuse_tir", "tuning",
                   "schedule", "signature", "vm")


def _two_layer(bb, x):
    """bitpack → bconv (BN-like multiply/add) → bitpack → bconv: the graph phase folds and chains it."""
    rng = np.random.default_rng(0)
    h = bb.emit(bconv2d(bb.emit(bitpack(x, bits=32)), rng.standard_normal((3, 3, 64, 64)), padding="same"))
    h = bb.emit(relax.op.multiply(h, relax.const(rng.uniform(0.5, 2, 64).astype(np.float32))))
    h = bb.emit(relax.op.add(h, relax.const(rng.standard_normal(64).astype(np.float32))))
    return bconv2d(bb.emit(bitpack(h, bits=32)), rng.standard_normal((3, 3, 64, 32)), padding="same")


def test_phases_in_order_each_well_formed(tmp_path):
    mod = graph_module(_two_layer, ((1, 8, 8, 64), "float32"))
    seen = []

    def check(name, m):
        seen.append(name)
        # tvm 0.27's well_formed raises on an ill-formed module (e.g. "Var y is not defined") and returns None
        assert relax.analysis.well_formed(m) is not False, name

    c = pipeline.compilation("host")
    pipeline.run_phases(mod, c, dump_ir=tmp_path, on_phase=check)
    assert tuple(seen) == pipeline.PHASE_NAMES == EXPECTED_PHASES
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:02d}-{n}.py" for i, n in enumerate(EXPECTED_PHASES)]
    # the graph phase folded BN into the first conv, which now emits packed bits for the second
    assert {k: c.stats[k] for k in ("binary_ops", "bitpack_ops", "packed_outputs", "float_ops")} == \
        {"binary_ops": 2, "bitpack_ops": 1, "packed_outputs": 1, "float_ops": 0}
    assert c.stats["signature"]["inputs"][0]["shape"] == [1, 8, 8, 64]
    assert "relax.multiply" not in (tmp_path / "01-graph.py").read_text()
    with pytest.raises(ValueError, match="unknown phase"):
        pipeline.run_phases(mod, c, until="nope")


def test_build_records_signature_and_stats(tmp_path):
    exe = compile_graph(_two_layer, ((1, 8, 8, 64), "float32"), name="two_layer")
    sig = exe.signature
    assert sig["model"] == "two_layer" and sig["bnncc_version"] == "0.1.0"
    assert sig["inputs"] == [{"name": "x0", "shape": [1, 8, 8, 64], "dtype": "float32"}]
    assert sig["outputs"] == [{"shape": [1, 8, 8, 32], "dtype": "float32"}]
    assert sig["target"]["name"] == "host" and sig["target"]["attrs"]["mcpu"]
    assert exe.stats["binary_ops"] == 2 and exe.stats["packed_outputs"] == 1
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 64)).astype(np.float32)
    so = exe.export_library(tmp_path / "m.so")
    loaded = pipeline.load(so)
    assert loaded.signature == sig
    np.testing.assert_array_equal(loaded(x), exe(x))


def test_dump_ir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BNNCC_DUMP_IR", str(tmp_path / "ir"))
    compile_graph(lambda bb, x: bitpack(x, bits=32), ((1, 4, 4, 64), "float32"))
    assert len(list((tmp_path / "ir").glob("*.py"))) == len(EXPECTED_PHASES)


def test_bench_and_run_use_the_recorded_signature(tmp_path, capsys):
    exe = compile_graph(lambda bb, x: bitpack(x, bits=32), ((1, 4, 4, 64), "float32"))
    so = exe.export_library(tmp_path / "p.so")
    assert main(["bench", str(so), "--repeats", "2"]) == 0  # no --input-shape needed
    assert json.loads(capsys.readouterr().out)["median_ms"] > 0
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(so), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), reference.bitpack(x, bits=32))


_PROBE = """
import sys
from bnncc.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
heavy = [m for m in ("tensorflow", "keras", "tvm", "bnncc.pipeline", "bnncc.schedules") if m in sys.modules]
print("LOADED", rc, ",".join(heavy))
"""


def _cli_modules(*args: str) -> tuple[int, set[str]]:
    out = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=300)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("LOADED"))
    _, rc, mods = line.split(" ", 2) if line.count(" ") == 2 else (*line.split(" "), "")
    return int(rc), set(filter(None, mods.split(",")))


def test_help_imports_nothing_heavy():
    rc, mods = _cli_modules("--help")
    assert rc == 0 and not mods, mods


def test_run_never_imports_tensorflow_or_the_compiler(tmp_path):
    so = compile_graph(lambda bb, x: bitpack(x, bits=32), ((1, 4, 4, 64), "float32")).export_library(tmp_path / "p.so")
    np.save(tmp_path / "x.npy", np.ones((1, 4, 4, 64), np.float32))
    rc, mods = _cli_modules("run", str(so), "-i", str(tmp_path / "x.npy"))
    assert rc == 0 and mods == {"tvm"}, mods
