"""One table of per-target facts: triple, emulator and disassembler set-up, ABI
registers, relocation kinds, and what the emulator can run.

Everything that differs between backends lives here, so the rest of the
harness never asks `if arch == ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypedDict

import capstone as cs
import unicorn as uc
from unicorn import arm64_const, riscv_const, s390x_const, x86_const

from fuzz import relocations as rel
from fuzz.relocations import Relocation
from fuzz.values import SCALAR_TYPES, VECTOR_TYPES


@dataclass(frozen=True)
class Reg:
    """A register the harness sets before a run (and checks around calls)."""

    name: str  # as the ABI documents name it: rbx, x19, v8, s1, f8, r6
    uc: int  # unicorn's id
    bits: int
    cls: str  # "int", "float" or "vector"


@dataclass(frozen=True)
class LibcallAbi:
    """Where a libcall (`%CeilF32`, `%Memcpy`, ...) finds its arguments and
    leaves its result, in the target's default convention (system_v), which
    Cranelift's own libcalls use unless `libcall_call_conv` says otherwise;
    register names are those of `Target.registers`. Integers go where any
    call's do: `Target.int_arg_regs` and `Target.int_ret_reg`."""

    floats: tuple[str, ...]
    float_ret: str
    # empty: no vector libcall (X86Pshufb) here
    vectors: tuple[str, ...] = ()
    vector_ret: str = ""
    # where an f32 lies in its float register: the low bits, or (s390x, whose
    # short BFP format is the leftmost word of the FPR) the high half
    f32_shift: int = 0
    # an f32 in a 64-bit float register is NaN-boxed (RISC-V F/D: upper 32 bits ones)
    nan_boxed: bool = False


@dataclass(frozen=True)
class CAbi:
    """The target's platform C compiler, the reference of the C-ABI oracle
    (fuzz.pipeline.cabi): how to run it and which CLIF signatures have a C counterpart
    (c-abi-notes: the psABI of each target, checked against gcc 12)."""

    compiler: str  # the driver Debian installs
    package: str  # the Debian package that has it (named in messages and .ci/run)
    cflags: tuple[str, ...]  # on top of fuzz.pipeline.cabi.build's freestanding flags
    # CLIF convention -> the C attribute giving it ("" for the default one)
    conventions: Mapping[str, str]
    f16: bool  # the compiler has `_Float16` as an argument type
    f128: str  # the C type that is IEEE binary128 ("" for none)
    vectors: bool  # 128-bit `vector_size(16)` values have a defined convention
    # `unsigned int` arguments are sign-extended to 64 bits (RISC-V psABI)
    unsigned_i32_sext: bool
    # multi-value returns that are a C struct returned in registers: the
    # exact tuples of CLIF types whose struct classification gives the same
    # registers Cranelift uses for several returns
    struct_returns: frozenset[tuple[str, ...]]
    # (convention, CLIF type) -> why it is left unchecked: a divergence that
    # is an upstream decision, not a bug
    decisions: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # convention -> why none of its multi-value returns is a C struct return
    # (`struct_returns` holds for the other conventions)
    no_struct_returns: Mapping[str, str] = field(default_factory=dict)


def _pairs(*types: str) -> frozenset[tuple[str, ...]]:
    return frozenset((a, b) for a in types for b in types)


def _homogeneous(*types: str) -> frozenset[tuple[str, ...]]:
    """AAPCS64 homogeneous floating-point aggregates of 2 to 4 members."""
    return frozenset((t,) * n for t in types for n in (2, 3, 4))


@dataclass(frozen=True)
class QemuFacts:
    """What one qemu-user release, and every later one up to the next row,
    runs for a target: measured, not guessed (README "qemu-user")."""

    since: tuple[int, int]  # the first qemu version (major, minor) these hold for
    cpu: str  # -cpu model, with the properties every line gets
    # ISA flag -> the -cpu properties it needs; flags not named run on the model as is
    properties: Mapping[str, str]
    # ISA flags this release cannot run (abstain: "qemu-user lacks ...")
    lacks: frozenset[str]


@dataclass(frozen=True)
class QemuFrame:
    """Where qemu-user's signal frame for a target holds its registers: the
    run loop (fuzz.pipeline.qemu.loop) starts a run with `rt_sigreturn` from
    a frame it wrote and reads the end state from the handler's. Byte
    offsets from the frame's ucontext (qemu's linux-user/ARCH/signal.c
    `target_ucontext`), or, for `fp_regs`, from the FP state whose address
    the ucontext holds at `fp_pointer`."""

    regs: Mapping[str, int]  # a Target.registers name, "pc" or "sp" -> offset
    kill: int  # the kill system call (the first frame is a signal sent to itself)
    fp_regs: Mapping[str, int] = field(default_factory=dict)
    fp_pointer: int = -1
    # rt_sigreturn finds the frame at SP minus this (x86_64: the handler's
    # `ret` would have popped the restorer's address)
    sigreturn_sp: int = 0
    # the flags word every run starts with, as the gdbstub path's (the
    # program's initial state): offset, bits it sets, their value
    flags: tuple[int, int, int] | None = None
    cpu: str = ""  # added to -cpu (aarch64: no SVE frame record to keep in step)


