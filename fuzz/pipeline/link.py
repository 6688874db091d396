"""Our own linker: lays compiled functions out in emulated memory and patches
every relocation kind the four backends emit (big-endian on s390x).

Symbols are function names as CLIF prints them (`%name`, `u0:1`). After the
code, one stub per libcall the image calls (a bare return the emulator hooks:
fuzz.pipeline.libcalls); a GOT, when a relocation asks for one, follows them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fuzz.pipeline.libcalls import provided
from fuzz.relocations import LinkError, Memory, Relocation, Site
from fuzz.targets import Target

if TYPE_CHECKING:
    from fuzz._cranelift import CompiledInfo

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


class UnknownRelocation(LinkError):
    pass


class UndefinedSymbol(LinkError):
    pass


class NeedsLibcall(UndefinedSymbol):
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
    call_returns: list[int] = field(default_factory=list)  # return offsets of its calls
    # its incoming stack-argument area (bytes; the bridge's `stack_args`)
    stack_args: int | None = None

    @classmethod
    def from_bridge(cls, d: CompiledInfo) -> CompiledFunction:
        return cls(
            name=d["name"],
            code=bytes(d["code"]),
            relocs=[Reloc(*r) for r in d["relocs"]],
            traps=list(d["traps"]),
            call_returns=list(d["call_returns"]),
            stack_args=d["stack_args"],
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
    libcalls: dict[int, str] = field(default_factory=dict)  # stub address -> `CeilF32`

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

    def relocation(r: Reloc, owner: str) -> Relocation:
        found = target.relocations.get(r.kind)
        if found is None:
            raise UnknownRelocation(
                f"relocation kind {r.kind} in {owner} is not supported on {target.name}"
            )
        return found

    got_symbols = sorted(
        {r.target for f in funcs for r in f.relocs if relocation(r, f.name).via_got}
    )
    # one return stub per libcall called, after the code: the emulator hooks it
    wanted = sorted(
        {r.target for f in funcs for r in f.relocs if r.target in LIBCALLS} - set(symbols)
    )
    available = provided(target)
    stubs: dict[str, int] = {}
    for name in wanted:
        if name not in available:
            raise NeedsLibcall(f"needs libcall {name[1:]}: not provided on {target.name}")
        cursor = _align(cursor, FUNCTION_ALIGN)
        stubs[name] = cursor
        cursor += len(target.return_insn)
    got_base = _align(cursor, 4096)
    got = {name: got_base + 8 * i for i, name in enumerate(got_symbols)}
    end = got_base + 8 * len(got) if got else cursor

    image = Image(base, bytearray(end - base), symbols, sizes, got=got)
    for name, address in stubs.items():
        image.data[address - base : address - base + len(target.return_insn)] = target.return_insn
        image.libcalls[address] = name[1:]
    for f in funcs:
        start = symbols[f.name] - base
        image.data[start : start + len(f.code)] = f.code
        for off, code in f.traps:
            image.trap_sites[symbols[f.name] + off] = code

    memory = Memory(base, image.data, target.big_endian)

    def resolve(reloc: Reloc, func_start: int) -> int:
        if reloc.target.startswith("+"):
            return func_start + int(reloc.target[1:])
        if reloc.target in symbols:
            return symbols[reloc.target]
        if reloc.target in stubs:
            return stubs[reloc.target]
        raise UndefinedSymbol(f"undefined symbol {reloc.target}")

    def symbol_of(reloc: Reloc, kind: Relocation, func_start: int) -> int:
        return got[reloc.target] if kind.via_got else resolve(reloc, func_start)

    for name, address in got.items():
        memory.write(address, 8, resolve(Reloc(0, "Abs8", name, 0), 0))

    for f in funcs:
        start = symbols[f.name]
        # RISC-V's lo12 half names the address of its hi20 half's `auipc`
        hi20 = {start + r.offset: r for r in f.relocs if relocation(r, f.name).riscv_hi20}

        def pair(
            auipc: int, start: int = start, hi20: dict[int, Reloc] = hi20
        ) -> tuple[int, int] | None:
            r = hi20.get(auipc)
            return None if r is None else (symbol_of(r, relocation(r, "?"), start), r.addend)

        for r in f.relocs:
            kind = relocation(r, f.name)
            site = Site(start + r.offset, symbol_of(r, kind, start), r.addend, r.kind, pair)
            kind.patch(memory, site)
    return image
