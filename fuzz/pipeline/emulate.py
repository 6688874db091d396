"""Reusable unicorn emulators, one per target, and fault classification.

A run calls the linked trampoline with (slots pointer, callee address) and a
sentinel return address; reaching the sentinel is a normal return.

Every run starts from the same machine state, whatever ran before on the
emulator: every register holds a canary, the stack and the slot area hold a
fill pattern, and code is mapped read+execute (a store into it is a crash).
There are `VARIANTS` such states, differing in every canary and fill byte: a
result that changes with the variant read state the program never wrote
(undefined behaviour, not a Cranelift bug).

Faults are classified so that only Cranelift's own behaviour is ever blamed:

- a fault at a Cranelift trap site is that trap;
- an unmapped or protected access is a crash, with its PC and address; at
  an instruction Cranelift records as a trap site (a load or store that may
  trap) the crash carries that trap code, and is that trap where the
  interpreter reports the same one (fuzz.pipeline.oracle.at_trap_sites);
- an illegal instruction inside a function that is not a trap site is an
  emulator gap ("not executable here", named by its capstone mnemonic);
- running out of the instruction budget is a timeout.

A libcall's stub (fuzz.pipeline.link) is hooked: the call is computed in
Python (fuzz.pipeline.libcalls) and its return instruction runs as usual; a
memory libcall given a bad pointer is a crash at the stub. A thrower's stub
is hooked too: the unwinder stand-in (fuzz.pipeline.unwind) resumes at the
calling `try_call`'s handler instead; a throw nothing catches is a crash.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import capstone as cs
import unicorn as uc

from fuzz.pipeline import libcalls, unwind
from fuzz.pipeline.contract import (
    CALLER_FRAME,
    CallMap,
    Checker,
    Violation,
    new_uc,
)
from fuzz.pipeline.link import CODE_BASE, HARNESS_MEMORY, Image
from fuzz.targets import Target

STACK_BASE = 0x7000_0000
# upstream's runtests assume a native thread's stack: frames past 1 MiB, with
# inline stack probes touching every page (issue 12)
STACK_SIZE = 8 << 20
# the top of the stack is refilled before every run; below it, only after a
# run wrote there (deep frames are rare, and 8 MiB take ~0.4 ms to write)
STACK_REFILL = 64 << 10
SLOTS_BASE = 0x6000_0000
# code a far or edge layout places above the harness memory lies below this
FAR_END = 1 << 47
SLOTS_SIZE = 1 << 16
VARIANTS = 2
# where a libcall may store, on either executor: the stack and the slots
# (code is read+execute, and unicorn's mem_write would ignore that)
LIBCALL_WRITABLE = ((STACK_BASE, STACK_SIZE), (SLOTS_BASE, SLOTS_SIZE))


def libcall_writable(address: int, size: int) -> bool:
    """Whether a libcall may store `size` bytes at `address`."""
    end = address + size
    return any(lo <= address and end <= lo + length for lo, length in LIBCALL_WRITABLE)


# the harness's own frame: the top of the stack, above the trampoline's entry SP
HARNESS_FRAME = 4096
FILL_BYTES = (0xA5, 0x3C)  # per variant: every byte differs
SENTINEL = 0x5000_0000
PAGE = 4096
DEFAULT_BUDGET = 100_000_000  # instructions: upstream runtests loop 100,000 times
# Wall-clock microseconds a run may take before it is re-run under the
# instruction budget (generated code has no loops and takes well under 1 ms).
# A verdict must not depend on the machine's speed, so the quick run is only
# trusted when no machine could run the budget within it: unicorn peaks near
# 1.4 G instructions/s here, the watchdog stops a run at most 25 ms in, and a
# smaller budget than QUICK_SAFE_BUDGET is always counted.
QUICK_TIMEOUT_US = 20_000
QUICK_SAFE_BUDGET = 100_000_000

_MEMORY_FAULTS = {
    uc.UC_ERR_READ_UNMAPPED: "read of unmapped memory",
    uc.UC_ERR_WRITE_UNMAPPED: "write to unmapped memory",
    uc.UC_ERR_FETCH_UNMAPPED: "jump to unmapped memory",
    uc.UC_ERR_READ_PROT: "read of protected memory",
    uc.UC_ERR_WRITE_PROT: "write to protected memory",
    uc.UC_ERR_FETCH_PROT: "jump to non-executable memory",
    uc.UC_ERR_READ_UNALIGNED: "unaligned read",
    uc.UC_ERR_WRITE_UNALIGNED: "unaligned write",
    uc.UC_ERR_FETCH_UNALIGNED: "unaligned fetch",
}


@dataclass(frozen=True)
class RawOutcome:
    """What the machine did: kind is return, trap, crash, timeout or not-executable;
    and the call contract violations seen on the way (fuzz.pipeline.contract)."""

    kind: str
    slots: bytes = b""
    detail: str = ""
    pc: int | None = None
    violations: tuple[Violation, ...] = ()
    # a memory fault's: the trap code Cranelift recorded at the faulting
    # instruction (its `traps` list), "" where it recorded none
    trap_site: str = ""


class Watchdog:
    """Stops a run that takes too long, from one thread per process:
    unicorn's own `timeout=` starts a thread for every run (~140 us of a
    ~215 us run, measured), which is more than all the contract checks cost.
    The qemu-user executor uses it too, with a signal as its `stop`."""

    TICK = 0.005  # seconds between looks

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop: Callable[[], None] | None = None
        self._deadline = 0.0
        self._thread: threading.Thread | None = None

    def arm(self, stop: Callable[[], None], seconds: float) -> None:
        """Call `stop` once if the run is still armed `seconds` from now."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="run-watchdog")
                self._thread.daemon = True
                self._thread.start()
            self._stop = stop
            self._deadline = time.monotonic() + seconds

    def disarm(self) -> None:
        with self._lock:
            self._stop = None

    def _watch(self) -> None:
        while True:
            time.sleep(self.TICK)
            with self._lock:
                if self._stop is not None and time.monotonic() > self._deadline:
                    self._stop()
                    self._stop = None


