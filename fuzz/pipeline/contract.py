"""The call contract, checked while code runs: at every call into a function
of the image (the trampoline's call included), the callee's entry and the
return address are hooked (one code hook per address, not per instruction).

At a callee's entry: the stack pointer's alignment, and a snapshot of the
whole CPU state (one `context_update`, ~1 us). When control comes back to
the return address: every register the callee's convention preserves must
hold what it held at the entry (in the bits the convention preserves), and
the stack pointer must be where the convention puts it (for a callee that
pops its stack arguments, past exactly the area Cranelift sized for them).
After the run, the memory above the trampoline's entry stack pointer (the
harness's own frame) must be unchanged. Register values are read from the
snapshot at offsets found once per target by probing, so a check costs a
few slices, not a `reg_read` per register (~1.5 us each in unicorn's Python
binding).

A thrower's stub (fuzz.pipeline.unwind) is no function of the image: no
frame is pushed for the call, so landing in a handler is no return at that
call site, and the caller's frame is checked when the caller returns (the
stand-in poisons what the exceptional edge clobbers, so a register the
caller's prologue failed to save shows there).

qemu-user has no per-call hooks: there only the trampoline's return (the
sentinel stop) is checked, with `saved_violations` and `sp_violation`.

A violation is recorded with what broke (kind, register class and the
callee's convention, which key the bucket), where (the call edge
`%caller -> %callee`, the register or address), and the expected and actual
values.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import unicorn as uc

if TYPE_CHECKING:
    from fuzz._cranelift import AbiParam

from fuzz.targets import Reg, Target
from fuzz.values import INT_TYPES, NARROW_INT_TYPES, is_sarg, sarg_size, type_info

# Kinds of violation (the first part of an `abi violation` bucket key).
CALLEE_SAVED = "callee-saved register"
STACK_POINTER = "stack pointer"
ALIGNMENT = "stack alignment"
CALLER_FRAME = "caller frame"
EXTENSION = "extension"
# a try_call site whose frame_offset puts the handler's SP (FP - frame_offset,
# what wasmtime's unwinder resumes with) elsewhere than the call's own SP
FRAME_OFFSET = "call-site frame offset"

MAX_VIOLATIONS = 8  # recorded per run; the first one names the bucket


@dataclass(frozen=True)
class Violation:
    kind: str
    edge: str  # "%caller -> %callee"
    where: str  # a register, "sp", or an address
    reg_class: str  # int, float, vector, sp, stack
    expected: int
    actual: int
    cc: str = ""  # the calling convention of the callee whose contract broke

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.where} ({self.reg_class}) across {self.edge}: "
            f"expected {self.expected:#x}, got {self.actual:#x}"
        )


@dataclass(frozen=True)
class Function:
    name: str
    cc: str  # its calling convention
    params: tuple[AbiParam, ...] = ()
    returns: tuple[AbiParam, ...] = ()
    # bytes of its incoming stack-argument area as Cranelift sizes it (the
    # bridge's `stack_args`): what it pops on return when its convention
    # pops; None where the bridge cannot tell (the pop is then bounded)
    stack_args: int | None = None


def popped(target: Target, function: Function) -> int | None:
    """What `function` pops of the stack when it returns: its stack
    arguments in a callee-pops convention, else nothing; None: unknown."""
    if function.cc not in target.callee_pops_convs:
        return 0
    return function.stack_args


def pop_bound(target: Target, function: Function) -> int:
    """The most a callee-pops `function` may pop where the bridge cannot say
    exactly (`popped` is None): `max_popped`, or more where its signature
    could fill more: each parameter and return 16 bytes at most, a struct
    argument its size rounded up to 16, and an alignment's worth (x86_64
    `tail` with `sarg(4096)` and `sarg(24)` pops 4128 bytes, past a fixed
    4096)."""
    area = sum(_stack_bytes(p) for p in (*function.params, *function.returns))
    return max(target.max_popped, area + target.entry_sp_align)


def _stack_bytes(param: AbiParam) -> int:
    """What one parameter or return can take in the stack-argument area."""
    ty, _ext, purpose = param
    size = sarg_size(purpose) if is_sarg(purpose) else type_info(ty).bits // 8
    return -(-max(size, 8) // 16) * 16


@dataclass(frozen=True)
class CallMap:
    """What the checker needs of a linked image: the functions by entry
    address, and the function each call's return address lies in."""

    entries: Mapping[int, Function]
    returns: Mapping[int, str]
    unchecked: frozenset[str] = frozenset()  # e.g. the pinned register


