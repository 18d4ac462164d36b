"""Bytes an object file puts in memory, by kind, from its ELF section headers (any architecture, 32 or 64 bit):
what ``bnncc compile --emit c-library`` reports as code, read-only data and zero-initialised data."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHT_NOBITS = 8


@dataclass(frozen=True)
class Sections:
    text: int = 0  # executable
    rodata: int = 0  # read-only data (weights live here)
    data: int = 0  # initialised writable data (the tensor descriptors, argument cells)
    bss: int = 0  # zero-initialised (arena, workspace)

    def __add__(self, other: Sections) -> Sections:
        return Sections(self.text + other.text, self.rodata + other.rodata, self.data + other.data,
                        self.bss + other.bss)


def sections(path: str | Path) -> Sections:
    d = Path(path).read_bytes()
    if d[:4] != b"\x7fELF" or d[4] not in (1, 2):
        raise ValueError(f"{path}: not an ELF file")
    is64, end = d[4] == 2, "<" if d[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", d, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", d, 0x3A)
    else:
        shoff, = struct.unpack_from(end + "I", d, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", d, 0x2E)
    text = rodata = data = bss = 0
    for i in range(shnum):
        off = shoff + i * shentsize
        if is64:
            _, sh_type, flags, _, _, size = struct.unpack_from(end + "IIQQQQ", d, off)
        else:
            _, sh_type, flags, _, _, size = struct.unpack_from(end + "IIIIII", d, off)
        if not flags & SHF_ALLOC:
            continue
        if flags & SHF_EXECINSTR:
            text += size
        elif sh_type == SHT_NOBITS:
            bss += size
        elif flags & SHF_WRITE:
            data += size
        else:
            rodata += size
    return Sections(text, rodata, data, bss)
