"""One qemu-user server per target and CPU configuration, reused across
runs and driven through its gdbstub (fuzz.pipeline.gdbremote): it loads
images into the server program's code space, runs them from the
executors' initial state and tells what happened.

A run: FILL, then the trampoline with every integer register set from the
`g` packet template of the variant (the canaries of fuzz.pipeline.emulate),
until the sentinel return address faults. Libcall stubs are breakpoints,
computed in Python as on unicorn. A run that takes longer than its deadline
gets SIGALRM; the connection's timeout is always longer than the deadline.
A server that fails (it died, the gdbstub refused a request, the image does
not fit) is the harness's failure, a `harness error`, never Cranelift's; it
is started again at the next run.

The call contract (fuzz.pipeline.contract) is checked at the final stop
only (qemu-user has no per-call hooks): the registers the trampoline's
convention preserves must hold the canaries the run started with, and the
stack pointer must be back where the convention puts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fuzz.pipeline import libcalls, unwind
from fuzz.pipeline.contract import (
    MAX_VIOLATIONS,
    CallMap,
    Violation,
    saved_violations,
    sp_violation,
)
from fuzz.pipeline.emulate import (
    FILL_BYTES,
    HARNESS_FRAME,
    SENTINEL,
    SLOTS_BASE,
    SLOTS_SIZE,
    STACK_BASE,
    STACK_REFILL,
    STACK_SIZE,
    WATCHDOG,
    RawOutcome,
    canary,
)
from fuzz.pipeline.gdbremote import RegisterInfo, Remote, RemoteClosed, RemoteError, Stop
from fuzz.pipeline.link import CODE_BASE, Image
from fuzz.pipeline.qemu.elf import (
    ALT_STACK,
    ALT_STACK_SIZE,
    CODE_SPACE,
    FILL_AT,
    FP_BLOCKS_AT,
    HANDLER_AT,
    IOV_AT,
    SIGACTION_AT,
    STACK_T_AT,
    SYSCALL_AT,
    server_elf,
)
from fuzz.pipeline.qemu.libcall import QemuMemory, QemuRegisters, write_swaps_halves
from fuzz.pipeline.qemu.process import QemuProcess, QemuUnavailable, start
from fuzz.pipeline.qemu.signals import SIGALRM, SIGSEGV, SIGTRAP, classify
from fuzz.targets import QemuFacts, Reg, Target

_PROT_NONE, _PROT_RW, _PROT_RX = 0, 3, 5
_SA_SIGINFO, _SA_ONSTACK, _SA_RESTORER, _SA_NODEFER = 4, 0x0800_0000, 0x0400_0000, 0x4000_0000
_F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
# Wall-clock seconds per instruction of the budget: qemu counts no
# instructions, so a run is stopped after budget / QEMU_MIN_RATE seconds
# (TCG runs generated code at several hundred million instructions a
# second; 20 M/s leaves room for a loaded machine).
QEMU_MIN_RATE = 20_000_000
MIN_DEADLINE = 1.0
# the connection waits this much longer than a run's deadline, so a run
# past its deadline is always a timeout, never a lost connection
SOCKET_SLACK = 30.0


class ServerFailure(Exception):
    """The server, not the code it ran, went wrong: a harness error."""


def cpu_option(facts: QemuFacts, flags_on: frozenset[str]) -> str:
    """The -cpu argument for a target line whose ISA flags `flags_on` are set
    (each property once, in the order the table gives them)."""
    props: dict[str, None] = {}
    for flag in sorted(flags_on):
        for prop in facts.properties.get(flag, "").split(","):
            if prop:
                props[prop] = None
    return ",".join([facts.cpu, *props])


# --- one server ------------------------------------------------------------------


def initial_stack(target: Target, variant: int) -> tuple[int, bytearray]:
    """A run's SP and the refilled top of its stack (the variant's fill;
    where calls push their return address, the sentinel pushed): the same
    initial state on the gdbstub path and the run loop."""
    sp = STACK_BASE + STACK_SIZE - HARNESS_FRAME - target.stack_bias
    stack = bytearray(bytes([FILL_BYTES[variant]]) * STACK_REFILL)
    if target.link_reg is None:
        sp -= 8
        at = sp - (STACK_BASE + STACK_SIZE - STACK_REFILL)
        stack[at : at + 8] = SENTINEL.to_bytes(8, "big" if target.big_endian else "little")
    return sp, stack


def final_stop_contract(
    target: Target,
    calls: CallMap,
    entry: int,
    entry_sp: int,
    variant: int,
    after: Callable[[Reg], int],
    final_sp: int,
) -> tuple[Violation, ...]:
    """The final stop's call-contract check: the harness's call into the
    trampoline (`entry`, entered with SP `entry_sp`) must give back every
    register its convention preserves with the canary it started with
    (`after` reads one at the final stop), and the stack pointer where the
    convention puts it."""
    function = calls.entries.get(entry)
    if function is None:
        return ()
    index = {r.name: i for i, r in enumerate(target.registers)}
    edge = f"harness -> {function.name}"

    def before(reg: Reg) -> int:
        return canary(variant, index[reg.name], reg.bits)

    found = saved_violations(target, function.cc, edge, before, after, calls.unchecked)
    bad = sp_violation(target, function, edge, entry_sp, final_sp)
    if bad is not None:
        found.append(bad)
    return tuple(found[:MAX_VIOLATIONS])


@dataclass
class Alarm:
    """A run's deadline: the watchdog (fuzz.pipeline.emulate) rings it once."""

    pid: int
    fired: bool = False

    def ring(self) -> None:
        self.fired = True
        with contextlib.suppress(OSError):  # the server died meanwhile
            os.kill(self.pid, signal.SIGALRM)


