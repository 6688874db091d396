"""One table of per-target facts: triple, emulator and disassembler set-up, ABI
registers, relocation kinds, and what the emulator can run.

Everything that differs between backends lives here, so the rest of the
harness never asks `if arch == ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import capstone as cs
import unicorn as uc
from unicorn import arm64_const, riscv_const, s390x_const, x86_const

from fuzz import relocations as rel
from fuzz.relocations import Relocation
from fuzz.values import SCALAR_TYPES, VECTOR_TYPES


@dataclass(frozen=True)
class Target:
    name: str
    triple: str
    big_endian: bool
    # unicorn set-up
    uc_arch: int
    uc_mode: int
    uc_cpu: int | None
    pc_reg: int
    sp_reg: int
    # registers carrying the trampoline's (slots pointer, callee address)
    arg_regs: tuple[int, int]
    # where the sentinel return address goes: a register, or None to push it
    link_reg: int | None
    # bytes kept free above the stack pointer at entry (s390x's register save area)
    stack_bias: int
    # extra CPU set-up the emulator needs (FP enable, vector facility)
    setup: Callable[[uc.Uc], None]
    # unicorn error codes for an illegal instruction on this target
    illegal_errnos: frozenset[int]
    # where the recorded trap site lies relative to the PC unicorn reports for an
    # illegal instruction (riscv64 reports the next instruction; s390x records
    # the trap one byte into the `.word 0x0000`, or after a dividing instruction)
    trap_site_deltas: tuple[int, ...]
    # from the reported PC to the instruction that faulted
    fault_pc_delta: int
    # capstone set-up
    cs_arch: int
    cs_mode: int
    # relocation kinds the backend emits (as Cranelift's Reloc prints them),
    # each with how the linker patches it
    relocations: Mapping[str, Relocation]
    # ISA flags the emulator cannot run: enabling one makes code "not executable here"
    emulator_lacks: frozenset[str] = field(default_factory=frozenset)
    # names the first instruction in a function's code that the emulator would
    # run silently wrong (x86 VEX), so the code must not run at all
    unrunnable_code: Callable[[bytes, int], str | None] = field(default=lambda _c, _a: None)
    # names an instruction of an extension the ISA flags left off: an illegal
    # instruction there is Cranelift's wrong code, not an emulator gap
    foreign_insn: Callable[[bytes], str | None] = field(default=lambda _code: None)
    # aliases accepted on the command line and in `target` lines
    aliases: tuple[str, ...] = ()
    # --- what the generator may use on this target (measured, see tests/test_generate.py)
    # calling conventions for `call`/`call_indirect`
    call_convs: tuple[str, ...] = ("system_v", "fast", "tail")
    # conventions that allow `return_call` (Cranelift: only `tail`)
    tail_call_convs: tuple[str, ...] = ("tail",)
    # conventions whose functions may not return values
    no_return_convs: tuple[str, ...] = ("preserve_all",)
    # conventions that take an explicit `sret` parameter (aarch64 panics on
    # `tail` + sret: corpus/aarch64-tail-sret-panic.clif)
    sret_convs: tuple[str, ...] = ("system_v", "fast", "tail")
    # x86_64 panics on `return_call` without preserve_frame_pointers
    tail_calls_need_frame_pointers: bool = False
    # types allowed in signatures per convention ("*": every other one)
    abi_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    regalloc_algorithms: tuple[str, ...] = ("backtracking", "single_pass")
    # ISA flags the generator toggles (all runnable on the emulator)
    fuzz_isa_flags: tuple[str, ...] = ()
    # ISA flags that vector types need on this target
    vector_isa_flags: tuple[str, ...] = ()


def _no_setup(_: uc.Uc) -> None:
    pass


def _riscv_vector(code: bytes) -> str | None:
    """Names an RVV instruction. Vector code is only generated with `has_v`,
    which makes a case not executable before it runs, so an RVV instruction
    met while running is Cranelift emitting a disabled extension."""
    if len(code) < 4 or code[0] & 0x3 != 0x3:
        return None  # compressed: never RVV
    word = int.from_bytes(code[:4], "little")
    opcode, width = word & 0x7F, (word >> 12) & 0x7
    if opcode == 0x57 or (opcode in (0x07, 0x27) and width in (0, 5, 6, 7)):
        return "RVV instruction although has_v is off"
    return None


def _riscv_setup(mu: uc.Uc) -> None:
    # mstatus.FS = Dirty, otherwise every FP instruction is illegal.
    mstatus = mu.reg_read(riscv_const.UC_RISCV_REG_MSTATUS)
    mu.reg_write(riscv_const.UC_RISCV_REG_MSTATUS, mstatus | 0x6000)


def _s390x_setup(mu: uc.Uc) -> None:
    # CR0 bits enabling the AFP registers and the vector facility.
    cr0 = mu.reg_read(s390x_const.UC_S390X_REG_CR0)
    mu.reg_write(s390x_const.UC_S390X_REG_CR0, cr0 | 0x60000)
    # PSW EA+BA: 64-bit addressing (the reset state is 24-bit).
    pswm = mu.reg_read(s390x_const.UC_S390X_REG_PSWM)
    mu.reg_write(s390x_const.UC_S390X_REG_PSWM, pswm | 0x1_8000_0000)


def _x86_vex(code: bytes, address: int = 0) -> str | None:
    """The first VEX/EVEX-encoded x86 instruction in `code`, if any: unicorn
    runs them silently wrong, so such code must not be executed.

    Cranelift puts a function's constants after its code and reaches them
    RIP-relative, so the sweep stops at the lowest such target inside `code`
    rather than decoding constants as instructions."""
    # Fast path: no `v` mnemonic anywhere (the usual case) means no VEX, and
    # the lite sweep skips capstone's costly per-instruction details.
    if not any(m.startswith("v") for _a, _s, m, _o in _X86_LITE.disasm_lite(code, address)):
        return None
    md = _X86_DETAIL
    end = address + len(code)
    data_start = end
    first_vex: list[tuple[int, str]] = []
    for insn in md.disasm(code, address):
        if insn.address >= data_start:
            break
        for op in insn.operands if insn.id else ():  # id 0: skipped data
            if op.type == cs.x86.X86_OP_MEM and op.mem.base == cs.x86.X86_REG_RIP:
                target = insn.address + insn.size + op.mem.disp
                if insn.address < target < data_start:
                    data_start = target
        raw = bytes(insn.bytes)
        i = 0
        while i < len(raw) and raw[i] in _LEGACY_PREFIXES:
            i += 1
        if i < len(raw) and 0x40 <= raw[i] <= 0x4F:
            i += 1
        if i < len(raw) and raw[i] in (0xC4, 0xC5, 0x62) and insn.mnemonic.startswith("v"):
            first_vex.append((insn.address, f"{insn.mnemonic} {insn.op_str}".strip()))
    for at, text in first_vex:
        if at < data_start:
            return text
    return None


_X86_DETAIL = cs.Cs(cs.CS_ARCH_X86, cs.CS_MODE_64)
_X86_DETAIL.skipdata = True
_X86_DETAIL.detail = True
_X86_LITE = cs.Cs(cs.CS_ARCH_X86, cs.CS_MODE_64)
_X86_LITE.skipdata = True

_LEGACY_PREFIXES = frozenset({0x66, 0x67, 0xF2, 0xF3, 0x2E, 0x3E, 0x26, 0x36, 0x64, 0x65, 0xF0})


# riscv64 and s390x: every convention they accept (winch asserts on both)
_CONVS_WITHOUT_WINCH = (
    "system_v",
    "fast",
    "tail",
    "preserve_all",
    "windows_fastcall",
    "apple_aarch64",
    "probestack",
)

_ERR_ILLEGAL = frozenset({uc.UC_ERR_INSN_INVALID, uc.UC_ERR_EXCEPTION})

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="x86_64",
            triple="x86_64-unknown-linux-gnu",
            big_endian=False,
            uc_arch=uc.UC_ARCH_X86,
            uc_mode=uc.UC_MODE_64,
            uc_cpu=None,
            pc_reg=x86_const.UC_X86_REG_RIP,
            sp_reg=x86_const.UC_X86_REG_RSP,
            arg_regs=(x86_const.UC_X86_REG_RDI, x86_const.UC_X86_REG_RSI),
            link_reg=None,
            stack_bias=0,
            setup=_no_setup,
            illegal_errnos=_ERR_ILLEGAL,
            trap_site_deltas=(0,),
            fault_pc_delta=0,
            cs_arch=cs.CS_ARCH_X86,
            cs_mode=cs.CS_MODE_64,
            relocations={
                "Abs4": rel.ABS4,
                "Abs8": rel.ABS8,
                "X86PCRel4": rel.PCREL32,
                "X86CallPCRel4": rel.PCREL32,
                "X86CallPLTRel4": rel.PCREL32,
                "X86GOTPCRel4": rel.PCREL32_GOT,
            },
            # unicorn (QEMU 5.0 TCG) has no AVX: 128-bit VEX runs with wrong results.
            emulator_lacks=frozenset(
                {
                    "has_avx",
                    "has_avx2",
                    "has_fma",
                    "has_avx_vnni",
                    "has_avx512bitalg",
                    "has_avx512dq",
                    "has_avx512vl",
                    "has_avx512vbmi",
                    "has_avx512f",
                    "has_avx512vnni",
                }
            ),
            call_convs=("system_v", "fast", "tail", "windows_fastcall", "preserve_all", "winch"),
            abi_types={
                "*": SCALAR_TYPES + VECTOR_TYPES,
                # winch is x86's convention without SIMD: scalars only
                "winch": SCALAR_TYPES,
            },
            fuzz_isa_flags=(
                "has_sse3",
                "has_ssse3",
                "has_sse41",
                "has_sse42",
                "has_popcnt",
                "has_bmi1",
                "has_bmi2",
                "has_lzcnt",
                "has_cmpxchg16b",
            ),
            vector_isa_flags=("has_sse3", "has_ssse3", "has_sse41"),
            tail_calls_need_frame_pointers=True,
            unrunnable_code=_x86_vex,
            aliases=("x86_64", "x64", "amd64"),
        ),
        Target(
            name="aarch64",
            triple="aarch64-unknown-linux-gnu",
            big_endian=False,
            uc_arch=uc.UC_ARCH_ARM64,
            uc_mode=uc.UC_MODE_ARM,
            uc_cpu=arm64_const.UC_CPU_ARM64_MAX,
            pc_reg=arm64_const.UC_ARM64_REG_PC,
            sp_reg=arm64_const.UC_ARM64_REG_SP,
            arg_regs=(arm64_const.UC_ARM64_REG_X0, arm64_const.UC_ARM64_REG_X1),
            link_reg=arm64_const.UC_ARM64_REG_X30,
            stack_bias=0,
            setup=_no_setup,
            illegal_errnos=_ERR_ILLEGAL,
            trap_site_deltas=(0,),
            fault_pc_delta=0,
            cs_arch=cs.CS_ARCH_ARM64,
            cs_mode=cs.CS_MODE_ARM,
            relocations={
                "Abs4": rel.ABS4,
                "Abs8": rel.ABS8,
                "Arm64Call": rel.ARM64_CALL,
                "Aarch64AdrPrelPgHi21": rel.ARM64_ADRP,
                "Aarch64AddAbsLo12Nc": rel.ARM64_ADD_LO12,
                "Aarch64AdrGotPage21": rel.ARM64_ADRP_GOT,
                "Aarch64Ld64GotLo12Nc": rel.ARM64_LD64_LO12_GOT,
            },
            call_convs=(
                "system_v",
                "fast",
                "tail",
                "apple_aarch64",
                "windows_fastcall",
                "preserve_all",
                "winch",
                "probestack",
            ),
            sret_convs=("system_v", "fast"),
            abi_types={"*": SCALAR_TYPES + VECTOR_TYPES},
            fuzz_isa_flags=("has_lse", "has_pauth", "has_fp16", "sign_return_address"),
            aliases=("aarch64", "arm64"),
        ),
        Target(
            name="riscv64",
            triple="riscv64gc-unknown-linux-gnu",
            big_endian=False,
            uc_arch=uc.UC_ARCH_RISCV,
            uc_mode=uc.UC_MODE_RISCV64,
            uc_cpu=None,
            pc_reg=riscv_const.UC_RISCV_REG_PC,
            sp_reg=riscv_const.UC_RISCV_REG_SP,
            arg_regs=(riscv_const.UC_RISCV_REG_A0, riscv_const.UC_RISCV_REG_A1),
            link_reg=riscv_const.UC_RISCV_REG_RA,
            stack_bias=0,
            setup=_riscv_setup,
            illegal_errnos=_ERR_ILLEGAL,
            trap_site_deltas=(-4, -2, 0),
            fault_pc_delta=-4,
            cs_arch=cs.CS_ARCH_RISCV,
            cs_mode=cs.CS_MODE_RISCV64 | cs.CS_MODE_RISCVC,
            relocations={
                "Abs4": rel.ABS4,
                "Abs8": rel.ABS8,
                "RiscvCallPlt": rel.RISCV_CALL,
                "RiscvPCRelHi20": rel.RISCV_HI20,
                "RiscvPCRelLo12I": rel.RISCV_LO12,
                "RiscvGotHi20": rel.RISCV_HI20_GOT,
            },
            # unicorn runs base RV64GC only.
            emulator_lacks=frozenset(
                {
                    "has_v",
                    "has_zvfh",
                    "has_zvbb",
                    "has_zfa",
                    "has_zfhmin",
                    "has_zfh",
                    "has_zcb",
                    "has_zbkb",
                    "has_zba",
                    "has_zbb",
                    "has_zbc",
                    "has_zbs",
                    "has_zicond",
                }
            ),
            # winch asserts on riscv64 (corpus/riscv64-winch-callconv.clif)
            call_convs=_CONVS_WITHOUT_WINCH,
            # vectors need has_v, which unicorn lacks: compile-only, so not generated
            abi_types={"*": SCALAR_TYPES},
            fuzz_isa_flags=("has_zca", "has_zcd"),
            foreign_insn=_riscv_vector,
            aliases=("riscv64", "riscv64gc", "rv64"),
        ),
        Target(
            name="s390x",
            triple="s390x-unknown-linux-gnu",
            big_endian=True,
            uc_arch=uc.UC_ARCH_S390X,
            uc_mode=uc.UC_MODE_BIG_ENDIAN,
            uc_cpu=None,
            pc_reg=s390x_const.UC_S390X_REG_PC,
            sp_reg=s390x_const.UC_S390X_REG_R15,
            arg_regs=(s390x_const.UC_S390X_REG_R2, s390x_const.UC_S390X_REG_R3),
            link_reg=s390x_const.UC_S390X_REG_R14,
            # the caller provides a 160-byte register save area above SP
            stack_bias=160,
            setup=_s390x_setup,
            illegal_errnos=_ERR_ILLEGAL,
            # a trap site lies inside the faulting instruction (`.word 0`, `dlgr`)
            trap_site_deltas=(0, 1, 2, 3),
            fault_pc_delta=0,
            cs_arch=cs.CS_ARCH_SYSZ,
            cs_mode=cs.CS_MODE_BIG_ENDIAN,
            relocations={
                "Abs4": rel.ABS4,
                "Abs8": rel.ABS8,
                "S390xPCRel32Dbl": rel.S390X_PCREL_DBL,
                "S390xPLTRel32Dbl": rel.S390X_PCREL_DBL,
            },
            # unicorn's s390x lacks vector enhancements 2 and MIE3/MIE4.
            emulator_lacks=frozenset({"has_mie3", "has_mie4", "has_vxrs_ext2", "has_vxrs_ext3"}),
            # winch asserts on s390x (corpus/s390x-winch-callconv.clif)
            call_convs=_CONVS_WITHOUT_WINCH,
            abi_types={"*": SCALAR_TYPES + VECTOR_TYPES},
            aliases=("s390x",),
        ),
    )
}

TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)


class UnknownTarget(ValueError):
    pass


def lookup(name: str) -> Target:
    """A target by its name, alias or the architecture part of a triple."""
    arch = name.split("-", 1)[0]
    for target in TARGETS.values():
        if arch == target.name or arch in target.aliases:
            return target
    raise UnknownTarget(f"unknown target '{name}' (known: {', '.join(TARGET_NAMES)})")


def is_known(name: str) -> bool:
    try:
        lookup(name)
    except UnknownTarget:
        return False
    return True
