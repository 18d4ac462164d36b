"""The command line, run as a user runs it (``python -m bnncc`` in a subprocess).

Bad input — a missing, truncated or foreign model file, an unsupported layer, a wrong input shape, a missing or
foreign library, an unknown target — must end with exit code 2 and one line ``bnncc: error: ...`` on stderr that
names the file/layer and the reason, never a Python traceback or a TVM stack. The positive tests run ``models``,
``compile`` of a small zoo model and ``bench`` of the library it wrote.

Each test is written as the CLI should behave; bugs it found were fixed.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnncc.testing import shared_dir

REPO = Path(__file__).resolve().parents[1]
ZOO = ["quicknet_small", "quicknet", "quicknet_large", "birealnet18", "binary_alexnet", "binary_resnet_e18"]
TARGETS = ["host", "x86", "x86-avx512", "aarch64", "rasp4", "pixel1"]
ZOO_SIZE = 64

# TensorFlow's C++ logger writes a few lines at import time (e.g. "Unable to register cuDNN factory") even with
# TF_CPP_MIN_LOG_LEVEL=2; they are not bnncc's output, so they are ignored. Everything else on stderr is bnncc's.
TF_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d [\d:.]+: [IWEF] \S+:\d+\] |WARNING: All log messages before absl)")
# Signs of an internal error leaking out: a Python traceback or a TVM/C++ stack.
LEAK = re.compile(r"Traceback|^\s+File \"|Stack trace", re.M)


def bnncc(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "bnncc", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def stderr_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.strip() and not TF_LOG_LINE.match(line)]


def describe(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def error_line(r: subprocess.CompletedProcess) -> str:
    """Exit code 2, exactly one ``bnncc: error:`` line and no traceback/TVM stack; returns that line."""
    assert r.returncode == 2, describe(r)
    assert not LEAK.search(r.stderr), describe(r)
    errors = [line for line in stderr_lines(r) if line.startswith("bnncc: error:")]
    assert len(errors) == 1, describe(r)
    return errors[0]


def clean_error(r: subprocess.CompletedProcess) -> str:
    """:func:`error_line`, and stderr holds nothing but bnncc's progress lines before it (no TVM log lines)."""
    line = error_line(r)
    lines = stderr_lines(r)
    assert lines[-1] == line, describe(r)
    assert all(x.startswith("bnncc: ") for x in lines), describe(r)
    return line


# ------------------------------------------------------------------------------------------------ fixtures


def shared_run(tmp_path_factory, name: str, *args) -> tuple[Path, subprocess.CompletedProcess]:
    """``bnncc *args`` run once per session (whichever xdist worker asks first) in its own directory."""
    with shared_dir(tmp_path_factory, name) as path:
        done = path / "result.json"
        if not done.exists():
            r = bnncc(*args, cwd=path)
            done.write_text(json.dumps({"args": r.args, "returncode": r.returncode, "stdout": r.stdout,
                                        "stderr": r.stderr}))
    return path, subprocess.CompletedProcess(**json.loads(done.read_text()))


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory) -> dict[str, Path]:
    """Small Keras models as .h5: a valid one, and one with each unsupported layer (named ``bad_layer``)."""
    names = ["valid", "UpSampling2D", "LSTM"]
    with shared_dir(tmp_path_factory, "bnncc-cli-keras") as path:
        if not (path / "done").exists():
            from bnncc._tf import keras

            i = keras.Input((8, 8, 1))
            valid = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(i)))
            keras.Model(i, valid).save(path / "valid.h5")
            i = keras.Input((8, 8, 1))
            up = keras.layers.UpSampling2D(name="bad_layer")(keras.layers.Conv2D(4, 3, name="c")(i))
            keras.Model(i, up).save(path / "UpSampling2D.h5")
            i = keras.Input((5, 3))
            lstm = keras.layers.Dense(2)(keras.layers.LSTM(4, name="bad_layer")(i))
            keras.Model(i, lstm).save(path / "LSTM.h5")
            (path / "done").touch()
    return {name: path / f"{name}.h5" for name in names}


