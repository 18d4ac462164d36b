"""bnncc models compiled for aarch64, run on the emulated arm64 device (qemu-user; bnncc.device).

Two models — the zoo's QuickNetSmall at 64×64 and a small Larq BNN with every kind of layer (binary convs padded
with 0 and with 1 whose channel counts are not multiples of 32, BatchNorm, max-pool, a binary dense layer, a float
head) — compiled with ``bnncc.compile(model, target="aarch64")`` and exported with the cross compiler, run

* (a) on a TVM RPC server under qemu reached through a tracker, with :func:`bnncc.rpc.run_remote` and with the CLI
  (``python -m bnncc run m.so -i x.npy -o y.npy --rpc HOST:PORT --key aarch64-qemu``),
* (b) in the C++ deploy app (deploy/cpp) under qemu,

and their outputs must equal those of the same model built for this x86 host (1e-5 of the largest output: float
ops may round differently; in practice they are identical) and be within 1e-4 of Keras. One bitpack+bconv2d and
one bconv2d on already packed words are checked bit-exact (identity output transform: the float outputs are the
integer accumulators) against the numpy oracle. The client of run_remote gets a clear BnnccError — no TVM
traceback, no hang — for a wrong input shape, an x86 library, an unreachable tracker, an unknown key, a session
timeout and a server killed mid-request (also through the CLI: exit 2 and one ``bnncc: error:`` line);
:func:`bnncc.rpc.time_remote` times a model on the device. Skips only when qemu cannot be installed here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bnncc import device, reference
from bnncc.errors import BnnccError
from bnncc.testing import shared_dir

REPO = Path(__file__).resolve().parents[2]
KEY = device.DEFAULT_KEY
KERAS_TOLERANCE = 1e-4  # max |bnncc - keras| / max |keras|
HOST_TOLERANCE = 1e-5  # max |aarch64 - x86| / max |x86|

# Fixture "arm64_env": the device's paths; skips if qemu cannot be installed here.
arm64_env = device.pytest_fixtures(scope="module")[0]


@pytest.fixture(scope="module")
def device_starting(arm64_env, tmp_path_factory):
    """A tracker + qemu RPC server (QemuRpcDevice), started in a background thread: its ~15 s start-up (two
    `import tvm` under qemu) overlaps with compiling the models."""
    dev = device.QemuRpcDevice(KEY, log_dir=tmp_path_factory.mktemp("arm64-rpc-logs"))
    errors: list[BaseException] = []

    def start():
        try:
            dev.start()
        except BaseException as e:  # noqa: BLE001 -- re-raised by arm64_rpc
            errors.append(e)

    thread = threading.Thread(target=start, name="qemu-rpc-start", daemon=True)
    thread.start()
    yield dev, thread, errors
    thread.join(dev.startup_timeout + 60)
    dev.close()


@pytest.fixture(scope="module")
def arm64_rpc(device_starting) -> device.QemuRpcDevice:
    dev, thread, errors = device_starting
    thread.join(dev.startup_timeout + 60)
    if errors:
        raise errors[0]
    assert not thread.is_alive(), "the qemu RPC device did not start"
    return dev


@pytest.fixture
def tracker(arm64_rpc) -> str:
    """The tracker's HOST:PORT, with a live server behind it (a test may have killed it)."""
    arm64_rpc.ensure_server()
    return arm64_rpc.tracker


