"""The runtime-free C library against the TVM-runtime deployment: footprint, speed, instructions.

- Footprint (per model, per architecture): the C library's code (kernels + driver + runtime), weights and arena;
  the TVM-runtime deployment (``libtvm_runtime.so`` + ``libtvm_ffi.so`` stripped, + the model's ``.so``); LCE's
  ``.tflite`` of the same Keras model and the LCE interpreter that runs it (the pip wheel's, x86-64: LCE ships
  no aarch64 runtime in a package).
- Speed on this machine, 1 and 2 threads: the C library (linked into a shared object and called through ctypes,
  in this process) interleaved with the TVM-runtime library of the same compile, outputs checked bit-identical.
- aarch64 under qemu, 1 thread: instructions per inference of the C library vs the TVM runtime's deploy app.
- armv7 (qemu-arm) vs aarch64: instructions per binary MAC of the benchmark layers L1–L5 as C libraries.

    python -m benchmarks.bench_standalone [--models digits_bnn,quicknet,birealnet18] [--no-emulated]
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .timing import Runner, median_times

MODELS = ("digits_bnn", "quicknet", "birealnet18")
LAYER_NAMES = ("L1", "L2", "L3", "L4", "L5")
SETTLE_MS = 150  # both runtimes spin their workers after a call: let them sleep before the other one runs


def _keras(name: str):
    from .. import models, testing
    from .._tf import keras

    keras.utils.set_random_seed(0)
    return testing.digits_bnn() if name == "digits_bnn" else models.build(name)


def _input_shape(model) -> tuple[int, ...]:
    return (1, *model.input_shape[1:])


class CLibraryRunner(Runner):
    """A C library called in this process: its archive linked into a shared object (-Bsymbolic: the kernels
    bind to this library's runtime, not to TVM's symbols already in the process)."""

    name = "c-library"

    def __init__(self, lib: Path, prefix: str, out_elems: int, work: Path):
        so = work / f"{prefix}.so"
        subprocess.run(["cc", "-shared", "-Wl,-Bsymbolic", "-o", str(so), "-Wl,--whole-archive",
                        str(lib / f"lib{prefix}.a"), "-Wl,--no-whole-archive", "-lpthread", "-lm"], check=True)
        self.lib = ctypes.CDLL(str(so))
        self.run = getattr(self.lib, f"{prefix}_run")
        self.run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.out = np.zeros(out_elems, np.float32)

    def threads(self, n: int) -> None:
        if self.lib.bnncc_set_num_threads(n) != n:
            raise RuntimeError(f"bnncc_set_num_threads({n}) refused")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = self.prepare(x)
        if self.run(x.ctypes.data, self.out.ctypes.data) != 0:
            raise RuntimeError(self.lib.bnncc_last_error())
        return self.out.copy()

    def timed_once(self, x) -> float:
        t0 = time.perf_counter()
        self.run(x.ctypes.data, self.out.ctypes.data)
        return time.perf_counter() - t0


def _stripped_size(path: Path, strip: str) -> int:
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / path.name
        subprocess.run([strip, "-o", str(out), str(path)], check=True, capture_output=True)
        return out.stat().st_size


def tvm_runtime_bytes(arch: str) -> int | None:
    """libtvm_runtime.so + libtvm_ffi.so for ``arch``, stripped: this interpreter's for the host, the emulated
    device's aarch64 wheels for aarch64 (None when that device is not set up)."""
    import tvm
    import tvm_ffi

    if arch == "x86_64":
        libs = [Path(tvm.__file__).parent / "lib" / "libtvm_runtime.so",
                Path(tvm_ffi.__file__).parent / "lib" / "libtvm_ffi.so"]
        strip = "strip"
    else:
        from ..device.arm64 import DeviceError, setup

        try:
            env = setup(install=False)
        except DeviceError:
            return None
        libs, strip = [env.tvm_libdir / "libtvm_runtime.so", env.ffi_libdir / "libtvm_ffi.so"], \
            "aarch64-linux-gnu-strip"
    return sum(_stripped_size(p, strip) for p in libs if p.is_file())


def lce_interpreter_bytes() -> int | None:
    """The LCE wheel's interpreter extension (TFLite + LCE kernels, x86-64, stripped)."""
    try:
        import larq_compute_engine
    except ImportError:
        return None
    found = sorted(Path(larq_compute_engine.__file__).parent.rglob("interpreter_wrapper_lite*.so"))
    return _stripped_size(found[0], "strip") if found else None


def lce_tflite_bytes(model) -> int | None:
    try:
        import larq_compute_engine as lce
    except ImportError:
        return None
    return len(lce.convert_keras_model(model))


def _kib(n: int | None) -> float | None:
    return None if n is None else round(n / 1024, 1)