@pytest.fixture(scope="module")
def zoo_so(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """quicknet_small at 64×64 compiled by ``bnncc compile --dump-ir ir`` (once per session): (library, the
    finished process)."""
    path, r = shared_run(tmp_path_factory, "bnncc-cli-zoo", "compile", "quicknet_small", "--input-size", ZOO_SIZE,
                         "-o", "q.so", "--dump-ir", "ir")
    return path / "q.so", r


def compile_unsupported(layer: str, keras_files, tmp_path_factory) -> subprocess.CompletedProcess:
    return shared_run(tmp_path_factory, f"bnncc-cli-{layer}", "compile", keras_files[layer], "-o", "m.so")[1]


# ------------------------------------------------------------------------------------------------ bad model files
def test_missing_model_file(tmp_path):
    line = clean_error(bnncc("compile", "missing.h5", "-o", "m.so", cwd=tmp_path))
    assert "missing.h5" in line and "no such file" in line
    assert not (tmp_path / "m.so").exists()


def test_truncated_h5(keras_files, tmp_path):
    data = keras_files["valid"].read_bytes()
    (tmp_path / "half.h5").write_bytes(data[: len(data) // 2])
    line = clean_error(bnncc("compile", "half.h5", "-o", "m.so", cwd=tmp_path))
    assert "half.h5" in line and "not a Keras model file" in line and "truncated" in line
    assert not (tmp_path / "m.so").exists()


def test_random_bytes_named_h5(tmp_path):
    (tmp_path / "noise.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    line = clean_error(bnncc("compile", "noise.h5", "-o", "m.so", cwd=tmp_path))
    assert "noise.h5" in line and "not a Keras model file" in line
    assert not (tmp_path / "m.so").exists()


@pytest.mark.parametrize("layer", ["UpSampling2D", "LSTM"])
def test_unsupported_layer_names_layer_and_class(layer, keras_files, tmp_path_factory):
    line = error_line(compile_unsupported(layer, keras_files, tmp_path_factory))
    assert f"{layer}.h5" in line
    assert "layer 'bad_layer'" in line and f"{layer}: layer class is not supported" in line
    assert "supported layers: QuantConv2D" in line


def test_unsupported_layer_stderr_has_nothing_after_the_error(keras_files, tmp_path_factory):
    clean_error(compile_unsupported("UpSampling2D", keras_files, tmp_path_factory))


# ------------------------------------------------------------------------------------------------ bad libraries
def test_run_missing_library(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1), np.float32))
    line = clean_error(bnncc("run", "missing.so", "-i", "x.npy", cwd=tmp_path))
    assert "missing.so" in line and "no such compiled model" in line


def test_run_file_that_is_not_a_library(tmp_path):
    (tmp_path / "fake.so").write_bytes(np.random.default_rng(1).bytes(4096))
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1), np.float32))
    line = clean_error(bnncc("run", "fake.so", "-i", "x.npy", cwd=tmp_path))
    assert "fake.so" in line and "not an ELF shared library" in line


def test_run_wrong_input_shape(zoo_so, tmp_path):
    so, _ = zoo_so
    np.save(tmp_path / "wrong.npy", np.zeros((1, 32, 32, 3), np.float32))
    r = bnncc("run", so, "-i", "wrong.npy", "-o", "y.npy", cwd=tmp_path)
    line = clean_error(r)
    assert f"expects shape (1, {ZOO_SIZE}, {ZOO_SIZE}, 3) float32" in line, line
    assert "got shape (1, 32, 32, 3)" in line, line
    assert not (tmp_path / "y.npy").exists()


