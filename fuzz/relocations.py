"""How each relocation kind the four backends emit is computed and patched
(ELF psABI formulas: S symbol, A addend, P place). Which kinds a target emits
is a fact of the target table (`fuzz.targets`), which maps each kind's name to
one of the `Relocation`s here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal


class LinkError(Exception):
    pass


class RelocationOutOfRange(LinkError):
    pass


class Memory:
    """Reads and writes fields of linked code in the target's byte order: in
    the image's main chunk of bytes at `base`, or in one of its `far` chunks
    (functions placed apart from it, by their start address)."""

    def __init__(
        self,
        base: int,
        data: bytearray,
        big_endian: bool,
        far: Mapping[int, bytearray] | None = None,
    ) -> None:
        self.base = base
        self.data = data
        self.chunks = sorted([(base, data), *(far or {}).items()], key=lambda c: c[0])
        self.order: Literal["big", "little"] = "big" if big_endian else "little"

    def _at(self, address: int, size: int) -> tuple[bytearray, int]:
        for start, data in self.chunks:
            if start <= address and address + size <= start + len(data):
                return data, address - start
        raise LinkError(f"address {address:#x} is outside the linked image")

    def put(self, address: int, code: bytes) -> None:
        data, at = self._at(address, len(code))
        data[at : at + len(code)] = code

    def read(self, address: int, size: int) -> int:
        data, at = self._at(address, size)
        return int.from_bytes(data[at : at + size], self.order)

    def write(self, address: int, size: int, value: int) -> None:
        data, at = self._at(address, size)
        data[at : at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, self.order)

    def read_insn32(self, address: int) -> int:
        # fixed-width instructions are little-endian on aarch64 and riscv64
        data, at = self._at(address, 4)
        return int.from_bytes(data[at : at + 4], "little")

    def write_insn32(self, address: int, insn: int) -> None:
        data, at = self._at(address, 4)
        data[at : at + 4] = (insn & 0xFFFF_FFFF).to_bytes(4, "little")


@dataclass(frozen=True)
class Site:
    """Everything a patch function needs about one relocation."""

    P: int  # address being patched
    S: int  # symbol address (or GOT entry for GOT kinds)
    A: int  # addend
    kind: str
    # the symbol (GOT entry) of the paired hi20 relocation at an address of the
    # same function, for RISC-V's lo12 half; None when there is none
    pair: Callable[[int], tuple[int, int] | None]


def _check_range(kind: str, value: int, bits: int, signed: bool = True) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise RelocationOutOfRange(f"{kind}: value {value:#x} does not fit in {bits} bits")


def _riscv_hi_lo(delta: int) -> tuple[int, int]:
    hi = (delta + 0x800) >> 12
    lo = delta - (hi << 12)
    return hi, lo


def _riscv_set_u(p: Memory, at: int, hi20: int) -> None:
    insn = p.read_insn32(at)
    p.write_insn32(at, (insn & 0xFFF) | ((hi20 & 0xFFFFF) << 12))


def _riscv_set_i(p: Memory, at: int, lo12: int) -> None:
    insn = p.read_insn32(at)
    p.write_insn32(at, (insn & 0xFFFFF) | ((lo12 & 0xFFF) << 20))


def _abs(size: int) -> Callable[[Memory, Site], None]:
    def patch(p: Memory, s: Site) -> None:
        value = s.S + s.A
        _check_range(s.kind, value, 8 * size, signed=False)
        p.write(s.P, size, value)

    return patch


def _pcrel32(p: Memory, s: Site) -> None:
    value = s.S + s.A - s.P
    _check_range(s.kind, value, 32)
    p.write(s.P, 4, value)


def _arm64_call(p: Memory, s: Site) -> None:
    delta = s.S + s.A - s.P
    _check_range(s.kind, delta, 28)
    insn = p.read_insn32(s.P)
    p.write_insn32(s.P, (insn & 0xFC00_0000) | ((delta >> 2) & 0x03FF_FFFF))


def _arm64_adrp(p: Memory, s: Site) -> None:
    pages = ((s.S + s.A) >> 12) - (s.P >> 12)
    _check_range(s.kind, pages, 21)
    insn = p.read_insn32(s.P) & ~((0x3 << 29) | (0x7FFFF << 5))
    p.write_insn32(s.P, insn | ((pages & 0x3) << 29) | (((pages >> 2) & 0x7FFFF) << 5))


def _arm64_add_lo12(p: Memory, s: Site) -> None:
    insn = p.read_insn32(s.P) & ~(0xFFF << 10)
    p.write_insn32(s.P, insn | (((s.S + s.A) & 0xFFF) << 10))


def _arm64_ld64_lo12(p: Memory, s: Site) -> None:
    insn = p.read_insn32(s.P) & ~(0xFFF << 10)
    p.write_insn32(s.P, insn | ((((s.S + s.A) & 0xFFF) >> 3) << 10))


def _riscv_call(p: Memory, s: Site) -> None:
    hi, lo = _riscv_hi_lo(s.S + s.A - s.P)
    _check_range(s.kind, hi, 20)
    _riscv_set_u(p, s.P, hi)
    _riscv_set_i(p, s.P + 4, lo)


def _riscv_hi20(p: Memory, s: Site) -> None:
    hi, _ = _riscv_hi_lo(s.S + s.A - s.P)
    _check_range(s.kind, hi, 20)
    _riscv_set_u(p, s.P, hi)


def _riscv_lo12(p: Memory, s: Site) -> None:
    # The target is the `auipc` of the pair; its own relocation gives the delta.
    auipc = s.S
    pair = s.pair(auipc)
    if pair is None:
        raise LinkError(f"{s.kind} at {s.P:#x} has no matching hi20 at {auipc:#x}")
    hi_sym, hi_addend = pair
    _, lo = _riscv_hi_lo(hi_sym + hi_addend - auipc)
    _riscv_set_i(p, s.P, lo)


def _s390x_pcrel_dbl(p: Memory, s: Site) -> None:
    delta = s.S + s.A - s.P
    if delta & 1:
        raise LinkError(f"{s.kind}: odd displacement {delta:#x}")
    _check_range(s.kind, delta >> 1, 32)
    p.write(s.P, 4, delta >> 1)


@dataclass(frozen=True)
class Relocation:
    patch: Callable[[Memory, Site], None]
    # S is the symbol's GOT entry, not the symbol
    via_got: bool = False
    # the hi20 half of a RISC-V pc-relative pair: its lo12 half refers to it
    riscv_hi20: bool = False
    # pc-relative: the farthest S + A - P (bytes, forward) its field holds;
    # None for absolute kinds (and lo12 halves, whose pair sets the range)
    reach: int | None = None


# the fields' ranges, as _check_range tests them
_REACH_PCREL32 = (1 << 31) - 1
_REACH_ARM64_CALL = ((1 << 27) - 1) & ~3  # BL: a signed 26-bit word offset
_REACH_ARM64_ADRP = ((1 << 20) - 2) << 12  # signed 21-bit page offset (P mid-page)
_REACH_RISCV = (((1 << 19) - 1) << 12) + 0x7FF  # auipc hi20 + a signed lo12
_REACH_S390X = ((1 << 31) - 1) * 2  # signed 32-bit halfword offset

ABS4 = Relocation(_abs(4))
ABS8 = Relocation(_abs(8))
PCREL32 = Relocation(_pcrel32, reach=_REACH_PCREL32)
PCREL32_GOT = Relocation(_pcrel32, via_got=True, reach=_REACH_PCREL32)
ARM64_CALL = Relocation(_arm64_call, reach=_REACH_ARM64_CALL)
ARM64_ADRP = Relocation(_arm64_adrp, reach=_REACH_ARM64_ADRP)
ARM64_ADRP_GOT = Relocation(_arm64_adrp, via_got=True, reach=_REACH_ARM64_ADRP)
ARM64_ADD_LO12 = Relocation(_arm64_add_lo12)
ARM64_LD64_LO12_GOT = Relocation(_arm64_ld64_lo12, via_got=True)
RISCV_CALL = Relocation(_riscv_call, reach=_REACH_RISCV)
RISCV_HI20 = Relocation(_riscv_hi20, riscv_hi20=True, reach=_REACH_RISCV)
RISCV_HI20_GOT = Relocation(_riscv_hi20, via_got=True, riscv_hi20=True, reach=_REACH_RISCV)
RISCV_LO12 = Relocation(_riscv_lo12)
S390X_PCREL_DBL = Relocation(_s390x_pcrel_dbl, reach=_REACH_S390X)
