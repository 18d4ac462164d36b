"""bnncc.qdense (uint8 × int8 → int32): exact against the int64 numpy oracle on every x86 path this CPU can run —
AMX tiles, AVX-512 VNNI ``vpdpbusd``, and the AVX2 loop — over shapes with odd M, N, K, zero points, biases and
the worst-case values (255 × −128, where ``vpmaddubsw`` would saturate); the paths are checked in the
assembly, and a path this CPU lacks is still compiled and inspected."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnncc import reference, targets
from bnncc.errors import OpError
from bnncc.relay_ops.qdense import pack_weights, qdense, unpack_weights
from bnncc.testing import compile_graph

HOST = targets.isa("host")
# (target, instruction that must appear, whether this CPU runs it)
PATHS = [("x86-amx", "tdpbusd", HOST.amx_int8), ("x86-avx512", "vpdpbusd", HOST.vnni and HOST.avx512),
         ("x86", "vpmaddwd", HOST.avx2)]


def _check(target: str, m: int, n: int, k: int, zx: int, seed: int, extreme: bool = False, run: bool = True):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    if extreme:  # every product at its largest magnitude, both signs
        x[:] = 255
        w[:, ::2] = -128
        w[:, 1::2] = 127
    bias = rng.integers(-2**20, 2**20, n).astype(np.int32)
    exe = compile_graph(lambda bb, v: bb.emit(qdense(v, w, zx, bias)), ((m, k), "uint8"), target=target)
    if run:
        np.testing.assert_array_equal(np.asarray(exe(x)), reference.qdense(x, w, zx, bias))
    return exe


@pytest.mark.parametrize("target,insn,runs", PATHS, ids=[p[0] for p in PATHS])
def test_each_path_uses_its_instruction_and_is_exact(target, insn, runs):
    exe = _check(target, 70, 50, 130, 7, 0, run=runs)
    assert insn in exe.assembly()
    if runs:
        _check(target, 64, 96, 128, 0, 1)  # aligned: no tail block


@pytest.mark.parametrize("target,insn,runs", PATHS, ids=[p[0] for p in PATHS])
def test_worst_case_values_do_not_saturate(target, insn, runs):
    if not runs:
        pytest.skip(f"this CPU cannot run the {target} path (compiled and inspected in the test above)")
    _check(target, 33, 40, 1000, 0, 2, extreme=True)


def test_host_picks_the_best_path():
    want = "tdpbusd" if HOST.amx_int8 else "vpdpbusd" if HOST.vnni and HOST.avx512 else None
    asm = _check("host", 40, 40, 64, 3, 3).assembly()
    if want:
        assert want in asm


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 300), zx=st.integers(0, 255),
       seed=st.integers(0, 2**16))
def test_property_host(m, n, k, zx, seed):
    _check("host", m, n, k, zx, seed)


@settings(max_examples=10, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 70), k=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_property_other_paths(m, n, k, seed):
    for target, _, runs in PATHS:
        if runs and target != "host":
            _check(target, m, n, k, seed % 256, seed)


def test_weight_packing_round_trips():
    w = np.random.default_rng(4).integers(-128, 128, (27, 45), dtype=np.int8)
    p = pack_weights(w)
    assert p.shape == (64 // 16, 64 // 4, 16, 4)
    np.testing.assert_array_equal(unpack_weights(p, 27, 45), w)
    full = p.transpose(1, 3, 0, 2).reshape(64, 64)  # [Kp, Np]: the padding depths and columns are zeros
    assert not full[27:].any() and not full[:, 45:].any()


@pytest.mark.parametrize("bad,match", [
    (dict(kernel=np.zeros((4, 3), np.float32)), "kernel must be int8"),
    (dict(x_zero_point=300), "zero point"),
    (dict(kernel=np.zeros((5, 3), np.int8)), "input has 4 channels"),
])
def test_bad_arguments(bad, match):
    from tvm import relax

    x = relax.Var("x", relax.TensorType((2, 4), "uint8"))
    args = dict(kernel=np.zeros((4, 3), np.int8), x_zero_point=0) | bad
    with pytest.raises(OpError, match=match):
        qdense(x, args["kernel"], args["x_zero_point"])
