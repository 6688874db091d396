"""The SanitizerCoverage counters of an instrumented bridge loaded in this
process, and the bitmaps of reached counters kept on disk.

The module's `__sancov_cntrs` section holds one 8-bit counter per edge and
`__sancov_pcs` one (PC, flags) pair per counter, in the same order; both are
found in memory from the ELF section addresses plus the address the module
was loaded at (`/proc/self/maps`). libFuzzer clears the counters before each
input and reads them after it, so a `Recorder` ORs a snapshot into its
bitmap after every input, never clearing them itself.

A bitmap file (`*.cov`) is one JSON header line (format, bridge key, counter
count) and the zlib-compressed bitmap: one byte per counter, 1 when reached.
Files of the same bridge merge by OR."""

from __future__ import annotations

import ctypes
import json
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from fuzz.coverage.elf import COUNTERS, PCS, Elf, ElfError, read

FORMAT = 1
SUFFIX = ".cov"
# bytes.translate table: any nonzero counter becomes 1
_NONZERO = bytes([0] + [1] * 255)


class CoverageError(Exception):
    """A bitmap or a module that cannot be used: one line."""


def load_base(library: Path, elf: Elf) -> int:
    """The address `library` is loaded at in this process (its file address 0)."""
    ino = os.stat(library).st_ino
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) < 6 or int(parts[4]) != ino:
                continue
            start = int(parts[0].split("-")[0], 16)
            offset = int(parts[2], 16)
            for seg in elf.loads:
                if seg.offset & ~(page - 1) == offset:
                    return start - (seg.address & ~(page - 1))
    raise CoverageError(f"{library} is not loaded in this process")


class Counters:
    """The live counters of an instrumented module loaded in this process."""

    def __init__(self, library: Path) -> None:
        try:
            elf = read(library)
            counters, pcs = elf.section(COUNTERS), elf.section(PCS)
        except (OSError, ElfError) as err:
            raise CoverageError(f"{library} is not an instrumented bridge: {err}") from None
        self.library = library
        self.base = load_base(library, elf)
        self.size = counters.size
        self.address = self.base + counters.address
        self._pcs = self.base + pcs.address
        if pcs.size != 16 * self.size:
            raise CoverageError(
                f"{library}: {self.size} counters but {pcs.size // 16} PC-table entries"
            )

    def snapshot(self) -> bytes:
        return ctypes.string_at(self.address, self.size)

    def clear(self) -> None:
        """Zero the counters (only where libFuzzer is not running: it reads them)."""
        ctypes.memset(self.address, 0, self.size)

    def pc_table(self) -> list[tuple[int, int]]:
        """(PC as a file address, flags) per counter; flag 1 marks a function's entry."""
        raw = ctypes.string_at(self._pcs, 16 * self.size)
        return [(pc - self.base, flags) for pc, flags in struct.iter_unpack("<QQ", raw)]


def reached(bitmap: bytes) -> int:
    return len(bitmap) - bitmap.count(0)


@dataclass
class Bitmap:
    """Reached counters of one bridge."""

    bridge: str  # the cache entry's key
    bits: bytes  # one byte per counter, 0 or 1

    @property
    def reached(self) -> int:
        return reached(self.bits)

    def merge(self, other: Bitmap) -> Bitmap:
        if other.bridge != self.bridge or len(other.bits) != len(self.bits):
            raise CoverageError(
                f"coverage of bridge {other.bridge} ({len(other.bits)} counters) cannot merge "
                f"with {self.bridge} ({len(self.bits)} counters)"
            )
        size = len(self.bits)
        both = int.from_bytes(self.bits, "little") | int.from_bytes(other.bits, "little")
        return Bitmap(self.bridge, both.to_bytes(size, "little"))


def write(path: Path, bitmap: Bitmap) -> None:
    """Written whole (a temporary file renamed over the old one)."""
    header = {"format": FORMAT, "bridge": bitmap.bridge, "counters": len(bitmap.bits)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(json.dumps(header).encode() + b"\n" + zlib.compress(bitmap.bits, 6))
    os.replace(tmp, path)


def read_bitmap(path: Path) -> Bitmap:
    try:
        raw = path.read_bytes()
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        bits = zlib.decompress(body)
    except (OSError, ValueError, zlib.error) as err:
        raise CoverageError(f"{path}: not a coverage bitmap ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CoverageError(f"{path}: unknown bitmap format")
    if header.get("counters") != len(bits):
        raise CoverageError(f"{path}: truncated bitmap")
    return Bitmap(str(header.get("bridge")), bits)


def merged(paths: list[Path]) -> Bitmap | None:
    """The OR of bitmap files (None for none)."""
    total: Bitmap | None = None
    for path in paths:
        one = read_bitmap(path)
        total = one if total is None else total.merge(one)
    return total


def bitmap_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []


class Recorder:
    """Accumulates the counters of this process into a bitmap file, written
    every `every` seconds and by `save`."""

    def __init__(self, counters: Counters, bridge: str, out: Path, every: float = 5.0) -> None:
        self.counters = counters
        self.bridge = bridge
        self.out = out
        self.every = every
        self.seen = 0  # OR of every snapshot's bytes, as one integer
        self.saved = time.monotonic()

    def take(self) -> None:
        """OR the counters as they are now into the bitmap (after an input)."""
        self.seen |= int.from_bytes(self.counters.snapshot(), "little")
        if time.monotonic() - self.saved > self.every:
            self.save()

    def bitmap(self) -> Bitmap:
        raw = self.seen.to_bytes(self.counters.size, "little")
        return Bitmap(self.bridge, raw.translate(_NONZERO))

    def save(self) -> None:
        self.saved = time.monotonic()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        write(self.out, self.bitmap())


def worker_file(directory: Path) -> Path:
    """A bitmap file of its own for this process (a replaced worker gets another)."""
    return directory / f"worker-{os.getpid()}-{time.time_ns() // 1_000_000}{SUFFIX}"