# -------------------------------------------------------------------------------------------------- models
def larq_bnn():
    """A small Larq BNN: float stem, two binary convs ('same', padded with 1 then 0; 24→40→20 channels), BN after
    each, a max-pool on packed bits, a binary dense layer on a 5·5·20 = 500-channel flatten, a float head."""
    from bnncc import models
    from bnncc._tf import keras, lq

    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False)
    x = inp = keras.Input((10, 10, 3), name="image")
    x = keras.layers.Conv2D(24, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = lq.layers.QuantConv2D(40, 3, padding="same", pad_values=1.0, name="bconv1", **binary)(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = lq.layers.QuantConv2D(20, 3, padding="same", pad_values=0.0, name="bconv2", **binary)(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = lq.layers.QuantDense(48, name="bdense", **binary)(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, out, name="small_bnn")
    rng = np.random.default_rng(7)
    models.randomize_weights(model, rng)
    models.calibrate_batchnorm(model, rng)
    return model


@dataclass
class Case:
    name: str
    so: Path  # exported for aarch64
    x: np.ndarray
    keras: np.ndarray
    host: np.ndarray  # the same model built for this x86 host
    binary_ops: int


def _make_case(name: str, out_dir: Path) -> None:
    import bnncc
    from bnncc import models

    if name == "quicknet_small":
        model = models.build("quicknet_small", input_shape=(64, 64, 3), num_classes=10)
    else:
        model = larq_bnn()
    x = np.random.default_rng(3).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    exe = bnncc.compile(model, target="aarch64")
    assert exe.target.arch == "aarch64" and not exe.target.is_native
    exe.export_library(out_dir / "model_aarch64.so")
    np.save(out_dir / "x.npy", x)
    np.save(out_dir / "keras.npy", model(x, training=False).numpy())
    np.save(out_dir / "host.npy", bnncc.compile(model, target="host")(x))
    (out_dir / "binary_ops").write_text(str(exe.stats["binary_ops"]))




@pytest.fixture(scope="module", params=["quicknet_small", "larq_bnn"])
def case(request, arm64_env, tmp_path_factory) -> Case:
    if "tracker" in request.fixturenames:  # a test on the RPC server: let it start while the model compiles
        request.getfixturevalue("device_starting")
    with shared_dir(tmp_path_factory, f"bnncc-aarch64-{request.param}") as d:
        if not (d / "binary_ops").exists():
            _make_case(request.param, d)
    c = Case(request.param, d / "model_aarch64.so", np.load(d / "x.npy"), np.load(d / "keras.npy"),
             np.load(d / "host.npy"), int((d / "binary_ops").read_text()))
    assert c.binary_ops >= 3, c
    assert rel_err(c.host, c.keras) < KERAS_TOLERANCE, "the x86 build itself is off"
    return c


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def check_outputs(got: np.ndarray, c: Case) -> None:
    assert rel_err(got, c.host) <= HOST_TOLERANCE, f"{c.name}: aarch64 differs from x86 by {rel_err(got, c.host)}"
    assert rel_err(got, c.keras) < KERAS_TOLERANCE, f"{c.name}: aarch64 differs from Keras by {rel_err(got, c.keras)}"
    assert got.argmax() == c.keras.argmax()


# ------------------------------------------------------------------------------------------------- (a) RPC
def test_run_remote_matches_host_and_keras(case, tracker):
    from bnncc.rpc import run_remote

    got = run_remote(case.so, [case.x], tracker, KEY)
    assert isinstance(got, np.ndarray)
    check_outputs(got, case)
    print(f"{case.name}: |aarch64 - x86| max {np.abs(got - case.host).max():.3g}, "
          f"rel. to Keras {rel_err(got, case.keras):.3g}")


def bnncc_cli(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "bnncc", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def describe(r: subprocess.CompletedProcess) -> str:
    return f"{' '.join(r.args)}: exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def test_cli_run_rpc(case, tracker, tmp_path):
    np.save(tmp_path / "x.npy", case.x)
    r = bnncc_cli("run", case.so, "-i", "x.npy", "-o", "y.npy", "--rpc", tracker, "--key", KEY, cwd=tmp_path)
    assert r.returncode == 0, describe(r)
    assert f"output 0: shape {case.keras.shape} float32" in r.stderr, describe(r)
    check_outputs(np.load(tmp_path / "y.npy"), case)


# ------------------------------------------------------------------------------------------ (b) deploy app
def test_deploy_app_matches_host_and_keras(case, arm64_env):
    res = device.run_deploy_app(case.so, [case.x], arch="aarch64")
    assert len(res.outputs) == 1
    check_outputs(res.output, case)


# ------------------------------------------------------------------------------------ bit-exact bconv2d
def _bconv_case(packed_input: bool):
    """(graph body, input, expected accumulators as float32): 70 input channels (3 words, the last partly
    filled), 37 output channels, identity output transform, so the float outputs are the accumulators."""
    from bnncc.relay_ops import bconv2d, bitpack

    rng = np.random.default_rng(11)
    n, h, w, cin, cout = 1, 9, 7, 70, 37
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0  # sign(0) = +1
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)  # HWIO, like Keras
    if packed_input:  # the kernel alone: already packed words in, padded with +1 ("pad_values=1")
        kw = dict(padding="same", pad_value=1)

        def body(bb, xp):
            return bconv2d(xp, kernel, **kw)

        data = reference.bitpack(x, bits=16)  # the aarch64 default word size
    else:  # bitpack + bconv2d, padded with 0, strided and dilated
        kw = dict(padding="same", pad_value=0, strides=(2, 1), dilation=(1, 2))

        def body(bb, xf):
            return bconv2d(bb.emit(bitpack(xf)), kernel, **kw)

        data = x
    acc = reference.bconv2d_acc(reference.binarize(x), reference.binarize(kernel.transpose(3, 0, 1, 2)),
                                kw.get("strides", (1, 1)), kw.get("dilation", (1, 1)), kw["padding"], kw["pad_value"])
    return body, data, acc


@pytest.mark.parametrize(("packed_input", "target"), [(False, "aarch64"), (True, "rasp4")],
                         ids=["bitpack+bconv2d-aarch64", "bconv2d-on-packed-rasp4"])
def test_bconv2d_aarch64_bit_exact(arm64_env, packed_input, target, tmp_path):
    """The second case is the kernel configuration benchmarks/bench_aarch64.py counts (rasp4, packed input)."""
    from bnncc.testing import compile_graph

    body, data, acc = _bconv_case(packed_input)
    exe = compile_graph(body, (data.shape, data.dtype.name), target=target)
    asm = exe.assembly()
    assert re.search(r"\bcnt\s+v\d+\.(?:16|8)b", asm), "no NEON cnt in the aarch64 build"
    so = exe.export_library(tmp_path / "bconv.so")
    got = device.run_deploy_app(so, [data], arch="aarch64").output
    assert got.dtype == np.float32 and got.shape == acc.shape
    assert np.array_equal(got, acc.astype(np.float32)), f"{np.count_nonzero(got != acc)} accumulators differ"
    assert np.abs(acc).max() < 2**24  # exact in float32


# ----------------------------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """(aarch64 .so, x86 .so, input) of a tiny bitpack+bconv2d graph: cheap to upload and run."""
    from bnncc.relay_ops import bconv2d, bitpack
    from bnncc.testing import compile_graph

    kernel = np.random.default_rng(0).standard_normal((3, 3, 8, 4)).astype(np.float32)
    x = np.random.default_rng(1).standard_normal((1, 6, 6, 8)).astype(np.float32)
    d = tmp_path_factory.mktemp("small")

    def body(bb, xf):
        return bconv2d(bb.emit(bitpack(xf)), kernel, padding="same")

    a64 = compile_graph(body, (x.shape, "float32"), target="aarch64").export_library(d / "small_aarch64.so")
    x86 = compile_graph(body, (x.shape, "float32"), target="host").export_library(d / "small_x86.so")
    return a64, x86, x


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg and "Stack trace" not in msg, msg
    assert e.__cause__ is None and e.__context__ is None, repr(e)  # no TVM error chained to it
    return msg


def test_run_remote_bad_inputs(arm64_rpc, small_model, tracker):
    from bnncc.rpc import run_remote

    so, x86_so, x = small_model
    with pytest.raises(BnnccError) as e:
        run_remote(so, [x[:, :5]], tracker, KEY)
    msg = _one_line(e.value)
    assert "expects shape (1, 6, 6, 8) float32, got shape (1, 5, 6, 8) float32" in msg, msg
    with pytest.raises(BnnccError) as e:
        run_remote(so, [x, x], tracker, KEY)
    assert "takes 1 input(s)" in _one_line(e.value) and "got 2" in str(e.value)
    with pytest.raises(BnnccError) as e:
        run_remote(x86_so, [x], tracker, KEY)
    # refused before upload: the key names the device's architecture (its TVM is runtime-only)
    assert "built for x86_64" in _one_line(e.value) and "is aarch64: not uploaded" in str(e.value)
    # None of these leaves the server busy: the next request is served at once.
    t0 = time.monotonic()
    np.testing.assert_array_equal(run_remote(so, x, tracker, KEY, request_timeout=10),
                                  device.run_deploy_app(so, [x]).output)
    assert time.monotonic() - t0 < 20


def test_cli_run_rpc_wrong_shape_is_one_line(small_model, tracker, tmp_path):
    so, _, x = small_model
    np.save(tmp_path / "x.npy", x[:, :, :4])
    r = bnncc_cli("run", so, "-i", "x.npy", "--rpc", tracker, "--key", KEY, cwd=tmp_path)
    assert r.returncode == 2, describe(r)
    assert "Traceback" not in r.stderr and "Stack trace" not in r.stderr, describe(r)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("bnncc: error:")]
    assert errors == ["bnncc: error: input 0 (x0): the model expects shape (1, 6, 6, 8) float32, "
                      "got shape (1, 6, 4, 8) float32"], describe(r)


def test_time_remote(small_model, tracker):
    from bnncc.rpc import time_remote

    so, _, x = small_model
    samples = time_remote(so, [x], tracker, KEY, repeats=3, number=2)
    assert len(samples) == 3 and all(0 < s < 5 for s in samples), samples


def test_run_remote_unreachable_tracker_and_unknown_key(arm64_rpc, small_model, tracker):
    from bnncc.rpc import run_remote

    so, _, x = small_model
    t0 = time.monotonic()
    with pytest.raises(BnnccError, match=r"cannot reach the RPC tracker 127\.0\.0\.1:\d+"):
        run_remote(so, [x], f"127.0.0.1:{device.free_port()}", KEY)
    with pytest.raises(BnnccError, match="expected HOST:PORT"):
        run_remote(so, [x], "localhost", KEY)
    assert time.monotonic() - t0 < 5
    t0 = time.monotonic()
    with pytest.raises(BnnccError) as e:
        run_remote(so, [x], tracker, "no-such-device", request_timeout=3)
    assert f"no RPC server with key 'no-such-device' is registered at the tracker {tracker}" in _one_line(e.value)
    assert f"'{KEY}'" in str(e.value)  # lists the keys the tracker knows
    assert time.monotonic() - t0 < 10


@pytest.fixture(scope="module")
def slow_model(arm64_env, tmp_path_factory):
    """A model that runs for a minute or more under qemu: an unscheduled 1536³ float matmul (~3.6 G MACs)."""
    import tvm
    from tvm import relax

    n = 1536
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n, n), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.matmul(x, x))
        bb.emit_func_output(y)
    ex = tvm.compile(bb.get(), device.aarch64_target())
    so = device.export_aarch64(ex, tmp_path_factory.mktemp("slow") / "slow_aarch64.so")
    return so, np.ones((n, n), np.float32)


