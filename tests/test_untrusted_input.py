"""The cases a sweep of malformed inputs found (issue 14), each run as a user runs it (``python -m bnncc`` in a
subprocess: a library that kills the process must not kill pytest). Each failed before its fix:

* a half-truncated library died with SIGBUS; one missing its last 4 KiB ran and exited 0; a flipped bit ran;
* ``--threads 100000`` hung starting threads, ``--threads 0`` silently meant every core;
* ``-o result.out`` wrote ``result.out.npy`` and left ``result.out`` as it was;
* another program's ``.so`` gave an ``AttributeError`` traceback;
* NaN in BatchNorm statistics gave a TVM traceback, NaN/Inf weights and inputs compiled/ran silently;
* a ``.h5``/``.keras``/SavedModel with a ``Lambda`` ran the code stored in it when loaded;
* bad arguments were rejected only after TensorFlow/TVM were imported (7–14 s).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from model_files import LAMBDA_MARKER, TINY_SHAPE
from test_cli import REPO, bnncc, clean_error, describe

from bnncc.elfcheck import TRAILER_BYTES, add_checksum
from bnncc.limits import max_threads


@pytest.fixture
def work(model_dir, tmp_path):
    """A working directory with the tiny library and a valid input."""
    shutil.copy(model_dir / "tiny.so", tmp_path / "m.so")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal(TINY_SHAPE).astype(np.float32))
    return tmp_path


def _truncate(path, keep: int):
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])


# ------------------------------------------------------------------------------------------------ libraries
def test_half_truncated_library_is_refused_not_sigbus(work):
    _truncate(work / "m.so", (work / "m.so").stat().st_size // 2)
    line = clean_error(bnncc("run", "m.so", "-i", "x.npy", cwd=work))
    assert "m.so: truncated" in line


def test_library_missing_its_last_4k_is_refused(work):
    _truncate(work / "m.so", -4096)
    line = clean_error(bnncc("run", "m.so", "-i", "x.npy", "-o", "y.npy", cwd=work))
    assert "m.so: truncated" in line
    assert not (work / "y.npy").exists()


def test_library_with_a_flipped_bit_is_refused(work):
    data = bytearray((work / "m.so").read_bytes())
    data[len(data) // 2] ^= 0x10
    (work / "m.so").write_bytes(bytes(data))
    line = clean_error(bnncc("run", "m.so", "-i", "x.npy", cwd=work))
    assert "checksum does not match" in line


def test_shared_library_of_another_program_is_refused(work, tmp_path):
    import ctypes.util

    libz = ctypes.util.find_library("z")  # any system library that is not a model
    found = next((p for p in (f"/usr/lib/x86_64-linux-gnu/{libz}", f"/lib/x86_64-linux-gnu/{libz}",
                              f"/usr/lib/aarch64-linux-gnu/{libz}", f"/usr/lib/{libz}") if libz and
                  os.path.exists(p)), None)
    if found is None:
        pytest.skip("no libz on this machine")
    shutil.copy(found, work / "other.so")
    line = clean_error(bnncc("run", "other.so", "-i", "x.npy", cwd=work))
    assert "other.so: a shared library, but not a model compiled by bnncc" in line


def test_library_for_another_architecture_is_refused_before_loading(work):
    data = bytearray((work / "m.so").read_bytes()[:-TRAILER_BYTES])
    struct.pack_into("<H", data, 18, 183)  # e_machine: aarch64, with a checksum that matches
    (work / "arm.so").write_bytes(bytes(data))
    add_checksum(work / "arm.so")
    line = clean_error(bnncc("run", "arm.so", "-i", "x.npy", cwd=work))
    assert "built for aarch64" in line


# ------------------------------------------------------------------------------------------------ threads
@pytest.mark.parametrize("command", ["run", "bench"])
@pytest.mark.parametrize("threads", ["100000", "0", "-1", str(max_threads() + 1)])
def test_thread_count_out_of_range_is_refused(work, command, threads):
    args = ["-i", "x.npy"] if command == "run" else []
    line = clean_error(bnncc(command, "m.so", *args, "--threads", threads, cwd=work, timeout=60))
    assert f"must be between 1 and {max_threads()}" in line and f"got {threads}" in line


def test_thread_count_at_the_bound_runs(work):
    r = bnncc("run", "m.so", "-i", "x.npy", "--threads", max_threads(), cwd=work, timeout=600)
    assert r.returncode == 0, describe(r)


# ------------------------------------------------------------------------------------------------ outputs
def test_output_is_written_to_exactly_the_path_given(work):
    (work / "result.out").write_text("old content")
    r = bnncc("run", "m.so", "-i", "x.npy", "-o", "result.out", cwd=work)
    assert r.returncode == 0, describe(r)
    assert np.load(work / "result.out").shape == (1, 3)
    assert sorted(p.name for p in work.iterdir()) == ["m.so", "result.out", "x.npy"]  # no result.out.npy, no temp


def test_output_flag_pointing_at_an_input_is_refused(work):
    before = (work / "x.npy").read_bytes()
    line = clean_error(bnncc("run", "m.so", "-i", "x.npy", "-o", "./x.npy", cwd=work))
    assert "is also an input" in line
    assert (work / "x.npy").read_bytes() == before


def test_failed_compile_keeps_the_good_library(model_dir, work):
    good = (work / "m.so").read_bytes()
    clean_error(bnncc("compile", model_dir / "nan_bn.h5", "-o", "m.so", cwd=work))
    assert (work / "m.so").read_bytes() == good
    assert sorted(p.name for p in work.iterdir()) == ["m.so", "x.npy"]


# ------------------------------------------------------------------------------------------------ NaN / Inf
@pytest.mark.parametrize("name, layer, reason", [  # the other NaN/Inf weight cases: test_malformed_inputs.py
    ("nan_bn.h5", "bn", "weight 'moving_mean' holds 1 NaN or infinite value(s) of 8"),
])
def test_non_finite_weights_are_refused_naming_the_layer(model_dir, tmp_path, name, layer, reason):
    line = clean_error(bnncc("compile", model_dir / name, "-o", "m.so", cwd=tmp_path))
    assert f"layer {layer!r}" in line and reason in line and name in line
    assert not (tmp_path / "m.so").exists()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused(work, value):
    x = np.zeros(TINY_SHAPE, np.float32)
    x[0, 1, 2, 3] = value
    np.save(work / "bad.npy", x)
    line = clean_error(bnncc("run", "m.so", "-i", "bad.npy", cwd=work))
    assert "bad.npy: 1 of 512 values are NaN or infinite" in line


# ------------------------------------------------------------------------------------------------ code in models
@pytest.mark.parametrize("name", ["lambda.h5", "lambda.keras", "lambda_savedmodel", "nested_lambda.h5"])
def test_model_with_lambda_is_refused_and_its_code_never_runs(model_dir, tmp_path, name):
    src = model_dir / name
    (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    line = clean_error(bnncc("compile", name, "-o", "m.so", cwd=tmp_path))
    assert f"file {name}, layer 'evil': Lambda layers hold Python code" in line and "--trust-model" in line
    assert not (tmp_path / LAMBDA_MARKER).exists()
    assert not (tmp_path / "m.so").exists()


def test_trust_model_loads_the_lambda_model(model_dir, tmp_path):
    """With --trust-model the file is loaded (its code runs: the marker appears); bnncc then has no converter for
    Lambda, which is an ordinary unsupported-layer error."""
    shutil.copy(model_dir / "lambda.h5", tmp_path)
    line = clean_error(bnncc("compile", "lambda.h5", "--trust-model", "-o", "m.so", cwd=tmp_path))
    assert "Lambda: layer class is not supported" in line
    assert (tmp_path / LAMBDA_MARKER).exists()


def test_api_refuses_lambda_without_trust_model(model_dir, tmp_path):
    shutil.copy(model_dir / "lambda.keras", tmp_path)
    code = ("import bnncc, sys\ntry:\n    bnncc.from_keras('lambda.keras')\nexcept bnncc.FrontendError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "layer 'evil': Lambda layers hold Python code" in r.stdout, describe(r)
    assert not (tmp_path / LAMBDA_MARKER).exists()


# ------------------------------------------------------------------------------------------------ fail fast
@pytest.mark.parametrize("argv", [
    ["run", "missing.so", "-i", "x.npy"],
    ["run", "m.so", "-i", "x.npy", "--threads", "100000"],
    ["run", "m.so", "-i", "missing.npy"],
    ["compile", "missing.h5", "-o", "out.so"],
    ["compile", "lambda.h5", "-o", "out.so"],
    ["bench", "m.so", "--repeats", "0"],
])
def test_bad_input_is_refused_before_tensorflow_or_tvm_is_imported(model_dir, work, argv):
    shutil.copy(model_dir / "lambda.h5", work)
    code = ("import sys\nfrom bnncc.cli import main\ntry:\n    rc = main(sys.argv[1:])\n"
            "except SystemExit as e:\n    rc = e.code\n"
            "print(rc, sorted(m for m in ('tensorflow', 'tvm', 'keras', 'tf_keras') if m in sys.modules))\n")
    try:
        r = subprocess.run([sys.executable, "-c", code, *argv], cwd=work, capture_output=True, text=True,
                           timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"bnncc {' '.join(argv)} did not finish")
    out = r.stdout.strip()
    assert out.splitlines()[-1:] == ["2 []"], describe(r)
