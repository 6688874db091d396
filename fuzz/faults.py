"""Planted faults: a test-only model of a backend bug.

A fault names a target and a trigger (a shape of the module, such as "a tail
call that passes an i128 after eight stack arguments"). When a case that holds
the trigger runs on that target, the fault changes the outcome the way a real
miscompile would (a flipped result bit), or kills or hangs the worker the way
a crash inside Cranelift would. Tests and benchmarks use faults to check that
campaigns bucket, survive and reduce what they find; nothing else does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import unicorn as uc

from fuzz import _cranelift
from fuzz.pipeline.contract import CallHook, Frame, extended_params
from fuzz.pipeline.debuginfo import DebugCompiled
from fuzz.pipeline.filetest import FileTest
from fuzz.pipeline.oracle import Kind, Outcome
from fuzz.pipeline.runner import FaultHooks
from fuzz.targets import TARGETS, Target
from fuzz.values import Value

if TYPE_CHECKING:
    from fuzz._cranelift import CallSite


def _call_sites(ft: FileTest, entry: str) -> list[CallSite]:
    return [
        site
        for name in ft.reachable(entry)
        for site in ft.functions[name]["call_sites"]
        if site["opcode"] != "func_addr"
    ]


def tail_call_i128_after_eight(ft: FileTest, entry: str) -> bool:
    """A tail call whose callee takes an i128 after its first eight parameters."""
    return any(
        site["tail"] and any(p[0] == "i128" for p in site["signature"]["params"][8:])
        for site in _call_sites(ft, entry)
    )


def call_i128_third(ft: FileTest, entry: str) -> bool:
    """A (non-tail) call whose callee takes an i128 as its third or later argument."""
    return any(
        not site["tail"] and any(p[0] == "i128" for p in site["signature"]["params"][2:])
        for site in _call_sites(ft, entry)
    )


def indirect_tail_call(ft: FileTest, entry: str) -> bool:
    return any(site["opcode"] == "return_call_indirect" for site in _call_sites(ft, entry))


def any_call(ft: FileTest, entry: str) -> bool:
    return bool(_call_sites(ft, entry))


def _flip_first_bit(outcome: Outcome) -> Outcome:
    if outcome.kind is not Kind.RETURN or not outcome.values:
        return outcome
    first = outcome.values[0]
    flipped = (Value(first.ty, first.bits ^ 1), *outcome.values[1:])
    return dataclasses.replace(outcome, values=flipped)


def _abort(outcome: Outcome) -> Outcome:
    _cranelift.abort_for_test()
    return outcome


def _harness_failure(outcome: Outcome) -> Outcome:
    return Outcome(Kind.HARNESS, detail="qemu-user died: planted", executor=outcome.executor)


def _hang(outcome: Outcome) -> Outcome:
    while True:  # a worker stuck for good: only the wall-clock limit ends it
        time.sleep(1)


@dataclass(frozen=True)
class Fault:
    """An outcome-level fault: on `target`, a run whose entry reaches the
    trigger gets `effect` applied to its outcome."""

    name: str
    target: str
    # the shape, in the functions a run of its entry function can reach
    trigger: Callable[[FileTest, str], bool]
    effect: Callable[[Outcome], Outcome]
    description: str

    def apply(self, ft: FileTest, target: str, entry: str, outcome: Outcome) -> Outcome:
        if target != self.target or not self.trigger(ft, entry):
            return outcome
        return self.effect(outcome)

    def hooks(self) -> FaultHooks:
        return FaultHooks(outcome=self.apply)


# --- machine-level faults: a backend bug in the code a call runs ----------------

JUNK = 0x0BAD_0BAD_0BAD_0BAD


def _clobber(cls: str) -> CallHook:
    """A callee that does not save the first callee-saved register of class
    `cls` its convention preserves: the register is flipped at its entry
    (flipped, not overwritten: a callee entered with the junk its caller's
    entry left there changes it too)."""

    def hook(event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
        if event != "entry" or frame.caller == "harness":
            return  # the trampoline itself is the harness's, not a callee under test
        for reg, _bits in target.preserved(frame.callee.cc):
            if reg.cls == cls:
                junk = JUNK if reg.bits <= 64 else JUNK | (JUNK << 64)
                mu.reg_write(reg.uc, mu.reg_read(reg.uc) ^ junk)
                return

    return hook


def _clobber_reserved(event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
    """A callee that writes the platform's reserved registers (aarch64 x18,
    riscv64 gp/tp): each is flipped at every callee's entry, so the value a
    caller left there is gone whatever the callee's convention."""
    if event != "entry" or frame.caller == "harness":
        return
    for reg in target.registers:
        if reg.name in target.reserved_regs:
            mu.reg_write(reg.uc, mu.reg_read(reg.uc) ^ JUNK)