def test_unknown_target_lists_the_valid_ones(tmp_path):
    r = bnncc("compile", "quicknet_small", "--target", "nope", "-o", "m.so", cwd=tmp_path)
    assert r.returncode == 2, describe(r)
    assert not LEAK.search(r.stderr), describe(r)
    line = [x for x in stderr_lines(r) if "error:" in x][-1]
    assert "--target" in line and "invalid choice: 'nope'" in line
    for name in TARGETS:
        assert f"'{name}'" in line


# ------------------------------------------------------------------------------------------------ commands
def test_models_lists_the_zoo(tmp_path):
    r = bnncc("models", cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[1:] if line.strip()}
    assert sorted(rows) == sorted(ZOO)
    for name, cols in rows.items():  # params, binary MACs, float MACs: positive integers
        assert len(cols) == 3 and all(int(c.replace(",", "")) > 0 for c in cols), (name, cols)


def test_compile_zoo_model_reports_size_ratio(zoo_so):
    so, r = zoo_so
    assert r.returncode == 0, describe(r)
    assert not LEAK.search(r.stderr), describe(r)
    assert so.is_file()
    m = re.search(r"size: ([\d.]+) (KiB|MiB) \(vs ([\d.]+) (KiB|MiB) of float32 weights: ([\d.]+)x smaller\)",
                  r.stderr)
    assert m, describe(r)
    unit = {"KiB": 2**10, "MiB": 2**20}
    so_size, ref_size, ratio = float(m[1]) * unit[m[2]], float(m[3]) * unit[m[4]], float(m[5])
    assert so_size == pytest.approx(so.stat().st_size, rel=0.01)
    assert ratio == pytest.approx(ref_size / so_size, rel=0.02)
    assert ratio > 4  # the binary kernels are stored bitpacked: far smaller than float32 weights
    # the memory plan's peak activations and the stored weights; a progress line per compile phase
    mem = re.search(r"memory: peak activations ([\d.]+) (KiB|MiB) \(memory plan\), weights ([\d.]+) (KiB|MiB)",
                    r.stderr)
    assert mem and float(mem[1]) > 0 and float(mem[3]) * unit[mem[4]] < so_size, describe(r)
    assert re.search(r"^bnncc: compile \[12/12\] code generation", r.stderr, re.M), describe(r)


def test_compile_dump_ir_writes_one_file_per_phase(zoo_so):
    from bnncc.pipeline import PHASE_NAMES

    so, r = zoo_so
    assert r.returncode == 0, describe(r)
    files = sorted(p.name for p in (so.parent / "ir").iterdir())
    assert files == [f"{i:02d}-{name}.py" for i, name in enumerate(PHASE_NAMES)]
    assert "bnncc.bconv2d" in (so.parent / "ir" / "01-graph.py").read_text()


def test_bench_library_uses_its_recorded_input_shape(zoo_so, tmp_path):
    so, _ = zoo_so
    r = bnncc("bench", so, "--repeats", 2, cwd=tmp_path)  # no --input-shape: the library records it
    assert r.returncode == 0, describe(r)
    assert json.loads(r.stdout.splitlines()[-1])["median_ms"] > 0
    from bnncc import load

    sig = load(so).signature
    assert sig["model"] == "quicknet_small" and sig["inputs"][0]["shape"] == [1, int(ZOO_SIZE), int(ZOO_SIZE), 3]


