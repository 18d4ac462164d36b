"""Devices bnncc runs compiled models on (for tests and measurements).

The emulated aarch64 device: an arm64 Debian sysroot run under qemu-user (:mod:`bnncc.device.arm64`), reachable as
a TVM RPC server (:mod:`bnncc.device.qemu_server`; the tracker side is :mod:`bnncc.rpc`), the C++ deploy app of
deploy/cpp (:mod:`bnncc.device.deploy_app`), exact instruction counts (:mod:`bnncc.device.insncount`) and pytest
fixtures (:mod:`bnncc.device.fixtures`). Timings under qemu mean nothing; outputs and instruction counts do.

The names below are resolved on first use (importing the package imports none of its modules).
"""

from bnncc.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".arm64": ("DEFAULT_CPU", "Arm64Env", "DeviceError", "QemuUnavailable", "guest_safe_env", "python_cmd",
               "qemu_cmd", "require_arm64", "setup", "sysroot"),
    ".insncount": ("MARK_SYSCALL", "InsnCount", "insncount", "parse_insncount"),
    ".qemu_server": ("DEFAULT_KEY", "QemuRpcDevice", "aarch64_target", "export_aarch64", "run_vm_remote",
                     "start_rpc_server"),
    ".deploy_app": ("DeployResult", "build_deploy_app", "run_deploy_app"),
    ".fixtures": ("pytest_fixtures",),
    # the TVM RPC side of the device
    "bnncc.rpc.process": ("free_port", "stop_process"),
    "bnncc.rpc.tracker": ("request_session", "start_tracker", "tracker_keys", "tracker_summary"),
})