class QemuServer:
    """qemu-user for one target and CPU configuration, reused across runs."""

    def __init__(self, target: Target, cpu: str, flags_on: frozenset[str] = frozenset()) -> None:
        assert target.qemu is not None
        self.target = target
        self.setup = target.qemu
        self.cpu = cpu
        self.flags_on = flags_on  # the ISA flags `cpu` was made for
        self._order: Literal["little", "big"] = "big" if target.big_endian else "little"
        self._writer: threading.Thread | None = None
        self._process: QemuProcess | None = None
        self._remote: Remote | None = None
        self._loaded: Image | None = None
        self._mapped = (CODE_BASE, CODE_BASE)
        self._breakpoints: set[int] = set()
        self.throws = 0  # throws that landed in a handler, over this server's runs
        # a run's landings whose SP disagreed with FP - frame_offset
        self._landing_violations: list[Violation] = []

    # --- process ---------------------------------------------------------------

    def _start(self) -> Remote:
        extra = os.environ.get("CALLFUZZ_QEMU_EXTRA", "").split()
        self._process = start(self.setup.binary, self.cpu, server_elf(self.target), extra)
        stdin = self._process.proc.stdin
        assert stdin is not None
        with contextlib.suppress(OSError):  # a smaller pipe: more, smaller writes
            fcntl.fcntl(stdin.fileno(), _F_SETPIPE_SZ, PIPE_SIZE)
        self._process.sock.settimeout(SOCKET_SLACK)
        remote = Remote(self._process.sock)
        self._remote = remote
        t = self.target
        setup = self.setup
        names = {setup.gdb_names.get(r.name, r.name) for r in t.registers}
        names |= {
            setup.pc,
            setup.sp,
            setup.syscall_number,
            setup.syscall_result,
            *setup.syscall_args,
        }
        names |= {setup.gdb_names.get(setup.fp_base, setup.fp_base)} if setup.fp_base else set()
        self._regs = remote.registers(
            sorted(n for n in names if n not in self._fp_only), setup.gdb_phantoms
        )
        self._template = remote.read_registers()
        self._pc = self._regs[self.setup.pc]
        # the fill loads the vector registers afterwards: the probe may clobber one
        vectors = [r for r in t.registers if r.name in self.setup.fp_pieces]
        self._swapped = bool(vectors) and write_swaps_halves(remote, self._gdb_reg(vectors[0].name))
        self._breakpoints = set()
        self._loaded = None
        self._mapped = (CODE_BASE, CODE_BASE)
        self._initialise(remote)
        return remote

    def stop(self) -> None:
        self._remote = None
        if self._process is not None:
            self._process.stop()
            self._process = None

    def __del__(self) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """qemu-user's process id while the server runs."""
        return self._process.pid if self._process is not None else None

    @property
    def _fp_only(self) -> frozenset[str]:
        """gdb names of registers the fill sets from memory (the `g` packet lacks them)."""
        return frozenset(self.setup.gdb_names.get(n, n) for n in self.setup.fp_pieces)

    def _gdb_reg(self, name: str) -> RegisterInfo:
        return self._regs[self.setup.gdb_names.get(name, name)]

    def _put(self, raw: bytearray, name: str, value: int) -> None:
        info = self._regs[name]
        assert info.offset is not None, f"{name} is not in the g packet"
        size = info.bits // 8
        raw[info.offset : info.offset + size] = (value & ((1 << info.bits) - 1)).to_bytes(
            size, self._order
        )

    def _word(self, value: int) -> bytes:
        return value.to_bytes(8, self._order)

    def _initialise(self, remote: Remote) -> None:
        """The run templates of both variants, the float canary blocks, the
        iovecs, the signal handler, and no code mapped."""
        t = self.target
        self._templates = []
        for variant in range(len(FILL_BYTES)):
            raw = bytearray(self._template)
            for index, reg in enumerate(t.registers):
                if reg.name in self.setup.fp_pieces:
                    continue  # the fill loads it
                info = self._gdb_reg(reg.name)
                if info.offset is None:
                    raise ServerFailure(f"{t.name}: qemu cannot set {reg.name}")
                self._put(raw, info.name, canary(variant, index, reg.bits))
            self._templates.append(bytes(raw))
        index_of = {reg.name: i for i, reg in enumerate(t.registers)}
        for variant in range(len(FILL_BYTES)):
            block = b"".join(
                canary(
                    variant, index_of.get(name, len(t.registers) + k), self.setup.fp_piece_bytes * 8
                ).to_bytes(self.setup.fp_piece_bytes, self._order)
                for k, name in enumerate(self.setup.fp_pieces)
            )
            if block:
                remote.write_memory(FP_BLOCKS_AT + variant * 0x400, block)
        top = STACK_BASE + STACK_SIZE - STACK_REFILL
        remote.write_memory(
            IOV_AT,
            self._word(top)
            + self._word(STACK_REFILL)
            + self._word(SLOTS_BASE)
            # the slot area: all of it
            + self._word(SLOTS_SIZE),
        )
        for address in (FILL_AT + len(self.setup.fp_restore) + len(self.setup.syscall_insn),):
            remote.set_breakpoint(address, len(self.setup.loop_insn))
        remote.set_breakpoint(SYSCALL_AT + len(self.setup.syscall_insn), len(self.setup.loop_insn))
        remote.set_breakpoint(HANDLER_AT, len(self.setup.loop_insn))
        stack_t = self._word(ALT_STACK) + bytes(8) + self._word(ALT_STACK_SIZE)
        remote.write_memory(STACK_T_AT, stack_t)
        self._syscall(self.setup.sigaltstack, STACK_T_AT, 0)
        flags = _SA_SIGINFO | _SA_ONSTACK | _SA_NODEFER
        act = self._word(HANDLER_AT)
        if self.setup.sigaction_restorer:
            act += self._word(flags | _SA_RESTORER) + self._word(HANDLER_AT)
        else:
            act += self._word(flags)
        act += bytes(8)  # no signal blocked
        remote.write_memory(SIGACTION_AT, act)
        # SIGBUS, SIGSEGV; and SIGALRM (a run past its deadline): qemu 10 leaves
        # a fatal signal the guest has no handler for to the host, which would
        # kill qemu instead of stopping the guest
        for signo in (7, 11, SIGALRM):
            self._syscall(self.setup.rt_sigaction, signo, SIGACTION_AT, 0, 8)
        self._syscall(self.setup.mprotect, CODE_BASE, CODE_SPACE, _PROT_NONE)
        # the whole stack holds variant 0's fill (runs refill its top)
        self._feed(bytes([FILL_BYTES[0]]) * STACK_SIZE)
        self._read_into(STACK_BASE, STACK_SIZE)

    def _syscall(self, number: int, *args: int) -> int:
        remote = self._remote
        assert remote is not None
        raw = bytearray(self._template)
        self._put(raw, self._regs_name(self.setup.syscall_number), number)
        for name, value in zip(self.setup.syscall_args, args, strict=False):
            self._put(raw, self._regs_name(name), value)
        self._put(raw, self._pc.name, SYSCALL_AT)
        remote.write_registers(bytes(raw))
        stop = self._resume_to_breakpoint()
        if stop.exited or stop.signal != SIGTRAP:
            raise ServerFailure(f"system call {number} stopped with signal {stop.signal}")
        result = self._read(self._regs_name(self.setup.syscall_result))
        if result >= 1 << 63:
            raise ServerFailure(f"system call {number} failed: errno {(1 << 64) - result}")
        return result

    def _resume_to_breakpoint(self) -> Stop:
        """Resume up to the next stop that is not a late SIGALRM: the alarm
        of a run that had finished when it rang stays pending until then."""
        remote = self._remote
        assert remote is not None
        while True:
            stop = remote.resume()
            if stop.exited or stop.signal != SIGALRM:
                return stop

    def _regs_name(self, name: str) -> str:
        return self.setup.gdb_names.get(name, name)

    def _read(self, gdb_name: str, raw: bytes | None = None) -> int:
        info = self._regs[gdb_name]
        remote = self._remote
        assert remote is not None
        if info.offset is None:
            data = remote.read_register(info.number)
        else:
            if raw is None:
                raw = remote.read_registers()
            data = raw[info.offset : info.offset + info.bits // 8]
        return int.from_bytes(data, self._order)

    def _feed(self, data: bytes) -> None:
        """Bytes the next read or readv of stdin gets: written from a thread
        when they exceed the pipe."""
        assert self._process is not None and self._process.proc.stdin is not None
        pipe = self._process.proc.stdin
        if len(data) <= PIPE_SIZE // 2:
            pipe.write(data)
            pipe.flush()
            return
        thread = threading.Thread(target=_write_all, args=(pipe, data), daemon=True)
        thread.start()
        self._writer = thread

    def _read_into(self, address: int, size: int) -> None:
        done = 0
        while done < size:
            done += self._syscall(self.setup.read, 0, address + done, size - done)
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    # --- images -----------------------------------------------------------------

    def load(self, image: Image) -> None:
        if self._loaded is image:
            return
        remote = self._remote
        assert remote is not None
        lo = image.base // 4096 * 4096
        hi = (image.base + len(image.data) + 4095) // 4096 * 4096
        if hi - CODE_BASE > CODE_SPACE or lo < CODE_BASE:
            raise ServerFailure(f"an image of {len(image.data)} bytes does not fit the code space")
        self._syscall(self.setup.mprotect, lo, hi - lo, _PROT_RW)
        data = bytes(image.base - lo) + bytes(image.data)
        self._feed(data + bytes(hi - lo - len(data)))
        self._read_into(lo, hi - lo)
        self._syscall(self.setup.mprotect, lo, hi - lo, _PROT_RX)
        old_lo, old_hi = self._mapped
        if old_hi > hi:
            self._syscall(self.setup.mprotect, hi, old_hi - hi, _PROT_NONE)
        self._mapped = (lo, hi)
        for address in self._breakpoints - set(image.libcalls):
            remote.clear_breakpoint(address, self._bp_size)
        for address in set(image.libcalls) - self._breakpoints:
            remote.set_breakpoint(address, self._bp_size)
        self._breakpoints = set(image.libcalls)
        self._loaded = image

    @property
    def _bp_size(self) -> int:
        return len(self.target.return_insn)

    # --- runs -------------------------------------------------------------------

    def run(
        self,
        image: Image,
        entry: int,
        callee: int,
        slots: bytes,
        budget: int,
        variant: int = 0,
        calls: CallMap | None = None,
    ) -> RawOutcome:
        """One run; with `calls`, the call contract of the harness's call
        (into the trampoline) is checked at the final stop."""
        try:
            if self._remote is None:
                self._start()
            return self._run(image, entry, callee, slots, budget, variant, calls)
        except QemuUnavailable as err:
            return RawOutcome("not-executable", detail=str(err))
        except (ServerFailure, RemoteClosed, RemoteError, OSError) as err:
            # the server's failure, not the code's: started afresh next run
            died = self._process is not None and self._process.died()
            self.stop()
            what = "qemu-user died" if died else "qemu-user failed"
            return RawOutcome("harness", detail=f"{what}: {err}")

    def _run(
        self,
        image: Image,
        entry: int,
        callee: int,
        slots: bytes,
        budget: int,
        variant: int,
        calls: CallMap | None,
    ) -> RawOutcome:
        t = self.target
        remote = self._remote
        assert remote is not None
        self.load(image)
        self._landing_violations = []
        fill = bytes([FILL_BYTES[variant]])
        sp, stack = initial_stack(t, variant)
        self._feed(bytes(stack) + slots + fill * (SLOTS_SIZE - len(slots)))
        raw = bytearray(self._template)
        self._put(raw, self._regs_name(self.setup.syscall_number), self.setup.readv)
        args = (0, IOV_AT, 2)
        for name, value in zip(self.setup.syscall_args, args, strict=False):
            self._put(raw, self._regs_name(name), value)
        if self.setup.fp_base:
            self._put(raw, self._regs_name(self.setup.fp_base), FP_BLOCKS_AT + variant * 0x400)
        self._put(raw, self._pc.name, FILL_AT)
        remote.write_registers(bytes(raw))
        stop = self._resume_to_breakpoint()
        if stop.exited or stop.signal != SIGTRAP:
            raise ServerFailure(f"the fill stopped with signal {stop.signal}")
        raw = bytearray(self._templates[variant])
        self._put(raw, self._regs_name(self._uc_name(t.sp_reg)), sp)
        if t.link_reg is not None:
            self._put(raw, self._regs_name(self._uc_name(t.link_reg)), SENTINEL)
        self._put(raw, self._regs_name(self._uc_name(t.arg_regs[0])), SLOTS_BASE)
        self._put(raw, self._regs_name(self._uc_name(t.arg_regs[1])), callee)
        self._put(raw, self._pc.name, entry)
        remote.write_registers(bytes(raw))
        assert self._process is not None
        alarm = Alarm(self._process.pid)
        deadline = alarm_seconds(budget)
        self._process.sock.settimeout(deadline + SOCKET_SLACK)
        WATCHDOG.arm(alarm.ring, deadline)
        try:
            while True:
                stop = remote.resume()
                if stop.exited:
                    raise RemoteClosed(f"the program exited with status {stop.signal}")
                regs = remote.read_registers()
                pc = self._read(self._pc.name, regs)
                if stop.signal == SIGALRM:
                    if alarm.fired:
                        return RawOutcome(
                            "timeout",
                            detail=f"no return within {alarm_seconds(budget):.1f} s",
                            pc=pc,
                        )
                    continue  # a late alarm of an earlier run
                if stop.signal == SIGTRAP and pc in image.libcalls:
                    name = image.libcalls[pc]
                    cc = unwind.thrower_cc(f"%{name}")
                    if cc is not None:
                        fault = self._throw(image, cc, pc)
                    else:
                        fault = self._libcall(name, pc, regs)
                    if fault is not None:
                        return fault
                    continue
                break
        finally:
            WATCHDOG.disarm()
            self._process.sock.settimeout(SOCKET_SLACK)
        if stop.signal == SIGSEGV and pc == SENTINEL:
            found = () if calls is None else self._contract(calls, entry, sp, variant, regs)
            found += tuple(self._landing_violations)[: MAX_VIOLATIONS - len(found)]
            return RawOutcome(
                "return", slots=remote.read_memory(SLOTS_BASE, len(slots)), violations=found
            )
        return classify(t, image, stop.signal, pc, self._fault_address, self.flags_on)

    def _contract(
        self, calls: CallMap, entry: int, entry_sp: int, variant: int, regs: bytes
    ) -> tuple[Violation, ...]:
        """final_stop_contract, reading the final stop through the gdbstub."""

        def after(reg: Reg) -> int:
            info = self._gdb_reg(reg.name)
            if info.offset is not None:
                return self._read(info.name, regs)
            # a register the `g` packet lacks (vectors, floats): by `p`;
            # an SVE register holds its vector register in its low bits
            raw = self._remote_read(info.number)
            return int.from_bytes(raw, self._order) & ((1 << reg.bits) - 1)

        sp = self._read(self._regs_name(self.setup.sp), regs)
        return final_stop_contract(self.target, calls, entry, entry_sp, variant, after, sp)

    def _remote_read(self, number: int) -> bytes:
        remote = self._remote
        assert remote is not None
        return remote.read_register(number)

    def _uc_name(self, uc_id: int) -> str:
        """The register name (Target.registers) of a unicorn id."""
        if uc_id == self.target.sp_reg:
            return self.setup.sp
        return next(r.name for r in self.target.registers if r.uc == uc_id)

    def _fault_address(self) -> str:
        """Deliver the pending SIGSEGV/SIGBUS to the handler, which stops with
        the siginfo: the faulting address and whether it was mapped."""
        remote = self._remote
        assert remote is not None
        stop = remote.resume(SIGSEGV)
        if stop.exited or stop.signal != SIGTRAP:
            return "(no siginfo)"
        info_at = self._read(self._regs_name(self.setup.handler_siginfo))
        info = remote.read_memory(info_at, 24)
        # (qemu reserves the guest's address space: mapped or not, si_code
        # says "protected"; riscv64's si_addr is the page)
        address = int.from_bytes(info[16:24], self._order)
        return f"access at {address:#x}"

    # --- libcalls ---------------------------------------------------------------

    def _throw(self, image: Image, cc: str, pc: int) -> RawOutcome | None:
        """The unwinder stand-in at a thrower's stub, as unicorn's hook does it
        (fuzz.pipeline.unwind): resume at the calling try_call's handler with
        the registers poisoned and the payloads set."""
        t = self.target
        remote = self._remote
        assert remote is not None
        registers = QemuRegisters(remote, self._gdb_reg, self._order, self._swapped)

        def read(reg: Reg) -> int:
            # SP and the link register by their unicorn ids (not all in Target.registers)
            return registers.get(dataclasses.replace(reg, name=self._uc_name(reg.uc)))

        try:
            landing = unwind.land(
                t,
                cc,
                read,
                lambda at: int.from_bytes(remote.read_memory(at, 8), self._order),
                image.try_sites,
            )
        except (unwind.Uncaught, RemoteError) as err:
            return RawOutcome("crash", detail=f"unwind: {err}", pc=pc)
        found = unwind.frame_offset_violation(landing, image.function_at, cc)
        if found and len(self._landing_violations) < MAX_VIOLATIONS:
            self._landing_violations.append(found)
        for reg, value in landing.writes:
            registers.set(reg, value)
        raw = bytearray(remote.read_registers())
        self._put(raw, self._regs_name(self.setup.sp), landing.sp)
        self._put(raw, self._pc.name, landing.pc)
        remote.write_registers(bytes(raw))
        self.throws += 1
        return None

    def _libcall(self, name: str, pc: int, regs: bytes) -> RawOutcome | None:
        """Compute the libcall at its stub, then return from it here: a run
        resumed at a breakpoint's address would stop on it again."""
        assert self.target.libcall_abi is not None
        remote = self._remote
        assert remote is not None
        registers = QemuRegisters(remote, self._gdb_reg, self._order, self._swapped)
        machine = libcalls.Machine(registers.get, registers.set, self.target)
        try:
            libcalls.call(name, machine, QemuMemory(remote))
        except libcalls.LibcallFault as err:
            return RawOutcome("crash", detail=f"in libcall {name}: {err}", pc=pc)
        raw = bytearray(remote.read_registers())
        t = self.target
        if t.link_reg is None:  # `ret` pops the return address
            sp_name = self._regs_name(self.setup.sp)
            sp = self._read(sp_name, bytes(raw))
            ret = int.from_bytes(remote.read_memory(sp, 8), self._order)
            self._put(raw, sp_name, sp + 8)
        else:
            ret = self._read(self._regs_name(self._uc_name(t.link_reg)), bytes(raw))
        self._put(raw, self._pc.name, ret)
        remote.write_registers(bytes(raw))
        return None


def alarm_seconds(budget: int) -> float:
    return max(MIN_DEADLINE, budget / QEMU_MIN_RATE)


def _write_all(pipe: object, data: bytes) -> None:
    try:
        pipe.write(data)  # type: ignore[attr-defined]
        pipe.flush()  # type: ignore[attr-defined]
    except OSError:
        pass  # the server died; its run reports that
