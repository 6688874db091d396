"""Tests of fuzz/link.py: every relocation kind the linker patches, on all four targets.

Two layers:

* End to end: small CLIF modules that make each backend emit its relocation
  kinds are compiled by Cranelift, linked at layouts that put the callee on the
  far side of a 4 KiB page boundary (before and after the caller) with symbol
  addresses on both sides of 0x8000_0000, and run in unicorn through the
  trampoline. Each case first asserts which kinds the caller really carries, so
  a test can only pass by patching the kinds it claims.
* Patch arithmetic: the exact instructions Cranelift emits (with a zero field)
  are patched for a symbol at a chosen distance and decoded back with capstone;
  range limits are probed at their exact edges.

Code bases are chosen clear of the emulator's own mappings (slots at
0x6000_0000, stack at 0x7000_0000 + 1 MiB, sentinel at 0x5000_0000); a test
checks that every linked image stays clear of them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import capstone as cs
import pytest
from capstone import arm64_const, riscv_const, x86_const

from fuzz import _cranelift, relocations
from fuzz.pipeline.emulate import (
    SENTINEL,
    SLOTS_BASE,
    SLOTS_SIZE,
    STACK_BASE,
    STACK_SIZE,
    Emulator,
)
from fuzz.pipeline.link import (
    CODE_BASE,
    FUNCTION_ALIGN,
    CompiledFunction,
    Image,
    LinkError,
    NeedsLibcall,
    Reloc,
    UndefinedSymbol,
    UnknownRelocation,
    link,
)
from fuzz.pipeline.trampoline import TRAMPOLINE_NAME, trampoline_clif
from fuzz.relocations import Memory, Relocation, RelocationOutOfRange, Site
from fuzz.targets import TARGET_NAMES, TARGETS, Target
from fuzz.values import Value

SIGN = 0x8000_0000
PAGE = 4096
MASK64 = (1 << 64) - 1

# --- end to end ---------------------------------------------------------------

CALLEE_ADDEND = 0x1234
AUX_ADDEND = 0x5_0000_0000
ARG = 0x0123_4567_89AB_CDEF

# %aux sorts before %callee, so when both go through the GOT, %callee's entry
# is the second one and the GOT low-12 fields are not zero.
CALLEE = f"""
function %callee(i64) -> i64 {{
block0(v0: i64):
    v1 = iconst.i64 {CALLEE_ADDEND:#x}
    v2 = iadd v0, v1
    return v2
}}

function %aux(i64) -> i64 {{
block0(v0: i64):
    v1 = iconst.i64 {AUX_ADDEND:#x}
    v2 = iadd v0, v1
    return v2
}}
"""


def _direct_call(colocated: bool) -> str:
    return f"""
    fn0 = {"colocated " if colocated else ""}%callee(i64) -> i64

block0(v0: i64):
    v1 = call fn0(v0)
    return v1"""


def _aux_then_callee(colocated: bool) -> str:
    coloc = "colocated " if colocated else ""
    return f"""
    fn0 = {coloc}%aux(i64) -> i64
    fn1 = {coloc}%callee(i64) -> i64

block0(v0: i64):
    v1 = call fn0(v0)
    v2 = call fn1(v1)
    return v2"""


def _func_addr(colocated: bool) -> str:
    return f"""
    sig0 = (i64) -> i64
    fn0 = {"colocated " if colocated else ""}%callee(i64) -> i64

block0(v0: i64):
    v1 = func_addr.i64 fn0
    v2 = call_indirect sig0, v1(v0)
    return v2"""


def _symbol_offset(colocated: bool, offset: int) -> str:
    # `symbol_value` of %callee+offset, then subtract the offset again and call
    # it: the relocation carries the offset as its addend.
    sign = "+" if offset >= 0 else "-"
    return f"""
    sig0 = (i64) -> i64
    gv0 = symbol {"colocated " if colocated else ""}%callee{sign}{abs(offset):#x}

block0(v0: i64):
    v1 = symbol_value.i64 gv0
    v2 = iconst.i64 {-offset}
    v3 = iadd v1, v2
    v4 = call_indirect sig0, v3(v0)
    return v4"""


SHAPES: dict[str, str] = {
    "call": _direct_call(False),
    "colocated_call": _direct_call(True),
    "aux_then_callee": _aux_then_callee(False),
    "colocated_aux_then_callee": _aux_then_callee(True),
    "func_addr": _func_addr(False),
    "colocated_func_addr": _func_addr(True),
    # +0x1238 moves the addressed byte onto another page than %callee itself
    "symbol_plus": _symbol_offset(False, 0x1238),
    "symbol_minus": _symbol_offset(False, -0x7F0),
    "colocated_symbol_plus": _symbol_offset(True, 0x1238),
    "colocated_symbol_minus": _symbol_offset(True, -0x7F0),
}

Kinds = Mapping[str, frozenset[str]]


def _kinds(x86: set[str], aarch64: set[str], riscv64: set[str], s390x: set[str]) -> Kinds:
    return {
        "x86_64": frozenset(x86),
        "aarch64": frozenset(aarch64),
        "riscv64": frozenset(riscv64),
        "s390x": frozenset(s390x),
    }


ABSOLUTE = _kinds({"Abs8"}, {"Abs8"}, {"Abs8"}, {"Abs8"})
NEAR_CALL = _kinds({"X86CallPCRel4"}, {"Arm64Call"}, {"RiscvCallPlt"}, {"S390xPLTRel32Dbl"})
NEAR_ADDRESS = _kinds(
    {"X86CallPCRel4"},
    {"Aarch64AdrPrelPgHi21", "Aarch64AddAbsLo12Nc"},
    {"RiscvPCRelHi20", "RiscvPCRelLo12I"},
    {"S390xPCRel32Dbl"},
)
# s390x has no GOT: with is_pic a non-colocated address is still an Abs8 literal,
# and a colocated one stays PC-relative.
GOT_ADDRESS = _kinds(
    {"X86GOTPCRel4"},
    {"Aarch64AdrGotPage21", "Aarch64Ld64GotLo12Nc"},
    {"RiscvGotHi20", "RiscvPCRelLo12I"},
    {"Abs8"},
)
GOT_ADDRESS_COLOCATED = {**GOT_ADDRESS, "s390x": frozenset({"S390xPCRel32Dbl"})}

# (shape, is_pic) -> target -> the exact set of kinds Cranelift puts in %caller
EXPECTED: dict[tuple[str, bool], Kinds] = {
    ("call", False): ABSOLUTE,
    ("call", True): GOT_ADDRESS,
    ("colocated_call", False): NEAR_CALL,
    ("colocated_call", True): NEAR_CALL,
    ("aux_then_callee", False): ABSOLUTE,
    ("aux_then_callee", True): GOT_ADDRESS,
    ("colocated_aux_then_callee", False): NEAR_CALL,
    ("colocated_aux_then_callee", True): NEAR_CALL,
    ("func_addr", False): ABSOLUTE,
    ("func_addr", True): GOT_ADDRESS,
    ("colocated_func_addr", False): NEAR_ADDRESS,
    ("colocated_func_addr", True): GOT_ADDRESS_COLOCATED,
    ("symbol_plus", False): ABSOLUTE,
    ("symbol_plus", True): GOT_ADDRESS,
    ("symbol_minus", False): ABSOLUTE,
    ("symbol_minus", True): GOT_ADDRESS,
    ("colocated_symbol_plus", False): NEAR_ADDRESS,
    ("colocated_symbol_plus", True): GOT_ADDRESS_COLOCATED,
    ("colocated_symbol_minus", False): NEAR_ADDRESS,
    ("colocated_symbol_minus", True): GOT_ADDRESS_COLOCATED,
}

# Kinds the linker supports that Cranelift 0.135 never emits for plain
# functions: X86PCRel4 only in the COFF TLS sequence (against %CoffTlsIndex),
# X86CallPLTRel4 only to call the %ElfTlsGetAddr libcall, Abs4 only on pulley.
# They are covered by the patch-arithmetic tests below.
UNIT_ONLY: Kinds = _kinds({"Abs4", "X86PCRel4", "X86CallPLTRel4"}, {"Abs4"}, {"Abs4"}, {"Abs4"})


@dataclass(frozen=True)
class Layout:
    name: str
    base: int
    order: tuple[str, ...]  # link order
    at: Mapping[str, int]  # planned address of %caller and %callee
    crosses_sign: bool


def _layout(name: str, base: int, caller: int, callee: int, crosses_sign: bool) -> Layout:
    first, second = ("%caller", "%callee") if caller < callee else ("%callee", "%caller")
    return Layout(
        name,
        base,
        (TRAMPOLINE_NAME, first, second, "%aux"),
        {"%caller": caller, "%callee": callee},
        crosses_sign,
    )


LAYOUTS = (
    # callee on the next page, exactly at 0x8000_0000
    _layout("forward_sign", 0x7FFF_E000, 0x7FFF_F000, 0x8000_0000, True),
    # callee on the previous page, caller exactly at 0x8000_0000
    _layout("backward_sign", 0x7FFF_E000, 0x8000_0000, 0x7FFF_FF00, True),
    # ~2.2 MiB apart: many immediate bits set; the RISC-V low part is >= 0x800 here,
    # so hi20 rounds up
    _layout("forward_far", 0x7FF0_0000, 0x7FF0_0840, 0x8012_37C0, True),
    _layout("backward_far", 0x7FED_C000, 0x8000_0840, 0x7FED_C7C0, True),
    # low addresses, only a page boundary in between
    _layout("forward_low", CODE_BASE, CODE_BASE + 0x800, CODE_BASE + 0x1840, False),
    _layout("backward_low", CODE_BASE, CODE_BASE + 0x1000, CODE_BASE + 0x7C0, False),
)

EMULATOR_REGIONS = (
    (STACK_BASE, STACK_BASE + STACK_SIZE),
    (SLOTS_BASE, SLOTS_BASE + SLOTS_SIZE),
    (SENTINEL, SENTINEL + PAGE),
)


def _isa(target: Target, pic: bool) -> _cranelift.Isa:
    return _cranelift.Isa(target.triple, ["is_pic=true"] if pic else [], [])


@functools.cache
def _compiled(target_name: str, shape: str, pic: bool) -> dict[str, CompiledFunction]:
    """%callee, %caller and the trampoline for %caller, compiled for the target."""
    target = TARGETS[target_name]
    module = _cranelift.parse(CALLEE + f"\nfunction %caller(i64) -> i64 {{{SHAPES[shape]}\n}}\n")
    isa = _isa(target, pic)
    funcs = {f.name: f for f in map(CompiledFunction.from_bridge, module.compile(isa))}
    signature = {f["name"]: f for f in module.functions()}["%caller"]["signature"]
    trampoline = _cranelift.parse(trampoline_clif(signature)).compile(isa)
    funcs[TRAMPOLINE_NAME] = CompiledFunction.from_bridge(trampoline[0])
    return funcs


def _gaps(funcs: Sequence[CompiledFunction], base: int, at: Mapping[str, int]) -> dict[str, int]:
    """Padding that makes `link` put each function named in `at` at that address."""
    gaps: dict[str, int] = {}
    cursor = base
    for f in funcs:
        if f.name in at:
            assert at[f.name] % FUNCTION_ALIGN == 0 and at[f.name] >= cursor, f.name
            gaps[f.name] = at[f.name] - cursor
            cursor = at[f.name]
        else:
            cursor = -(-cursor // FUNCTION_ALIGN) * FUNCTION_ALIGN
        cursor += len(f.code)
    return gaps


def _read(image: Image, address: int, size: int, big_endian: bool) -> int:
    at = address - image.base
    return int.from_bytes(image.data[at : at + size], "big" if big_endian else "little")


CASES = [(t, s, p) for t in TARGET_NAMES for (s, p) in EXPECTED]


@pytest.mark.parametrize("layout", LAYOUTS, ids=[lay.name for lay in LAYOUTS])
@pytest.mark.parametrize(
    ("target_name", "shape", "pic"),
    CASES,
    ids=[f"{t}-{s}-{'pic' if p else 'nopic'}" for t, s, p in CASES],
)
def test_end_to_end(target_name: str, shape: str, pic: bool, layout: Layout) -> None:
    target = TARGETS[target_name]
    funcs = _compiled(target_name, shape, pic)
    caller = funcs["%caller"]

    # The case exercises exactly the kinds it claims, against %callee (and
    # %aux); RiscvPCRelLo12I points at its auipc ("+N" inside %caller).
    assert {r.kind for r in caller.relocs} == EXPECTED[shape, pic][target_name]
    uses_aux = "aux" in shape
    symbols = {r.target for r in caller.relocs if r.kind != "RiscvPCRelLo12I"}
    assert symbols == ({"%aux", "%callee"} if uses_aux else {"%callee"})
    assert all(r.target[0] == "+" for r in caller.relocs if r.kind == "RiscvPCRelLo12I")

    ordered = [funcs[name] for name in layout.order]
    image = link(ordered, target, base=layout.base, gaps=_gaps(ordered, layout.base, layout.at))

    # The layout is the one planned: other pages, the right direction, and
    # addresses on both sides of 0x8000_0000 where the layout says so.
    caller_at, callee_at = image.symbols["%caller"], image.symbols["%callee"]
    assert (caller_at, callee_at) == (layout.at["%caller"], layout.at["%callee"])
    assert caller_at // PAGE != callee_at // PAGE
    if layout.crosses_sign:
        assert min(caller_at, callee_at) < SIGN <= max(caller_at, callee_at)
    end = image.base + len(image.data)
    for lo, hi in EMULATOR_REGIONS:
        assert end <= lo or image.base >= hi, "image overlaps the emulator's own memory"

    if any(target.relocations[r.kind].via_got for r in caller.relocs):
        assert set(image.got) == symbols
        for name, entry in image.got.items():
            assert _read(image, entry, 8, target.big_endian) == image.symbols[name]
        if uses_aux:
            assert image.got["%callee"] % PAGE == 8
    else:
        assert image.got == {}

    slots = Value("i64", ARG).memory_image(target.big_endian).ljust(16, b"\0")
    # A fresh emulator per run keeps the cases independent of each other.
    out = Emulator(target).run(image, image.symbols[TRAMPOLINE_NAME], caller_at, slots)
    assert out.kind == "return", f"{out.kind}: {out.detail} at {out.pc}"
    result = Value.from_memory("i64", out.slots, target.big_endian)
    assert result.bits == (ARG + CALLEE_ADDEND + (AUX_ADDEND if uses_aux else 0)) & MASK64


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_end_to_end_covers_every_emitted_kind(target_name: str) -> None:
    """The kinds really seen in the compiled callers are the kinds claimed, and
    together with UNIT_ONLY they are every kind the linker supports for the target."""
    seen = {
        r.kind
        for shape, pic in EXPECTED
        for r in _compiled(target_name, shape, pic)["%caller"].relocs
    }
    claimed = set().union(*(kinds[target_name] for kinds in EXPECTED.values()))
    assert seen == claimed
    assert seen == set(TARGETS[target_name].relocations) - UNIT_ONLY[target_name]
    assert not seen & UNIT_ONLY[target_name]


def test_every_relocation_belongs_to_a_target() -> None:
    defined = {id(v) for v in vars(relocations).values() if isinstance(v, Relocation)}
    used = {id(r) for t in TARGETS.values() for r in t.relocations.values()}
    assert defined == used


# --- patch arithmetic, decoded with capstone ------------------------------------


@dataclass(frozen=True)
class Seq:
    """An instruction sequence as Cranelift emits it (fields zero) and its relocations."""

    target: str
    label: str
    code: bytes
    relocs: tuple[tuple[int, str, int], ...]  # (offset, kind, addend bias)

    @property
    def via_got(self) -> bool:
        return any(_via_got(self.target, kind) for _, kind, _ in self.relocs)

    @property
    def data(self) -> bool:
        """An Abs4/Abs8 data word rather than an instruction."""
        return self.target != "x86_64" and self.relocs[0][1] in ("Abs4", "Abs8")

    def make_relocs(self, symbol: str, extra: int, start: int = 0) -> list[Reloc]:
        """Relocations against symbol+extra for the sequence placed at `start`
        in its function (GOT kinds take no offset, as Cranelift emits them)."""
        out = []
        for offset, kind, bias in self.relocs:
            if kind == "RiscvPCRelLo12I":  # points at the auipc right before it
                out.append(Reloc(start + offset, kind, f"+{start + offset - 4}", 0))
            elif _via_got(self.target, kind):
                out.append(Reloc(start + offset, kind, symbol, bias))
            else:
                out.append(Reloc(start + offset, kind, symbol, extra + bias))
        return out


def _via_got(target: str, kind: str) -> bool:
    return TARGETS[target].relocations[kind].via_got


def _le32(*words: int) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


SEQS = (
    # x86_64: bytes from Cranelift's own output (call, lea/mov rsi rip-relative, movabs rsi)
    Seq("x86_64", "call", bytes.fromhex("e800000000"), ((1, "X86CallPCRel4", -4),)),
    Seq("x86_64", "call_plt", bytes.fromhex("e800000000"), ((1, "X86CallPLTRel4", -4),)),
    Seq("x86_64", "lea", bytes.fromhex("488d3500000000"), ((3, "X86CallPCRel4", -4),)),
    Seq("x86_64", "mov_rip", bytes.fromhex("8b0500000000"), ((2, "X86PCRel4", -4),)),
    Seq("x86_64", "got", bytes.fromhex("488b3500000000"), ((3, "X86GOTPCRel4", -4),)),
    Seq("x86_64", "movabs", bytes.fromhex("48be0000000000000000"), ((2, "Abs8", 0),)),
    Seq("x86_64", "mov_imm32", bytes.fromhex("be00000000"), ((1, "Abs4", 0),)),
    # aarch64: bl; adrp x3 + add x3; adrp x3 + ldr x3 (GOT); literal words
    Seq("aarch64", "bl", _le32(0x9400_0000), ((0, "Arm64Call", 0),)),
    Seq(
        "aarch64",
        "adrp_add",
        _le32(0x9000_0003, 0x9100_0063),
        ((0, "Aarch64AdrPrelPgHi21", 0), (4, "Aarch64AddAbsLo12Nc", 0)),
    ),
    Seq(
        "aarch64",
        "adrp_ldr_got",
        _le32(0x9000_0003, 0xF940_0063),
        ((0, "Aarch64AdrGotPage21", 0), (4, "Aarch64Ld64GotLo12Nc", 0)),
    ),
    Seq("aarch64", "abs8", bytes(8), ((0, "Abs8", 0),)),
    Seq("aarch64", "abs4", bytes(4), ((0, "Abs4", 0),)),
    # riscv64: auipc ra + jalr ra; auipc a1 + addi a1; auipc a1 + ld a1 (GOT)
    Seq("riscv64", "auipc_jalr", _le32(0x0000_0097, 0x0000_80E7), ((0, "RiscvCallPlt", 0),)),
    Seq(
        "riscv64",
        "auipc_addi",
        _le32(0x0000_0597, 0x0005_8593),
        ((0, "RiscvPCRelHi20", 0), (4, "RiscvPCRelLo12I", 0)),
    ),
    Seq(
        "riscv64",
        "auipc_ld_got",
        _le32(0x0000_0597, 0x0005_B583),
        ((0, "RiscvGotHi20", 0), (4, "RiscvPCRelLo12I", 0)),
    ),
    Seq("riscv64", "abs8", bytes(8), ((0, "Abs8", 0),)),
    Seq("riscv64", "abs4", bytes(4), ((0, "Abs4", 0),)),
    # s390x: brasl %r14; larl %r3 (field at +2, addend +2); big-endian literal words
    Seq("s390x", "brasl", bytes.fromhex("c0e500000000"), ((2, "S390xPLTRel32Dbl", 2),)),
    Seq("s390x", "larl", bytes.fromhex("c03000000000"), ((2, "S390xPCRel32Dbl", 2),)),
    Seq("s390x", "abs8", bytes(8), ((0, "Abs8", 0),)),
    Seq("s390x", "abs4", bytes(4), ((0, "Abs4", 0),)),
)

# Bits of each instruction word a kind may change, as (offset from the
# relocation, 32-bit mask), from the ISA manuals; every other kind changes
# exactly its 4 (Abs8: 8) bytes.
INSN_FIELDS = {
    "Arm64Call": ((0, 0x03FF_FFFF),),
    "Aarch64AdrPrelPgHi21": ((0, 0x60FF_FFE0),),
    "Aarch64AdrGotPage21": ((0, 0x60FF_FFE0),),
    "Aarch64AddAbsLo12Nc": ((0, 0x003F_FC00),),
    "Aarch64Ld64GotLo12Nc": ((0, 0x003F_FC00),),
    "RiscvCallPlt": ((0, 0xFFFF_F000), (4, 0xFFF0_0000)),  # auipc + jalr
    "RiscvPCRelHi20": ((0, 0xFFFF_F000),),
    "RiscvGotHi20": ((0, 0xFFFF_F000),),
    "RiscvPCRelLo12I": ((0, 0xFFF0_0000),),
}


def _changed_bits_inside_fields(seq: Seq, patched: bytes) -> bool:
    """Whether patching left every bit outside the relocated fields alone."""
    allowed = bytearray(len(seq.code))
    for offset, kind, _ in seq.relocs:
        if kind in INSN_FIELDS:
            for delta, mask in INSN_FIELDS[kind]:
                at = offset + delta
                allowed[at : at + 4] = (
                    int.from_bytes(allowed[at : at + 4], "little") | mask
                ).to_bytes(4, "little")
        else:
            size = 8 if kind == "Abs8" else 4
            allowed[offset : offset + size] = b"\xff" * size
    return all((a ^ b) & ~m == 0 for a, b, m in zip(seq.code, patched, allowed, strict=True))


def _patch(seq: Seq, at: int, symbol_at: int, extra: int, got_at: int | None = None) -> bytes:
    """Apply `seq`'s relocations with the code at `at` and the symbol at
    `symbol_at` (its GOT entry at `got_at`), exactly as `link` drives the relocations,
    without laying out memory in between (so distances can be gigabytes)."""
    target = TARGETS[seq.target]
    relocs = seq.make_relocs("%sym", extra)
    got = {"%sym": got_at} if got_at is not None else {}
    image = Image(at, bytearray(seq.code), {"%seq": at}, {"%seq": len(seq.code)}, got=got)
    memory = Memory(at, image.data, target.big_endian)

    def resolve(r: Reloc, start: int) -> int:
        if target.relocations[r.kind].via_got:
            return got[r.target]
        if r.target.startswith("+"):
            return start + int(r.target[1:])
        return symbol_at

    def pair(auipc: int) -> tuple[int, int] | None:
        for r in relocs:
            if at + r.offset == auipc and target.relocations[r.kind].riscv_hi20:
                return resolve(r, at), r.addend
        return None

    for r in relocs:
        site = Site(at + r.offset, resolve(r, at), r.addend, r.kind, pair)
        target.relocations[r.kind].patch(memory, site)
    return bytes(image.data)


def _sext(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _disasm(target: Target, code: bytes, address: int) -> list[cs.CsInsn]:
    md = cs.Cs(target.cs_arch, target.cs_mode)
    md.detail = True
    insns = list(md.disasm(code, address))
    assert sum(i.size for i in insns) == len(code), "capstone could not decode it all"
    return insns


def _decode(seq: Seq, code: bytes, address: int) -> int:
    """The address (or immediate) the patched sequence materialises, per capstone."""
    target = TARGETS[seq.target]
    if seq.data:
        return int.from_bytes(code, "big" if target.big_endian else "little")
    value = 0
    for insn in _disasm(target, code, address):
        ops = insn.operands
        m = insn.mnemonic
        if seq.target == "x86_64":
            for op in ops:
                if op.type == x86_const.X86_OP_MEM and op.mem.base == x86_const.X86_REG_RIP:
                    value = insn.address + insn.size + op.mem.disp
                elif op.type == x86_const.X86_OP_IMM:
                    value = op.imm & MASK64
        elif seq.target == "aarch64":
            if m in ("bl", "adrp"):
                value = ops[-1].imm
            elif m == "add":
                assert ops[2].type == arm64_const.ARM64_OP_IMM
                value += ops[2].imm
            elif m == "ldr":
                value += ops[1].mem.disp
            else:
                raise AssertionError(m)
        elif seq.target == "riscv64":
            if m == "auipc":
                value = insn.address + (_sext(ops[1].imm, 20) << 12)
            elif m in ("addi", "mv", "jalr"):  # capstone prints addi 0 as mv, jalr 0 as `jalr ra`
                imm = [op.imm for op in ops if op.type == riscv_const.RISCV_OP_IMM]
                value += imm[0] if imm else 0
            elif m == "ld":
                value += ops[1].mem.disp
            else:
                raise AssertionError(m)
        else:
            assert m in ("brasl", "larl"), m
            value = ops[1].imm
    return value


# (code address, symbol address, symbol offset): both directions, across a page
# and 0x8000_0000, and RISC-V low parts on both sides of the hi20 rounding edge.
# Symbols are 8-aligned (GOT entries must be), displacements even (s390x) and
# 4-aligned (aarch64 bl).
POINTS = (
    (0x7FFF_FFF0, 0x8000_1238, 0),  # forward over the sign boundary
    (0x8000_0010, 0x7FFF_E008, -0x10),  # backward over it, negative offset
    (0x7FE0_0800, 0x8123_5000, 0x7F8),  # ~16 MiB forward, low part 0x800 + 0x7f8
    (0x8123_5000, 0x7FE0_0800, 0x1238),  # ~16 MiB backward, offset crossing a page
    (CODE_BASE + 0xFF8, CODE_BASE + 0x1000, 0),  # next page, 8 bytes on
    (CODE_BASE + 0x1000, CODE_BASE + 0xFF8, -0x800),  # previous page
)


@pytest.mark.parametrize("point", POINTS, ids=[f"{p:#x}->{s:#x}{e:+#x}" for p, s, e in POINTS])
@pytest.mark.parametrize("seq", SEQS, ids=[f"{s.target}-{s.label}" for s in SEQS])
def test_patch_decodes_to_symbol(seq: Seq, point: tuple[int, int, int]) -> None:
    at, symbol, extra = point
    if seq.via_got:
        # The instruction addresses the GOT entry; the symbol offset does not apply.
        patched = _patch(seq, at, symbol_at=0xDEAD_0000, extra=extra, got_at=symbol)
        expected = symbol
    else:
        patched = _patch(seq, at, symbol_at=symbol, extra=extra)
        expected = symbol + extra
    assert patched != seq.code
    assert _decode(seq, patched, at) == expected
    assert _changed_bits_inside_fields(seq, patched)


@pytest.mark.parametrize("fill", [0xFF, 0x00], ids=["ones", "zeros"])
@pytest.mark.parametrize("point", POINTS[:4], ids=[f"{p:#x}->{s:#x}" for p, s, _ in POINTS[:4]])
@pytest.mark.parametrize("seq", SEQS, ids=[f"{s.target}-{s.label}" for s in SEQS])
def test_patch_keeps_bits_outside_its_field(
    seq: Seq, point: tuple[int, int, int], fill: int
) -> None:
    """Opcode and register bits survive whatever they are: the real encodings
    above have many zero bits (registers x1/x3/x11) that a bad mask would not notice."""
    at, symbol, extra = point
    filled = dataclasses.replace(seq, code=bytes([fill]) * len(seq.code))
    patched = _patch(filled, at, symbol, extra, got_at=symbol if seq.via_got else None)
    assert _changed_bits_inside_fields(filled, patched)


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_patch_arithmetic_covers_every_kind(target_name: str) -> None:
    covered = {kind for s in SEQS if s.target == target_name for _, kind, _ in s.relocs}
    assert covered == set(TARGETS[target_name].relocations)


def test_capstone_sees_the_patched_instructions() -> None:
    """Spot checks in capstone's own words, for a reader of the test output."""
    seqs = {(s.target, s.label): s for s in SEQS}

    def text(key: tuple[str, str], at: int, symbol: int, got: int | None = None) -> list[str]:
        seq = seqs[key]
        code = _patch(seq, at, symbol, 0, got_at=got)
        return [f"{i.mnemonic} {i.op_str}" for i in _disasm(TARGETS[seq.target], code, at)]

    assert text(("aarch64", "bl"), 0x8000_0010, 0x7FFF_E008) == ["bl #0x7fffe008"]
    assert text(("aarch64", "adrp_add"), 0x7FFF_FFF0, 0x8000_1238) == [
        "adrp x3, #0x80001000",
        "add x3, x3, #0x238",
    ]
    assert text(("aarch64", "adrp_ldr_got"), 0x8000_0010, 0, got=0x7FFF_EFF8) == [
        "adrp x3, #0x7fffe000",
        "ldr x3, [x3, #0xff8]",
    ]
    assert text(("x86_64", "call"), 0x8000_0010, 0x7FFF_E008) == ["call 0x7fffe008"]
    assert text(("s390x", "brasl"), 0x8000_0010, 0x7FFF_E008) == ["brasl %r14, 0x7fffe008"]
    assert text(("s390x", "larl"), 0x7FFF_FFF0, 0x8000_1238) == ["larl %r3, 0x80001238"]
    # delta 0x1800: low part -0x800, so the high part rounds up to 2
    assert text(("riscv64", "auipc_addi"), 0x7FFF_F800, 0x8000_1000) == [
        "auipc a1, 2",
        "addi a1, a1, -0x800",
    ]


# --- range limits, at their exact edges -------------------------------------------

FAR = 0x4000_0000_0000  # code far from 0 so that negative displacements stay addresses


def _seq(target: str, label: str) -> Seq:
    return next(s for s in SEQS if s.target == target and s.label == label)


# (seq, lowest and highest displacement symbol - code that fits)
RANGES = (
    (_seq("x86_64", "call"), -(1 << 31) + 5, (1 << 31) - 1 + 5),  # disp32 from the next insn
    (_seq("x86_64", "call_plt"), -(1 << 31) + 5, (1 << 31) - 1 + 5),
    (_seq("x86_64", "lea"), -(1 << 31) + 7, (1 << 31) - 1 + 7),
    (_seq("x86_64", "mov_rip"), -(1 << 31) + 6, (1 << 31) - 1 + 6),
    (_seq("x86_64", "got"), -(1 << 31) + 7, (1 << 31) - 1 + 7),
    (_seq("aarch64", "bl"), -(1 << 27), (1 << 27) - 4),
    # adrp: +-1 Mi pages, counted from the code's page
    (_seq("aarch64", "adrp_add"), -(1 << 20) * PAGE, ((1 << 20) - 1) * PAGE + 0xFF8),
    (_seq("aarch64", "adrp_ldr_got"), -(1 << 20) * PAGE, ((1 << 20) - 1) * PAGE + 0xFF8),
    # auipc: hi20 = (delta + 0x800) >> 12 must fit in 20 signed bits
    (_seq("riscv64", "auipc_jalr"), -(1 << 31) - 0x800, (1 << 31) - 0x800 - 1),
    (_seq("riscv64", "auipc_addi"), -(1 << 31) - 0x800, (1 << 31) - 0x800 - 1),
    (_seq("riscv64", "auipc_ld_got"), -(1 << 31) - 0x800, (1 << 31) - 0x800 - 8),
    # halfword-scaled 32-bit displacement from the instruction
    (_seq("s390x", "brasl"), -(1 << 32), (1 << 32) - 2),
    (_seq("s390x", "larl"), -(1 << 32), (1 << 32) - 2),
)


def _step(seq: Seq) -> int:
    """The smallest meaningful change of displacement for the sequence."""
    if seq.target == "s390x":
        return 2
    if seq.via_got:
        return 8
    if seq.label == "bl":
        return 4
    if seq.label.startswith("adrp"):
        return PAGE
    return 1


@pytest.mark.parametrize(
    ("seq", "lo", "hi"), RANGES, ids=[f"{s.target}-{s.label}" for s, *_ in RANGES]
)
def test_displacement_range_edges(seq: Seq, lo: int, hi: int) -> None:
    def patch(delta: int) -> bytes:
        if seq.via_got:
            return _patch(seq, FAR, 0xDEAD_0000, 0, got_at=FAR + delta)
        return _patch(seq, FAR, FAR + delta, 0)

    for delta in (lo, hi):  # the edges themselves fit, and decode exactly
        assert _decode(seq, patch(delta), FAR) == FAR + delta
    # adrp's range is counted in pages: one page beyond either edge
    below = lo - _step(seq) if not seq.label.startswith("adrp") else lo - 8
    above = hi + _step(seq) if not seq.label.startswith("adrp") else hi + 8
    for delta in (below, above):
        with pytest.raises(RelocationOutOfRange, match=seq.relocs[0][1]):
            patch(delta)


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_absolute_range(target_name: str) -> None:
    abs4, abs8 = (
        _seq(target_name, "mov_imm32" if target_name == "x86_64" else "abs4"),
        _seq(target_name, "movabs" if target_name == "x86_64" else "abs8"),
    )
    # Abs4 holds an unsigned 32-bit address: 0xffff_ffff fits, also across the sign bit
    assert _decode(abs4, _patch(abs4, CODE_BASE, 0x7FFF_FFF0, 0x10), CODE_BASE) == SIGN
    assert _decode(abs4, _patch(abs4, CODE_BASE, 0xFFFF_FFF0, 0xF), CODE_BASE) == 0xFFFF_FFFF
    with pytest.raises(RelocationOutOfRange, match="Abs4"):
        _patch(abs4, CODE_BASE, 0xFFFF_FFF0, 0x10)
    with pytest.raises(RelocationOutOfRange, match="Abs4"):
        _patch(abs4, CODE_BASE, 0x10, -0x20)
    # Abs8: the whole 64-bit range, nothing below 0
    assert _decode(abs8, _patch(abs8, CODE_BASE, MASK64 - 7, 7), CODE_BASE) == MASK64
    assert _decode(abs8, _patch(abs8, CODE_BASE, SIGN, -0x10), CODE_BASE) == SIGN - 0x10
    with pytest.raises(RelocationOutOfRange, match="Abs8"):
        _patch(abs8, CODE_BASE, 0x10, -0x20)


def test_s390x_odd_displacement_is_rejected() -> None:
    with pytest.raises(LinkError, match="odd"):
        _patch(_seq("s390x", "larl"), CODE_BASE, CODE_BASE + 0x1001, 0)


# --- link(): layout, GOT, errors -------------------------------------------------


def _fn(name: str, code: bytes, relocs: Sequence[Reloc] = ()) -> CompiledFunction:
    return CompiledFunction(name, code, list(relocs), [])


PREFIX = 8  # the sequence sits 8 bytes into its function


@pytest.mark.parametrize("forward", [True, False], ids=["forward", "backward"])
@pytest.mark.parametrize("seq", SEQS, ids=[f"{s.target}-{s.label}" for s in SEQS])
def test_link_patches_each_sequence(seq: Seq, forward: bool) -> None:
    """Through link() itself: symbol lookup, "+N" pairing, the GOT, gaps; caller and
    callee on either side of 0x8000_0000, more than a page apart."""
    target = TARGETS[seq.target]
    extra = 0x7F8
    caller = _fn("%caller", bytes(PREFIX) + seq.code, seq.make_relocs("%callee", extra, PREFIX))
    callee = _fn("%callee", bytes(64))
    base = 0x7FFF_E000
    if forward:
        funcs, gaps = [caller, callee], {"%caller": 0x1000, "%callee": 0x2000 - 0x40}
    else:
        funcs, gaps = [callee, caller], {"%callee": 0x1000, "%caller": 0x2000 - 0x40}
    image = link(funcs, target, base=base, gaps=gaps)
    caller_at, callee_at = image.symbols["%caller"], image.symbols["%callee"]
    assert min(caller_at, callee_at) < SIGN <= max(caller_at, callee_at)
    assert abs(caller_at - callee_at) > PAGE
    patched = image.code_of("%caller")[PREFIX:]
    if seq.via_got:
        entry = image.got["%callee"]
        assert entry % 8 == 0 and entry > max(caller_at, callee_at)
        assert _read(image, entry, 8, target.big_endian) == callee_at
        assert _decode(seq, patched, caller_at + PREFIX) == entry
    else:
        assert image.got == {}
        assert _decode(seq, patched, caller_at + PREFIX) == callee_at + extra
    assert _changed_bits_inside_fields(seq, patched)


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_gaps_put_functions_where_asked(target_name: str) -> None:
    target = TARGETS[target_name]
    a, b, c = _fn("%a", bytes(10)), _fn("%b", bytes(100)), _fn("%c", bytes(1))
    image = link([a, b, c], target, base=0x7FFF_F000, gaps={"%b": 0x1000, "%c": 1})
    assert image.symbols == {
        "%a": 0x7FFF_F000,
        "%b": 0x8000_0040,  # 0x7fff_f00a + 0x1000, aligned up to 64
        "%c": 0x8000_00C0,  # after %b's 100 bytes plus 1, aligned up
    }
    assert image.function_at(0x8000_0040 + 99) == ("%b", 99)
    assert image.function_at(0x8000_0040 + 100) is None


# Thread-local access: real relocation kinds the linker does not handle.
TLS = """
function %tls() -> i64 {
    gv0 = symbol colocated tls u1:0
block0:
    v0 = tls_value.i64 gv0
    return v0
}
"""


@pytest.mark.parametrize(
    ("target_name", "kind"),
    [
        ("x86_64", "ElfX86_64TlsGd"),
        ("aarch64", "Aarch64TlsDescAdrPage21"),
        ("riscv64", "RiscvTlsGdHi20"),
    ],
)
def test_unknown_kind_from_cranelift(target_name: str, kind: str) -> None:
    target = TARGETS[target_name]
    isa = _cranelift.Isa(target.triple, ["tls_model=elf_gd"], [])
    funcs = [CompiledFunction.from_bridge(d) for d in _cranelift.parse(TLS).compile(isa)]
    assert funcs[0].relocs[0].kind == kind
    with pytest.raises(UnknownRelocation, match=re.escape(kind)):
        link(funcs, target)


FOREIGN = [
    (t, kind)
    for t in TARGET_NAMES
    for kind in ("NoSuchKind", "Arm64Call", "S390xPCRel32Dbl", "X86GOTPCRel4")
    if kind not in TARGETS[t].relocations
]


@pytest.mark.parametrize(("target_name", "kind"), FOREIGN)
def test_unknown_kind_is_named(target_name: str, kind: str) -> None:
    """An invented kind, or a real one of another target, is refused by name."""
    target = TARGETS[target_name]
    caller = _fn("%caller", bytes(16), [Reloc(4, kind, "%callee", 0)])
    with pytest.raises(UnknownRelocation, match=rf"{kind}.*{target_name}"):
        link([caller, _fn("%callee", bytes(4))], target)


@pytest.mark.parametrize("pic", [False, True], ids=["nopic", "pic"])
@pytest.mark.parametrize(("target_name", "shape"), [(t, s) for t in TARGET_NAMES for s in SHAPES])
def test_undefined_symbol(target_name: str, shape: str, pic: bool) -> None:
    """%caller linked without %callee, whichever kind (GOT included) refers to it."""
    funcs = _compiled(target_name, shape, pic)
    with pytest.raises(UndefinedSymbol, match="%callee") as info:
        link([funcs["%caller"], funcs[TRAMPOLINE_NAME], funcs["%aux"]], TARGETS[target_name])
    assert not isinstance(info.value, NeedsLibcall)


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_libcall_is_reported_as_needed(target_name: str) -> None:
    target = TARGETS[target_name]
    caller = _fn("%caller", bytes(16), [Reloc(8, "Abs8", "%ElfTlsGetAddr", 0)])
    with pytest.raises(NeedsLibcall, match="ElfTlsGetAddr"):
        link([caller], target)


def test_duplicate_symbol() -> None:
    with pytest.raises(LinkError, match="twice"):
        link([_fn("%a", bytes(4)), _fn("%a", bytes(4))], TARGETS["x86_64"])


def test_riscv_lo12_without_its_hi20() -> None:
    # RiscvPCRelLo12I pointing at an instruction that carries no hi20 relocation
    caller = _fn(
        "%caller",
        _le32(0x0000_0597, 0x0005_8593),
        [Reloc(4, "RiscvPCRelLo12I", "+0", 0)],
    )
    with pytest.raises(LinkError, match="no matching hi20"):
        link([caller], TARGETS["riscv64"])
