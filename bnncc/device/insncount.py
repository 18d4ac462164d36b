"""Exact dynamic instruction counts of guest programs under qemu (the qemu-insncount TCG plugin built by
``deploy/setup_arm64.sh``). Timings under qemu mean nothing; instruction counts do."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .arm64 import DEFAULT_CPU, DeviceError, guest_safe_env, qemu_cmd, setup

MARK_SYSCALL = 0x4D41  # qemu-insncount's marker syscall number


@dataclass
class InsnCount:
    """Result of :func:`insncount`: TOTAL and MARK lines of the qemu-insncount plugin."""

    total: int
    vcpus: int
    marks: list[tuple[int, int]]  # (tag, instructions so far), in order
    returncode: int
    stdout: str
    stderr: str

    def mark(self, tag: int, occurrence: int = 0) -> int:
        """Count at the ``occurrence``-th marker with ``tag``."""
        hits = [c for t, c in self.marks if t == tag]
        if len(hits) <= occurrence:
            raise DeviceError(f"marker {tag} (occurrence {occurrence}) not seen; marks: {self.marks}")
        return hits[occurrence]

    def region(self, start_tag: int = 1, end_tag: int = 2) -> int:
        """Instructions between the first ``start_tag`` marker and the first ``end_tag`` after it."""
        for i, (t, c) in enumerate(self.marks):
            if t == start_tag:
                for t2, c2 in self.marks[i + 1 :]:
                    if t2 == end_tag:
                        return c2 - c
        raise DeviceError(f"no marker pair {start_tag}..{end_tag}; marks: {self.marks}")


def parse_insncount(text: str) -> tuple[int | None, int, list[tuple[int, int]]]:
    total, vcpus, marks = None, 0, []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "MARK":
            marks.append((int(parts[1]), int(parts[2])))
        elif len(parts) == 4 and parts[0] == "TOTAL" and parts[2] == "vcpus":
            total, vcpus = int(parts[1]), int(parts[3])
    return total, vcpus, marks


def insncount(
    cmd_args: Sequence[str | os.PathLike],
    *,
    cpu: str | None = DEFAULT_CPU,
    guest_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = 600.0,
    check: bool = True,
) -> InsnCount:
    """Run a guest program under qemu with the qemu-insncount plugin and parse its counts.

    ``cmd_args``: the aarch64 program (a host path, or a path inside the sysroot such as
    ``sysroot()/"usr/bin/python3.11"``) and its arguments. ``guest_env``: variables for the guest
    (``-E``), e.g. ``{"PYTHONPATH": str(setup().site)}`` for python, ``{"LD_LIBRARY_PATH": ...}``.
    The guest marks regions with ``syscall(0x4d41, tag)`` (C) or
    ``ctypes.CDLL(None).syscall(0x4d41, tag)`` (python); see :meth:`InsnCount.region`.
    The plugin log goes to a temporary file: with ``-D /dev/stderr`` qemu opens stderr anew with its
    own file offset, and when stderr is a regular file the guest's writes overwrite the MARK lines.
    """
    env = setup()
    if env.insncount_plugin is None or not env.insncount_plugin.is_file():
        raise DeviceError("the qemu-insncount plugin is not built (see deploy/setup_arm64.sh)")
    with tempfile.TemporaryDirectory(prefix="bnncc-insn-") as td:
        log = Path(td) / "plugin.log"
        cmd = qemu_cmd(cpu=cpu, guest_env=guest_env, plugin=env.insncount_plugin, plugin_log=log)
        cmd += [str(a) for a in cmd_args]
        try:
            res = subprocess.run(cmd, cwd=cwd, env=guest_safe_env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(f"insncount: {cmd_args[0]} did not finish in {timeout} s") from e
        text = log.read_text() if log.exists() else ""
    total, vcpus, marks = parse_insncount(text)
    what = " ".join(map(str, cmd_args))
    if check and res.returncode != 0:
        raise DeviceError(f"insncount: {what} exited {res.returncode}:\n{res.stderr[-3000:]}")
    if total is None:
        raise DeviceError(f"insncount: no TOTAL line from the plugin for {what}:\n{res.stderr[-3000:]}")
    return InsnCount(total, vcpus, marks, res.returncode, res.stdout, res.stderr)
