"""Just enough of ELF64 little-endian to find a shared object's sections and
its load segments (the SanitizerCoverage sections `__sancov_cntrs` and
`__sancov_pcs`), without a dependency."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

COUNTERS = "__sancov_cntrs"
PCS = "__sancov_pcs"


class ElfError(Exception):
    """Not an ELF64 little-endian file, or one without what was asked for."""


@dataclass(frozen=True)
class Section:
    name: str
    address: int  # virtual address in the file's own address space
    offset: int  # in the file
    size: int


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD program header."""

    offset: int
    address: int
    file_size: int


@dataclass(frozen=True)
class Elf:
    sections: dict[str, Section]
    loads: list[Segment]

    def section(self, name: str) -> Section:
        if name not in self.sections:
            raise ElfError(f"no section {name}")
        return self.sections[name]


def read(path: Path) -> Elf:
    """The sections and load segments of `path` (only headers are read)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise ElfError(f"{path} is not a 64-bit little-endian ELF file")
        (phoff, shoff) = struct.unpack_from("<QQ", header, 0x20)
        (phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from("<HHHHH", header, 0x36)
        f.seek(phoff)
        raw_ph = f.read(phentsize * phnum)
        f.seek(shoff)
        raw_sh = f.read(shentsize * shnum)
        loads = []
        for i in range(phnum):
            kind, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(
                "<IIQQQQ", raw_ph, i * phentsize
            )
            if kind == 1:  # PT_LOAD
                loads.append(Segment(offset, vaddr, filesz))
        headers = [struct.unpack_from("<IIQQQQ", raw_sh, i * shentsize) for i in range(shnum)]
        if not headers or shstrndx >= len(headers):
            raise ElfError(f"{path} has no section headers")
        names_at, names_size = headers[shstrndx][4], headers[shstrndx][5]
        f.seek(names_at)
        names = f.read(names_size)
    sections = {}
    for name_at, _kind, _flags, address, offset, size in headers:
        name = names[name_at : names.index(b"\0", name_at)].decode(errors="replace")
        if name:
            sections[name] = Section(name, address, offset, size)
    return Elf(sections, loads)
