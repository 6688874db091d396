"""The run loop: qemu-user without a gdbstub, driven by the guest program
of fuzz.pipeline.qemu.guest through pipes. A run is one request and one
report (no gdbstub round trip per stop): the harness writes the stack top,
the slots and a signal frame holding the run's whole initial state, the
guest `rt_sigreturn`s into it, and the run's final signal comes back as
the frame the handler got.

The initial state is the gdbstub path's (fuzz.pipeline.qemu.server): every
register in Target.registers holds the variant's canary, SP, the link
register (or the pushed sentinel), the trampoline's two arguments and the
PC as there, and the flags word its initial value (QemuFrame.flags). The
frame is a copy of one qemu delivered at start-up (a SIGSEGV the program
sends itself), so everything else in it is a real frame's; FP control
(mxcsr, fpcr/fpsr, fcsr, fpc) is reset to that frame's at every run.

Outcomes are classified as on the gdbstub path: the sentinel's SIGSEGV is
a return (the contract read from the final frame), other signals go
through fuzz.pipeline.qemu.signals with the frame's PC and, for a fault,
siginfo's address; the deadline's SIGALRM is a timeout. An image with
libcall stubs runs on the gdbstub path (`QemuServer`), which computes
them at breakpoints. A failure of the loop itself (qemu died, a short or
malformed report, a report past the deadline's wait) is a harness error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import time
from dataclasses import dataclass
from typing import Literal

from fuzz.pipeline.contract import (
    CallMap,
    Violation,
)
from fuzz.pipeline.emulate import (
    FILL_BYTES,
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
from fuzz.pipeline.link import CODE_BASE, Image
from fuzz.pipeline.qemu import server as gdbstub
from fuzz.pipeline.qemu.elf import (
    ALT_STACK,
    ALT_STACK_SIZE,
    CODE_SPACE,
    FILL_AT,
    SIGACTION_AT,
    STACK_T_AT,
    loop_elf,
)
from fuzz.pipeline.qemu.guest import (
    ALT_TOP,
    ENTRY_WORDS,
    GUESTS,
    HEADER_AT,
    MAX_CALLS,
    REPORT_IOV_AT,
    REQUEST_SIZE,
    RUN_IOV_AT,
)
from fuzz.pipeline.qemu.process import LoopProcess, QemuUnavailable, start_loop
from fuzz.pipeline.qemu.server import (
    PIPE_SIZE,
    Alarm,
    QemuServer,
    ServerFailure,
    alarm_seconds,
    final_stop_contract,
    initial_stack,
)
from fuzz.pipeline.qemu.signals import SIGALRM, SIGSEGV, classify
from fuzz.targets import QemuFrame, Reg, Target

_PROT_NONE, _PROT_RW, _PROT_RX = 0, 3, 5
_SA_SIGINFO, _SA_ONSTACK, _SA_RESTORER, _SA_NODEFER = 4, 0x0800_0000, 0x0400_0000, 0x4000_0000
_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032
# the signals whose handler reports a run's end
HANDLED = (4, 5, 7, 8, 11, SIGALRM)  # SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGALRM
CHUNK = PIPE_SIZE // 2  # bulk bytes per request when loading (all buffered before it)
START_SECONDS = 10.0  # for qemu-user to start and set up


def available(target: Target) -> bool:
    """Whether the run loop serves `target` (its frame layout is known)."""
    return target.qemu is not None and target.qemu.frame is not None and target.name in GUESTS


@dataclass(frozen=True)
class Report:
    """A signal the guest's handler reported: the frame at `frame_at`
    (`data`, up to the alternate stack's top) and the slots after it."""

    frame_at: int
    info_at: int
    context_at: int
    data: bytes
    slots: bytes


class LoopServer:
    """qemu-user for one target and CPU configuration serving the run loop;
    the same `run` as QemuServer, which it keeps for images with libcalls."""

    def __init__(self, target: Target, cpu: str, flags_on: frozenset[str] = frozenset()) -> None:
        assert target.qemu is not None and target.qemu.frame is not None
        self.target = target
        self.setup = target.qemu
        self.frame: QemuFrame = target.qemu.frame
        self.cpu = cpu
        self.flags_on = flags_on
        self._order: Literal["little", "big"] = "big" if target.big_endian else "little"
        self._word_fmt = (">" if target.big_endian else "<") + "Q"
        self._process: LoopProcess | None = None
        self._loaded: Image | None = None
        self._mapped = (CODE_BASE, CODE_BASE)
        self._template = b""
        self._frame_at = 0
        self._context = 0  # the ucontext's offset in the frame
        self._fp = 0  # the FP state's offset in the frame (QemuFrame.fp_regs)
        self._slots_reported = 0
        self._bulk = 0  # the guest's fd of the bulk pipe
        self._gdbstub: QemuServer | None = None  # for images with libcalls

    # --- process ---------------------------------------------------------------

    def _start(self) -> None:
        extra = os.environ.get("CALLFUZZ_QEMU_EXTRA", "").split()
        guest = GUESTS[self.target.name]
        program = loop_elf(self.target, guest.code)
        self._process = start_loop(self.setup.binary, self.cpu + self.frame.cpu, program, extra)
        bulk = self._process.bulk
        self._bulk = self._process.bulk_fd
        with contextlib.suppress(OSError):
            fcntl.fcntl(bulk, _F_SETPIPE_SZ, PIPE_SIZE)
        need = max(CHUNK, 16 + STACK_REFILL + SLOTS_SIZE + ALT_STACK_SIZE)
        if fcntl.fcntl(bulk, _F_GETPIPE_SZ) < need:
            raise ServerFailure("the bulk pipe cannot hold a run's data")
        self._loaded = None
        self._mapped = (CODE_BASE, CODE_BASE)
        self._slots_reported = 0
        deadline = time.monotonic() + START_SECONDS
        handler = FILL_AT + guest.handler
        flags = _SA_SIGINFO | _SA_ONSTACK | _SA_NODEFER
        act = self._word(handler)
        if self.setup.sigaction_restorer:
            act += self._word(flags | _SA_RESTORER) + self._word(handler)
        else:
            act += self._word(flags)
        act += self._word(1 << (SIGALRM - 1))  # blocked in the handler and the loop
        stack_t = self._word(ALT_STACK) + bytes(8) + self._word(ALT_STACK_SIZE)
        report_iov = self._word(HEADER_AT) + self._word(24)
        s = self.setup
        calls = [
            (s.read, self._bulk, SIGACTION_AT, len(act)),
            (s.read, self._bulk, STACK_T_AT, len(stack_t)),
            (s.read, self._bulk, REPORT_IOV_AT, len(report_iov)),
            (s.sigaltstack, STACK_T_AT, 0),
            *((s.rt_sigaction, signo, SIGACTION_AT, 0, 8) for signo in HANDLED),
            (s.mprotect, CODE_BASE, CODE_SPACE, _PROT_NONE),
        ]
        self._call(calls, act + stack_t + report_iov, deadline)
        # the whole stack holds variant 0's fill (runs refill its top)
        fill = bytes([FILL_BYTES[0]]) * CHUNK
        for at in range(STACK_BASE, STACK_BASE + STACK_SIZE, CHUNK):
            self._call([(s.read, self._bulk, at, CHUNK)], fill, deadline)
        # the first frame: a SIGSEGV the program sends itself
        self._send(self._request([(self.frame.kill, self._process.pid, SIGSEGV)]), b"")
        first = self._report(deadline)
        self._frame_at = first.frame_at
        self._template = first.data
        self._context = first.context_at - first.frame_at
        if self.frame.fp_pointer >= 0:
            self._fp = self._get(first.data, self._context + self.frame.fp_pointer) - first.frame_at
        run_iov = b"".join(
            self._word(a) + self._word(n)
            for a, n in (
                (STACK_BASE + STACK_SIZE - STACK_REFILL, STACK_REFILL),
                (SLOTS_BASE, SLOTS_SIZE),
                (self._frame_at, len(self._template)),
            )
        )
        self._call([(s.read, self._bulk, RUN_IOV_AT, len(run_iov))], run_iov, deadline)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._gdbstub is not None:
            self._gdbstub.stop()
            self._gdbstub = None

    def __del__(self) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """qemu-user's process id while the server runs."""
        return self._process.pid if self._process is not None else None

    # --- requests and reports ---------------------------------------------------

    def _word(self, value: int) -> bytes:
        return struct.pack(self._word_fmt, value & ((1 << 64) - 1))

    def _get(self, data: bytes | bytearray, at: int, size: int = 8) -> int:
        return int.from_bytes(data[at : at + size], self._order)

    def _request(self, calls: list[tuple[int, ...]], enter: int = 0) -> bytes:
        if len(calls) > MAX_CALLS:
            raise ServerFailure(f"{len(calls)} system calls in one request")
        out = [self._word(len(calls)), self._word(enter)]
        for number, *args in calls:
            words = [number, *args] + [0] * (ENTRY_WORDS - 1 - len(args))
            out += [self._word(w) for w in words]
        return b"".join(out)

    def _send(self, request: bytes, bulk: bytes) -> None:
        """Bulk first, all of it in the pipe before the request says to read it."""
        process = self._process
        assert process is not None and process.proc.stdin is not None
        if bulk:
            _write_all(process.bulk, bulk)
        written = os.write(process.proc.stdin.fileno(), request)
        if written != len(request):
            raise ServerFailure("a short request")

    def _call(self, calls: list[tuple[int, ...]], bulk: bytes, deadline: float) -> list[int]:
        """System calls in the guest, their results: each must succeed, and
        a `read` of the bulk pipe read all it asked for (it was all there)."""
        self._send(self._request(calls), bulk)
        back = self._read(REQUEST_SIZE, deadline)
        results = []
        for i, (number, *args) in enumerate(calls):
            result = self._get(back, 16 + (i * ENTRY_WORDS + ENTRY_WORDS - 1) * 8)
            if result >= 1 << 63:
                raise ServerFailure(f"system call {number} failed: errno {(1 << 64) - result}")
            if number == self.setup.read and args[0] == self._bulk and result != args[2]:
                raise ServerFailure(f"a short read of bulk data ({result} of {args[2]} bytes)")
            results.append(result)
        return results

    def _read(self, size: int, deadline: float) -> bytes:
        process = self._process
        assert process is not None and process.proc.stdout is not None
        fd = process.proc.stdout.fileno()
        out = bytearray()
        while len(out) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ServerFailure("no report from the guest in time")
            data = os.read(fd, size - len(out))
            if not data:
                raise ServerFailure("the guest's report pipe closed")
            out += data
        return bytes(out)

    def _report(self, deadline: float) -> Report:
        header = self._read(24, deadline)
        frame_at, info_at, context_at = (self._get(header, i * 8) for i in range(3))
        if not ALT_STACK <= frame_at < ALT_TOP:
            raise ServerFailure(f"a report with its frame at {frame_at:#x}")
        data = self._read(ALT_TOP - frame_at, deadline)
        slots = self._read(self._slots_reported, deadline) if self._slots_reported else b""
        return Report(frame_at, info_at, context_at, data, slots)

    # --- images -----------------------------------------------------------------

    def load(self, image: Image) -> None:
        if self._loaded is image:
            return
        lo = image.base // 4096 * 4096
        hi = (image.base + len(image.data) + 4095) // 4096 * 4096
        if hi - CODE_BASE > CODE_SPACE or lo < CODE_BASE:
            raise ServerFailure(f"an image of {len(image.data)} bytes does not fit the code space")
        s = self.setup
        deadline = time.monotonic() + START_SECONDS
        data = bytes(image.base - lo) + bytes(image.data)
        data += bytes(hi - lo - len(data))
        self._call([(s.mprotect, lo, hi - lo, _PROT_RW)], b"", deadline)
        for at in range(0, len(data), CHUNK):
            piece = data[at : at + CHUNK]
            self._call([(s.read, self._bulk, lo + at, len(piece))], piece, deadline)
        tail = [(s.mprotect, hi, self._mapped[1] - hi, _PROT_NONE)] if self._mapped[1] > hi else []
        self._call([(s.mprotect, lo, hi - lo, _PROT_RX), *tail], b"", deadline)
        self._mapped = (lo, hi)
        self._loaded = image

    # --- runs -------------------------------------------------------------------

    @property
    def throws(self) -> int:
        """Throws landed in a handler: the gdbstub's, which runs every image
        with libcalls or throwers."""
        return 0 if self._gdbstub is None else self._gdbstub.throws

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
        if image.libcalls:  # computed at breakpoints: the gdbstub's job
            if self._gdbstub is None:
                self._gdbstub = QemuServer(self.target, self.cpu, self.flags_on)
            return self._gdbstub.run(image, entry, callee, slots, budget, variant, calls)
        try:
            if self._process is None:
                self._start()
            return self._run(image, entry, callee, slots, budget, variant, calls)
        except QemuUnavailable as err:
            return RawOutcome("not-executable", detail=str(err))
        except (ServerFailure, OSError) as err:
            # the server's failure, not the code's: started afresh next run
            died = self._process is not None and self._process.died()
            self.stop()
            what = "qemu-user died" if died else "qemu-user failed"
            return RawOutcome("harness", detail=f"{what}: {err}")

    def _frame_for(self, entry: int, callee: int, sp: int, variant: int) -> bytes:
        t = self.target
        frame = bytearray(self._template)
        for index, reg in enumerate(t.registers):
            self._put(frame, reg.name, canary(variant, index, reg.bits), reg.bits)
        self._put(frame, "sp", sp)
        if t.link_reg is not None:
            self._put(frame, self._uc_name(t.link_reg), SENTINEL)
        self._put(frame, self._uc_name(t.arg_regs[0]), SLOTS_BASE)
        self._put(frame, self._uc_name(t.arg_regs[1]), callee)
        self._put(frame, "pc", entry)
        if self.frame.flags is not None:
            at, bits, value = self.frame.flags
            at += self._context
            old = self._get(frame, at)
            frame[at : at + 8] = self._word((old & ~bits) | value)
        return bytes(frame)

    def _where(self, name: str) -> int:
        if name in self.frame.fp_regs:
            return self._fp + self.frame.fp_regs[name]
        return self._context + self.frame.regs[name]

    def _put(self, frame: bytearray, name: str, value: int, bits: int = 64) -> None:
        at = self._where(name)
        frame[at : at + bits // 8] = (value & ((1 << bits) - 1)).to_bytes(bits // 8, self._order)

    def _value(self, report: Report, name: str, bits: int = 64) -> int:
        return self._get(report.data, self._where(name), bits // 8)

    def _uc_name(self, uc_id: int) -> str:
        """The register name (Target.registers) of a unicorn id."""
        if uc_id == self.target.sp_reg:
            return "sp"
        return next(r.name for r in self.target.registers if r.uc == uc_id)

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
        self.load(image)
        fill = bytes([FILL_BYTES[variant]])
        sp, stack = initial_stack(t, variant)
        frame = self._frame_for(entry, callee, sp, variant)
        # the report carries the slots the run's result is read from
        report_slots = self._word(SLOTS_BASE) + self._word(len(slots))
        bulk = report_slots + bytes(stack) + slots + fill * (SLOTS_SIZE - len(slots)) + frame
        s = self.setup
        request = self._request(
            [(s.read, self._bulk, REPORT_IOV_AT + 32, 16), (s.readv, self._bulk, RUN_IOV_AT, 3)],
            enter=self._frame_at + self.frame.sigreturn_sp,
        )
        assert self._process is not None
        alarm = Alarm(self._process.pid)
        seconds = alarm_seconds(budget)
        deadline = time.monotonic() + seconds + gdbstub.SOCKET_SLACK  # as the gdbstub's wait
        self._slots_reported = len(slots)
        WATCHDOG.arm(alarm.ring, seconds)
        try:
            self._send(request, bulk)
            while True:
                report = self._report(deadline)
                signo = self._get(report.data, report.info_at - report.frame_at, 4)
                if signo != SIGALRM or alarm.fired:
                    break
                # an alarm that rang late, after an earlier run: resume this one
                self._send(
                    self._request(
                        [(s.read, self._bulk, report.frame_at, len(report.data))],
                        enter=report.frame_at + self.frame.sigreturn_sp,
                    ),
                    report.data,
                )
        finally:
            WATCHDOG.disarm()
        if report.frame_at != self._frame_at:
            raise ServerFailure(f"a report with its frame at {report.frame_at:#x}")
        pc = self._value(report, "pc")
        if signo == SIGALRM:
            return RawOutcome("timeout", detail=f"no return within {seconds:.1f} s", pc=pc)
        if signo == SIGSEGV and pc == SENTINEL:
            found = () if calls is None else self._contract(calls, entry, sp, variant, report)
            return RawOutcome("return", slots=report.slots, violations=found)
        info = report.data[report.info_at - report.frame_at :]
        address = self._get(info, 16)
        return classify(t, image, signo, pc, lambda: f"access at {address:#x}", self.flags_on)

    def _contract(
        self, calls: CallMap, entry: int, entry_sp: int, variant: int, report: Report
    ) -> tuple[Violation, ...]:
        """final_stop_contract, reading the final frame."""

        def after(reg: Reg) -> int:
            return self._value(report, reg.name, reg.bits)

        final_sp = self._value(report, "sp")
        return final_stop_contract(self.target, calls, entry, entry_sp, variant, after, final_sp)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
