"""bnncc.targets: the one place that answers ISA questions, for the host and for named targets."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from bnncc import targets
from bnncc.schedules import FAMILIES, family_of


def _host_flags() -> set[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[-1].split())


@pytest.mark.parametrize("name, family, popcount, facts", [
    ("x86", "x86-avx2", "avx2-lut", dict(avx2=True, avx512=False, avx512_vpopcntdq=False, vnni=False)),
    ("x86-avx512", "x86-avx512", "avx512-vpopcntdq", dict(avx2=True, avx512=True, avx512_vpopcntdq=True, vnni=True)),
    ("rasp4", "arm-neon", "neon-cnt", dict(neon=True, dotprod=False)),
    ("aarch64", "arm-neon", "neon-cnt", dict(neon=True)),
])
def test_named_targets(name, family, popcount, facts):
    isa = targets.isa(name)
    assert isa.family == family and isa.popcount_path == popcount
    assert {k: getattr(isa, k) for k in facts} == facts
    assert family_of(targets.get_target(name).tvm_target()) is FAMILIES[family]


def test_dotprod_and_amx_follow_the_cpu():
    a76 = targets.TargetSpec("a76", "Cortex-A76", "aarch64", {"mtriple": "aarch64-linux-gnu", "mattr": ["+neon"],
                                                                "mcpu": "cortex-a76"})
    assert targets.isa(a76).dotprod and not targets.isa("rasp4").dotprod
    spr = targets.TargetSpec("spr", "Sapphire Rapids", "x86_64", {"mtriple": "x86_64-linux-gnu",
                                                                  "mcpu": "sapphirerapids"})
    assert targets.isa(spr).amx_int8 and targets.isa(spr).vnni and not targets.isa("x86-avx512").amx_int8
    zen3 = targets.TargetSpec("zen3", "Zen 3", "x86_64", {"mtriple": "x86_64-linux-gnu", "mcpu": "znver3"})
    assert targets.isa(zen3).family == "x86-avx2" and not targets.isa(zen3).vnni


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 host flags")
def test_host_matches_proc_cpuinfo():
    flags, isa = _host_flags(), targets.isa("host")
    assert isa.avx2 == ("avx2" in flags)
    assert isa.avx512_vpopcntdq == ("avx512_vpopcntdq" in flags)
    assert isa.vnni == bool({"avx512_vnni", "avx_vnni"} & flags)
    assert isa.vector_bits == (512 if isa.avx512 else 256 if isa.avx2 else 128)
    assert isa.describe().startswith("x86_64")


def test_unknown_target_is_a_clear_error():
    with pytest.raises(targets.TargetError, match="unknown target 'nope'; known targets: host, x86"):
        targets.get_target("nope")


def test_listing_targets_does_not_import_tvm():
    code = "import sys, bnncc.targets as t; t.target_names(); t.get_target('rasp4'); print('tvm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
