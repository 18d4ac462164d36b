"""The aarch64 path end to end, on the qemu device of bnncc.device (no ARM machine needed).

A toy Relax model (matmul + relu, two inputs) compiled for aarch64+neon and exported with the cross
compiler runs (a) on a TVM RPC server under qemu reached through a real RPC tracker, (b) in the C++
deploy app (deploy/cpp) under qemu -- and natively on x86_64 as a cheap check of the same app --,
(c) the client of a server killed mid-request gets an error instead of hanging, (d) a request longer than
the session timeout ends with RPCSessionTimeoutError. Skips only when qemu cannot be installed here.

To test a real bnncc model instead, swap `toy_model` for a fixture returning (exported .so, inputs,
expected outputs); the device fixtures come from bnncc.device.pytest_fixtures().
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bnncc import device

# Fixtures "arm64_env" (skips if qemu cannot be installed) and "arm64_rpc" (tracker + qemu RPC server,
# one per module: `import tvm` under qemu takes seconds).
arm64_env, arm64_rpc = device.pytest_fixtures(scope="module")

M, K, N = 4, 32, 8


def _toy_module():
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((M, K), "float32"))
    w = relax.Var("w", relax.TensorType((K, N), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    return bb.get()


@pytest.fixture(scope="module")
def toy_model(arm64_env, tmp_path_factory):
    """(aarch64 .so, inputs, expected output)."""
    import tvm

    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    ex = tvm.compile(_toy_module(), device.aarch64_target())
    so = device.export_aarch64(ex, tmp_path_factory.mktemp("toy") / "toy_aarch64.so")
    return so, [x, w], np.maximum(x @ w, 0)


def test_device_compiles_for_bnncc_targets():
    """The device's target is bnncc's ``aarch64`` (not a copy of its facts); its qemu CPU model is the rasp4's."""
    from bnncc.targets import get_target

    assert str(device.aarch64_target()) == str(get_target("aarch64").tvm_target())
    assert device.DEFAULT_CPU == get_target("rasp4").attrs["mcpu"]


def test_rpc_tracker_lists_qemu_server(arm64_rpc):
    summary = arm64_rpc.summary()
    servers = [s for s in summary["server_info"] if s["key"] == f"server:{arm64_rpc.key}"]
    assert servers, summary


def test_rpc_remote_vm_matches_numpy(arm64_rpc, toy_model):
    so, inputs, expected = toy_model
    remote = arm64_rpc.connect(session_timeout=120)
    out = device.run_vm_remote(remote, so, inputs)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_deploy_app_aarch64_under_qemu(arm64_env, toy_model):
    so, inputs, expected = toy_model
    res = device.run_deploy_app(so, inputs, arch="aarch64")
    np.testing.assert_allclose(res.output, expected, rtol=1e-5, atol=1e-5)
    assert res.output.dtype == np.float32 and res.output.shape == (M, N)


def test_deploy_app_aarch64_insncount(arm64_env, toy_model):
    so, inputs, expected = toy_model
    res = device.run_deploy_app(so, inputs, arch="aarch64", repeat=5, count_insns=True)
    np.testing.assert_allclose(res.output, expected, rtol=1e-5, atol=1e-5)
    assert res.insns is not None and res.insns.vcpus == 1
    per_run = res.insns.region(1, 2) / 5
    # A 4x32x8 matmul + relu through the VM: a few thousand instructions, far below the whole process.
    assert 100 < per_run < res.insns.total / 10, (per_run, res.insns)


def test_deploy_app_native_x86_64(arm64_env, tmp_path):
    """The same app and the same model built for the host: a cheap check of the app itself."""
    import tvm

    rng = np.random.default_rng(1)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    ex = tvm.compile(_toy_module(), tvm.target.Target({"kind": "llvm"}))
    so = tmp_path / "toy_x86_64.so"
    ex.export_library(str(so))
    res = device.run_deploy_app(so, [x, w], arch="native")
    np.testing.assert_allclose(res.output, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


def _long_remote_call(remote, so, inputs):
    """A remote call that would run for minutes under qemu: the RPC time evaluator, 10^7 runs."""
    import tvm
    from tvm import relax

    remote.upload(str(so))
    dev = remote.cpu()
    vm = relax.VirtualMachine(remote.load_module(so.name), dev)
    args = [tvm.runtime.tensor(a, device=dev) for a in inputs]
    vm.save_function("main", "main_saved", *args, include_return=False)
    return vm.time_evaluator("main_saved", dev, number=10**7, repeat=1)


def _call_in_thread(fn):
    result: dict = {}

    def run():
        t0 = time.monotonic()
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 -- inspected by the test
            result["error"] = e
        result["at"] = time.monotonic()
        result["seconds"] = result["at"] - t0

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_rpc_session_timeout_ends_a_long_request(arm64_rpc, toy_model):
    """The server alive but the call too long: the server ends the session after session_timeout."""
    import tvm

    so, inputs, _ = toy_model
    session_timeout = 6
    remote = arm64_rpc.connect(session_timeout=session_timeout)
    evaluator = _long_remote_call(remote, so, inputs)
    thread, result = _call_in_thread(evaluator)
    thread.join(session_timeout + 30)
    assert not thread.is_alive(), "the client hangs past the session timeout"
    assert isinstance(result.get("error"), tvm.error.RPCSessionTimeoutError), result
    assert result["seconds"] <= session_timeout + 1
    # The server survives a session timeout and serves the next session.
    out = device.run_vm_remote(arm64_rpc.connect(session_timeout=120), so, inputs)
    np.testing.assert_allclose(out, toy_model[2], rtol=1e-5, atol=1e-5)


def test_rpc_server_killed_mid_request_errors_instead_of_hanging(arm64_rpc, toy_model):
    """Last in the module: it kills the shared server (a later connect() would restart it, ~12 s)."""
    so, inputs, _ = toy_model
    session_timeout = 60
    remote = arm64_rpc.connect(session_timeout=session_timeout)
    evaluator = _long_remote_call(remote, so, inputs)
    thread, result = _call_in_thread(evaluator)
    time.sleep(2.0)
    assert thread.is_alive(), f"the long remote call returned early: {result}"
    killed_at = time.monotonic()
    arm64_rpc.kill_server()
    thread.join(session_timeout)
    assert not thread.is_alive(), f"the client still hangs {session_timeout} s after the server was killed"
    assert "error" in result, result
    assert result["at"] - killed_at < 10, "the error came, but late"
    # What TVM 0.27 raises: InternalError "Check failed: (code == RPCCode::kReturn) ... code=kShutdown".
    err = result["error"]
    assert isinstance(err, RuntimeError | ConnectionError) and not isinstance(err, AssertionError), repr(err)