@dataclass
class Frame:
    callee: Function  # the function the call entered (its convention rules)
    caller: str
    ret: int  # the return address
    sp: int  # the stack pointer at the callee's entry
    state: bytes  # the CPU state at the entry
    running: Function  # the function running now, after tail calls
    running_sp: int  # the stack pointer at its entry

    @property
    def edge(self) -> str:
        running = self.running.name
        tail = f" (tail-called {running})" if running != self.callee.name else ""
        return f"{self.caller} -> {self.callee.name}{tail}"


@dataclass(frozen=True)
class Layout:
    """Where registers live in a target's saved CPU state."""

    size: int
    offsets: Mapping[str, int]


_LAYOUTS: dict[str, Layout] = {}


def layout(target: Target) -> Layout:
    """Probe unicorn's saved-context layout (once per target): write a
    distinct value to each register and find its bytes."""
    if target.name not in _LAYOUTS:
        _LAYOUTS[target.name] = _probe(target)
    return _LAYOUTS[target.name]


def _probe(target: Target) -> Layout:
    mu = new_uc(target)
    ctx = mu.context_save()
    size = ctx._size  # noqa: SLF001 - the binding has no public accessor
    address = _address(ctx)
    offsets: dict[str, int] = {}
    for index, reg in enumerate((*target.registers, target.sp_reg_info)):
        magic = 0x5A17_0000_0000_0000 | (index << 16) | 0xBEEF
        mu.reg_write(reg.uc, magic if reg.bits <= 64 else magic | (magic << 64))
        mu.context_update(ctx)
        at = ctypes.string_at(address, size).find(magic.to_bytes(8, "little"))
        if at < 0:
            raise RuntimeError(f"{target.name}: {reg.name} not found in unicorn's context")
        offsets[reg.name] = at
    return Layout(size, offsets)


def new_uc(target: Target) -> uc.Uc:
    """A unicorn instance for `target` (its CPU model where the table names one)."""
    if target.uc_cpu is not None:
        return uc.Uc(target.uc_arch, target.uc_mode, cpu=target.uc_cpu)  # type: ignore[call-arg]
    return uc.Uc(target.uc_arch, target.uc_mode)


def _address(ctx: object) -> int:
    return int(ctypes.cast(ctx._context, ctypes.c_void_p).value or 0)  # type: ignore[attr-defined]


