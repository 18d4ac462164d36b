"""Fuzz the check a compiled library passes before it is mapped or uploaded (:func:`bnncc.elfcheck.check_elf`):
``python -m tests.fuzz.library_check -runs=100000``. Loading itself (dlopen) runs the library's code and is not
fuzzed: this check is what stands before it."""

from __future__ import annotations

import ctypes.util
import os

from tests.fuzz.harness import fuzz_main, instrumented

with instrumented():
    from bnncc import elfcheck


def one_input(data: bytes) -> None:
    elfcheck.check_elf(data)


def seeds() -> dict[str, bytes]:
    """A real shared library (libz, or the Python library) with and without bnncc's checksum trailer, and its
    header alone; fuzzing mutates from these."""
    import hashlib

    found = [p for p in (ctypes.util.find_library("z"), ctypes.util.find_library("m")) if p]
    paths = [os.path.join(d, f) for f in found for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
                                                          "/usr/lib/aarch64-linux-gnu", "/usr/lib")]
    lib = next((open(p, "rb").read() for p in paths if os.path.isfile(p)), b"\x7fELF" + bytes(60))
    trailer = elfcheck.CHECKSUM_MAGIC + hashlib.sha256(lib).digest()
    return {"lib": lib, "lib-checksum": lib + trailer, "header": lib[:64], "empty": b""}


if __name__ == "__main__":
    fuzz_main("library_check", one_input, seeds)