def test_bench_library_prints_json(zoo_so, tmp_path):
    so, _ = zoo_so
    r = bnncc("bench", so, "--input-shape", f"1,{ZOO_SIZE},{ZOO_SIZE},3", "--repeats", 3, cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    records = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 1, describe(r)
    assert records[0]["median_ms"] > 0 and records[0]["repeats"] == 3


def test_bench_compare_writes_side_by_side_results(tmp_path):
    """``bnncc bench --compare`` runs bnncc.compare's x86 comparison (from any directory): bnncc, LCE and TFLite in
    one run, a table on stdout and the results files."""
    r = bnncc("bench", "standin", "--compare", "--threads", "1", "--repeats", "2", "--out", tmp_path / "x86",
              cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    table = (tmp_path / "x86-networks.md").read_text()
    assert "standin-bconv" in table and "LCE-indirect ms" in table and "XNNPACK ms" in table
    assert "standin-bconv" in r.stdout


def test_bench_compare_refuses_a_library(zoo_so, tmp_path):
    so, _ = zoo_so
    assert "--compare" in clean_error(bnncc("bench", so, "--compare", cwd=tmp_path))


# ------------------------------------------------------------------------------------------------ known bugs
# More bad input that ends in a traceback (exit 1) instead of a one-line error (exit 2).
def test_run_missing_input_file(zoo_so, tmp_path):
    line = clean_error(bnncc("run", zoo_so[0], "-i", "missing.npy", cwd=tmp_path))
    assert "missing.npy" in line


def test_run_input_that_is_not_npy(zoo_so, tmp_path):
    (tmp_path / "x.npy").write_text("not an array\n")
    line = clean_error(bnncc("run", zoo_so[0], "-i", "x.npy", cwd=tmp_path))
    assert "x.npy" in line


def test_bench_library_wrong_input_shape(zoo_so, tmp_path):
    so, _ = zoo_so
    line = clean_error(bnncc("bench", so, "--input-shape", "1,32,32,3", "--repeats", 1, cwd=tmp_path))
    assert f"expects shape (1, {ZOO_SIZE}, {ZOO_SIZE}, 3)" in line and "(1, 32, 32, 3)" in line


def test_bench_malformed_input_shape(zoo_so, tmp_path):
    so, _ = zoo_so
    line = clean_error(bnncc("bench", so, "--input-shape", "1,a,64,3", "--repeats", 1, cwd=tmp_path))
    assert "--input-shape" in line


def test_run_output_into_missing_directory(zoo_so, tmp_path):
    so, _ = zoo_so
    np.save(tmp_path / "x.npy", np.zeros((1, ZOO_SIZE, ZOO_SIZE, 3), np.float32))
    line = clean_error(bnncc("run", so, "-i", "x.npy", "-o", "nodir/y.npy", cwd=tmp_path))
    assert "nodir" in line


def test_compile_output_into_missing_directory(keras_files, tmp_path):
    line = clean_error(bnncc("compile", keras_files["valid"], "-o", "nodir/m.so", cwd=tmp_path))
    assert "nodir" in line



# ------------------------------------------------------------------------------------------------ ONNX files
def _onnx_model(path: Path, nodes, shape, inits=(), out_shape=(1, 8, 8, 8)) -> Path:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], list(inits))
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict[str, Path]:
    """Small ONNX graphs: a binary conv (Sign → Conv with ±α weights → Relu), one with two unknown ops, one of
    dynamic height/width."""
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    path = tmp_path_factory.mktemp("onnx-cli")
    rng = np.random.default_rng(0)
    w = (np.sign(rng.standard_normal((8, 4, 3, 3))) * rng.uniform(0.1, 1, (8, 1, 1, 1))).astype(np.float32)
    binary = [helper.make_node("Sign", ["x"], ["s"], name="sign"),
              helper.make_node("Conv", ["s", "w"], ["c"], name="bconv", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["y"], name="relu")]
    unknown = [helper.make_node("FancyConv", ["x"], ["a"], name="fancy"),
               helper.make_node("Relu", ["a"], ["b"], name="relu"),
               helper.make_node("Warp", ["b"], ["y"], name="warp")]
    return {"binary": _onnx_model(path / "binary.onnx", binary, [1, 4, 8, 8], [numpy_helper.from_array(w, "w")]),
            "unknown": _onnx_model(path / "unknown.onnx", unknown, [1, 4, 8, 8]),
            "dynamic": _onnx_model(path / "dynamic.onnx", binary, [1, 4, "h", "w"], [numpy_helper.from_array(w, "w")],
                                   [1, 8, "h", "w"])}


