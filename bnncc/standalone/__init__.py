"""A model as a static C library that needs no runtime: ``bnncc compile M --emit c-library -o DIR``.

A BNN's graph is static, so after the pipeline's ``vm`` phase (every kernel scheduled, the memory plan fixed)
the model is a fixed sequence of kernel calls on tensors at fixed places. This writes it as plain code:

    DIR/libbnncc_<model>.a   the TVM-generated kernels (the same schedules and tuning logs as the shared library,
                             compiled by LLVM to an object file), the driver (:mod:`.emit`: static tensor
                             descriptors, the calls in order), the weights at their stored precision in read-only
                             data, and the runtime (``bnncc_runtime.c``: thread pool, workspace, errors)
    DIR/bnncc_<model>.h      the API: ``int bnncc_<model>_run(const float *input, float *output)``, shapes
    DIR/src/                 the sources and objects the archive was built from (to rebuild, e.g. single-threaded)
    DIR/footprint.json       code, weight and arena bytes

Nothing is allocated at run time: the activations live in a static arena laid out by the compile-time memory
plan, the kernels' workspace in static per-thread regions (:mod:`.workspace`), and the pool threads are started
once, on the first parallel kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BnnccError
from .footprint import Sections, sections
from .plan import EmitError, read_program

if TYPE_CHECKING:
    import tvm

__all__ = ["EmitError", "Footprint", "MARKER", "check_output_dir", "compilers", "write_c_library"]

MARKER = "footprint.json"  # a directory holding it was written by bnncc and may be replaced
RUNTIME_SOURCES = ("bnncc_runtime.c", "bnncc_abi.h")
C_FLAGS = ("-O2", "-std=gnu11", "-fPIC", "-ffunction-sections", "-fdata-sections", "-pthread")
# C compiler (and archiver) per architecture: the host's for native builds, Debian's cross toolchains otherwise.
CROSS_PREFIX = {"aarch64": "aarch64-linux-gnu-", "armv7": "arm-linux-gnueabihf-"}
DEFAULT_MAX_THREADS = 8


@dataclass(frozen=True)
class Footprint:
    """What the library puts in memory. ``code``: machine code and its constant tables (kernels, driver,
    runtime); ``weights``: the model's constants; ``arena``: activations and workspace (zero-initialised)."""

    code_bytes: int
    glue_bytes: int  # the part of code_bytes that is the driver and the runtime
    weight_bytes: int
    arena_bytes: int
    activation_bytes: int  # the arena: the memory plan's storages, an aligned input copy, the caller's workspace
    workspace_bytes: int  # the pool threads' scratch buffers
    max_threads: int
    archive_bytes: int


def compilers(arch: str, native: bool) -> tuple[str, str]:
    """(C compiler, archiver) for ``arch``; an error naming the Debian package when it is not installed."""
    prefix = "" if native else CROSS_PREFIX.get(arch)
    if prefix is None:
        raise BnnccError(f"no C cross compiler known for {arch}")
    cc, ar = ("cc", "ar") if native else (prefix + "gcc", prefix + "ar")
    for tool in (cc, ar):
        if shutil.which(tool) is None:
            pkg = f"gcc-{prefix.rstrip('-')}" if prefix else "gcc"
            raise BnnccError(f"{tool} not found: a C library for {arch} needs it (Debian package {pkg})")
    return cc, ar


def check_output_dir(out: str | os.PathLike) -> Path:
    """``out`` may be created, or replaced because bnncc wrote it; anything else is refused before compiling."""
    p = Path(out)
    if p.exists() and not (p.is_dir() and (p / MARKER).is_file()):
        what = "a file" if not p.is_dir() else "a directory bnncc did not write"
        raise BnnccError(f"{p}: is {what}; --emit c-library writes a new directory (or replaces one it wrote)")
    if not p.parent.exists():
        raise BnnccError(f"{p.parent}: no such directory")
    return p


