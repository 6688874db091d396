"""Our own linker: lays compiled functions out in emulated memory and patches
every relocation kind the four backends emit (big-endian on s390x).

Symbols are function names as CLIF prints them (`%name`, `u0:1`). After the
code, one stub per libcall the image calls (a bare return the emulator hooks:
fuzz.pipeline.libcalls); a GOT, when a relocation asks for one, follows them.
A far or edge layout (LAYOUTS) places some functions apart from that image,
each group in a chunk of its own (Image.far).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fuzz.pipeline import unwind
from fuzz.pipeline.libcalls import provided
from fuzz.relocations import LinkError, Memory, Relocation, Site
from fuzz.targets import Target

if TYPE_CHECKING:
    from fuzz._cranelift import CompiledInfo

CODE_BASE = 0x1000_0000
FUNCTION_ALIGN = 64

# Layouts (a case asks with `; callfuzz: layout far`; campaigns give a share
# of generated cases one): NEAR puts every function after the one before;
# FAR puts each group of functions that pc-relative relocations (colocated
# calls, func_addr, the GOT) tie together FAR_STRIDE apart from the others,
# beyond the reach of every pc-relative kind (x86_64 and riscv64 +-2 GiB,
# aarch64 BL +-128 MiB and ADRP +-4 GiB, s390x +-4 GiB), so only calls
# Cranelift made through a full 64-bit address connect them; EDGE puts each
# function that only colocated code refers to (and that refers to nothing
# pc-relative itself) as far above its nearest referrer as the relocation
# reaches: a colocated call at the edge of its range.
NEAR, FAR, EDGE = "near", "far", "edge"
LAYOUTS = (NEAR, FAR, EDGE)
FAR_BASE = CODE_BASE + (8 << 30)
FAR_STRIDE = 8 << 30
# The emulators' own memory (fuzz.pipeline.emulate: the sentinel, the slots,
# the stack): no chunk of code goes there.
HARNESS_MEMORY = (0x5000_0000, 0x8000_0000)

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
    # its `try_call` sites, offsets in the function (None: a bridge built
    # before it reported them)
    try_sites: list[unwind.TrySite] | None = field(default_factory=list)

    @classmethod
    def from_bridge(cls, d: CompiledInfo) -> CompiledFunction:
        return cls(
            name=d["name"],
            code=bytes(d["code"]),
            relocs=[Reloc(*r) for r in d["relocs"]],
            traps=list(d["traps"]),
            call_returns=list(d["call_returns"]),
            stack_args=d["stack_args"],
            try_sites=(
                [unwind.TrySite(r, f, tuple(h)) for r, f, h in d["try_sites"]]
                if "try_sites" in d
                else None
            ),
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
    # the `try_call` sites of every function, by return address
    try_sites: dict[int, unwind.TrySite] = field(default_factory=dict)
    # functions a FAR or EDGE layout placed apart: start address -> bytes
    far: dict[int, bytearray] = field(default_factory=dict)

    def chunks(self) -> list[tuple[int, bytearray]]:
        """(start address, bytes) of each piece of the image, the main one first."""
        return [(self.base, self.data), *sorted(self.far.items(), key=lambda c: c[0])]

    def bytes_at(self, address: int, size: int) -> bytes:
        """Up to `size` bytes of code from `address` (fewer at a chunk's end)."""
        for start, data in self.chunks():
            if start <= address < start + len(data):
                return bytes(data[address - start : address - start + size])
        return b""

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
        return self.bytes_at(self.symbols[name], self.sizes[name])


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _relocation(target: Target, r: Reloc, owner: str) -> Relocation:
    found = target.relocations.get(r.kind)
    if found is None:
        raise UnknownRelocation(
            f"relocation kind {r.kind} in {owner} is not supported on {target.name}"
        )
    return found


def _ranged(target: Target, f: CompiledFunction) -> list[Reloc]:
    """The relocations of `f` that tie it to something within a range (to
    another function, a libcall stub or the GOT), not to itself."""
    return [
        r
        for r in f.relocs
        if _relocation(target, r, f.name).reach is not None and not r.target.startswith("+")
    ]


def _far_groups(funcs: list[CompiledFunction], target: Target) -> list[list[str]]:
    """The functions in groups no pc-relative relocation crosses, in order; the
    first holds the first function and whatever reaches the stubs or the GOT
    (which stay with it)."""
    names = [f.name for f in funcs]
    parent = {n: n for n in [*names, ""]}  # "": the stubs and the GOT

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for f in funcs:
        for r in _ranged(target, f):
            kind = _relocation(target, r, f.name)
            other = r.target if r.target in parent and not kind.via_got else ""
            parent[root(f.name)] = root(other)
    if names:
        parent[root(names[0])] = root("")
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return list(groups.values())


def _edge_candidates(funcs: list[CompiledFunction], target: Target) -> list[str]:
    """Functions only pc-relative relocations of other functions refer to
    (colocated calls, func_addr) and that tie themselves to nothing."""
    referred = {
        r.target
        for f in funcs
        for r in _ranged(target, f)
        if r.target != f.name and not _relocation(target, r, f.name).via_got
    }
    absolute = {
        r.target for f in funcs for r in f.relocs if _relocation(target, r, f.name).reach is None
    }
    return [
        f.name
        for f in funcs
        if f.name in referred and f.name not in absolute and not _ranged(target, f)
    ]


def _overlaps(lo: int, hi: int, taken: Iterable[tuple[int, int]]) -> bool:
    return any(lo < t_hi and t_lo < hi for t_lo, t_hi in taken)


def link(
    functions: Iterable[CompiledFunction],
    target: Target,
    base: int = CODE_BASE,
    gaps: Mapping[str, int] | None = None,
    layout: str = NEAR,
    place: Mapping[str, int] | None = None,
) -> Image:
    """Lay `functions` out from `base` in the given order and patch them;
    a FAR or EDGE `layout` places some apart (see LAYOUTS), and falls back
    to NEAR where it has nothing to place.

    `gaps` adds padding before a named function (tests use it to put callees
    across page and sign boundaries); `place` puts named functions at the
    given addresses, each in a chunk of its own (tests put a callee out of
    a relocation's reach). Whatever a relocation cannot reach is a
    RelocationOutOfRange, never a patched field that jumps elsewhere."""
    funcs = list(functions)
    gaps = gaps or {}
    symbols: dict[str, int] = {}
    sizes: dict[str, int] = {}
    seen: set[str] = set()
    for f in funcs:
        if f.name in seen:
            raise LinkError(f"symbol {f.name} defined twice")
        seen.add(f.name)
    by_name = {f.name: f for f in funcs}
    apart: list[list[str]] = []  # groups of functions placed apart, each its own chunk
    if layout == FAR:
        apart = _far_groups(funcs, target)[1:]
    elif layout == EDGE:
        apart = [[name] for name in _edge_candidates(funcs, target)]
    elif layout != NEAR:
        raise LinkError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
    fixed = dict(place or {})
    apart = [g for g in apart if not fixed.keys() & set(g)] + [[name] for name in fixed]
    moved = {name for group in apart for name in group}
    cursor = base
    for f in funcs:
        if f.name in moved:
            continue
        cursor = _align(cursor + gaps.get(f.name, 0), FUNCTION_ALIGN)
        symbols[f.name] = cursor
        sizes[f.name] = len(f.code)
        cursor += len(f.code)

    def relocation(r: Reloc, owner: str) -> Relocation:
        return _relocation(target, r, owner)

    got_symbols = sorted(
        {r.target for f in funcs for r in f.relocs if relocation(r, f.name).via_got}
    )
    # one return stub per libcall (or thrower) called, after the code: the
    # emulator hooks it
    wanted = sorted(
        {
            r.target
            for f in funcs
            for r in f.relocs
            if r.target in LIBCALLS or unwind.thrower_cc(r.target)
        }
        - set(symbols)
    )
    available = provided(target) | unwind.throwers(target)
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

    # the chunks placed apart: FAR_STRIDE apart, or each at its referrers' edge
    taken = [(base, end), HARNESS_MEMORY]
    far: dict[int, bytearray] = {}
    for index, group in enumerate(apart):
        at = FAR_BASE + index * FAR_STRIDE
        if group[0] in fixed:
            at = fixed[group[0]]
        elif layout == EDGE:
            (name,) = group
            at = _edge_address(name, funcs, symbols, target)
            at -= at % FUNCTION_ALIGN
        size = 0
        offsets: dict[str, int] = {}
        for name in group:
            size = _align(size, FUNCTION_ALIGN)
            offsets[name] = size
            size += len(by_name[name].code)
        while layout == EDGE and group[0] not in fixed and _overlaps(at, at + size, taken[2:]):
            # below the edge chunk placed before it: nearer still reaches
            at = min(lo for lo, hi in taken[2:] if at < hi and lo < at + size) - size
            at -= at % FUNCTION_ALIGN
        if _overlaps(at, at + size, taken):
            raise LinkError(f"the {layout} layout has no room for {', '.join(group)}")
        chunk = {name: at + offset for name, offset in offsets.items()}
        taken.append((at, at + size))
        far[at] = bytearray(size)
        for name, address in chunk.items():
            symbols[name] = address
            sizes[name] = len(by_name[name].code)

    image = Image(base, bytearray(end - base), symbols, sizes, got=got, far=far)
    for name, address in stubs.items():
        image.data[address - base : address - base + len(target.return_insn)] = target.return_insn
        image.libcalls[address] = name[1:]
    memory = Memory(base, image.data, target.big_endian, far)
    for f in funcs:
        memory.put(symbols[f.name], f.code)
        for off, code in f.traps:
            image.trap_sites[symbols[f.name] + off] = code
        for try_site in f.try_sites or ():
            placed_site = try_site.moved(symbols[f.name])
            image.try_sites[placed_site.ret] = placed_site

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


def _edge_address(
    name: str, funcs: list[CompiledFunction], symbols: Mapping[str, int], target: Target
) -> int:
    """The highest address for `name` that every pc-relative relocation of
    the (already placed) functions referring to it still reaches."""
    limits = [
        symbols[f.name] + r.offset - r.addend + reach
        for f in funcs
        if f.name in symbols and f.name != name
        for r in f.relocs
        if r.target == name
        and not _relocation(target, r, f.name).via_got
        and (reach := _relocation(target, r, f.name).reach) is not None
    ]
    return min(limits)
