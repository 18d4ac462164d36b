"""Devices bnncc runs compiled models on (for tests and measurements).

`bnncc.device.qemu`: an aarch64 device without an aarch64 machine -- an arm64 Debian sysroot run under
qemu-user, reachable as a TVM RPC server, plus the C++ deploy app (deploy/cpp) and instruction counting.
"""

from bnncc.device.qemu import (
    DEFAULT_CPU,
    DEFAULT_KEY,
    Arm64Env,
    DeployResult,
    DeviceError,
    InsnCount,
    QemuRpcDevice,
    QemuUnavailable,
    build_deploy_app,
    export_aarch64,
    insncount,
    python_cmd,
    qemu_cmd,
    run_deploy_app,
    run_vm_remote,
    setup,
    start_rpc_server,
    start_tracker,
    stop_process,
    sysroot,
    tracker_summary,
)

__all__ = [
    "DEFAULT_CPU",
    "DEFAULT_KEY",
    "Arm64Env",
    "DeployResult",
    "DeviceError",
    "InsnCount",
    "QemuRpcDevice",
    "QemuUnavailable",
    "build_deploy_app",
    "export_aarch64",
    "insncount",
    "python_cmd",
    "qemu_cmd",
    "run_deploy_app",
    "run_vm_remote",
    "setup",
    "start_rpc_server",
    "start_tracker",
    "stop_process",
    "sysroot",
    "tracker_summary",
]
