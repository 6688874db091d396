"""Outcomes, verdicts and blame.

Every executor (the interpreter, and each target configuration) produces an
`Outcome` for a run command. Values compare bit-exact at their own width (see
`fuzz.values` for the NaN policy); traps compare by trap code. The reference
each executor is judged against is the file's stated `; run: ... == value`
when there is one (upstream's `test run` checks exactly that), else the
interpreter's opinion. A stated value is the specification: whoever misses
it is blamed, never who meets it. Without one, the odd one out is blamed: the
largest group of agreeing executors wins when it is strictly the largest,
otherwise the interpreter decides.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from fuzz.pipeline.cabi.mismatch import Mismatch
from fuzz.pipeline.contract import Violation
from fuzz.values import NanPolicy, Value, format_values


class Kind(enum.StrEnum):
    RETURN = "return"
    TRAP = "trap"
    CRASH = "crash"
    TIMEOUT = "timeout"
    FUEL = "fuel exhausted"
    NOT_EXECUTABLE = "not executable here"
    UNSUPPORTED = "unsupported"
    COMPILE_PANIC = "compile panic"
    COMPILE_ERROR = "compile error"
    INTERP_FAILURE = "interpreter failure"
    # the outcome changed with the initial machine state (see fuzz.pipeline.emulate)
    UNDEFINED = "undefined behaviour"
    # unicorn diverged, qemu-user ran the same code and agreed with the reference
    EMULATOR = "emulator disagreement"
    # Cranelift placed a value where the platform C compiler does not (fuzz.pipeline.cabi)
    C_ABI = "c abi mismatch"
    # the code changed when compiled with debug info (fuzz.pipeline.debuginfo)
    DEBUG_INFO = "debug info changes code"
    # the harness itself failed (its C glue, an executor, the host): never Cranelift's
    HARNESS = "harness error"


# Kinds that are an opinion about what the program does. The interpreter
# running out of fuel is not one: its fuel is far smaller than the machines'
# instruction budget, so it says nothing about the result.
OPINIONS = frozenset({Kind.RETURN, Kind.TRAP, Kind.CRASH, Kind.TIMEOUT})


class Verdict(enum.StrEnum):
    AGREE = "agree"
    WRONG_RESULT = "wrong result"
    CRASH = "crash"
    UNEXPECTED_TRAP = "unexpected trap"
    MISSING_TRAP = "missing trap"
    TIMEOUT = "timeout"
    COMPILE_PANIC = "compile panic"
    COMPILE_ERROR = "compile error"
    UNSUPPORTED = "unsupported"
    INTERP_FAILURE = "interpreter failure"
    NOT_EXECUTABLE = "not executable here"
    NO_REFERENCE = "no reference"
    FUEL_EXHAUSTED = "fuel exhausted"
    # the program read state it never wrote: not a Cranelift bug
    UNDEFINED_BEHAVIOUR = "undefined behaviour"
    # the code broke the call contract: a callee-saved register, the stack
    # pointer, its alignment, the caller's frame or an extension
    ABI_VIOLATION = "abi violation"
    # a campaign worker died inside Cranelift (abort, segfault) or hung: only
    # the parent process sees these, never `judge`
    HARD_CRASH = "hard crash"
    HANG = "hang"
    # unicorn's divergence that qemu-user did not reproduce: the emulator's
    # defect, kept for reference, never a Cranelift finding
    EMULATOR_DISAGREEMENT = "emulator disagreement"
    # a value placed where the target's C compiler does not look for it
    C_ABI_MISMATCH = "c abi mismatch"
    # compiled with debug value labels, the code is not the same
    DEBUG_INFO_CHANGES_CODE = "debug info changes code"
    # the harness failed, not Cranelift: never a finding, never a confirmation
    HARNESS_ERROR = "harness error"


# Verdicts that are not a divergence.
BENIGN = frozenset(
    {
        Verdict.AGREE,
        Verdict.UNSUPPORTED,
        Verdict.NOT_EXECUTABLE,
        Verdict.NO_REFERENCE,
        Verdict.FUEL_EXHAUSTED,
        Verdict.UNDEFINED_BEHAVIOUR,
        Verdict.EMULATOR_DISAGREEMENT,
        Verdict.HARNESS_ERROR,
    }
)


# Verdicts that only reproduce out of process (the worker had to die).
OUT_OF_PROCESS = frozenset({Verdict.HARD_CRASH, Verdict.HANG})


def is_finding(verdict: Verdict, blamed: bool) -> bool:
    """Whether an executor's verdict is something to record: a divergence,
    or blame while nothing else is wrong (targets disagree with no reference).
    Campaigns, the reducer and `callfuzz run` all ask this one question."""
    return verdict not in BENIGN or blamed


def is_recorded(verdict: Verdict, blamed: bool) -> bool:
    """Whether a campaign stores the result: every finding, and unicorn's
    divergences that qemu-user refuted (for reference, in their own buckets)."""
    return is_finding(verdict, blamed) or verdict is Verdict.EMULATOR_DISAGREEMENT


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    values: tuple[Value, ...] = ()
    detail: str = ""
    pc: int | None = None
    # call contract violations seen while it ran (fuzz.pipeline.contract)
    violations: tuple[Violation, ...] = ()
    # the executor that ran it, and the referee that reproduced it (divergences)
    executor: str = ""
    confirmed_by: str = ""
    # values misplaced against the C compiler (fuzz.pipeline.cabi), first one first
    c_abi: tuple[Mismatch, ...] = ()
    # a crash's: the trap code Cranelift recorded at the faulting instruction
    trap_site: str = ""

    def identical(self, other: Outcome) -> bool:
        """The same outcome bit for bit: values, trap code, fault and pc."""
        return (self.kind, self.values, self.detail, self.pc) == (
            other.kind,
            other.values,
            other.detail,
            other.pc,
        )

    def __str__(self) -> str:
        if self.violations:
            return f"abi violation: {self.violations[0]}" + (
                f" (+{len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
            )
        if self.c_abi:
            more = len(self.c_abi) - 1
            return f"c abi mismatch: {self.c_abi[0]}" + (f" (+{more} more)" if more else "")
        if self.kind is Kind.RETURN:
            return format_values(self.values) if self.values else "(no values)"
        if self.kind is Kind.TRAP:
            return f"trap {self.detail}"
        text = self.kind.value
        if self.detail:
            text += f": {self.detail}"
        if self.pc is not None:
            text += f" (pc {self.pc:#x})"
        return text


def same_outcome(a: Outcome, b: Outcome, policy: NanPolicy) -> bool:
    if a.kind is not b.kind:
        return False
    if a.kind is Kind.RETURN:
        return len(a.values) == len(b.values) and all(
            x.same_as(y, policy) for x, y in zip(a.values, b.values, strict=True)
        )
    if a.kind is Kind.TRAP:
        return a.detail == b.detail
    return a.kind is Kind.TIMEOUT


def matches_expectation(
    outcome: Outcome, compare: str | None, expected: tuple[Value, ...] | None, policy: NanPolicy
) -> bool | None:
    """Whether a returned outcome satisfies the file's `; run:` line (None: nothing stated)."""
    if compare is None or expected is None:
        return None
    if outcome.kind is not Kind.RETURN:
        return False
    equal = same_outcome(outcome, Outcome(Kind.RETURN, expected), policy)
    return equal if compare == "==" else not equal


