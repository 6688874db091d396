"""Our own linker: lays compiled functions out in emulated memory and patches
every relocation kind the four backends emit (big-endian on s390x).

Symbols are function names as CLIF prints them (`%name`, `u0:1`). A GOT, when
a relocation asks for one, follows the code.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fuzz.targets import Target

CODE_BASE = 0x1000_0000
FUNCTION_ALIGN = 64

# Cranelift's LibCall names as relocations print them.
LIBCALLS = frozenset(
    {
        "%Probestack",
        "%CeilF32",
        "%CeilF64",
        "%FloorF32",
        "%FloorF64",
        "%TruncF32",
        "%TruncF64",
        "%NearestF32",
        "%NearestF64",
        "%FmaF32",
        "%FmaF64",
        "%Memcpy",
        "%Memset",
        "%Memmove",
        "%Memcmp",
        "%ElfTlsGetAddr",
        "%ElfTlsGetOffset",
        "%X86Pshufb",
    }
)


class LinkError(Exception):
    pass


class UnknownRelocation(LinkError):
    pass


class UndefinedSymbol(LinkError):
    pass


class NeedsLibcall(UndefinedSymbol):
    pass


class RelocationOutOfRange(LinkError):
    pass


@dataclass(frozen=True)
class Reloc:
    offset: int
    kind: str
    target: str  # a symbol, or "+N" for an offset inside the same function
    addend: int


@dataclass
class CompiledFunction:
    name: str
    code: bytes
    relocs: list[Reloc]
    traps: list[tuple[int, str]]
    disasm: str | None = None

    @classmethod
    def from_bridge(cls, d: Mapping[str, Any]) -> CompiledFunction:
        return cls(
            name=d["name"],
            code=bytes(d["code"]),
            relocs=[Reloc(*r) for r in d["relocs"]],
            traps=[(off, code) for off, code in d["traps"]],
            disasm=d.get("disasm"),
        )


@dataclass
class Image:
    """Linked code: bytes from `base`, symbol addresses, trap sites."""

    base: int
    data: bytearray
    symbols: dict[str, int]
    sizes: dict[str, int]
    trap_sites: dict[int, str] = field(default_factory=dict)
    got: dict[str, int] = field(default_factory=dict)

    def function_at(self, address: int) -> tuple[str, int] | None:
        """(function name, offset) holding `address`, if any."""
        starts = sorted((a, n) for n, a in self.symbols.items())
        i = bisect.bisect_right([a for a, _ in starts], address) - 1
        if i < 0:
            return None
        start, name = starts[i]
        if address < start + self.sizes[name]:
            return name, address - start
        return None

    def code_of(self, name: str) -> bytes:
        start = self.symbols[name] - self.base
        return bytes(self.data[start : start + self.sizes[name]])


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


# --- patching helpers -------------------------------------------------------


def _check_range(kind: str, value: int, bits: int, signed: bool = True) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise RelocationOutOfRange(f"{kind}: value {value:#x} does not fit in {bits} bits")


class _Patcher:
    """Reads and writes fields of the image in the target's byte order."""

    def __init__(self, image: Image, big_endian: bool) -> None:
        self.image = image
        self.order: Any = "big" if big_endian else "little"

    def read(self, address: int, size: int) -> int:
        at = address - self.image.base
        return int.from_bytes(self.image.data[at : at + size], self.order)

    def write(self, address: int, size: int, value: int) -> None:
        at = address - self.image.base
        self.image.data[at : at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(
            size, self.order
        )

    def read_insn32(self, address: int) -> int:
        # fixed-width instructions are little-endian on aarch64 and riscv64
        at = address - self.image.base
        return int.from_bytes(self.image.data[at : at + 4], "little")

    def write_insn32(self, address: int, insn: int) -> None:
        at = address - self.image.base
        self.image.data[at : at + 4] = (insn & 0xFFFF_FFFF).to_bytes(4, "little")


def _riscv_hi_lo(delta: int) -> tuple[int, int]:
    hi = (delta + 0x800) >> 12
    lo = delta - (hi << 12)
    return hi, lo


def _riscv_set_u(p: _Patcher, at: int, hi20: int) -> None:
    insn = p.read_insn32(at)
    p.write_insn32(at, (insn & 0xFFF) | ((hi20 & 0xFFFFF) << 12))


def _riscv_set_i(p: _Patcher, at: int, lo12: int) -> None:
    insn = p.read_insn32(at)
    p.write_insn32(at, (insn & 0xFFFFF) | ((lo12 & 0xFFF) << 20))


@dataclass(frozen=True)
class _Site:
    """Everything a patch function needs about one relocation."""

    P: int  # address being patched
    S: int  # symbol address (or GOT entry for GOT kinds)
    A: int  # addend
    kind: str
    func_start: int
    relocs: tuple[Reloc, ...]  # the function's relocations, for paired kinds
    resolve: Callable[[Reloc, int], int]  # (reloc, func_start) -> S


def _abs(size: int) -> Callable[[_Patcher, _Site], None]:
    def patch(p: _Patcher, s: _Site) -> None:
        value = s.S + s.A
        _check_range(s.kind, value, 8 * size, signed=False)
        p.write(s.P, size, value)

    return patch


def _pcrel32(p: _Patcher, s: _Site) -> None:
    value = s.S + s.A - s.P
    _check_range(s.kind, value, 32)
    p.write(s.P, 4, value)


def _arm64_call(p: _Patcher, s: _Site) -> None:
    delta = s.S + s.A - s.P
    _check_range(s.kind, delta, 28)
    insn = p.read_insn32(s.P)
    p.write_insn32(s.P, (insn & 0xFC00_0000) | ((delta >> 2) & 0x03FF_FFFF))


def _arm64_adrp(p: _Patcher, s: _Site) -> None:
    pages = ((s.S + s.A) >> 12) - (s.P >> 12)
    _check_range(s.kind, pages, 21)
    insn = p.read_insn32(s.P) & ~((0x3 << 29) | (0x7FFFF << 5))
    p.write_insn32(s.P, insn | ((pages & 0x3) << 29) | (((pages >> 2) & 0x7FFFF) << 5))


def _arm64_add_lo12(p: _Patcher, s: _Site) -> None:
    insn = p.read_insn32(s.P) & ~(0xFFF << 10)
    p.write_insn32(s.P, insn | (((s.S + s.A) & 0xFFF) << 10))


def _arm64_ld64_lo12(p: _Patcher, s: _Site) -> None:
    insn = p.read_insn32(s.P) & ~(0xFFF << 10)
    p.write_insn32(s.P, insn | ((((s.S + s.A) & 0xFFF) >> 3) << 10))


def _riscv_call(p: _Patcher, s: _Site) -> None:
    hi, lo = _riscv_hi_lo(s.S + s.A - s.P)
    _check_range(s.kind, hi, 20)
    _riscv_set_u(p, s.P, hi)
    _riscv_set_i(p, s.P + 4, lo)


def _riscv_hi20(p: _Patcher, s: _Site) -> None:
    hi, _ = _riscv_hi_lo(s.S + s.A - s.P)
    _check_range(s.kind, hi, 20)
    _riscv_set_u(p, s.P, hi)


def _riscv_lo12(p: _Patcher, s: _Site) -> None:
    # The target is the `auipc` of the pair; its own relocation gives the delta.
    auipc = s.S
    pair = [
        r
        for r in s.relocs
        if s.func_start + r.offset == auipc and r.kind in ("RiscvPCRelHi20", "RiscvGotHi20")
    ]
    if not pair:
        raise LinkError(f"RiscvPCRelLo12I at {s.P:#x} has no matching hi20 at {auipc:#x}")
    hi_sym = s.resolve(pair[0], s.func_start)
    _, lo = _riscv_hi_lo(hi_sym + pair[0].addend - auipc)
    _riscv_set_i(p, s.P, lo)


def _s390x_pcrel_dbl(p: _Patcher, s: _Site) -> None:
    delta = s.S + s.A - s.P
    if delta & 1:
        raise LinkError(f"{s.kind}: odd displacement {delta:#x}")
    _check_range(s.kind, delta >> 1, 32)
    p.write(s.P, 4, delta >> 1)


PATCHERS: dict[str, Callable[[_Patcher, _Site], None]] = {
    "Abs4": _abs(4),
    "Abs8": _abs(8),
    "X86PCRel4": _pcrel32,
    "X86CallPCRel4": _pcrel32,
    "X86CallPLTRel4": _pcrel32,
    "X86GOTPCRel4": _pcrel32,
    "Arm64Call": _arm64_call,
    "Aarch64AdrPrelPgHi21": _arm64_adrp,
    "Aarch64AddAbsLo12Nc": _arm64_add_lo12,
    "Aarch64AdrGotPage21": _arm64_adrp,
    "Aarch64Ld64GotLo12Nc": _arm64_ld64_lo12,
    "RiscvCallPlt": _riscv_call,
    "RiscvPCRelHi20": _riscv_hi20,
    "RiscvGotHi20": _riscv_hi20,
    "RiscvPCRelLo12I": _riscv_lo12,
    "S390xPCRel32Dbl": _s390x_pcrel_dbl,
    "S390xPLTRel32Dbl": _s390x_pcrel_dbl,
}

GOT_KINDS = frozenset(
    {"X86GOTPCRel4", "Aarch64AdrGotPage21", "Aarch64Ld64GotLo12Nc", "RiscvGotHi20"}
)


def link(
    functions: Iterable[CompiledFunction],
    target: Target,
    base: int = CODE_BASE,
    gaps: Mapping[str, int] | None = None,
) -> Image:
    """Lay `functions` out from `base` in the given order and patch them.

    `gaps` adds padding before a named function (tests use it to put callees
    across page and sign boundaries)."""
    funcs = list(functions)
    gaps = gaps or {}
    symbols: dict[str, int] = {}
    sizes: dict[str, int] = {}
    cursor = base
    for f in funcs:
        cursor = _align(cursor + gaps.get(f.name, 0), FUNCTION_ALIGN)
        if f.name in symbols:
            raise LinkError(f"symbol {f.name} defined twice")
        symbols[f.name] = cursor
        sizes[f.name] = len(f.code)
        cursor += len(f.code)

    got_symbols = sorted({r.target for f in funcs for r in f.relocs if r.kind in GOT_KINDS})
    got_base = _align(cursor, 4096)
    got = {name: got_base + 8 * i for i, name in enumerate(got_symbols)}
    end = got_base + 8 * len(got) if got else cursor

    image = Image(base, bytearray(end - base), symbols, sizes, got=got)
    for f in funcs:
        start = symbols[f.name] - base
        image.data[start : start + len(f.code)] = f.code
        for off, code in f.traps:
            image.trap_sites[symbols[f.name] + off] = code

    patcher = _Patcher(image, target.big_endian)

    def resolve(reloc: Reloc, func_start: int) -> int:
        if reloc.target.startswith("+"):
            return func_start + int(reloc.target[1:])
        if reloc.target in symbols:
            return symbols[reloc.target]
        if reloc.target in LIBCALLS:
            raise NeedsLibcall(f"needs libcall {reloc.target[1:]}: not supported yet")
        raise UndefinedSymbol(f"undefined symbol {reloc.target}")

    for name, address in got.items():
        patcher.write(address, 8, resolve(Reloc(0, "Abs8", name, 0), 0))

    for f in funcs:
        start = symbols[f.name]
        relocs = tuple(f.relocs)
        for r in relocs:
            if r.kind not in PATCHERS or r.kind not in target.reloc_kinds:
                raise UnknownRelocation(
                    f"relocation kind {r.kind} in {f.name} is not supported on {target.name}"
                )
            sym = got[r.target] if r.kind in GOT_KINDS and r.kind != "RiscvPCRelLo12I" else None
            site = _Site(
                P=start + r.offset,
                S=sym if sym is not None else resolve(r, start),
                A=r.addend,
                kind=r.kind,
                func_start=start,
                relocs=relocs,
                resolve=lambda rr, fs: got[rr.target] if rr.kind in GOT_KINDS else resolve(rr, fs),
            )
            PATCHERS[r.kind](patcher, site)
    return image
