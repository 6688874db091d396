"""Planted faults: a test-only model of a backend bug.

A fault names a target and a trigger (a shape of the module, such as "a tail
call that passes an i128 after eight stack arguments"). When a case that holds
the trigger runs on that target, the fault changes the outcome the way a real
miscompile would (a flipped result bit), or kills or hangs the worker the way
a crash inside Cranelift would. Tests and benchmarks use faults to check that
campaigns bucket, survive and reduce what they find; nothing else does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fuzz import _cranelift
from fuzz.pipeline.filetest import FileTest
from fuzz.pipeline.oracle import Kind, Outcome
from fuzz.pipeline.runner import OutcomeHook
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
    return Outcome(Kind.RETURN, (Value(first.ty, first.bits ^ 1), *outcome.values[1:]))


def _abort(outcome: Outcome) -> Outcome:
    _cranelift.abort_for_test()
    return outcome


def _hang(outcome: Outcome) -> Outcome:
    while True:  # a worker stuck for good: only the wall-clock limit ends it
        time.sleep(1)


@dataclass(frozen=True)
class Fault:
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
            "s390x-hang-call",
            "s390x",
            any_call,
            _hang,
            "s390x: a module with a call hangs the worker",
        ),
    )
}


def outcome_hook(name: str | None) -> OutcomeHook | None:
    """The pipeline hook that plants fault `name` (None: no fault)."""
    return FAULTS[name].apply if name else None