def _versus(outcome: Outcome, reference: Outcome, policy: NanPolicy) -> Verdict:
    if same_outcome(outcome, reference, policy):
        return Verdict.AGREE
    if outcome.kind is Kind.CRASH:
        return Verdict.CRASH
    if outcome.kind is Kind.TIMEOUT:
        return Verdict.TIMEOUT
    if outcome.kind is Kind.TRAP:
        return Verdict.UNEXPECTED_TRAP
    if reference.kind is Kind.TRAP:
        return Verdict.MISSING_TRAP
    return Verdict.WRONG_RESULT


_OWN_VERDICT = {
    Kind.NOT_EXECUTABLE: Verdict.NOT_EXECUTABLE,
    Kind.UNSUPPORTED: Verdict.UNSUPPORTED,
    Kind.COMPILE_PANIC: Verdict.COMPILE_PANIC,
    Kind.COMPILE_ERROR: Verdict.COMPILE_ERROR,
    Kind.INTERP_FAILURE: Verdict.INTERP_FAILURE,
    Kind.FUEL: Verdict.FUEL_EXHAUSTED,
    Kind.UNDEFINED: Verdict.UNDEFINED_BEHAVIOUR,
    Kind.EMULATOR: Verdict.EMULATOR_DISAGREEMENT,
    Kind.C_ABI: Verdict.C_ABI_MISMATCH,
    Kind.DEBUG_INFO: Verdict.DEBUG_INFO_CHANGES_CODE,
    Kind.HARNESS: Verdict.HARNESS_ERROR,
}


@dataclass
class Judgement:
    verdicts: dict[str, Verdict]
    blame: list[str] = field(default_factory=list)

    @property
    def divergent(self) -> bool:
        # Blame without a bad verdict: targets disagree among themselves while
        # nothing (interpreter, file) gives a reference.
        return any(is_finding(v, label in self.blame) for label, v in self.verdicts.items())