@dataclass(frozen=True)
class QemuSetup:
    """How qemu-user runs a target's code (fuzz.pipeline.qemu): the program it
    starts (an ELF callfuzz writes itself), the CPU it emulates and the
    system-call convention the harness drives through its gdbstub."""

    binary: str  # qemu-user's program for the architecture
    elf_machine: int  # e_machine
    elf_flags: int  # e_flags
    # what each qemu-user release runs, oldest first (QemuFacts): the row of
    # the installed program's version is chosen at run time
    releases: tuple[QemuFacts, ...]
    syscall_insn: bytes
    loop_insn: bytes  # a branch to itself: where the stub stops (a breakpoint)
    # gdb register names: the system call number, its arguments, its result
    syscall_number: str
    syscall_args: tuple[str, str, str, str]
    syscall_result: str
    # Linux system call numbers
    read: int
    readv: int
    mprotect: int
    rt_sigaction: int
    sigaltstack: int
    # kernel `struct sigaction` has sa_restorer before sa_mask (not on riscv64)
    sigaction_restorer: bool
    # a signal handler's second argument (the siginfo) arrives here
    handler_siginfo: str
    pc: str
    sp: str
    # register name (Target.registers) -> gdb's name for it, where they differ
    gdb_names: Mapping[str, str]
    # registers qemu's target description lists but its register numbers skip
    gdb_phantoms: frozenset[str] = frozenset()
    # where a recorded trap site lies relative to the PC of qemu's signal
    # (s390x: the PSW points past the trapping instruction)
    trap_site_deltas: tuple[int, ...] = (0,)
    # Registers the `g` packet lacks, set from memory before each run by
    # `fp_restore` (register `fp_base` holds the block's address): the names
    # of the block's pieces in order and the bytes of each.
    fp_pieces: tuple[str, ...] = ()
    fp_piece_bytes: int = 8
    fp_restore: bytes = b""
    fp_base: str = ""
    frame: QemuFrame | None = None  # None: runs only through the gdbstub

    def facts(self, version: tuple[int, int] | None) -> QemuFacts:
        """The row for qemu-user `version`: the newest row not newer than it
        (an unknown newer release gets the newest row; None, the oldest)."""
        chosen = self.releases[0]
        for row in self.releases:
            if version is not None and row.since <= version:
                chosen = row
        return chosen


class _Syscalls(TypedDict):
    read: int
    readv: int
    mprotect: int
    rt_sigaction: int
    sigaltstack: int


# Linux's asm-generic system call numbers (aarch64 and riscv64 share them)
_ASM_GENERIC_SYSCALLS = _Syscalls(
    read=63, readv=65, mprotect=226, rt_sigaction=134, sigaltstack=132
)