def _in_thread(fn):
    result: dict = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 -- inspected by the test
            result["error"] = e
        result["at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_run_remote_session_timeout(slow_model, tracker):
    from bnncc.rpc import run_remote

    so, x = slow_model
    t0 = time.monotonic()
    with pytest.raises(BnnccError) as e:
        run_remote(so, [x], tracker, KEY, session_timeout=5)
    assert "session timeout (5 s) expired" in _one_line(e.value), e.value
    assert time.monotonic() - t0 < 5 + 10


def test_run_remote_server_killed_mid_request(arm64_rpc, slow_model, tracker):
    """Kills the shared server (the `tracker` fixture restarts it for any later test, ~15 s)."""
    from bnncc.rpc import run_remote

    so, x = slow_model
    session_timeout = 60
    thread, result = _in_thread(lambda: run_remote(so, [x], tracker, KEY, session_timeout=session_timeout))
    time.sleep(4.0)  # connected, uploaded, running main (a minute or more under qemu)
    assert thread.is_alive(), f"the remote run ended early: {result}"
    killed_at = time.monotonic()
    arm64_rpc.kill_server()
    thread.join(session_timeout)
    assert not thread.is_alive(), f"run_remote still hangs {session_timeout} s after the server was killed"
    assert isinstance(result.get("error"), BnnccError), result
    msg = _one_line(result["error"])
    assert "connection was lost while running main" in msg, msg
    assert result["at"] - killed_at < 10, "the error came, but late"
