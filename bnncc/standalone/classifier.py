"""The deploy example around a C library (``deploy/standalone/classify.c``), built fully static and run natively
or under qemu-user: what the tests and the footprint/speed benchmark drive a standalone model with."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BnnccError
from . import MARKER, compilers

DEPLOY_DIR = Path(os.environ.get("BNNCC_REPO") or Path(__file__).resolve().parents[2]) / "deploy" / "standalone"
QEMU = {"aarch64": "qemu-aarch64", "armv7": "qemu-arm"}


def _info(lib: Path) -> dict:
    return json.loads((Path(lib) / MARKER).read_text())


def build_classifier(lib: str | os.PathLike, out: str | os.PathLike) -> Path:
    """``deploy/standalone/classify`` linked statically against the C library in ``lib``."""
    info = _info(Path(lib))
    from ..elfcheck import host_machine

    cc, _ = compilers(info["arch"], info["arch"] == host_machine())
    cmd = ["make", "-s", "-B", "-C", str(DEPLOY_DIR), f"LIB={Path(lib).resolve()}", f"CC={cc}",
           f"OUT={Path(out).resolve()}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BnnccError(f"building the classifier failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return Path(out)


def run_classifier(exe: str | os.PathLike, arch: str, x: np.ndarray, *, threads: int | None = None,
                   prefix: tuple[str, ...] = (), timeout: float = 600) -> np.ndarray:
    """The model's output for one float32 input (the classifier's ``-o``), natively or under qemu for ``arch``;
    ``prefix``: a wrapper command (e.g. qemu with an instruction-count plugin)."""
    from ..elfcheck import host_machine

    with tempfile.TemporaryDirectory(prefix="bnncc-classify-") as td:
        inp, outp = Path(td) / "in.f32", Path(td) / "out.f32"
        np.ascontiguousarray(x, dtype=np.float32).tofile(inp)
        runner = list(prefix) or ([] if arch == host_machine() else [QEMU[arch]])
        cmd = [*runner, str(exe), str(inp), "-o", str(outp), *(["-t", str(threads)] if threads else [])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise BnnccError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
        return np.fromfile(outp, dtype=np.float32)
