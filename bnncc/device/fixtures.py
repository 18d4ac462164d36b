"""pytest fixtures for tests on the emulated aarch64 device (pytest is imported only when they are made)."""

from __future__ import annotations

from .arm64 import Arm64Env, require_arm64
from .qemu_server import DEFAULT_KEY, QemuRpcDevice


def pytest_fixtures(scope: str = "module", key: str = DEFAULT_KEY, prefix: str = "arm64"):
    """Fixtures for a test module (or a conftest.py)::

        from bnncc.device import pytest_fixtures
        arm64_env, arm64_rpc = pytest_fixtures()   # fixture names: "arm64_env", "arm64_rpc"

    ``arm64_env`` -> :class:`Arm64Env` (skips when qemu cannot be installed); ``arm64_rpc`` -> a started
    :class:`QemuRpcDevice` (tracker + qemu RPC server) shared by the ``scope``; server logs under pytest's
    tmp dir. ``prefix`` renames both fixtures (``<prefix>_env``, ``<prefix>_rpc``).
    """
    import pytest

    @pytest.fixture(scope=scope, name=f"{prefix}_env")
    def _env() -> Arm64Env:
        return require_arm64()

    @pytest.fixture(scope=scope, name=f"{prefix}_rpc")
    def _rpc(request, tmp_path_factory):
        request.getfixturevalue(f"{prefix}_env")
        with QemuRpcDevice(key, log_dir=tmp_path_factory.mktemp(f"{prefix}-rpc-logs")) as dev:
            yield dev

    return _env, _rpc
