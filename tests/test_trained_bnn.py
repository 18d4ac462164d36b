"""End to end: a BNN trained with Larq on scikit-learn's digits, compiled with ``bnncc compile``, runs like Keras.

The network has every kind of layer bnncc fuses: a float Conv2D stem → BN → binary QuantConv2D ('same', padded
with +1, 16 input channels: a partly filled 32-bit word) → BN → MaxPool (on packed bits) → binary QuantConv2D
('same', padded with 0, 40 output channels: not a multiple of 32) → BN → Flatten → binary QuantDense → BN → float
Dense head (logits). It is trained for a few epochs (seconds), saved as .h5, compiled through the CLI, and run on
the whole test split both through ``bnncc.load`` and ``bnncc run``: the predicted classes must be those of Keras
and the logits within 1e-4 of the largest |logit|.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnncc.testing import digits_bnn as build_bnn
from bnncc.testing import digits_split as digits
from bnncc.testing import shared_dir

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # max |bnncc - keras| / max |keras| over all logits
EPOCHS = 4


def bnncc_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "bnncc", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def describe(r: subprocess.CompletedProcess) -> str:
    return f"{' '.join(r.args)}: exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"




def train(out: Path) -> None:
    """Train, save model.h5 and the test split with Keras' logits, then compile with the CLI (result.json)."""
    from bnncc._tf import keras, tf

    x_train, x_test, y_train, y_test = digits()
    tf.keras.utils.set_random_seed(0)
    model = build_bnn()
    # Eager steps: tracing the Larq graph for model.fit takes longer than training 4 epochs eagerly.
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    model.fit(x_train, y_train, batch_size=64, epochs=EPOCHS, verbose=0)
    model.save(out / "model.h5", include_optimizer=False)
    np.save(out / "x_test.npy", x_test)
    np.save(out / "y_test.npy", y_test)
    np.save(out / "keras_logits.npy", model(x_test, training=False).numpy())
    r = bnncc_cli("compile", "model.h5", "-o", "model.so", cwd=out)
    (out / "compile.json").write_text(json.dumps({"args": r.args, "returncode": r.returncode, "stdout": r.stdout,
                                                  "stderr": r.stderr}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with shared_dir(tmp_path_factory, "bnncc-trained-digits") as path:
        if not (path / "compile.json").exists():
            train(path)
    r = subprocess.CompletedProcess(**json.loads((path / "compile.json").read_text()))
    return {"dir": path, "compile": r, "x": np.load(path / "x_test.npy"), "y": np.load(path / "y_test.npy"),
            "keras": np.load(path / "keras_logits.npy")}


def compare(got: np.ndarray, want: np.ndarray) -> tuple[float, np.ndarray]:
    """(max |got - want| / max |want|, indices of samples whose predicted class differs)."""
    err = float(np.abs(got - want).max() / np.abs(want).max())
    return err, np.flatnonzero(got.argmax(-1) != want.argmax(-1))


def test_keras_model_learned_the_digits(trained):
    accuracy = float((trained["keras"].argmax(1) == trained["y"]).mean())
    print(f"digits BNN: Keras test accuracy {accuracy:.4f} on {len(trained['y'])} images after {EPOCHS} epochs")
    assert accuracy > 0.5


def test_cli_compile_summary(trained):
    r, so = trained["compile"], trained["dir"] / "model.so"
    assert r.returncode == 0, describe(r)
    assert "Traceback" not in r.stderr, describe(r)
    assert so.is_file()
    m = re.search(r"size: ([\d.]+) (KiB|MiB) \(vs ([\d.]+) (KiB|MiB) of the \.h5 file: ([\d.]+)x smaller\)",
                  r.stderr)
    assert m, describe(r)
    unit = {"KiB": 2**10, "MiB": 2**20}
    assert float(m[1]) * unit[m[2]] == pytest.approx(so.stat().st_size, rel=0.01)
    assert float(m[3]) * unit[m[4]] == pytest.approx((trained["dir"] / "model.h5").stat().st_size, rel=0.01)
    ops = re.search(r"binary ops: (\d+)", r.stderr)
    assert ops and int(ops[1]) >= 3, describe(r)  # two binary convs and a binary dense at least


def test_library_matches_keras_on_the_whole_test_split(trained):
    import bnncc

    assert trained["compile"].returncode == 0, describe(trained["compile"])
    exe = bnncc.load(trained["dir"] / "model.so")
    x, want = trained["x"], trained["keras"]
    got = np.concatenate([exe(x[i : i + 1]) for i in range(len(x))])
    assert got.shape == want.shape == (len(x), 10)
    err, differ = compare(got, want)
    accuracy = float((got.argmax(1) == trained["y"]).mean())
    print(f"digits BNN: bnncc on {len(x)} test images: accuracy {accuracy:.4f}, "
          f"max |bnncc - keras| / max |keras| = {err:.2e} (max |keras| = {np.abs(want).max():.2f})")
    assert differ.size == 0, f"predicted class differs from Keras on test images {differ.tolist()}"
    assert err <= TOLERANCE


def test_cli_run_matches_keras(trained, tmp_path):
    assert trained["compile"].returncode == 0, describe(trained["compile"])
    x, want = trained["x"][:1], trained["keras"][:1]
    np.save(tmp_path / "x.npy", x)
    r = bnncc_cli("run", trained["dir"] / "model.so", "-i", "x.npy", "-o", "y.npy", cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    assert "output 0: shape (1, 10) float32" in r.stderr, describe(r)
    got = np.load(tmp_path / "y.npy")
    assert got.shape == (1, 10) and got.dtype == np.float32
    assert got.argmax() == want.argmax()
    assert np.abs(got - want).max() <= TOLERANCE * np.abs(trained["keras"]).max()
