"""Checks of a compiled library's ELF structure before it is mapped (``dlopen``) or uploaded to a device.

A truncated library makes ``dlopen`` map pages past the end of the file: the process dies with SIGBUS when
they are touched, or, cut only in its section headers, it loads and runs. Every table and segment the header
points at must lie inside the file, which catches a truncation by any amount (the section header table is the
last thing in the file) without a sidecar file that a user copying only the ``.so`` would lose. A library
written by bnncc also ends with a SHA-256 trailer (:func:`add_checksum`; the dynamic loader ignores bytes no
header points at), which catches a flipped bit anywhere. This reads bytes only: no TVM, no numpy, so ``bnncc
run`` refuses a bad library before importing anything heavy.
"""

from __future__ import annotations

import hashlib
import os
import platform
import struct
from dataclasses import dataclass

from .errors import BnnccError

ELF_MAGIC = b"\x7fELF"
ET_DYN = 3
SHT_NOBITS = 8  # .bss: takes no bytes in the file
CHECKSUM_MAGIC = b"\0bnncc-sha256\0\0\0"  # 16 bytes, then the SHA-256 of everything before them
TRAILER_BYTES = len(CHECKSUM_MAGIC) + 32
MAX_LIBRARY_BYTES = 2**31  # bnncc libraries are a few MiB; anything this big is not one

# e_machine → the name platform.machine() gives on that architecture
ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv"}
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


class LibraryError(BnnccError):
    """A file that is not a complete shared library of the expected architecture."""


@dataclass(frozen=True)
class ElfInfo:
    machine: str  # "x86_64", "aarch64", ... or "ELF machine N"
    bits: int
    size: int


def host_machine() -> str:
    m = platform.machine().lower()
    return _HOST_ALIASES.get(m, m)


def elf_machine(head: bytes) -> str | None:
    """The architecture named by an ELF header (its first 20 bytes suffice), None if it is not ELF."""
    if len(head) < 20 or head[:4] != ELF_MAGIC or head[5] not in (1, 2):
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"ELF machine {machine}")


def _within(offset: int, length: int, size: int) -> bool:
    return 0 <= offset and 0 <= length and offset + length <= size


