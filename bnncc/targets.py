"""Compilation targets, and the one place that answers ISA questions about them.

TVM 0.27 silently turns ``mcpu=native`` into ``generic`` (no popcount instructions), so ``host`` asks LLVM for
the real CPU name instead. :func:`isa` answers what a target has (``avx512_vpopcntdq``, ``avx2``, ``vnni``,
``neon``, ``dotprod``, vector width and registers) from LLVM's own feature tables for that CPU, for the host and
for named targets alike; schedules, benchmarks and tests ask it rather than parsing target strings.

Importing this module does not import TVM (the CLI lists target names without it).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import TargetError

if TYPE_CHECKING:
    import tvm


@dataclass(frozen=True)
class Isa:
    """What a target's CPU has, as far as bnncc's kernels care."""

    arch: str  # "x86_64", "aarch64" or "armv7"
    avx2: bool = False
    avx512: bool = False  # AVX-512 F + BW (512-bit integer vectors)
    avx512_vpopcntdq: bool = False  # vector popcount of 32/64-bit lanes
    vnni: bool = False  # int8 dot products: AVX-512 VNNI or AVX-VNNI
    amx_int8: bool = False
    neon: bool = False
    dotprod: bool = False  # aarch64 sdot/udot
    vector_bits: int = 128  # widest SIMD register
    vector_registers: int = 16  # architectural SIMD registers

    @property
    def family(self) -> str:
        """The schedule family (one module of :mod:`bnncc.schedules` each): "x86-avx512", "x86-avx2",
        "arm-neon" or "generic"."""
        if self.avx512:
            return "x86-avx512"
        if self.avx2:
            return "x86-avx2"
        if self.neon:
            return "armv7-neon" if self.arch == "armv7" else "arm-neon"
        return "generic"

    @property
    def popcount_path(self) -> str:
        """How binary kernels count bits here: what a benchmark records as the ISA path it measured."""
        if self.avx512_vpopcntdq:
            return "avx512-vpopcntdq"
        if self.avx512:
            return "avx512bw-lut"  # vpshufb nibble table on 512-bit vectors
        if self.avx2:
            return "avx2-lut"  # vpshufb nibble table + vpsadbw/accumulate
        if self.neon:
            return "neon-cnt"  # cnt .16b + uadalp
        return "scalar"

    def describe(self) -> str:
        flags = [n for n in ("avx2", "avx512", "avx512_vpopcntdq", "vnni", "amx_int8", "neon", "dotprod")
                 if getattr(self, n)]
        return f"{self.arch} {'+'.join(flags) or 'baseline'}, {self.vector_bits}-bit vectors, popcount: " \
               f"{self.popcount_path}"


@dataclass(frozen=True)
class TargetSpec:
    """A named target: the TVM target dict plus what bnncc needs to know to build for it."""

    name: str
    description: str
    arch: str  # "x86_64", "aarch64" or "armv7"
    attrs: dict = field(default_factory=dict)
    cross_compiler: str | None = None  # g++ driver used by export_library when not building for this machine
    tvm_runtime: bool = True  # TVM's runtime exists for it (wheels); else only --emit c-library deploys there

    @property
    def word_bits(self) -> int:
        """Packed word size that suits the target: 16 on NEON (cnt + uadalp.8h, ~20 % fewer instructions per
        binary MAC than 32-bit words), 32 on x86 (VPOPCNTDQ is as fast for 32- as for 64-bit lanes, and 32
        wastes fewer padding bits)."""
        return 16 if self.arch in ("aarch64", "armv7") else 32

    def tvm_target(self, num_cores: int | None = None) -> tvm.target.Target:
        import tvm

        cfg = {"kind": "llvm", **self.attrs}
        if num_cores:
            cfg["num-cores"] = num_cores
        return tvm.target.Target(cfg)

    @property
    def isa(self) -> Isa:
        return isa(self)

    @property
    def is_native(self) -> bool:
        machine = platform.machine()  # 32-bit ARM Linux says armv7l
        return self.arch == machine or (self.arch == "armv7" and machine.startswith("armv7"))


_AARCH64 = {"mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
_NAMED = (
    TargetSpec("x86", "portable x86-64 with AVX2 (haswell)", "x86_64", {"mtriple": "x86_64-linux-gnu",
                                                                        "mcpu": "haswell"}),
    TargetSpec("x86-avx512", "x86-64 with AVX-512 VPOPCNTDQ (icelake-server)", "x86_64",
               {"mtriple": "x86_64-linux-gnu", "mcpu": "icelake-server"}),
    TargetSpec("x86-amx", "x86-64 with AVX-512 VNNI and AMX-INT8 (sapphirerapids)", "x86_64",
               {"mtriple": "x86_64-linux-gnu", "mcpu": "sapphirerapids"}),
    TargetSpec("aarch64", "generic aarch64 with NEON", "aarch64", dict(_AARCH64), "aarch64-linux-gnu-g++"),
    TargetSpec("rasp4", "Raspberry Pi 4 (Cortex-A72)", "aarch64", {**_AARCH64, "mcpu": "cortex-a72"},
               "aarch64-linux-gnu-g++"),
    TargetSpec("pixel1", "Pixel-1-class phone (Kryo, armv8-a)", "aarch64", {**_AARCH64, "mcpu": "kryo"},
               "aarch64-linux-gnu-g++"),
    # Cortex-A7 is the oldest core Raspberry Pi OS 32-bit runs on (Pi 2); A53/A72 run its code too. No TVM
    # runtime is built for 32-bit ARM: models deploy there as runtime-free C libraries (--emit c-library).
    # Thumb-2, as Debian's armhf compiler emits by default: QuickNet's kernels 159 KB of code instead of 210 KB.
    TargetSpec("armv7", "32-bit ARM, armv7-a + NEON (Raspberry Pi OS 32-bit, older phones)", "armv7",
               {"mtriple": "thumbv7a-linux-gnueabihf", "vector-width": 128, "mcpu": "cortex-a7",
                "mattr": ["+neon", "+vfp4"], "mfloat-abi": "hard"},
               "arm-linux-gnueabihf-g++", tvm_runtime=False),
)


@functools.cache
def _host() -> TargetSpec:
    import tvm

    cpu = tvm.target.codegen.llvm_get_system_cpu()
    attrs: dict = {"mcpu": cpu}
    if _host_amx() and not tvm.target.codegen.llvm_cpu_has_features(["amx-int8"], tvm.target.Target(
            {"kind": "llvm", "mcpu": cpu})):
        # LLVM names some AMX machines by an older model (a VM's CPUID): add the features the kernel grants.
        attrs["mattr"] = ["+amx-tile", "+amx-int8"]
    return TargetSpec("host", f"this machine's CPU ({cpu}{', AMX' if 'mattr' in attrs else ''})",
                      platform.machine(), attrs)


def _host_amx() -> bool:
    """True if this CPU has AMX-INT8 and Linux grants this process the tile state (else AMX faults)."""
    if platform.machine() != "x86_64":
        return False
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split()
    except OSError:
        return False
    if not {"amx_tile", "amx_int8"} <= set(flags):
        return False
    import ctypes

    return ctypes.CDLL(None).syscall(*AMX_PERMISSION_SYSCALL) == 0


# syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): Linux grants a process the AMX tile state
AMX_PERMISSION_SYSCALL = (158, 0x1023, 18)


def target_names() -> list[str]:
    return ["host", *(s.name for s in _NAMED)]


def get_target(name: str | TargetSpec) -> TargetSpec:
    """Return the named target; ``host`` is detected, never ``mcpu=native``."""
    if isinstance(name, TargetSpec):
        return name
    if name == "host":
        return _host()
    for spec in _NAMED:
        if spec.name == name:
            return spec
    raise TargetError(f"unknown target {name!r}; known targets: {', '.join(target_names())}")


_ISA_CACHE: dict[str, Isa] = {}


def isa(target: str | TargetSpec | tvm.target.Target) -> Isa:
    """The ISA facts of a target name, :class:`TargetSpec` or TVM target, from LLVM's tables for its CPU."""
    import tvm
    from tvm.target import codegen

    t = target if isinstance(target, tvm.target.Target) else get_target(target).tvm_target()
    key = str(t)
    if key in _ISA_CACHE:
        return _ISA_CACHE[key]

    def has(*features: str) -> bool:
        return all(codegen.llvm_cpu_has_features([f], t) for f in features)

    triple = str(t.attrs.get("mtriple", "") or "")
    arch = triple.split("-")[0] if triple else platform.machine()
    if arch.startswith("aarch64") or arch.startswith("arm64"):
        neon = has("neon")
        facts = Isa("aarch64", neon=neon, dotprod=neon and has("dotprod"), vector_bits=128, vector_registers=32)
    elif arch.startswith(("arm", "thumb")):  # 32-bit: 16 quad registers
        facts = Isa("armv7", neon=has("neon"), vector_bits=128, vector_registers=16)
    else:
        avx512 = has("avx512f", "avx512bw")
        facts = Isa("x86_64", avx2=has("avx2"), avx512=avx512, avx512_vpopcntdq=avx512 and has("avx512vpopcntdq"),
                    vnni=has("avx512vnni") or has("avxvnni"), amx_int8=has("amx-int8"),
                    vector_bits=512 if avx512 else 256 if has("avx2") else 128,
                    vector_registers=32 if avx512 else 16)
    _ISA_CACHE[key] = facts
    return facts
