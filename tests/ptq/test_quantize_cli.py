"""``bnncc compile --int8 --calibration`` and ``bnncc quantize`` as a user runs them: the library is int8 where it
should be and agrees with Keras; the report is written; bad arguments end in one error line, exit 2, before
TensorFlow is imported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_cli import LEAK, bnncc, clean_error


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    import tf_keras as keras

    d = tmp_path_factory.mktemp("int8cli")
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same", activation="relu", input_shape=(12, 12, 3),
                                              name="stem"),
                          keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="body"),
                          keras.layers.Flatten(name="flat"), keras.layers.Dense(10, name="head")])
    m.save(d / "cnn.h5")
    rng = np.random.default_rng(0)
    np.save(d / "cal.npy", rng.random((32, 12, 12, 3)).astype(np.float32))
    np.save(d / "x.npy", rng.random((1, 12, 12, 3)).astype(np.float32))
    return m, d


def test_compile_int8_runs_and_agrees_with_keras(small_cnn):
    model, d = small_cnn
    r = bnncc("compile", "cnn.h5", "--int8", "--calibration", "cal.npy", "--report", "q.json", "-o", "cnn.so",
              cwd=d)
    assert r.returncode == 0, r.stderr
    assert "median SQNR" in r.stdout + r.stderr and not LEAK.search(r.stderr)
    report = json.loads((d / "q.json").read_text())
    assert [row["precision"] for row in report["layers"]] == ["int8"] * 3
    r = bnncc("run", "cnn.so", "-i", "x.npy", "-o", "y.npy", cwd=d)
    assert r.returncode == 0, r.stderr
    want = model.predict(np.load(d / "x.npy"), verbose=0)
    got = np.load(d / "y.npy")
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def test_quantize_report_and_policy(small_cnn):
    _, d = small_cnn
    r = bnncc("quantize", "cnn.h5", "--calibration", "cal.npy", "--keep-first-last", "--calibration-method",
              "percentile", "--report", "p.json", cwd=d)
    assert r.returncode == 0, r.stderr
    layers = json.loads((d / "p.json").read_text())["layers"]
    assert [row["precision"] for row in layers] == ["float32", "int8", "float32"]


@pytest.mark.parametrize("args,match", [
    (("compile", "cnn.h5", "--int8", "-o", "m.so"), "--int8 needs --calibration"),
    (("compile", "cnn.h5", "--int8", "--calibration", "missing.npy", "-o", "m.so"), "missing.npy"),
    (("quantize", "cnn.h5", "--calibration", "cal.npy", "--report", "cal.npy"), "cal.npy"),
    (("quantize", "cnn.h5", "--calibration", "x.npy", "--keep-float", "nope"), "names no quantizable layer"),
    (("quantize", "cnn.h5", "--calibration", "cnn.h5"), "cnn.h5"),
])
def test_bad_arguments(small_cnn, args, match):
    _, d = small_cnn
    before = (d / "cal.npy").read_bytes()
    assert match in clean_error(bnncc(*args, cwd=d))
    assert (d / "cal.npy").read_bytes() == before and not (d / "m.so").exists()