def check_elf(data: bytes) -> ElfInfo:
    """The header, program headers and section headers of ``data`` (a whole file) must be consistent and lie
    inside it; raises :class:`LibraryError` with the reason (no file name: the caller adds it)."""
    size = len(data)
    if size < 16 or data[:4] != ELF_MAGIC:
        raise LibraryError("not an ELF shared library (no ELF header)")
    cls, order = data[4], data[5]
    if cls not in (1, 2) or order not in (1, 2):
        raise LibraryError(f"corrupt ELF header (class {cls}, byte order {order})")
    bits = 32 if cls == 1 else 64
    end = "<" if order == 1 else ">"
    # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize, e_phnum,
    # e_shentsize, e_shnum, e_shstrndx
    fmt = end + ("HHIIIIIHHHHHH" if bits == 32 else "HHIQQQIHHHHHH")
    if size < 16 + struct.calcsize(fmt):
        raise LibraryError(f"truncated: {size} bytes, shorter than an ELF header")
    (e_type, e_machine, _, _, phoff, shoff, _, ehsize, phentsize, phnum, shentsize, shnum,
     shstrndx) = struct.unpack_from(fmt, data, 16)
    machine = ELF_MACHINES.get(e_machine, f"ELF machine {e_machine}")
    if e_type != ET_DYN:
        raise LibraryError(f"not a shared library (ELF type {e_type})")
    if ehsize != 16 + struct.calcsize(fmt):
        raise LibraryError(f"corrupt ELF header (header size {ehsize})")
    ph_fmt = end + ("IIIIIIII" if bits == 32 else "IIQQQQQQ")  # p_type, (p_flags,) p_offset, ..., p_filesz, ...
    sh_fmt = end + ("IIIIIIIIII" if bits == 32 else "IIQQQQIIQQ")  # sh_name, sh_type, ..., sh_offset, sh_size
    if phnum == 0:
        raise LibraryError("corrupt ELF header (no program headers: nothing to load)")
    if phentsize != struct.calcsize(ph_fmt) or (shnum and shentsize != struct.calcsize(sh_fmt)):
        raise LibraryError(f"corrupt ELF header (entry sizes {phentsize}, {shentsize})")
    if not _within(phoff, phnum * phentsize, size):
        raise LibraryError(f"truncated or corrupt: the program headers end past the file's {size} bytes")
    if shnum and not _within(shoff, shnum * shentsize, size):
        raise LibraryError(f"truncated: the section headers end at byte {shoff + shnum * shentsize}, past the "
                           f"file's {size} bytes")
    if shnum and shstrndx >= shnum:
        raise LibraryError(f"corrupt ELF header (section name table {shstrndx} of {shnum})")
    elf_end = max(phoff + phnum * phentsize, shoff + shnum * shentsize)
    for i in range(phnum):
        fields = struct.unpack_from(ph_fmt, data, phoff + i * phentsize)
        offset, filesz = (fields[1], fields[4]) if bits == 32 else (fields[2], fields[5])
        elf_end = max(elf_end, offset + filesz)
        if not _within(offset, filesz, size):
            raise LibraryError(f"truncated: segment {i} needs bytes {offset}..{offset + filesz}, past the "
                               f"file's {size} bytes")
    for i in range(shnum):
        fields = struct.unpack_from(sh_fmt, data, shoff + i * shentsize)
        sh_type, offset, length = fields[1], fields[4], fields[5]
        if sh_type != SHT_NOBITS:
            elf_end = max(elf_end, offset + length)
        if sh_type != SHT_NOBITS and not _within(offset, length, size):
            raise LibraryError(f"truncated: section {i} needs bytes {offset}..{offset + length}, past the "
                               f"file's {size} bytes")
    _check_trailer(data, elf_end)
    return ElfInfo(machine, bits, size)


def _check_trailer(data: bytes, elf_end: int) -> None:
    """The bytes after everything the ELF headers point at: nothing, or bnncc's checksum trailer, whole."""
    extra = data[elf_end:]
    if len(extra) == TRAILER_BYTES and extra[:16] == CHECKSUM_MAGIC:
        if hashlib.sha256(data[:elf_end]).digest() != extra[16:]:
            raise LibraryError("corrupt: its SHA-256 checksum does not match its content (changed after bnncc "
                               "wrote it)")
    elif extra and len(extra) < TRAILER_BYTES and CHECKSUM_MAGIC.startswith(extra[:16]):
        raise LibraryError(f"truncated: its checksum trailer is cut short ({len(extra)} of {TRAILER_BYTES} bytes)")


def add_checksum(path: str | os.PathLike) -> None:
    """Append the trailer :func:`check_elf` verifies to a library just written (before it is renamed into place)."""
    with open(path, "rb+") as f:
        digest = hashlib.sha256(f.read()).digest()
        f.write(CHECKSUM_MAGIC + digest)


def verify_library(path: str | os.PathLike, machine: str | None = None) -> ElfInfo:
    """Check the library at ``path`` (:func:`check_elf`) and, with ``machine`` ("host" for this machine), that
    it was built for that architecture. Raises :class:`LibraryError` naming the file."""
    where = os.fspath(path)
    if os.path.isdir(where):
        raise LibraryError(f"{where}: is a directory, not a compiled model")
    try:
        size = os.path.getsize(where)
        if size > MAX_LIBRARY_BYTES:
            raise LibraryError(f"{where}: {size} bytes is not a bnncc library")
        with open(where, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise LibraryError(f"{where}: no such compiled model") from None
    except OSError as e:
        raise LibraryError(f"{where}: cannot be read ({e.strerror})") from None
    try:
        info = check_elf(data)
    except LibraryError as e:
        raise LibraryError(f"{where}: {e}") from None
    want = host_machine() if machine == "host" else machine
    if want is not None and info.machine != want:
        raise LibraryError(f"{where}: built for {info.machine}, not {want}")
    return info