def _store_past_outgoing_args(event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
    """The harness's call into the trampoline passes no stack arguments; the
    8 bytes just past that (empty) outgoing-argument area, above the return
    address slot and any register save area, are overwritten."""
    if event == "entry" and frame.caller == "harness":
        mu.mem_write(frame.sp + target.ra_slot + target.stack_bias, JUNK.to_bytes(8, "little"))


def _sp_off_by_16(event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
    """A call sequence that leaves SP 16 bytes off when a callee (of a
    caller-pops convention) returns to generated code."""
    pops = frame.callee.cc in target.callee_pops_convs
    if event == "return" and frame.caller != "harness" and not pops:
        mu.reg_write(target.sp_reg, mu.reg_read(target.sp_reg) + 16)


def _tail_pop_off_by_16(event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
    """A callee of a callee-pops convention (`tail`) that pops 16 bytes more
    than its stack arguments when it returns."""
    if event == "return" and frame.callee.cc in target.callee_pops_convs:
        mu.reg_write(target.sp_reg, mu.reg_read(target.sp_reg) + 16)


def _unextended_arg(event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
    """A call sequence that passes its first narrow `uext`/`sext` register
    argument unextended: the bits above the type are garbage at the entry."""
    if event != "entry":
        return
    for reg_name, _index, _ty, _ext in extended_params(target, frame.callee):
        reg = next(r for r in target.registers if r.name == reg_name)
        mu.reg_write(reg.uc, mu.reg_read(reg.uc) ^ (0x5A << 56))
        return


@dataclass(frozen=True)
class MachineFault:
    name: str
    target: str
    effect: CallHook
    description: str

    def hooks(self) -> FaultHooks:
        target = self.target

        def call(event: str, mu: uc.Uc, t: Target, frame: Frame) -> None:
            if t.name == target:
                self.effect(event, mu, t, frame)

        return FaultHooks(call=call)


MACHINE_FAULTS: dict[str, MachineFault] = {
    f.name: f
    for name in TARGETS
    for f in (
        MachineFault(
            f"{name}-clobber-int",
            name,
            _clobber("int"),
            f"{name}: a callee clobbers its first callee-saved integer register",
        ),
        MachineFault(
            f"{name}-clobber-float",
            name,
            _clobber("float"),
            f"{name}: a callee clobbers its first callee-saved float register",
        ),
        MachineFault(
            f"{name}-clobber-vector",
            name,
            _clobber("vector"),
            f"{name}: a callee clobbers its first callee-saved vector register",
        ),
        MachineFault(
            f"{name}-store-past-args",
            name,
            _store_past_outgoing_args,
            f"{name}: a call stores 8 bytes past its outgoing-argument area",
        ),
        MachineFault(
            f"{name}-unextended-arg",
            name,
            _unextended_arg,
            f"{name}: a narrow uext/sext argument is passed unextended",
        ),
        MachineFault(
            f"{name}-sp-off-by-16",
            name,
            _sp_off_by_16,
            f"{name}: SP is 16 bytes off after a call returns",
        ),
        MachineFault(
            f"{name}-tail-pop-off-by-16",
            name,
            _tail_pop_off_by_16,
            f"{name}: a tail callee pops 16 bytes more than its stack arguments",
        ),
        *(
            (
                MachineFault(
                    f"{name}-clobber-reserved",
                    name,
                    _clobber_reserved,
                    f"{name}: a callee writes the platform's reserved registers",
                ),
            )
            if TARGETS[name].reserved_regs
            else ()
        ),
    )
}


# --- debug-compile faults: debug info that changes the code ---------------------


@dataclass(frozen=True)
class DebugFault:
    """On `target`, compiling with debug info (fuzz.pipeline.debuginfo)
    flips a bit in the last byte of every function's code."""

    name: str
    target: str
    description: str

    def hooks(self) -> FaultHooks:
        target = self.target

        def debug(t: str, d: DebugCompiled) -> DebugCompiled:
            code = d.compiled.code
            if t != target or not code:
                return d
            changed = code[:-1] + bytes([code[-1] ^ 1])
            return dataclasses.replace(d, compiled=dataclasses.replace(d.compiled, code=changed))

        return FaultHooks(debug=debug)


DEBUG_FAULTS: dict[str, DebugFault] = {
    f"{name}-debug-changes-code": DebugFault(
        f"{name}-debug-changes-code", name, f"{name}: debug info changes a function's code"
    )
    for name in TARGETS
}


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "aarch64-tail-i128",
            "aarch64",
            tail_call_i128_after_eight,
            _flip_first_bit,
            "aarch64: a tail call passing an i128 after eight arguments returns a flipped bit",
        ),
        Fault(
            "aarch64-call-i128",
            "aarch64",
            call_i128_third,
            _flip_first_bit,
            "aarch64: a call passing an i128 as third or later argument returns a flipped bit",
        ),
        Fault(
            "x86-abort-indirect-tail",
            "x86_64",
            indirect_tail_call,
            _abort,
            "x86_64: a module with return_call_indirect aborts the process",
        ),
        Fault(
            "riscv64-harness-call",
            "riscv64",
            any_call,
            _harness_failure,
            "riscv64: a run with a call fails in the harness (callfuzz's own failure)",
        ),
        Fault(
            "s390x-hang-call",
            "s390x",
            any_call,
            _hang,
            "s390x: a module with a call hangs the worker",
        ),
    )
}


ALL_FAULTS: dict[str, Fault | MachineFault | DebugFault] = {
    **FAULTS,
    **MACHINE_FAULTS,
    **DEBUG_FAULTS,
}


def hooks(name: str | None) -> FaultHooks | None:
    """The pipeline hooks that plant fault `name` (None: no fault)."""
    return ALL_FAULTS[name].hooks() if name else None