def footprint_rows(name: str, model, mod, work: Path, archs: Sequence[str]) -> list[dict]:
    from .. import pipeline

    tflite, lce_rt = lce_tflite_bytes(model), lce_interpreter_bytes()
    rows = []
    for arch in archs:
        target = "host" if arch == "x86_64" else arch
        fp, _ = pipeline.build_c_library(mod, work / f"{name}-{arch}", target, name=name)
        row = {"model": name, "arch": arch, "code KiB": _kib(fp.code_bytes), "glue KiB": _kib(fp.glue_bytes),
               "weights KiB": _kib(fp.weight_bytes), "arena KiB": _kib(fp.arena_bytes),
               "C library total KiB": _kib(fp.code_bytes + fp.weight_bytes)}
        runtime = tvm_runtime_bytes(arch) if arch in ("x86_64", "aarch64") else None
        if runtime is not None:
            so = pipeline.build(mod, target).export_library(work / f"{name}-{arch}.so")
            row["TVM runtime KiB"] = _kib(runtime)
            row["TVM model .so KiB"] = _kib(so.stat().st_size)
            row["TVM deployment KiB"] = _kib(runtime + so.stat().st_size)
        row["LCE .tflite KiB"] = _kib(tflite)
        if arch == "x86_64" and lce_rt is not None and tflite is not None:
            row["LCE interpreter KiB"] = _kib(lce_rt)
            row["LCE deployment KiB"] = _kib(lce_rt + tflite)
        rows.append(row)
    return rows


def speed_rows(name: str, mod, x: np.ndarray, work: Path, threads: Sequence[int], repeats: int) -> list[dict]:
    from .. import pipeline
    from ..standalone import emit
    from .layers import BnnccRunner
    from .roofline import ensure_thread_pool, set_tvm_threads

    prefix = emit.c_name(name)
    lib = work / f"{name}-x86_64"
    if not lib.exists():
        pipeline.build_c_library(mod, lib, "host", name=name)
    ex = pipeline.build(mod, "host")
    tvm_runner = BnnccRunner(ex)
    want = tvm_runner(x).ravel()
    c = CLibraryRunner(lib, prefix, want.size, work)
    ensure_thread_pool(max(threads))
    rows = []
    for t in threads:
        set_tvm_threads(t)
        c.threads(t)
        same = c(x).tobytes() == want.tobytes()
        ms = median_times({"tvm": tvm_runner, "c": c}, x, repeats, warmup=3, burst_ms=30, settle_ms=SETTLE_MS)
        rows.append({"model": name, "threads": t, "TVM runtime ms": round(ms["tvm"], 3),
                     "C library ms": round(ms["c"], 3), "C / TVM time": round(ms["c"] / ms["tvm"], 3),
                     "bit-identical": same})
    return rows


# ------------------------------------------------------------------------------------- emulated devices
def _count(cmd: list[str], arch: str) -> int:
    """Instructions the guest program ``cmd`` executes, under qemu-user with the qemu-insncount plugin."""
    from ..device.arm64 import setup
    from ..device.insncount import insncount, parse_insncount

    if arch == "aarch64":
        return insncount(cmd, cpu=None).total
    plugin = setup(install=False).insncount_plugin
    with tempfile.TemporaryDirectory() as td:
        log = Path(td) / "plugin.log"
        subprocess.run(["qemu-arm", "-plugin", str(plugin), "-d", "plugin", "-D", str(log), *cmd], check=True,
                       capture_output=True, timeout=1800)
        total, _, _ = parse_insncount(log.read_text())
    if total is None:
        raise RuntimeError(f"no instruction count for {cmd}")
    return total


def per_inference_insns(exe: Path, arch: str, x: np.ndarray, work: Path, runs: int = 2) -> int:
    """(count with ``runs`` extra inferences − count with none) / runs: one inference, without process start,
    input reading and the first call's one-time work."""
    inp = work / "insn-input.f32"
    x.astype(np.float32).tofile(inp)
    base = [str(exe), str(inp), "-t", "1"]
    return (_count([*base, "-r", str(runs)], arch) - _count([*base, "-r", "0"], arch)) // runs


def aarch64_rows(name: str, mod, x: np.ndarray, work: Path) -> list[dict]:
    from .. import pipeline
    from ..device.deploy_app import run_deploy_app
    from ..standalone.classifier import build_classifier

    lib = work / f"{name}-aarch64"
    if not lib.exists():
        pipeline.build_c_library(mod, lib, "aarch64", name=name)
    exe = build_classifier(lib, work / f"classify-{name}-aarch64")
    c_insns = per_inference_insns(exe, "aarch64", x, work)
    so = work / f"{name}-aarch64.so"
    if not so.exists():
        pipeline.build(mod, "aarch64").export_library(so)
    runs = 2
    r = run_deploy_app(so, x, repeat=runs, count_insns=True)
    tvm_insns = r.insns.region(1, 2) // runs
    return [{"model": name, "C library insns": c_insns, "TVM runtime insns": tvm_insns,
             "C / TVM insns": round(c_insns / tvm_insns, 4)}]