def _aarch64_ldp_q(count: int) -> bytes:
    """`ldp q<2k>, q<2k+1>, [x3, #32k]` for every pair: all vector registers."""
    words = [
        0xAD400000 | ((2 * k) << 15) | ((2 * k + 1) << 10) | (3 << 5) | (2 * k)
        for k in range(count // 2)
    ]
    return b"".join(w.to_bytes(4, "little") for w in words)


def _riscv_fld(count: int) -> bytes:
    """`fld f<i>, 8i(a3)` for every float register."""
    words = [(8 * i << 20) | (13 << 15) | (3 << 12) | (i << 7) | 0x07 for i in range(count)]
    return b"".join(w.to_bytes(4, "little") for w in words)


_RISCV_ABI_NAMES = tuple(
    [
        "zero",
        "ra",
        "sp",
        "gp",
        "tp",
        "t0",
        "t1",
        "t2",
        "fp",
        "s1",
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
        "a5",
        "a6",
        "a7",
        "s2",
        "s3",
        "s4",
        "s5",
        "s6",
        "s7",
        "s8",
        "s9",
        "s10",
        "s11",
        "t3",
        "t4",
        "t5",
        "t6",
    ]
)
# qemu-user's vector unit for has_v: 128-bit registers, RVV 1.0
_RISCV_V = "v=true,vlen=128,elen=64,vext_spec=v1.0"
# the riscv64 properties spelled alike in every qemu release callfuzz knows
_RISCV_COMMON = {
    "has_v": _RISCV_V,
    "has_zba": "zba=true",
    "has_zbb": "zbb=true",
    "has_zbc": "zbc=true",
    "has_zbs": "zbs=true",
    "has_zbkb": "zbkb=true",
}
_RISCV_FP_NAMES = tuple(
    [
        "ft0",
        "ft1",
        "ft2",
        "ft3",
        "ft4",
        "ft5",
        "ft6",
        "ft7",
        "fs0",
        "fs1",
        "fa0",
        "fa1",
        "fa2",
        "fa3",
        "fa4",
        "fa5",
        "fa6",
        "fa7",
        "fs2",
        "fs3",
        "fs4",
        "fs5",
        "fs6",
        "fs7",
        "fs8",
        "fs9",
        "fs10",
        "fs11",
        "ft8",
        "ft9",
        "ft10",
        "ft11",
    ]
)


def _regs(names: list[str], module: object, prefix: str, bits: int, cls: str) -> tuple[Reg, ...]:
    return tuple(Reg(n, getattr(module, f"{prefix}{n.upper()}"), bits, cls) for n in names)


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
    # every register a run starts with a canary in (all but the PC and SP)
    registers: tuple[Reg, ...]
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
    # unicorn's s390x raises an exception on the first store of a run whose
    # code pages are read-only (measured: every runtest stops at `stmg`), so
    # there a store into code is caught by a write hook instead
    read_only_code: bool = True
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
    # `probestack_strategy` values the generator sets (outline: a call of
    # the Probestack libcall on x86_64 and riscv64; unimplemented!() on
    # aarch64 and s390x, corpus/*-outline-probestack.clif)
    probestack_strategies: tuple[str, ...] = ("inline", "outline")
    # a preserve_all prologue clobbers a callee-saved register for the
    # stack-limit check, for stack probes (corpus/preserve-all-*,
    # x86_64-preserve-all-*): the generator leaves those combinations out
    preserve_all_limit_clobbers: bool = False
    preserve_all_probe_clobbers: bool = False
    # the outline probe's frame size goes where the first argument is
    # (riscv64 a0: corpus/riscv64-outline-probestack-a0.clif)
    outline_probe_clobbers_args: bool = False
    # dynamic stack slots (`explicit_dynamic_slot`) compile here
    dynamic_slots: bool = False
    # `tls_model` values whose `tls_value` this backend lowers
    tls_models: tuple[str, ...] = ("elf_gd",)
    # `stack_switch` compiles here (x86_64 only, with stack_switch_model=basic)
    stack_switch: bool = False
    # conventions that take `sarg(N)` struct arguments (only x86_64 has them:
    # the other backends reject StructArgument in compute_arg_locs)
    sarg_convs: tuple[str, ...] = ()
    # conventions a `try_call` callee may have (CallConv::supports_exceptions,
    # cranelift-codegen isa/call_conv.rs, 0.135), each with the number of i64
    # exception payloads its handlers receive (exception_payload_types);
    # releases before 0.135 accept fewer (fuzz.features, `exceptions:CC`)
    exception_payloads: Mapping[str, int] = field(default_factory=lambda: dict(_EXCEPTION_PAYLOADS))
    # --- the unwinder stand-in (fuzz.pipeline.unwind): the registers a
    # handler receives the exception payloads in (exception_payload_regs of
    # each isa/*/abi.rs, the same for every convention that has payloads),
    # and the frame pointer a resumed handler keeps (None: s390x, where
    # wasmtime's unwinder sets only SP)
    payload_regs: tuple[str, ...] = ()
    # conventions whose integer arguments start elsewhere than
    # `int_arg_regs` (aarch64 `tail` keeps x0 and x1 free: compute_arg_locs)
    int_arg_regs_by_conv: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    frame_pointer: str | None = None
    # conventions whose exceptional edge clobbers every register but SP and
    # FP (get_regs_clobbered_by_call(cc, is_exception=true) = ALL_CLOBBERS);
    # in the others it clobbers what a normal call does, and an unwinder
    # restores the callee-saved registers
    exception_clobbers_all: tuple[str, ...] = ("tail", "preserve_all", "winch")
    # x86_64 panics on `return_call` without preserve_frame_pointers
    tail_calls_need_frame_pointers: bool = False
    # types allowed in signatures per convention ("*": every other one)
    abi_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    regalloc_algorithms: tuple[str, ...] = ("backtracking", "single_pass")
    # ISA flags the generator toggles (all runnable on the emulator)
    fuzz_isa_flags: tuple[str, ...] = ()
    # shared settings that change this target's call lowering, toggled by the
    # generator (fuzz.gen.generate.SHARED_FLAG_PCT) where the release has them
    fuzz_shared_flags: tuple[str, ...] = ()
    # ISA flags that vector types need on this target
    vector_isa_flags: tuple[str, ...] = ()
    # ISA flags that change how a type is lowered (riscv64 f16 goes through
    # integer registers without Zfhmin): a wrong result that goes away when
    # one is added depends on the lowering without it (fuzz.triage.attribution)
    lowering_flags: tuple[str, ...] = ()
    # vector instructions compile and run with no ISA flag at all (a swizzle
    # inside a function: riscv64 needs has_v)
    bare_vectors: bool = True
    # Cases that use extensions only qemu-user runs (fuzz.gen.generate's
    # QEMU_ONLY_PCT): the flags such a case toggles, and the types its
    # signatures may hold (empty: `abi_types`)
    qemu_isa_flags: tuple[str, ...] = ()
    qemu_abi_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # --- the call contract (fuzz.pipeline.contract) ---------------------------
    # bytes a call instruction pushes (the return address on x86_64)
    ra_slot: int = 0
    # at a function's entry, SP + ra_slot is a multiple of this
    entry_sp_align: int = 16
    # per calling convention: register name -> low bits a callee gives back
    # as it got them (what a caller relies on; sources beside each table)
    callee_saved: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # conventions whose callee pops its incoming stack arguments
    # (machinst/abi.rs: callee_pop_size is non-zero for `tail` only)
    callee_pops_convs: tuple[str, ...] = ("tail",)
    # the register `enable_pinned_reg` takes out of the callee-saved set
    pinned_reg: str | None = None
    # registers the platform reserves, which Cranelift never allocates
    # (aarch64 x18, riscv64 gp/tp): in the callee-saved sets of the
    # conventions that say a callee leaves them alone; no register pressure
    # puts a value in them
    reserved_regs: tuple[str, ...] = ()
    # the callee-saved registers a convention that "clobbers every allocatable
    # register" (`tail` before its fuzz.features `callee-saves:` rule began)
    # still keeps: those its clobber set leaves out (the frame pointer, the
    # platform's reserved ones; on riscv64 also fs0, see below)
    kept_when_all_clobbered: tuple[str, ...] = ()
    # Narrow `uext`/`sext` integers: the conventions in which Cranelift
    # extends them to 64 bits (caller: params; callee: register returns),
    # each backend's `get_ext_mode`, and the integer argument registers and
    # the first return register of those conventions, in order
    extending_convs: tuple[str, ...] = ("system_v",)
    int_arg_regs: tuple[str, ...] = ()
    int_ret_reg: str = ""
    # bound on what a `callee_pops_convs` callee pops where the bridge cannot
    # say exactly (its `stack_args`: a Cranelift before 0.126, or a probe
    # that failed); raised for a signature that could fill more
    # (fuzz.pipeline.contract.pop_bound: struct arguments)
    max_popped: int = 4096
    # --- libcalls (fuzz.pipeline.libcalls): the linker places one stub per
    # libcall, a bare return, and the emulator computes the call at its address
    libcall_abi: LibcallAbi | None = None
    return_insn: bytes = b""
    # --- the second executor (fuzz.pipeline.qemu)
    qemu: QemuSetup | None = None
    # --- the platform C compilers, references of the C-ABI oracle
    # (fuzz.pipeline.cabi): one per set of conventions (Apple's arm64 one is clang's)
    c_abis: tuple[CAbi, ...] = ()

    def c_abi_for(self, cc: str) -> CAbi | None:
        """The C compiler whose convention `cc` is, if any."""
        return next((c for c in self.c_abis if cc in c.conventions), None)

    @property
    def sp_reg_info(self) -> Reg:
        return Reg("sp", self.sp_reg, 64, "sp")

    @property
    def link_reg_info(self) -> Reg:
        return next(r for r in self.registers if r.uc == self.link_reg)

    def preserved(self, cc: str) -> tuple[tuple[Reg, int], ...]:
        """(register, preserved low bits) a callee of convention `cc` keeps."""
        names = self.callee_saved.get(cc, self.callee_saved.get("*", {}))
        # by content: a release's view (fuzz.features) has its own sets
        key = (self.name, cc, tuple(names.items()))
        if key not in _PRESERVED:
            by_name = {r.name: r for r in self.registers}
            _PRESERVED[key] = tuple((by_name[name], bits) for name, bits in names.items())
        return _PRESERVED[key]


_PRESERVED: dict[tuple[str, str, tuple[tuple[str, int], ...]], tuple[tuple[Reg, int], ...]] = {}


def _saved(*groups: tuple[list[str], int]) -> dict[str, int]:
    return {name: bits for names, bits in groups for name in names}


def _all(regs: tuple[Reg, ...]) -> dict[str, int]:
    return {r.name: r.bits for r in regs}


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


_EXCEPTION_PAYLOADS: dict[str, int] = {
    "system_v": 2,
    "tail": 2,
    "preserve_all": 2,
    "apple_aarch64": 2,
    "winch": 0,
}
# riscv64 and s390x have no payload registers for apple_aarch64 (a panic:
# corpus/try-call-apple-aarch64-payload-panic.clif), nor winch (an assert)
_EXCEPTION_PAYLOADS_RISCV_S390X = {"system_v": 2, "tail": 2, "preserve_all": 2}

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

_X86_REGS = _regs(
    [
        "rax",
        "rbx",
        "rcx",
        "rdx",
        "rsi",
        "rdi",
        "rbp",
        "r8",
        "r9",
        "r10",
        "r11",
        "r12",
        "r13",
        "r14",
        "r15",
    ],
    x86_const,
    "UC_X86_REG_",
    64,
    "int",
) + _regs([f"xmm{i}" for i in range(16)], x86_const, "UC_X86_REG_", 128, "vector")
_RISCV64_REGS = _regs(
    [f"x{i}" for i in range(1, 32) if i != 2], riscv_const, "UC_RISCV_REG_", 64, "int"
) + _regs([f"f{i}" for i in range(32)], riscv_const, "UC_RISCV_REG_", 64, "float")
_S390X_REGS = (
    _regs([f"r{i}" for i in range(15)], s390x_const, "UC_S390X_REG_", 64, "int")
    + _regs([f"f{i}" for i in range(16)], s390x_const, "UC_S390X_REG_", 64, "float")
    + _regs([f"f{i}_hi" for i in range(16)], s390x_const, "UC_S390X_REG_", 64, "vector")
)
_AARCH64_REGS = _regs(
    [f"x{i}" for i in range(31)], arm64_const, "UC_ARM64_REG_", 64, "int"
) + _regs([f"v{i}" for i in range(32)], arm64_const, "UC_ARM64_REG_", 128, "vector")

# Callee-saved sets. For the native conventions (system_v, and
# windows_fastcall / apple_aarch64 where a target has them) the set is the
# native ABI's, which Cranelift promises for them; for its own conventions
# (fast, tail, winch, preserve_all, probestack) it is what a Cranelift caller
# relies on: the complement of the backend's `get_regs_clobbered_by_call`.
# Link registers are left out (at the return address they hold it anyway).
#
# x86_64 (x64/abi.rs `get_regs_clobbered_by_call`: SYSV_CLOBBERS for SystemV
# and every convention not named; WINDOWS_CLOBBERS; PreserveAll none; Winch
# all but rbp). The x86-64 psABI 3.2.1 and Microsoft's x64 convention agree.
_X86_SYSV = _saved((["rbx", "rbp", "r12", "r13", "r14", "r15"], 64))
_X86_CALLEE_SAVED: dict[str, dict[str, int]] = {
    "*": _X86_SYSV,
    "windows_fastcall": _saved(
        (["rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15"], 64),
        ([f"xmm{i}" for i in range(6, 16)], 128),
    ),
    "preserve_all": _all(_X86_REGS),
    "winch": _saved((["rbp"], 64)),
}
# aarch64/abi.rs `get_regs_clobbered_by_call`: DEFAULT_AAPCS_CLOBBERS (x0-x17
# and, conservatively at call sites, every vector register) for every
# convention but Winch (WINCH_CLOBBERS: x0-x17, x19-x27, all vectors) and
# PreserveAll (none). AAPCS64 6.1.2 keeps the low 64 bits of v8-v15, and
# Cranelift's prologue saves them in every convention (`is_reg_saved_in_prologue`),
# so they are checked too. x29 is the frame pointer. x16 and x17 are not
# allocated (veneer scratch) and may change. x18 is the platform register,
# never allocated: AAPCS64 6.1.1 lets the platform reserve it; Linux does not
# (a temporary there: not checked), Apple's arm64 ABI does ("the platform
# reserves register x18; don't use this register") and so does Windows on
# Arm64 (the TEB pointer), so a callee of those conventions leaves it alone.
_AARCH64_RESERVED = ("x18",)
_AARCH64_INT = ([f"x{i}" for i in range(19, 30)], 64)
_AARCH64_AAPCS = _saved(_AARCH64_INT, ([f"v{i}" for i in range(8, 16)], 64))
_AARCH64_PLATFORM_X18 = _saved(
    _AARCH64_INT, ([f"v{i}" for i in range(8, 16)], 64), (list(_AARCH64_RESERVED), 64)
)
_AARCH64_CALLEE_SAVED: dict[str, dict[str, int]] = {
    "*": _saved(_AARCH64_INT),
    "system_v": _AARCH64_AAPCS,
    # Apple's arm64 ABI and Microsoft's ARM64 ABI: AAPCS64's set (x19-x28,
    # fp, the low 64 bits of v8-v15) and x18
    "apple_aarch64": _AARCH64_PLATFORM_X18,
    "windows_fastcall": _AARCH64_PLATFORM_X18,
    # x16/x17 (veneer scratch), x18 (platform) and x30 are never allocated
    "preserve_all": {
        n: b for n, b in _all(_AARCH64_REGS).items() if n not in ("x16", "x17", "x18", "x30")
    },
    "winch": _saved((["x28", "x29"], 64)),
}
# riscv64 (riscv64/abi.rs DEFAULT_CLOBBERS for every convention but
# PreserveAll). RISC-V psABI (LP64D) 18.2: s0-s11 (x8, x9, x18-x27) and
# fs0-fs11 (f8, f9, f18-f27) are callee-saved. Cranelift's own callers treat
# fs1 (f9) as clobbered and its DEFAULT_CALLEE_SAVES omits f9, so only the
# native set checks f9. gp and tp (x3, x4) are "unallocatable" (psABI 18.2:
# the global and thread pointers of the whole program): no function may
# change them, Cranelift never allocates them and no convention's clobbers
# name them, so every convention checks them.
_RISCV64_INT = (["x8", "x9", *(f"x{i}" for i in range(18, 28))], 64)
_RISCV64_RESERVED = ("x3", "x4")
_RISCV64_GP_TP = (list(_RISCV64_RESERVED), 64)
_RISCV64_CALLEE_SAVED: dict[str, dict[str, int]] = {
    "*": _saved(_RISCV64_INT, (["f8", *(f"f{i}" for i in range(18, 28))], 64), _RISCV64_GP_TP),
    "system_v": _saved(
        _RISCV64_INT, (["f8", "f9", *(f"f{i}" for i in range(18, 28))], 64), _RISCV64_GP_TP
    ),
    # ra and the scratch registers t5/t6 (x30, x31) are never allocated
    "preserve_all": {n: b for n, b in _all(_RISCV64_REGS).items() if n not in ("x1", "x30", "x31")},
}
# Before 0.108 riscv64's TAIL_CLOBBERS (every allocatable register) leaves
# out fs0 (f8): a caller keeps a value in f8 across a `tail` call, which the
# tail callee's prologue (saving nothing in that convention) does not keep.
# s390x (s390x/abi.rs `get_regs_clobbered_by_call`: SYSV_CLOBBERS r0-r5 and
# every vector register, TAIL_CLOBBERS r0-r7 and every vector register,
# PreserveAll none). The s390x ELF ABI supplement 1.2.2.1: r6-r13 and the
# 64-bit FPR part of f8-f15 are callee-saved (r14 holds the return address,
# r15 is SP), and Cranelift's prologue saves f8-f15 (`is_reg_saved_in_prologue`).
_S390X_CALLEE_SAVED: dict[str, dict[str, int]] = {
    "*": _saved(([f"r{i}" for i in range(6, 14)], 64)),
    "system_v": _saved(
        ([f"r{i}" for i in range(6, 14)], 64), ([f"f{i}" for i in range(8, 16)], 64)
    ),
    "tail": _saved(([f"r{i}" for i in range(8, 14)], 64)),
    # r0 and r1 are scratch registers, never allocated; r14 is the return address
    "preserve_all": {n: b for n, b in _all(_S390X_REGS).items() if n not in ("r0", "r1", "r14")},
}

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
            registers=_X86_REGS,
            ra_slot=8,
            callee_saved=_X86_CALLEE_SAVED,
            pinned_reg="r15",
            kept_when_all_clobbered=("rbp",),
            # x64/abi.rs get_ext_mode: `specified` for every convention
            int_arg_regs=("rdi", "rsi", "rdx", "rcx", "r8", "r9"),
            int_ret_reg="rax",
            payload_regs=("rax", "rdx"),
            frame_pointer="rbp",
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
            # not preserve_all nor windows_fastcall: their struct-argument
            # memcpy takes the callee's convention (corpus/x86_64-sarg-memcpy-*)
            sarg_convs=("system_v", "fast", "tail", "winch"),
            stack_switch=True,
            tls_models=("elf_gd", "macho", "coff"),
            preserve_all_limit_clobbers=True,
            preserve_all_probe_clobbers=True,
            abi_types={
                "*": SCALAR_TYPES + VECTOR_TYPES,
                # winch is x86's convention without SIMD: scalars only
                "winch": SCALAR_TYPES,
            },
            fuzz_shared_flags=("is_pic",),
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
            qemu_isa_flags=("has_avx", "has_avx2", "has_fma"),
            tail_calls_need_frame_pointers=True,
            unrunnable_code=_x86_vex,
            # x86-64 psABI 3.2.3
            libcall_abi=LibcallAbi(
                floats=("xmm0", "xmm1", "xmm2"),
                float_ret="xmm0",
                vectors=("xmm0", "xmm1"),
                vector_ret="xmm0",
            ),
            return_insn=bytes([0xC3]),  # ret
            aliases=("x86_64", "x64", "amd64"),
            # x86-64 psABI 3.2.3; Windows x64 from gcc's ms_abi
            c_abis=(
                CAbi(
                    compiler="gcc",
                    package="gcc",
                    cflags=("-m64", "-mno-avx"),
                    conventions={"system_v": "", "windows_fastcall": "__attribute__((ms_abi))"},
                    f16=True,
                    f128="__float128",
                    vectors=True,
                    unsigned_i32_sext=False,
                    # two eightbytes, each INTEGER (rax, rdx) or SSE (xmm0, xmm1)
                    struct_returns=_pairs("i64", "f64"),
                    decisions={
                        ("windows_fastcall", "i128"): "Windows x64 passes __int128 by reference, "
                        "Cranelift in a register pair (c-abi-notes: an upstream decision)",
                        ("windows_fastcall", "f128"): "wasmtime#10678: windows_fastcall f128",
                        # measured: gcc 12's ms_abi takes _Float16 in cx/dx/r8/r9
                        # and returns it in ax; Cranelift uses xmm registers, as
                        # LLVM does; MSVC has no half type to settle it
                        ("windows_fastcall", "f16"): "Windows x64 has no half type: gcc's ms_abi "
                        "passes _Float16 in integer registers, Cranelift (like LLVM) in xmm "
                        "registers",
                    },
                    # measured with gcc 12's ms_abi (issue 24's 0.128.4 campaign)
                    no_struct_returns={
                        "windows_fastcall": "Windows x64 returns a struct over 8 bytes "
                        "through a hidden pointer in rcx, Cranelift several values in registers"
                    },
                ),
            ),
            qemu=QemuSetup(
                binary="qemu-x86_64",
                elf_machine=62,
                elf_flags=0,
                # TCG's `max`: AVX, AVX2, FMA, BMI, LZCNT, POPCNT; no AVX-512 and
                # no AVX-VNNI in 7.2 nor 10.0 (`+avx512f` only warns, the CPUID
                # bit stays 0 and a zmm instruction is SIGILL)
                releases=(
                    QemuFacts(
                        since=(7, 2),
                        cpu="max",
                        properties={},
                        lacks=frozenset(
                            {
                                "has_avx_vnni",
                                "has_avx512bitalg",
                                "has_avx512dq",
                                "has_avx512vl",
                                "has_avx512vbmi",
                                "has_avx512f",
                                "has_avx512vnni",
                            }
                        ),
                    ),
                ),
                # target_ucontext_64: uc_mcontext at 40 (r8 ... rip, eflags),
                # the fxsave area behind the pointer at 224 (xmm at 160)
                frame=QemuFrame(
                    regs={
                        **{
                            name: 40 + 8 * i
                            for i, name in enumerate(
                                [
                                    "r8",
                                    "r9",
                                    "r10",
                                    "r11",
                                    "r12",
                                    "r13",
                                    "r14",
                                    "r15",
                                    "rdi",
                                    "rsi",
                                    "rbp",
                                    "rbx",
                                    "rdx",
                                    "rax",
                                    "rcx",
                                ]
                            )
                        },
                        "sp": 160,
                        "pc": 168,
                    },
                    kill=62,
                    fp_regs={f"xmm{i}": 160 + 16 * i for i in range(16)},
                    fp_pointer=224,
                    sigreturn_sp=8,
                    flags=(176, (1 << 64) - 1, 0x202),
                ),
                syscall_insn=bytes([0x0F, 0x05]),  # syscall
                loop_insn=bytes([0xEB, 0xFE]),  # jmp .
                syscall_number="rax",
                syscall_args=("rdi", "rsi", "rdx", "r10"),
                syscall_result="rax",
                read=0,
                readv=19,
                mprotect=10,
                rt_sigaction=13,
                sigaltstack=131,
                sigaction_restorer=True,
                handler_siginfo="rsi",
                pc="rip",
                sp="rsp",
                gdb_names={},
                gdb_phantoms=frozenset({"ss_base", "ds_base", "es_base"}),
            ),
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
            registers=_AARCH64_REGS,
            callee_saved=_AARCH64_CALLEE_SAVED,
            pinned_reg="x21",
            reserved_regs=_AARCH64_RESERVED,
            kept_when_all_clobbered=("x29", *_AARCH64_RESERVED),
            # aarch64/abi.rs get_ext_mode: only apple_aarch64 extends (AAPCS64
            # leaves the bits unspecified; Apple asks for 32, Cranelift does 64)
            extending_convs=("apple_aarch64",),
            int_arg_regs=tuple(f"x{i}" for i in range(8)),
            int_ret_reg="x0",
            payload_regs=("x0", "x1"),
            int_arg_regs_by_conv={"tail": tuple(f"x{i}" for i in range(2, 8))},
            frame_pointer="x29",
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
            probestack_strategies=("inline",),
            tls_models=("elf_gd", "macho"),
            dynamic_slots=True,
            abi_types={"*": SCALAR_TYPES + VECTOR_TYPES},
            fuzz_isa_flags=("has_lse", "has_pauth", "has_fp16", "sign_return_address"),
            # apple_aarch64 prologues save callee-saved registers in pairs, in
            # Mach-O compact unwind's fixed order (aarch64/abi.rs compute_frame_layout)
            fuzz_shared_flags=("enable_compact_unwind_abi", "is_pic"),
            # AAPCS64 6.8.2 (128-bit vectors in v0-v7, lanes little-endian)
            libcall_abi=LibcallAbi(
                floats=("v0", "v1", "v2"),
                float_ret="v0",
                vectors=("v0", "v1"),
                vector_ret="v0",
            ),
            return_insn=(0xD65F03C0).to_bytes(4, "little"),  # ret
            aliases=("aarch64", "arm64"),
            # AAPCS64 (Linux): HFAs of up to four members return in v0-v3
            c_abis=(
                CAbi(
                    compiler="aarch64-linux-gnu-gcc",
                    package="gcc-aarch64-linux-gnu",
                    cflags=(),
                    conventions={"system_v": ""},
                    f16=True,
                    f128="long double",
                    vectors=True,
                    unsigned_i32_sext=False,
                    struct_returns=frozenset({("i64", "i64")}) | _homogeneous("f32", "f64"),
                ),
                # Apple's arm64 convention (stack arguments packed at their own size,
                # narrow arguments extended by the caller): clang for macOS, writing ELF
                # (`-elf`) so the same reader takes its code; `long double` is `double`
                CAbi(
                    compiler="clang-14",
                    package="clang-14",
                    cflags=("--target=arm64-apple-macos11-elf",),
                    conventions={"apple_aarch64": ""},
                    f16=True,
                    f128="",
                    vectors=True,
                    unsigned_i32_sext=False,
                    struct_returns=frozenset({("i64", "i64")}) | _homogeneous("f32", "f64"),
                ),
            ),
            qemu=QemuSetup(
                binary="qemu-aarch64",
                elf_machine=183,
                elf_flags=0,
                # LSE, PAuth, FP16, BTI, SVE (7.2 and 10.0)
                releases=(QemuFacts(since=(7, 2), cpu="max", properties={}, lacks=frozenset()),),
                # target_ucontext: uc_mcontext at 176 (fault_address, x0-x30,
                # sp, pc, pstate), its first record the fpsimd_context (v at 480)
                frame=QemuFrame(
                    regs={
                        **{f"x{i}": 184 + 8 * i for i in range(31)},
                        "sp": 432,
                        "pc": 440,
                        **{f"v{i}": 480 + 16 * i for i in range(32)},
                    },
                    kill=129,
                    flags=(448, (1 << 64) - 1, 0x4000_0000),
                    cpu=",sve=off",
                ),
                syscall_insn=(0xD4000001).to_bytes(4, "little"),  # svc #0
                loop_insn=(0x14000000).to_bytes(4, "little"),  # b .
                syscall_number="x8",
                syscall_args=("x0", "x1", "x2", "x3"),
                syscall_result="x0",
                **_ASM_GENERIC_SYSCALLS,
                sigaction_restorer=True,
                handler_siginfo="x1",
                pc="pc",
                sp="sp",
                # with SVE, gdb shows each vector register as its SVE register
                gdb_names={f"v{i}": f"z{i}" for i in range(32)},
                fp_pieces=tuple(f"v{i}" for i in range(32)),
                fp_piece_bytes=16,
                fp_restore=_aarch64_ldp_q(32),
                fp_base="x3",
            ),
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
            # x2 is sp; x0 is zero
            registers=_RISCV64_REGS,
            callee_saved=_RISCV64_CALLEE_SAVED,
            reserved_regs=_RISCV64_RESERVED,
            kept_when_all_clobbered=("x8", "f8", *_RISCV64_RESERVED),
            # a0-a7; riscv64/abi.rs get_ext_mode: `specified`
            int_arg_regs=tuple(f"x{i}" for i in range(10, 18)),
            int_ret_reg="x10",
            payload_regs=("x10", "x11"),  # a0, a1
            frame_pointer="x8",
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
            exception_payloads=_EXCEPTION_PAYLOADS_RISCV_S390X,
            preserve_all_probe_clobbers=True,
            outline_probe_clobbers_args=True,
            # vectors need has_v, which unicorn lacks: only in cases for qemu-user
            abi_types={"*": SCALAR_TYPES},
            fuzz_isa_flags=("has_zca", "has_zcd"),
            fuzz_shared_flags=("is_pic",),
            lowering_flags=("has_zfhmin",),
            bare_vectors=False,
            vector_isa_flags=("has_v",),
            # (qemu 10 also runs Zcb, Zfa, Zicond and, with V, Zvbb and Zvfh;
            # routing.for_installed_qemu drops what the installed qemu lacks)
            qemu_isa_flags=(
                "has_zba",
                "has_zbb",
                "has_zbs",
                "has_zbkb",
                "has_zfh",
                "has_zfhmin",
                "has_zcb",
                "has_zfa",
                "has_zicond",
                "has_zvbb",
                "has_zvfh",
            ),
            qemu_abi_types={"*": SCALAR_TYPES + VECTOR_TYPES},
            foreign_insn=_riscv_vector,
            # RISC-V psABI LP64D: a0-a2, fa0-fa2 (vectors would need has_v)
            libcall_abi=LibcallAbi(
                floats=("f10", "f11", "f12"),
                float_ret="f10",
                nan_boxed=True,
            ),
            return_insn=(0x00008067).to_bytes(4, "little"),  # ret (jalr x0, 0(ra))
            aliases=("riscv64", "riscv64gc", "rv64"),
            # RISC-V psABI (lp64d): a struct of two scalars is flattened into
            # the integer and FP argument registers
            c_abis=(
                CAbi(
                    compiler="riscv64-linux-gnu-gcc",
                    package="gcc-riscv64-linux-gnu",
                    cflags=("-mcmodel=medany", "-march=rv64gc", "-mabi=lp64d"),
                    conventions={"system_v": ""},
                    f16=False,
                    f128="long double",
                    vectors=False,
                    unsigned_i32_sext=True,
                    struct_returns=_pairs("i64", "f64"),
                ),
            ),
            qemu=QemuSetup(
                binary="qemu-riscv64",
                elf_machine=243,
                elf_flags=0x5,  # RVC, double-float ABI
                releases=(
                    QemuFacts(
                        since=(7, 2),
                        # RV64GC and Zba/Zbb/Zbc/Zbs (on in `rv64`); 7.2 knows
                        # no Zca/Zcb/Zcd, Zfa, Zicond, Zvfh, Zvbb property
                        cpu="rv64",
                        properties={
                            **_RISCV_COMMON,
                            "has_zfh": "Zfh=true",
                            "has_zfhmin": "Zfhmin=true",
                        },
                        lacks=frozenset(
                            {"has_zcb", "has_zfa", "has_zvfh", "has_zvbb", "has_zicond"}
                        ),
                    ),
                    QemuFacts(
                        since=(10, 0),
                        # RV64G only: `rv64` would also turn on C, Zba/Zbb/Zbc/Zbs
                        # and Zfa; an extension a line does not ask for is SIGILL,
                        # as on hardware (the server program is 4-byte code)
                        cpu="rv64,c=false,zba=false,zbb=false,zbc=false,zbs=false,zfa=false",
                        properties={
                            **_RISCV_COMMON,
                            # 10.0 deprecates the capitalised spelling
                            "has_zfh": "zfh=true",
                            "has_zfhmin": "zfhmin=true",
                            "has_zfa": "zfa=true",
                            "has_zicond": "zicond=true",
                            # Zcb and Zcd need Zca (Cranelift's has_c is Zca+Zcd)
                            "has_zca": "zca=true",
                            "has_zcd": "zca=true,zcd=true",
                            "has_zcb": "zca=true,zcb=true",
                            # the vector crypto extensions need V
                            "has_zvbb": f"{_RISCV_V},zvbb=true",
                            "has_zvfh": f"{_RISCV_V},zvfh=true",
                        },
                        lacks=frozenset(),
                    ),
                ),
                # target_ucontext: uc_mcontext at 176 (pc, x1-x31, f0-f31, fcsr)
                frame=QemuFrame(
                    regs={
                        "pc": 176,
                        **{f"x{i}": 176 + 8 * i for i in range(1, 32) if i != 2},
                        "sp": 176 + 8 * 2,
                        **{f"f{i}": 432 + 8 * i for i in range(32)},
                    },
                    kill=129,
                ),
                syscall_insn=(0x00000073).to_bytes(4, "little"),  # ecall
                loop_insn=(0x0000006F).to_bytes(4, "little"),  # j .
                syscall_number="a7",
                syscall_args=("a0", "a1", "a2", "a3"),
                syscall_result="a0",
                **_ASM_GENERIC_SYSCALLS,
                sigaction_restorer=False,
                handler_siginfo="a1",
                pc="pc",
                sp="sp",
                gdb_names={
                    **{f"x{i}": n for i, n in enumerate(_RISCV_ABI_NAMES)},
                    **{f"f{i}": n for i, n in enumerate(_RISCV_FP_NAMES)},
                },
                fp_pieces=tuple(f"f{i}" for i in range(32)),
                fp_piece_bytes=8,
                fp_restore=_riscv_fld(32),
                fp_base="a3",
            ),
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
            # r15 is sp; a vector register is f<n> (bits 0-63) and f<n>_hi
            registers=_S390X_REGS,
            callee_saved=_S390X_CALLEE_SAVED,
            # s390x/abi.rs get_ext_mode: `specified`
            int_arg_regs=("r2", "r3", "r4", "r5", "r6"),
            int_ret_reg="r2",
            payload_regs=("r6", "r7"),
            fuzz_shared_flags=("is_pic",),
            setup=_s390x_setup,
            illegal_errnos=_ERR_ILLEGAL,
            # a trap site lies inside the faulting instruction (`.word 0`, `dlgr`)
            trap_site_deltas=(0, 1, 2, 3),
            fault_pc_delta=0,
            read_only_code=False,
            # s390x ELF ABI 1.2.2.2: the stack pointer is 8-byte aligned
            entry_sp_align=8,
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
            exception_payloads=_EXCEPTION_PAYLOADS_RISCV_S390X,
            probestack_strategies=("inline",),
            abi_types={"*": SCALAR_TYPES + VECTOR_TYPES},
            qemu_isa_flags=("has_vxrs_ext2", "has_mie3"),
            aliases=("s390x",),
            # s390x ELF ABI: structs return through a hidden pointer, i128
            # and long double pass by reference; the vector ABI needs z13
            # (unicorn lacks the z14 vector enhancements)
            c_abis=(
                CAbi(
                    compiler="s390x-linux-gnu-gcc",
                    package="gcc-s390x-linux-gnu",
                    cflags=("-march=z13", "-mvx"),
                    conventions={"system_v": ""},
                    f16=False,
                    f128="long double",
                    vectors=True,
                    unsigned_i32_sext=False,
                    struct_returns=frozenset(),
                ),
            ),
            # s390x ELF ABI 1.2.2.3: r2-r4, f0/f2/f4 (vectors in v24-, not provided)
            libcall_abi=LibcallAbi(
                floats=("f0", "f2", "f4"),
                float_ret="f0",
                f32_shift=32,
            ),
            return_insn=bytes([0x07, 0xFE]),  # br %r14
            qemu=QemuSetup(
                binary="qemu-s390x",
                elf_machine=22,
                elf_flags=0,
                # TCG's `max`: z14 with vector enhancements 2 and MIE3 (7.2), z15
                # (10.0, which refuses `vxeh3` and `minste4`: "introduced with
                # later models")
                releases=(
                    QemuFacts(
                        since=(7, 2),
                        cpu="max",
                        properties={},
                        lacks=frozenset({"has_mie4", "has_vxrs_ext3"}),
                    ),
                ),
                # target_ucontext: uc_mcontext at 40 (psw mask and address,
                # r0-r15, access registers, fpc, f0-f15), uc_mcontext_ext at
                # 512 (the low halves of v0-v15); the condition code as 0
                frame=QemuFrame(
                    regs={
                        "pc": 48,
                        **{f"r{i}": 56 + 8 * i for i in range(15)},
                        "sp": 56 + 8 * 15,
                        **{f"f{i}": 256 + 8 * i for i in range(16)},
                        **{f"f{i}_hi": 512 + 8 * i for i in range(16)},
                    },
                    kill=37,
                    flags=(40, 3 << 44, 0),
                ),
                syscall_insn=bytes([0x0A, 0x00]),  # svc 0 (the number in r1)
                loop_insn=bytes([0xA7, 0xF4, 0x00, 0x00]),  # j .
                syscall_number="r1",
                syscall_args=("r2", "r3", "r4", "r5"),
                syscall_result="r2",
                read=3,
                readv=145,
                mprotect=125,
                rt_sigaction=174,
                sigaltstack=186,
                sigaction_restorer=True,
                handler_siginfo="r3",
                pc="pswa",
                sp="r15",
                # unicorn's f<n>_hi is the low doubleword of v<n>: gdb's v<n>l
                gdb_names={f"f{i}_hi": f"v{i}l" for i in range(16)},
                trap_site_deltas=(-1, -3, -2, 0, 1, 2, 3),
                # v0-v15 are f<n> (bits 0-63) and f<n>_hi; v16-v31 have no name here
                fp_pieces=tuple(
                    n
                    for i in range(32)
                    for n in ((f"f{i}", f"f{i}_hi") if i < 16 else (f"v{i}a", f"v{i}b"))
                ),
                fp_piece_bytes=8,
                # vlm %v0,%v15,0(%r5); vlm %v16,%v31,256(%r5)
                fp_restore=bytes.fromhex("e70f50000036e70f51000c36"),
                fp_base="r5",
            ),
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