def test_compile_onnx_runs_its_binary_conv(onnx_files, tmp_path):
    r = bnncc("compile", onnx_files["binary"], "-o", "m.so", cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    assert "binary ops: 1" in r.stderr and "float ops: 2" in r.stderr  # the NCHW ↔ NHWC transposes
    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = bnncc("run", "m.so", "-i", "x.npy", "-o", "y.npy", cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(str(onnx_files["binary"])).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-5)


def test_truncated_onnx(onnx_files, tmp_path):
    data = onnx_files["binary"].read_bytes()
    (tmp_path / "half.onnx").write_bytes(data[: len(data) // 2])
    line = clean_error(bnncc("compile", "half.onnx", "-o", "m.so", cwd=tmp_path))
    assert "half.onnx" in line and "not an ONNX model" in line and "truncated" in line


def test_foreign_bytes_named_onnx(tmp_path):
    (tmp_path / "png.onnx").write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(4096))
    line = clean_error(bnncc("compile", "png.onnx", "-o", "m.so", cwd=tmp_path))
    assert "png.onnx" in line and "not an ONNX model" in line


def test_onnx_unsupported_ops_listed_at_once(onnx_files, tmp_path):
    line = clean_error(bnncc("compile", onnx_files["unknown"], "-o", "m.so", cwd=tmp_path))
    assert "unknown.onnx" in line and "2 nodes cannot be imported" in line
    assert "node 'fancy': FancyConv" in line and "node 'warp': Warp" in line


def test_onnx_dynamic_input_shape(onnx_files, tmp_path):
    line = clean_error(bnncc("compile", onnx_files["dynamic"], "-o", "m.so", cwd=tmp_path))
    assert "dynamic.onnx" in line and "input 'x' has a dynamic shape [1, 4, 'h', 'w']" in line


@pytest.mark.parametrize("suffix", [".prototxt", ".caffemodel"])
def test_caffe_file_without_its_pair(tmp_path, suffix):
    """A Caffe net is two files: either one names the other (same stem), and a missing one is one line."""
    (tmp_path / f"m{suffix}").write_bytes(b"\0" * 16)
    other = "m.caffemodel" if suffix == ".prototxt" else "m.prototxt"
    line = clean_error(bnncc("compile", f"m{suffix}", "-o", "m.so", cwd=tmp_path))
    assert f"m{suffix}" in line and f"{other} beside it, which does not exist" in line


def test_compile_lce_tflite_matches_lce(tmp_path):
    lce = pytest.importorskip("larq_compute_engine")
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    from bnncc._tf import keras, lq

    kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
              use_bias=False)
    i = keras.Input((10, 10, 8))
    x = lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, **kw)(i)
    x = keras.layers.BatchNormalization(beta_initializer="random_normal")(x)
    x = keras.layers.MaxPool2D()(lq.quantizers.SteSign()(x))  # LCE: bitpacked output → LceBMaxPool2d
    x = lq.layers.QuantConv2D(16, 3, **kw)(x)
    buf = lce.convert_keras_model(keras.Model(i, x))
    (tmp_path / "m.tflite").write_bytes(buf)
    r = bnncc("compile", "m.tflite", "-o", "m.so", cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    assert "binary ops: 3" in r.stderr  # bconv2d, bmaxpool2d, bconv2d
    xin = np.random.default_rng(0).standard_normal((1, 10, 10, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", xin)
    r = bnncc("run", "m.so", "-i", "x.npy", "-o", "y.npy", cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    assert np.array_equal(np.load(tmp_path / "y.npy"), Interpreter(buf, num_threads=1).predict(xin))


def test_truncated_tflite(tmp_path):
    (tmp_path / "t.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(40))
    line = clean_error(bnncc("compile", "t.tflite", "-o", "m.so", cwd=tmp_path))
    assert "t.tflite" in line and "not a TFLite model" in line