def layer_insn_rows(work: Path) -> list[dict]:
    """Instructions per binary MAC of L1–L5 on armv7 and aarch64, both as C libraries (one thread)."""
    from .. import pipeline, testing
    from ..relay_ops import bconv2d, bitpack
    from ..standalone.classifier import build_classifier
    from .layers import LAYERS

    rows = []
    rng = np.random.default_rng(0)
    for lname in LAYER_NAMES:
        spec = LAYERS[lname]
        w = rng.choice([-1.0, 1.0], size=(3, 3, spec.input_shape[-1], spec.filters)).astype(np.float32)

        def body(bb, x, w=w):
            return bconv2d(bb.emit(bitpack(x, bits=16)), w, padding="same")

        mod = testing.graph_module(body, (spec.input_shape, "float32"))
        x = testing.random_input(rng, spec.input_shape)
        row = {"layer": lname, "binary MACs": spec.binary_macs}
        for arch in ("aarch64", "armv7"):
            lib = work / f"{lname}-{arch}"
            pipeline.build_c_library(mod, lib, arch, name=lname.lower())
            exe = build_classifier(lib, work / f"classify-{lname}-{arch}")
            row[f"{arch} insns/MAC"] = round(per_inference_insns(exe, arch, x, work, runs=1) / spec.binary_macs, 4)
        row["armv7 / aarch64"] = round(row["armv7 insns/MAC"] / row["aarch64 insns/MAC"], 3)
        rows.append(row)
    return rows


NOTES = {
    "footprint": ["code: machine code + its constant tables (kernels, driver, runtime); glue: the driver and the "
                  "runtime alone; arena: activations (the compile-time memory plan, an aligned input copy) and "
                  "the kernels' workspace for 8 threads, all zero-initialised (.bss: no bytes on disk)",
                  "TVM deployment: libtvm_runtime.so + libtvm_ffi.so (stripped) + the model's .so; LCE deployment: "
                  "the LCE wheel's interpreter extension (TFLite + LCE kernels, x86-64, stripped) + the .tflite"],
    "standalone-speed": ["both libraries from one compile (same kernels, same memory plan), interleaved in warm "
                         "bursts with a settle pause between them (both runtimes spin their workers)"],
    "standalone-aarch64-insns": ["qemu-aarch64 with the insncount plugin, 1 thread; one inference, without "
                                 "process start, model loading and the first call"],
    "standalone-armv7-layer-insns": ["3x3 'same' binary convs (16-bit words), both as C libraries under "
                                     "qemu-user, 1 thread; armv7-a (Cortex-A7 + NEON) vs aarch64 (generic + NEON)"],
}


def main(argv: Sequence[str] | None = None, default_out=None) -> int:
    import argparse

    from ..targets import get_target, isa
    from .results import print_table, write_results
    from .roofline import measure_all

    p = argparse.ArgumentParser(description="runtime-free C library vs the TVM-runtime deployment")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--no-emulated", action="store_true", help="skip the aarch64/armv7 instruction counts")
    p.add_argument("--parts", default="footprint,speed,aarch64,layers",
                   help="which tables to measure (and rewrite): footprint, speed, aarch64, layers")
    p.add_argument("--out", default=str(default_out) if default_out else None)
    a = p.parse_args(argv)
    names = [m for m in a.models.split(",") if m]
    threads = [int(t) for t in a.threads.split(",")]
    archs = ["x86_64"] + ([] if a.no_emulated else ["aarch64", "armv7"])
    parts = set(a.parts.split(",")) - ({"aarch64", "layers"} if a.no_emulated else set())
    work = Path(tempfile.mkdtemp(prefix="bnncc-standalone-bench-"))
    try:
        footprint, speed, emulated = [], [], []
        for name in names:
            from ..frontend.keras import from_keras

            model = _keras(name)
            mod = from_keras(model)
            x = np.random.default_rng(1).standard_normal(_input_shape(model)).astype(np.float32)
            if "footprint" in parts:
                footprint += footprint_rows(name, model, mod, work, archs)
            if "speed" in parts:
                speed += speed_rows(name, mod, x, work, threads, a.repeats)
            if "aarch64" in parts:
                emulated += aarch64_rows(name, mod, x, work)
        layers = layer_insn_rows(work) if "layers" in parts else []
        roof = measure_all(threads)
        for title, rows in (("footprint", footprint), ("speed", speed), ("aarch64", emulated), ("layers", layers)):
            if rows:
                print(f"\n{title}")
                print_table(rows)
        if a.out:
            meta = {"host_target": get_target("host").description, "isa": isa("host").describe(),
                    "binary_roofline_gmacs": {t: round(r.gmacs, 1) for t, r in roof.items()},
                    "roofline_isa_path": next(iter(roof.values())).isa_path, "threads": threads,
                    "loadavg_end": os.getloadavg()}
            out = Path(a.out)
            for title, rows in (("footprint", footprint), ("standalone-speed", speed),
                                ("standalone-aarch64-insns", emulated), ("standalone-armv7-layer-insns", layers)):
                if rows:
                    write_results(out / f"{title}.md", out / f"{title}.json", rows, meta,
                                  title=f"Runtime-free C library: {title}", notes=NOTES.get(title, ()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