WATCHDOG = Watchdog()


@cache
def _fills() -> tuple[bytes, ...]:
    """The stack-sized fill pattern of each variant, shared by every emulator
    of the process (8 MiB each)."""
    return tuple(bytes([b]) * STACK_SIZE for b in FILL_BYTES)


def canary(variant: int, index: int, bits: int) -> int:
    """The initial value of register `index`: non-zero, unlike any mapped
    address, distinct per register and per variant (in every 64-bit half)."""
    word = 0xCA11_0000_0000_005A | ((index + 1) << 24) | (index << 8)
    if variant:
        word ^= (1 << 64) - 1  # every byte differs from variant 0's (32-bit reads too)
    return word if bits <= 64 else word | ((word ^ 0xFFFF) << 64)


def _page_range(start: int, end: int) -> tuple[int, int]:
    lo = start // PAGE * PAGE
    hi = (end + PAGE - 1) // PAGE * PAGE
    return lo, hi


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Page ranges, overlapping or touching ones joined (chunks may share a page)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


class Emulator:
    """One unicorn instance for one target, reused across runs."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.mu = new_uc(target)
        self.mu.mem_map(STACK_BASE, STACK_SIZE)
        self.mu.mem_map(SLOTS_BASE, SLOTS_SIZE)
        target.setup(self.mu)
        self._contexts = []
        for variant in range(VARIANTS):
            for index, reg in enumerate(target.registers):
                self.mu.reg_write(reg.uc, canary(variant, index, reg.bits))
            self._contexts.append(self.mu.context_save())
        self._fills = _fills()
        self._deep_fill: int | None = None  # the variant the deep stack holds; None: dirty
        self._variant = 0
        self._mapped: list[tuple[int, int]] = []
        self._loaded: Image | None = None
        self._fault_address: int | None = None
        self._slot_len = 0
        self.mu.hook_add(uc.UC_HOOK_MEM_INVALID, self._on_invalid)
        deep_end = STACK_BASE + STACK_SIZE - STACK_REFILL - 1
        self.mu.hook_add(uc.UC_HOOK_MEM_WRITE, self._on_deep_write, begin=STACK_BASE, end=deep_end)
        self._code_prot = uc.UC_PROT_READ | uc.UC_PROT_EXEC
        self._code_write: int | None = None  # where a run stored into code
        if not target.read_only_code:
            self._code_prot = uc.UC_PROT_ALL
            for lo, hi in ((CODE_BASE, SLOTS_BASE), (HARNESS_MEMORY[1], FAR_END)):
                self.mu.hook_add(uc.UC_HOOK_MEM_WRITE, self._on_code_write, begin=lo, end=hi - 1)
        self.disassembler = cs.Cs(target.cs_arch, target.cs_mode)
        self.checker = Checker(self.mu, target)
        self._libcall_hooks: list[int] = []
        self._libcall_fault: RawOutcome | None = None
        self._machine = (
            libcalls.Machine(
                lambda r: int(self.mu.reg_read(r.uc)),
                lambda r, v: self.mu.reg_write(r.uc, v),
                target,
            )
            if target.libcall_abi
            else None
        )
        self._libcall_memory = _LibcallMemory(self)
        self.throws = 0  # throws that landed in a handler, over this emulator's runs

    def _on_invalid(self, _mu, _access, address, _size, _value, _data) -> bool:  # type: ignore[no-untyped-def]
        self._fault_address = address
        return False

    def _on_deep_write(self, _mu, _access, _address, _size, _value, _data) -> None:  # type: ignore[no-untyped-def]
        self._deep_fill = None

    def _on_code_write(self, mu, _access, address, _size, _value, _data) -> None:  # type: ignore[no-untyped-def]
        self._code_write = address
        self._loaded = None  # the code changed: load it afresh next time
        mu.emu_stop()

    def _fill(self, variant: int) -> None:
        """The variant's fill pattern in the stack and the slot area."""
        fill = self._fills[variant]
        if self._deep_fill != variant:
            self.mu.mem_write(STACK_BASE, fill)
            self._deep_fill = variant
        else:
            top = STACK_BASE + STACK_SIZE - STACK_REFILL
            self.mu.mem_write(top, fill[:STACK_REFILL])
        self.mu.mem_write(SLOTS_BASE, fill[:SLOTS_SIZE])

    def _map_exactly(self, ranges: list[tuple[int, int]]) -> None:
        """Code pages mapped for the page-aligned [lo, hi) `ranges` (an
        image's chunks) and nowhere else: pages an earlier image needed are
        unmapped, so a stray jump past this image faults as it would in a
        fresh process instead of running old code. Only the pages used are
        mapped, however far apart the chunks lie."""
        kept = []
        for mlo, mhi in self._mapped:
            # the parts of an old mapping inside the new ranges stay mapped
            inside = [
                (max(mlo, lo), min(mhi, hi)) for lo, hi in ranges if max(mlo, lo) < min(mhi, hi)
            ]
            cursor = mlo
            for ilo, ihi in sorted(inside):
                if cursor < ilo:
                    self.mu.mem_unmap(cursor, ilo - cursor)
                cursor = ihi
            if cursor < mhi:
                self.mu.mem_unmap(cursor, mhi - cursor)
            kept += inside
        self._mapped = kept
        for lo, hi in ranges:
            page = lo
            while page < hi:
                if not any(mlo <= page < mhi for mlo, mhi in self._mapped):
                    run_end = page
                    while run_end < hi and not any(
                        mlo <= run_end < mhi for mlo, mhi in self._mapped
                    ):
                        run_end += PAGE
                    # read+execute: a store into code is a crash, and no run
                    # can leave changed code behind for the next
                    self.mu.mem_map(page, run_end - page, self._code_prot)
                    self._mapped.append((page, run_end))
                    page = run_end
                else:
                    page += PAGE

    def load(self, image: Image, calls: CallMap | None = None) -> None:
        # Holding the image (not its id) keeps a freed image's id from matching.
        if self._loaded is image:
            return
        self.checker.attach(calls or CallMap({}, {}))
        self._hook_libcalls(image)
        chunks = image.chunks()
        self._map_exactly(_merged(_page_range(start, start + len(data)) for start, data in chunks))
        # zeros on every page of the image (an earlier image may have left
        # bytes there; a fresh mapping holds zeros), then each chunk: chunks
        # may share a page
        for lo, hi in self._mapped:
            self.mu.mem_write(lo, bytes(hi - lo))
        for start, data in chunks:
            self.mu.mem_write(start, bytes(data))
        # Drop every translated block: those of the previous image at these
        # addresses, and those of pages just unmapped and mapped again (unicorn
        # can find a stale block by its virtual address). A new image reuses
        # no translation anyway.
        self.mu.ctl_flush_tb()  # type: ignore[attr-defined]
        self._loaded = image

    def _hook_libcalls(self, image: Image) -> None:
        """A code hook on each libcall stub of a newly loaded image."""
        for handle in self._libcall_hooks:
            self.mu.hook_del(handle)
        self._libcall_hooks = [
            self.mu.hook_add(
                uc.UC_HOOK_CODE, self._on_libcall, user_data=name, begin=address, end=address
            )
            for address, name in image.libcalls.items()
        ]

    def _on_libcall(self, mu: uc.Uc, address: int, _size: int, name: str) -> None:
        cc = unwind.thrower_cc(f"%{name}")
        if cc is not None:
            self._throw(mu, address, cc)
            return
        assert self._machine is not None  # the linker places stubs only where there is one
        try:
            libcalls.call(name, self._machine, self._libcall_memory)
        except libcalls.LibcallFault as err:
            self._libcall_fault = RawOutcome(
                "crash", detail=f"in libcall {name}: {err}", pc=address
            )
            mu.emu_stop()

    def _throw(self, mu: uc.Uc, address: int, cc: str) -> None:
        """The unwinder stand-in: resume at the calling try_call's handler."""
        t = self.target
        image = self._loaded
        assert image is not None
        try:
            landing = unwind.land(
                t,
                cc,
                lambda r: int(mu.reg_read(r.uc)),
                lambda at: int.from_bytes(mu.mem_read(at, 8), "little"),
                image.try_sites,
            )
        except (unwind.Uncaught, uc.UcError) as err:
            self._libcall_fault = RawOutcome("crash", detail=f"unwind: {err}", pc=address)
            mu.emu_stop()
            return
        if found := unwind.frame_offset_violation(landing, image.function_at, cc):
            self.checker.record(found)
        for reg, value in landing.writes:
            mu.reg_write(reg.uc, value)
        mu.reg_write(t.sp_reg, landing.sp)
        mu.reg_write(t.pc_reg, landing.pc)
        self.throws += 1

    def writable(self, address: int, size: int) -> bool:
        return libcall_writable(address, size)

    def is_mapped(self, address: int) -> bool:
        return any(lo <= address < hi for lo, hi in self._mapped)

    def wrote(self, address: int) -> None:
        """A libcall stored from `address`: below the refilled top, the deep
        stack is dirty (unicorn's write hooks do not see mem_write)."""
        if address < STACK_BASE + STACK_SIZE - STACK_REFILL:
            self._deep_fill = None

    def run(
        self,
        image: Image,
        entry: int,
        callee: int,
        slots: bytes,
        budget: int = DEFAULT_BUDGET,
        variant: int = 0,
        calls: CallMap | None = None,
    ) -> RawOutcome:
        self.load(image, calls)
        # A wall-clock limit first: unicorn's instruction count costs a hook
        # call per instruction (a quarter of all emulation time). Only a run
        # that hits the clock runs again, counted (see QUICK_SAFE_BUDGET).
        outcome = None
        if budget >= QUICK_SAFE_BUDGET:
            outcome = self._start(entry, callee, slots, variant, timeout=QUICK_TIMEOUT_US)
        if outcome is None:
            # Blocks translated without the counting hook would never stop
            # on the count: translate afresh for the counted run, and again after.
            self.mu.ctl_flush_tb()  # type: ignore[attr-defined]
            outcome = self._start(entry, callee, slots, variant, count=budget)
            self.mu.ctl_flush_tb()  # type: ignore[attr-defined]
        if outcome is None:
            pc = self.mu.reg_read(self.target.pc_reg)
            timeout = RawOutcome("timeout", detail=f"instruction budget {budget} exhausted", pc=pc)
            return self._with_violations(timeout)
        return outcome

    def _start(
        self, entry: int, callee: int, slots: bytes, variant: int, timeout: int = 0, count: int = 0
    ) -> RawOutcome | None:
        """One run from the variant's initial state; None when it stopped on its limit."""
        t = self.target
        mu = self.mu
        mu.context_restore(self._contexts[variant])
        self._fill(variant)
        self._variant = variant
        mu.mem_write(SLOTS_BASE, slots)
        self._slot_len = len(slots)
        sp = STACK_BASE + STACK_SIZE - HARNESS_FRAME - t.stack_bias
        if t.link_reg is None:
            sp -= 8
            mu.mem_write(sp, SENTINEL.to_bytes(8, "little"))
        else:
            mu.reg_write(t.link_reg, SENTINEL)
        mu.reg_write(t.sp_reg, sp)
        mu.reg_write(t.arg_regs[0], SLOTS_BASE)
        mu.reg_write(t.arg_regs[1], callee)
        self._fault_address = None
        self._code_write = None
        self._libcall_fault = None
        image = self._loaded
        assert image is not None
        self.checker.start()
        if timeout:
            # the run ends short of the sentinel: a re-run under the budget
            WATCHDOG.arm(mu.emu_stop, timeout / 1e6)
        try:
            mu.emu_start(entry, SENTINEL, count=count)
        except uc.UcError as err:
            return self._with_violations(self._classify(image, err))
        finally:
            if timeout:
                WATCHDOG.disarm()
        if self._libcall_fault is not None:
            return self._with_violations(self._libcall_fault)
        if self._code_write is not None:
            pc = mu.reg_read(t.pc_reg)
            where = f"write to protected memory at {self._code_write:#x}"
            return self._with_violations(RawOutcome("crash", detail=where, pc=pc))
        if mu.reg_read(t.pc_reg) != SENTINEL:
            return None
        return self._with_violations(
            RawOutcome("return", slots=bytes(mu.mem_read(SLOTS_BASE, len(slots))))
        )

    def _with_violations(self, outcome: RawOutcome) -> RawOutcome:
        """A returning run's last checks (the trampoline's own frame, the
        harness's frame above it), and every violation seen."""
        if outcome.kind == "return":
            self.checker.finish()
            self._check_harness_frame()
        if not self.checker.violations:
            return outcome
        return dataclasses.replace(outcome, violations=tuple(self.checker.violations))

    def _check_harness_frame(self) -> None:
        """Nothing may write above the trampoline's entry SP: that is the
        harness's frame (s390x's register save area lies below it)."""
        top = STACK_BASE + STACK_SIZE
        start = top - HARNESS_FRAME
        found = bytes(self.mu.mem_read(start, HARNESS_FRAME))
        fill = self._fills[self._variant][:HARNESS_FRAME]
        if found == fill:
            return
        at = next(i for i in range(HARNESS_FRAME) if found[i] != fill[i]) & ~7
        self.checker.violations.append(
            Violation(
                CALLER_FRAME,
                "harness -> trampoline",
                f"{start + at:#x}",
                "stack",
                int.from_bytes(fill[at : at + 8], "little"),
                int.from_bytes(found[at : at + 8], "little"),
                self.checker.harness_cc,
            )
        )

    def mnemonic_at(self, image: Image, pc: int) -> str:
        code = image.bytes_at(pc, 16)
        for insn in self.disassembler.disasm(code, pc, 1):
            return f"{insn.mnemonic} {insn.op_str}".strip()
        return f"undecodable bytes {code[:4].hex()}"

    def _classify(self, image: Image, err: uc.UcError) -> RawOutcome:
        pc = self.mu.reg_read(self.target.pc_reg)
        if pc == SENTINEL or (
            err.errno == uc.UC_ERR_FETCH_UNMAPPED and self._fault_address == SENTINEL
        ):
            # riscv64 and s390x fetch at the return address before honouring `until`.
            return RawOutcome("return", slots=bytes(self.mu.mem_read(SLOTS_BASE, self._slot_len)))
        if err.errno in _MEMORY_FAULTS:
            where = self._fault_address
            detail = _MEMORY_FAULTS[err.errno]
            if where is not None:
                detail += f" at {where:#x}"
            return RawOutcome("crash", detail=detail, pc=pc, trap_site=image.trap_sites.get(pc, ""))
        if err.errno in self.target.illegal_errnos:
            for delta in self.target.trap_site_deltas:
                if pc + delta in image.trap_sites:
                    return RawOutcome("trap", detail=image.trap_sites[pc + delta], pc=pc + delta)
            fault = pc + self.target.fault_pc_delta
            if image.function_at(fault) is None:
                return RawOutcome("crash", detail=f"{err} outside any function", pc=fault)
            foreign = self.target.foreign_insn(image.bytes_at(fault, 4))
            if foreign:
                return RawOutcome("crash", detail=f"illegal instruction: {foreign}", pc=fault)
            return RawOutcome(
                "not-executable",
                detail=f"emulator cannot run `{self.mnemonic_at(image, fault)}`",
                pc=fault,
            )
        return RawOutcome("crash", detail=str(err), pc=pc)


class _LibcallMemory:
    """The emulated memory as a libcall sees it: stores only where the program
    itself could store, so a bad pointer is a crash, not changed code."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def read(self, address: int, size: int) -> bytes:
        if size == 0:
            return b""
        try:
            return bytes(self._emulator.mu.mem_read(address, size))
        except uc.UcError:
            raise libcalls.LibcallFault(f"read of unmapped memory at {address:#x}") from None

    def write(self, address: int, data: bytes) -> None:
        if not data:
            return
        e = self._emulator
        if not e.writable(address, len(data)):
            what = "protected" if e.is_mapped(address) else "unmapped"
            raise libcalls.LibcallFault(f"write to {what} memory at {address:#x}")
        e.mu.mem_write(address, data)
        e.wrote(address)
