"""Named compilation targets.

TVM 0.27 silently turns ``mcpu=native`` into ``generic`` (no popcount instructions), so ``host`` asks LLVM for
the real CPU name instead.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import tvm

from .errors import TargetError


@dataclass(frozen=True)
class TargetSpec:
    """A named target: the TVM target dict plus what bnncc needs to know to build for it."""

    name: str
    description: str
    arch: str  # "x86_64" or "aarch64"
    attrs: dict = field(default_factory=dict)
    cross_compiler: str | None = None  # g++ driver used by export_library when not building for this machine

    @property
    def word_bits(self) -> int:
        """Packed word size that suits the target: 16 on NEON (cnt + uadalp.8h, ~20 % fewer instructions per
        binary MAC than 32-bit words), 32 on x86 (VPOPCNTDQ is as fast for 32- as for 64-bit lanes, and 32
        wastes fewer padding bits)."""
        return 16 if self.arch == "aarch64" else 32

    def tvm_target(self, num_cores: int | None = None) -> tvm.target.Target:
        cfg = {"kind": "llvm", **self.attrs}
        if num_cores:
            cfg["num-cores"] = num_cores
        return tvm.target.Target(cfg)

    @property
    def is_native(self) -> bool:
        return self.arch == platform.machine()


_AARCH64 = {"mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}


def _host() -> TargetSpec:
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    return TargetSpec("host", f"this machine's CPU ({cpu})", platform.machine(), {"mcpu": cpu})


def _named() -> dict[str, TargetSpec]:
    specs = [
        TargetSpec("x86", "portable x86-64 with AVX2 (haswell)", "x86_64", {"mtriple": "x86_64-linux-gnu",
                                                                            "mcpu": "haswell"}),
        TargetSpec("x86-avx512", "x86-64 with AVX-512 VPOPCNTDQ (icelake-server)", "x86_64",
                   {"mtriple": "x86_64-linux-gnu", "mcpu": "icelake-server"}),
        TargetSpec("aarch64", "generic aarch64 with NEON", "aarch64", dict(_AARCH64),
                   "aarch64-linux-gnu-g++"),
        TargetSpec("rasp4", "Raspberry Pi 4 (Cortex-A72)", "aarch64", {**_AARCH64, "mcpu": "cortex-a72"},
                   "aarch64-linux-gnu-g++"),
        TargetSpec("pixel1", "Pixel-1-class phone (Kryo, armv8-a)", "aarch64", {**_AARCH64, "mcpu": "kryo"},
                   "aarch64-linux-gnu-g++"),
    ]
    return {s.name: s for s in specs}


def target_names() -> list[str]:
    return ["host", *_named()]


def get_target(name: str | TargetSpec) -> TargetSpec:
    """Return the named target; ``host`` is detected, never ``mcpu=native``."""
    if isinstance(name, TargetSpec):
        return name
    if name == "host":
        return _host()
    specs = _named()
    if name not in specs:
        raise TargetError(f"unknown target {name!r}; known targets: {', '.join(target_names())}")
    return specs[name]