INTERPRETER = "interpreter"


def at_trap_sites(outcomes: Mapping[str, Outcome]) -> dict[str, Outcome]:
    """`outcomes` with a crash at an instruction Cranelift recorded as a trap
    site read as that trap, where the interpreter reports the same trap code:
    Cranelift's code traps there by faulting (a load that may trap, heap_oob),
    as wasmtime's signal handler reads a fault at a trap site. Any other
    fault stays a crash: at no trap site, or where the interpreter did not
    trap so (a wild address its load never saw)."""
    interp = outcomes.get(INTERPRETER)
    code = interp.detail if interp is not None and interp.kind is Kind.TRAP else None
    return {
        label: dataclasses.replace(outcome, kind=Kind.TRAP, detail=outcome.trap_site)
        if code is not None and outcome.kind is Kind.CRASH and outcome.trap_site == code
        else outcome
        for label, outcome in outcomes.items()
    }


def judge(
    outcomes: Mapping[str, Outcome],
    compare: str | None = None,
    expected: tuple[Value, ...] | None = None,
    policy: NanPolicy = NanPolicy.ANY,
) -> Judgement:
    """Verdict per executor and the executors to blame.

    `outcomes` maps executor labels to outcomes; the interpreter's label is
    `INTERPRETER`. The file's expectation, when stated, checks everyone. A
    crash at a trap site is judged as that trap (`at_trap_sites`)."""
    outcomes = at_trap_sites(outcomes)
    interp = outcomes.get(INTERPRETER)
    opinion = interp if interp is not None and interp.kind in OPINIONS else None
    stated = Outcome(Kind.RETURN, expected) if compare == "==" and expected is not None else None
    reference = stated or opinion

    verdicts: dict[str, Verdict] = {}
    for label, outcome in outcomes.items():
        if outcome.violations:
            verdicts[label] = Verdict.ABI_VIOLATION
            continue
        if outcome.kind in _OWN_VERDICT:
            verdicts[label] = _OWN_VERDICT[outcome.kind]
            continue
        meets = matches_expectation(outcome, compare, expected, policy)
        if label == INTERPRETER:
            verdicts[label] = Verdict.WRONG_RESULT if meets is False else Verdict.AGREE
        elif reference is None:
            verdicts[label] = (
                Verdict.NO_REFERENCE
                if meets is None
                else (Verdict.AGREE if meets else Verdict.WRONG_RESULT)
            )
        else:
            verdict = _versus(outcome, reference, policy)
            if verdict is Verdict.AGREE and meets is False:
                verdict = Verdict.WRONG_RESULT
            verdicts[label] = verdict

    if stated is not None:
        # the stated value is the specification, as in upstream's `test run`:
        # whoever misses it is blamed, never who meets it, however many agree
        # on another value (three targets sharing a wrong result outnumber the
        # interpreter: 0.128's preserve_all bug)
        blame = [label for label, v in verdicts.items() if v not in BENIGN]
        return Judgement(verdicts, blame)
    return Judgement(verdicts, _blame(outcomes, verdicts, policy))


def _blame(
    outcomes: Mapping[str, Outcome], verdicts: Mapping[str, Verdict], policy: NanPolicy
) -> list[str]:
    blamed = {label for label, v in verdicts.items() if v in _FAULTS_OF_THEIR_OWN}
    opinions = [(label, o) for label, o in outcomes.items() if o.kind in OPINIONS]
    groups: list[list[str]] = []
    for label, outcome in opinions:
        for group in groups:
            if same_outcome(outcomes[group[0]], outcome, policy):
                group.append(label)
                break
        else:
            groups.append([label])
    if len(groups) > 1:
        sizes = sorted((len(g) for g in groups), reverse=True)
        if sizes[0] > sizes[1]:
            winner = max(groups, key=len)
            blamed |= {label for g in groups if g is not winner for label in g}
        else:
            blamed |= {label for label, v in verdicts.items() if v not in BENIGN}
    elif any(v is Verdict.WRONG_RESULT for v in verdicts.values()):
        # Everyone agrees with each other but not with the file's expectation.
        blamed |= {label for label, v in verdicts.items() if v is Verdict.WRONG_RESULT}
    order = list(outcomes)
    return sorted(blamed, key=order.index)


_FAULTS_OF_THEIR_OWN = frozenset(
    {
        Verdict.COMPILE_PANIC,
        Verdict.COMPILE_ERROR,
        Verdict.INTERP_FAILURE,
        Verdict.ABI_VIOLATION,
        Verdict.C_ABI_MISMATCH,
        Verdict.DEBUG_INFO_CHANGES_CODE,
    }
)