def _word(state: bytes, at: int, bits: int) -> int:
    """A register's value from the snapshot (the host is little-endian)."""
    return int.from_bytes(state[at : at + (bits + 7) // 8], "little")


# A planted machine-level fault (tests only): called with "entry" or
# "return", the unicorn instance, the target and the call's frame.
CallHook = Callable[[str, uc.Uc, Target, "Frame"], None]


@dataclass
class Checker:
    """Hooks one emulator's runs; `violations` holds what the last run broke.

    `fault` (tests only) is called at every entry and return with the event
    name, the unicorn instance and the frame, to plant a machine-level bug."""

    mu: uc.Uc
    target: Target
    fault: CallHook | None = None
    violations: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layout = layout(self.target)
        self._ctx = self.mu.context_save()
        self._ctx_address = _address(self._ctx)
        self._hooks: list[int] = []
        self._map: CallMap | None = None
        self._frames: list[Frame] = []
        self.harness_cc = ""
        self._sp_at = self.layout.offsets[self.target.sp_reg_info.name]
        # where the return address is at a callee's entry, when in a register
        self._ra_at = (
            None
            if self.target.link_reg is None
            else self.layout.offsets[self.target.link_reg_info.name]
        )
        self._span_cache: dict[str, list[tuple[int, int, str, str]]] = {}

    # -- per image ------------------------------------------------------------

    def attach(self, calls: CallMap) -> None:
        """Hook the entries and return addresses of a newly loaded image."""
        for handle in self._hooks:
            self.mu.hook_del(handle)
        self._map = calls
        self._span_cache.clear()
        self._hooks = [
            self.mu.hook_add(uc.UC_HOOK_CODE, self._on_entry, begin=a, end=a) for a in calls.entries
        ] + [
            self.mu.hook_add(uc.UC_HOOK_CODE, self._on_return, begin=a, end=a)
            for a in calls.returns
            if a not in calls.entries
        ]

    # -- per run ----------------------------------------------------------------

    def start(self) -> None:
        self.violations = []
        self._frames = []
        self.harness_cc = ""  # the convention of the function the harness calls

    def _snapshot(self) -> bytes:
        self.mu.context_update(self._ctx)
        return ctypes.string_at(self._ctx_address, self.layout.size)

    def record(self, violation: Violation) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(violation)

    def _on_entry(self, mu: uc.Uc, address: int, _size: int, _data: object) -> None:
        assert self._map is not None
        t = self.target
        state = self._snapshot()
        sp = _word(state, self._sp_at, 64)
        if self._ra_at is None:
            ret = int.from_bytes(mu.mem_read(sp, 8), "little")
        else:
            ret = _word(state, self._ra_at, 64)
        callee = self._map.entries[address]
        top = self._frames[-1] if self._frames else None
        if top is not None and top.ret == ret and self._tail_call(top, callee, sp):
            # the callee returns to the caller of the frame's function,
            # whose entry state still holds
            top.running, top.running_sp = callee, sp
            return
        caller = self._map.returns.get(ret, "harness")
        if (sp + t.ra_slot) % t.entry_sp_align:
            self.record(
                Violation(
                    ALIGNMENT,
                    f"{caller} -> {callee.name}",
                    "sp",
                    "sp",
                    (sp + t.ra_slot) // t.entry_sp_align * t.entry_sp_align - t.ra_slot,
                    sp,
                    callee.cc,
                )
            )
        frame = Frame(callee, caller, ret, sp, state, callee, sp)
        self._frames.append(frame)
        if caller == "harness":
            self.harness_cc = callee.cc
        if self.fault is not None:
            self.fault("entry", mu, t, frame)
            state = self._snapshot()
        for reg, index, ty, ext in extended_params(t, callee):
            value = _word(state, self.layout.offsets[reg], 64)
            self._check_extension(frame, f"{reg} (param {index}: {ty} {ext})", ty, ext, value)

    def _tail_call(self, top: Frame, callee: Function, sp: int) -> bool:
        """Whether an entry that returns where the top frame returns is a
        tail call made by the frame's running function.

        A normal call made by the running function returns into it, so a
        return address that lies elsewhere means a tail call. One that lies
        in the running function is either: a normal call through the very
        call site the frame returns to (the function called itself there),
        or a tail call (a self-recursive one, say). The stack pointer tells
        them apart: a tail call reuses the incoming-argument area, whose top
        (entry SP + what the function pops) stays put, while a normal call
        is entered below the running function's frame, which lies below
        that area. Where what the callees pop is unknown, a tail callee is
        taken to pop no more than the running function (true of a
        self-recursive tail call)."""
        assert self._map is not None
        t = self.target
        running = top.running
        if self._map.returns.get(top.ret) != running.name:
            return True
        new, old = popped(t, callee), popped(t, running)
        if new is not None and old is not None:
            return sp + new == top.running_sp + old
        return sp >= top.running_sp

    def _on_return(self, mu: uc.Uc, address: int, _size: int, _data: object) -> None:
        if not self._frames or self._frames[-1].ret != address:
            return  # a jump to an instruction that follows a call, not a return
        frame = self._frames.pop()
        if self.fault is not None:
            self.fault("return", mu, self.target, frame)
        state = self._snapshot()
        self.check_return(frame, state)
        ret = extended_return(self.target, frame.callee)
        if ret is not None:
            ty, ext = ret
            reg = self.target.int_ret_reg
            value = _word(state, self.layout.offsets[reg], 64)
            self._check_extension(frame, f"{reg} (return 0: {ty} {ext})", ty, ext, value)

    def _check_extension(self, frame: Frame, where: str, ty: str, ext: str, value: int) -> None:
        bits = type_info(ty).bits
        low = value & ((1 << bits) - 1)
        negative = ext == "sext" and low >> (bits - 1)
        expected = low | (((1 << 64) - 1) ^ ((1 << bits) - 1)) if negative else low
        if value != expected:
            self.record(
                Violation(EXTENSION, frame.edge, where, "int", expected, value, frame.callee.cc)
            )

    def finish(self) -> None:
        """At the harness's return address: the trampoline's own frame."""
        while self._frames:
            frame = self._frames.pop()
            if frame.caller == "harness":
                self.check_return(frame, self._snapshot())

    def _spans(self, cc: str) -> list[tuple[int, int, str, str]]:
        """(offset, bytes, register, class) of what convention `cc` preserves."""
        if cc not in self._span_cache:
            unchecked = self._map.unchecked if self._map is not None else frozenset()
            self._span_cache[cc] = [
                (self.layout.offsets[reg.name], bits // 8, reg.name, reg.cls)
                for reg, bits in self.target.preserved(cc)
                if reg.name not in unchecked
            ]
        return self._span_cache[cc]

    def check_return(self, frame: Frame, state: bytes) -> None:
        old = frame.state
        cc = frame.callee.cc
        for at, size, name, cls in self._spans(cc):
            if old[at : at + size] != state[at : at + size]:
                before = int.from_bytes(old[at : at + size], "little")
                after = int.from_bytes(state[at : at + size], "little")
                self.record(Violation(CALLEE_SAVED, frame.edge, name, cls, before, after, cc))
        sp = _word(state, self._sp_at, 64)
        bad = sp_violation(self.target, frame.callee, frame.edge, frame.sp, sp)
        if bad is not None:
            self.record(bad)


def sp_violation(
    target: Target, callee: Function, edge: str, entry_sp: int, sp: int
) -> Violation | None:
    """The stack pointer back at the return address of a call that entered
    `callee` with `entry_sp`: where it was before the call, past what the
    callee pops (its stack arguments, in a callee-pops convention). Where
    that amount is unknown it is bounded: at most `pop_bound`, aligned."""
    expected = entry_sp + target.ra_slot
    pops = popped(target, callee)
    if pops is None:
        extra = sp - expected
        if 0 <= extra <= pop_bound(target, callee) and extra % target.entry_sp_align == 0:
            return None
    elif sp == expected + pops:
        return None
    else:
        expected += pops
    return Violation(STACK_POINTER, edge, "sp", "sp", expected, sp, callee.cc)


def saved_violations(
    target: Target,
    cc: str,
    edge: str,
    before: Callable[[Reg], int],
    after: Callable[[Reg], int],
    unchecked: frozenset[str] = frozenset(),
) -> list[Violation]:
    """The registers convention `cc` preserves that changed across a call
    (in the bits it preserves), read by `before` and `after`: for executors
    that read registers one by one (qemu-user) rather than as a snapshot."""
    found = []
    for reg, bits in target.preserved(cc):
        if reg.name in unchecked:
            continue
        mask = (1 << bits) - 1
        old, new = before(reg) & mask, after(reg) & mask
        if old != new:
            found.append(Violation(CALLEE_SAVED, edge, reg.name, reg.cls, old, new, cc))
    return found


def extended_params(target: Target, function: Function) -> list[tuple[str, int, str, str]]:
    """(register, index, type, extension) of the narrow `uext`/`sext`
    parameters Cranelift extends in an integer argument register: in the
    conventions that extend, for the leading parameters that are plain
    integers of at most 64 bits (so their registers follow in order; past the
    first other kind of parameter the assignment is the backend's to know)."""
    if function.cc not in target.extending_convs or not _returns_in_registers(function):
        return []
    out = []
    for index, (ty, ext, purpose) in enumerate(function.params):
        if index >= len(target.int_arg_regs) or purpose != "normal" or ty not in _WORD_INTS:
            break
        if ext and ty in NARROW_INT_TYPES:
            out.append((target.int_arg_regs[index], index, ty, ext))
    return out


def extended_return(target: Target, function: Function) -> tuple[str, str] | None:
    """The first return, when it is a narrow extended integer in the first
    integer return register (returns in stack slots are not extended)."""
    if function.cc not in target.extending_convs or not function.returns:
        return None
    if not _returns_in_registers(function):
        return None
    ty, ext, purpose = function.returns[0]
    if ext and purpose == "normal" and ty in NARROW_INT_TYPES:
        return ty, ext
    return None


def _returns_in_registers(function: Function) -> bool:
    """At most one return of at most 64 bits: no hidden return-area pointer
    (`enable_multi_ret_implicit_sret`) takes the first argument register."""
    return len(function.returns) <= 1 and all(
        type_info(ty).bits <= 64 for ty, _ext, _purpose in function.returns
    )


_WORD_INTS = frozenset(t for t in INT_TYPES if type_info(t).bits <= 64)