def _run(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BnnccError(f"{cmd[0]} failed building the C library: {(r.stderr or r.stdout).strip()[:2000]}")


def _kernels(mod: tvm.IRModule, c: Any, prefix: str, kernels: set[str], obj: Path):
    """The PrimFuncs ``main`` calls, compiled to one object file with symbols private to this model."""
    import tvm
    import tvm.tirx

    funcs = {}
    for gv, f in mod.functions.items():
        if gv.name_hint in kernels and isinstance(f, tvm.tirx.PrimFunc):
            funcs[gv] = f.with_attr("global_symbol", f"{prefix}_{gv.name_hint}")
    missing = kernels - {gv.name_hint for gv in funcs}
    if missing:
        raise EmitError(f"main calls {', '.join(sorted(missing))}, which is not a kernel of the module")
    lib = tvm.tirx.build(tvm.IRModule(funcs), target=c.target)
    lib.write_to_file(str(obj))
    return lib.inspect_source("ll"), {gv.name_hint: f"__tvm_ffi_{prefix}_{gv.name_hint}" for gv in funcs}


def write_c_library(mod: tvm.IRModule, c: Any, out: str | os.PathLike, name: str,
                    max_threads: int = DEFAULT_MAX_THREADS) -> Footprint:
    """Write the runtime-free library of ``mod`` (after the pipeline's ``vm`` phase; ``c`` its
    :class:`bnncc.pipeline.Compilation`) to the directory ``out``, atomically: a failure leaves a previous library
    in ``out`` as it was."""
    from . import emit
    from .workspace import workspace_of

    out = check_output_dir(out).resolve()
    cc, ar = compilers(c.spec.arch, c.spec.is_native)
    kernels = {call.kernel for call in read_program(mod).calls}
    prefix = emit.c_name(name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the library private to its builder
    try:
        src = tmp / "src"
        src.mkdir()
        ll, symbols = _kernels(mod, c, prefix, kernels, src / "kernels.o")
        ws = workspace_of(ll)
        missing = set(symbols.values()) - set(ws.kernel_bytes)
        if missing:
            raise EmitError(f"the kernels' object has no entry point {', '.join(sorted(missing))}")
        program = read_program(mod, lambda kernel: ws.kernel_bytes[symbols[kernel]])
        here = Path(__file__).parent
        for f in RUNTIME_SOURCES:
            shutil.copyfile(here / f, src / f)
        (tmp / f"{prefix}.h").write_text(emit.header(prefix, program, max_threads))
        (src / "model.c").write_text(emit.driver(prefix, program, symbols, ws, max_threads))
        (src / "weights.bin").write_bytes(bytes(program.weights))
        (src / "weights.S").write_text(emit.weights_asm(prefix, "weights.bin"))
        for source in ("model.c", "bnncc_runtime.c", "weights.S"):
            _run([cc, *C_FLAGS, "-I", "..", "-I", ".", "-c", source, "-o", Path(source).stem + ".o"], src)
        objects = ["kernels.o", "model.o", "bnncc_runtime.o", "weights.o"]
        archive = tmp / f"lib{prefix}.a"
        _run([ar, "rcs", str(archive), *objects], src)
        size = {o: sections(src / o) for o in objects}
        glue = size["model.o"] + size["bnncc_runtime.o"]
        code = size["kernels.o"].text + size["kernels.o"].rodata + glue.text + glue.rodata
        arena = sum((s for s in size.values()), Sections()).bss
        fp = Footprint(code, glue.text + glue.rodata, len(program.weights), arena, program.arena_bytes,
                       arena - program.arena_bytes, max_threads, archive.stat().st_size)
        (tmp / MARKER).write_text(json.dumps({"model": name, "prefix": prefix, "target": c.spec.name,
                                              "arch": c.spec.arch, **asdict(fp)}, indent=1) + "\n")
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return fp


def _replace_dir(new: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        out.rename(old)
    new.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
