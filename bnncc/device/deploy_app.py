"""The C++ deploy app of ``deploy/cpp`` (``bnncc_run``: a compiled model's library, .npy in, .npy out) built with
its Makefile and run: cross-built and run under qemu (``arch="aarch64"``), or built for this machine
(``"native"``)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .arm64 import DEFAULT_CPU, REPO, DeviceError, guest_safe_env, qemu_cmd, setup
from .insncount import InsnCount, insncount

DEPLOY_CPP = REPO / "deploy" / "cpp"


def _host_site() -> Path:
    import tvm_ffi

    return Path(tvm_ffi.__file__).resolve().parent.parent


def _cache_dir() -> Path:
    return Path(os.environ.get("BNNCC_CACHE") or Path.home() / ".cache" / "bnncc")


def build_deploy_app(arch: str = "aarch64", out_dir: Path | str | None = None) -> Path:
    """Build deploy/cpp/bnncc_run with its Makefile (incremental) and return the binary.

    ``arch="aarch64"``: cross-built against the sysroot's aarch64 wheels; ``"native"``: against the host
    wheels of this interpreter. Default output: ``$BNNCC_CACHE/deploy/<arch>/bnncc_run``."""
    if arch == "aarch64":
        site = setup().site
    elif arch == "native":
        site = _host_site()
    else:
        raise DeviceError(f"unknown deploy arch {arch!r} (aarch64 or native)")
    out = Path(out_dir) if out_dir else _cache_dir() / "deploy" / arch
    cmd = ["make", "-s", "-C", str(DEPLOY_CPP), f"ARCH={arch}", f"SITE={site}", f"OUT={out}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise DeviceError(f"building the deploy app failed: {' '.join(cmd)}\n{res.stdout}{res.stderr}")
    return out / "bnncc_run"


@dataclass
class DeployResult:
    outputs: list[np.ndarray]  # one per model output (a tuple output gives several)
    stderr: str
    insns: InsnCount | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> np.ndarray:
        return self.outputs[0]


def run_deploy_app(
    model_so: Path | str,
    inputs: Iterable[np.ndarray] | np.ndarray,
    *,
    arch: str = "aarch64",
    func: str = "main",
    repeat: int = 0,
    count_insns: bool = False,
    cpu: str | None = DEFAULT_CPU,
    guest_env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> DeployResult:
    """Run ``model_so`` (exported Relax library) through the deploy app: under qemu for
    ``arch="aarch64"`` (libs from the sysroot's wheels via LD_LIBRARY_PATH), natively for ``"native"``.

    ``repeat``: timed runs after the first (``--repeat``). ``count_insns`` (aarch64 only): run under the
    qemu-insncount plugin; with ``repeat`` the app marks the timed runs, so ``result.insns.region(1, 2)
    / repeat`` is the instruction count of one run of ``func``; counting sets ``TVM_NUM_THREADS=1``
    (the plugin's count is exact for one thread only; ``result.insns.vcpus`` tells). ``guest_env``: extra
    environment for the app (aarch64: passed with qemu -E; native: added to the process environment)."""
    app = build_deploy_app(arch)
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    with tempfile.TemporaryDirectory(prefix="bnncc-deploy-") as td:
        tdp = Path(td)
        in_paths = []
        for i, x in enumerate(inputs):
            in_paths.append(tdp / f"in{i}.npy")
            np.save(in_paths[-1], np.ascontiguousarray(x))
        out_path = tdp / "out.npy"
        args = [str(app), "--func", func] + (["--repeat", str(repeat)] if repeat else [])
        if count_insns and repeat:
            args.append("--mark")
        args += [str(Path(model_so).resolve()), str(out_path)] + [str(p) for p in in_paths]
        insns = None
        if arch == "aarch64":
            env = setup()
            genv = {"LD_LIBRARY_PATH": env.ld_library_path}
            if count_insns:
                genv["TVM_NUM_THREADS"] = "1"
            genv.update(guest_env or {})
            if count_insns:
                insns = insncount(args, cpu=cpu, guest_env=genv, timeout=timeout, check=False)
                rc, stderr = insns.returncode, insns.stderr
            else:
                res = subprocess.run(
                    qemu_cmd(cpu=cpu, guest_env=genv) + args,
                    env=guest_safe_env(), capture_output=True, text=True, timeout=timeout,
                )  # fmt: skip
                rc, stderr = res.returncode, res.stderr
        else:
            if count_insns:
                raise DeviceError("instruction counts need arch='aarch64'")
            site = _host_site()
            henv = dict(os.environ, LD_LIBRARY_PATH=f"{site / 'tvm' / 'lib'}:{site / 'tvm_ffi' / 'lib'}")
            henv.update(guest_env or {})
            res = subprocess.run(args, env=henv, capture_output=True, text=True, timeout=timeout)
            rc, stderr = res.returncode, res.stderr
        if rc != 0:
            raise DeviceError(f"bnncc_run ({arch}) exited {rc}:\n{stderr[-3000:]}")
        if out_path.exists():
            outputs = [np.load(out_path)]
        else:
            outputs, i = [], 0
            while (tdp / f"out.{i}.npy").exists():
                outputs.append(np.load(tdp / f"out.{i}.npy"))
                i += 1
        if not outputs:
            raise DeviceError(f"bnncc_run ({arch}) wrote no output:\n{stderr[-3000:]}")
        return DeployResult(outputs, stderr, insns)
