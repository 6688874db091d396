"""The call contract checks (fuzz/pipeline/contract.py): planted machine-level
faults are detected on every target with the right kind, register class and
blame; correct code raises no alarm, also when a callee keeps values in every
callee-saved register its convention has."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import unicorn as uc

from fuzz.faults import MACHINE_FAULTS, hooks
from fuzz.pipeline.contract import (
    ALIGNMENT,
    CALLEE_SAVED,
    CALLER_FRAME,
    EXTENSION,
    STACK_POINTER,
    CallHook,
    Frame,
    Violation,
    layout,
)
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import FaultHooks, Runner, RunResult
from fuzz.targets import TARGETS, Target
from fuzz.triage.buckets import bucket_for
from fuzz.triage.known import KnownFinding, load


def _case(target: str, cc: str, param: str = "i64") -> str:
    ty = param.split()[0]
    widen = "v2 = uextend.i64 v0" if ty != "i64" else "v2 = iadd v0, v0"
    return f"""test interpret
test run
target {target}

function %victim({param}) -> i64 {cc} {{
block0(v0: {ty}):
    {widen}
    v3 = iconst.i64 3
    v4 = iadd v2, v3
    return v4
}}

function %main(i64) -> i64 {{
    fn0 = %victim({param}) -> i64 {cc}
block0(v0: i64):
    v1 = ireduce.{ty} v0
    v5 = call fn0(v1)
    v6 = iadd v5, v0
    return v6
}}
; print: %main(1)
""".replace("v1 = ireduce.i64 v0", "v1 = iadd v0, v0")


# (fault, target) -> (callee convention, parameter, violation kind, register class)
CLOBBER = {
    "x86_64": {"int": "system_v", "vector": "windows_fastcall"},
    "aarch64": {"int": "system_v", "vector": "system_v"},
    "riscv64": {"int": "system_v", "float": "system_v"},
    "s390x": {"int": "system_v", "float": "system_v"},
}
EXTENDING = {
    "x86_64": "system_v",
    "aarch64": "apple_aarch64",
    "riscv64": "system_v",
    "s390x": "system_v",
}

PLANTED = [
    *(
        (f"{t}-clobber-{cls}", t, cc, "i64", CALLEE_SAVED, cls)
        for t, classes in CLOBBER.items()
        for cls, cc in classes.items()
    ),
    *((f"{t}-store-past-args", t, "system_v", "i64", CALLER_FRAME, "stack") for t in TARGETS),
    *((f"{t}-sp-off-by-16", t, "system_v", "i64", STACK_POINTER, "sp") for t in TARGETS),
    *((f"{t}-unextended-arg", t, EXTENDING[t], "i8 uext", EXTENSION, "int") for t in TARGETS),
]


def _run(text: str, target: str, fault: str | None = None) -> RunResult:
    return _run_hooked(text, target, hooks(fault))


def _run_hooked(text: str, target: str, fault: FaultHooks | None) -> RunResult:
    runner = Runner(fault=fault)
    (result,) = runner.run_file(parse_text(text), [TargetLine(TARGETS[target])])
    return result


@pytest.mark.parametrize(
    ("fault", "target", "cc", "param", "kind", "cls"), PLANTED, ids=[p[0] for p in PLANTED]
)
def test_a_planted_fault_is_a_violation_of_its_kind(
    fault: str, target: str, cc: str, param: str, kind: str, cls: str
) -> None:
    text = _case(target, cc, param)
    clean = _run(text, target)
    assert clean.judgement.verdicts[target] is Verdict.AGREE, clean.outcomes[target]
    result = _run(text, target, fault)
    outcome = result.outcomes[target]
    assert result.judgement.verdicts[target] is Verdict.ABI_VIOLATION, outcome
    assert result.judgement.blame == [target]
    first = outcome.violations[0]
    assert (first.kind, first.reg_class) == (kind, cls), str(first)
    key = bucket_for(parse_text(text), target, result).key
    assert key == f"{target}|abi violation|{kind}|{cls}"


def test_every_machine_fault_is_planted_above_or_has_nothing_to_clobber() -> None:
    planted = {p[0] for p in PLANTED}
    for name, fault in MACHINE_FAULTS.items():
        if name in planted:
            continue
        cls = name.rpartition("clobber-")[2]
        preserved = {
            reg.cls
            for cc in ("system_v", "windows_fastcall")
            for reg, _ in TARGETS[fault.target].preserved(cc)
        }
        assert "clobber-" in name and cls not in preserved, name


# every convention callfuzz generates calls in, on every target
CONVENTIONS = [(t.name, cc) for t in TARGETS.values() for cc in t.call_convs]
# those whose functions may return a value (preserve_all's may not)
RETURNING = [(t, cc) for t, cc in CONVENTIONS if cc not in TARGETS[t].no_return_convs]


def test_the_tests_below_cover_every_convention_and_target() -> None:
    assert {t for t, _cc in CONVENTIONS} == set(TARGETS)
    for t in TARGETS:
        assert {(t, cc) for cc in ("system_v", "fast", "tail", "preserve_all")} <= set(CONVENTIONS)
    assert {("x86_64", "windows_fastcall"), ("x86_64", "winch")} <= set(CONVENTIONS)
    assert {("aarch64", "apple_aarch64"), ("aarch64", "winch")} <= set(CONVENTIONS)


@pytest.mark.parametrize(("target", "cc"), RETURNING, ids=[f"{t}-{cc}" for t, cc in RETURNING])
def test_correct_code_breaks_no_contract(target: str, cc: str) -> None:
    for param in ("i64", "i8 uext", "i16 sext"):
        result = _run(_case(target, cc, param), target)
        outcome = result.outcomes[target]
        assert not outcome.violations, [str(v) for v in outcome.violations]
        assert result.judgement.verdicts[target] is Verdict.AGREE


def test_a_misaligned_stack_at_entry_is_a_violation() -> None:
    """The harness enters the trampoline with RSP+8 16-byte aligned; entered
    8 bytes off, every entry breaks the alignment rule."""
    text = _case("x86_64", "system_v")
    x86 = TARGETS["x86_64"]
    original = x86.stack_bias
    object.__setattr__(x86, "stack_bias", original + 8)  # a frozen dataclass, for this test only
    try:
        result = _run(text, "x86_64")
    finally:
        object.__setattr__(x86, "stack_bias", original)
    kinds = {v.kind for v in result.outcomes["x86_64"].violations}
    assert ALIGNMENT in kinds, result.outcomes["x86_64"]
    assert result.judgement.verdicts["x86_64"] is Verdict.ABI_VIOLATION


# --- callee-saved registers under pressure --------------------------------------

PRESSURE = 40  # values of each class live at once: more than any register file has


def _pressure_case(target: Target, cc: str, n: int = PRESSURE) -> str:
    """%main -> %victim (convention `cc`) -> %leaf. The victim makes `n`
    integers, `n` doubles and, where the target has vectors without extra
    ISA flags, `n` i64x2 vectors from its input, all live at once; folds them
    into a checksum, calls %leaf with all of them still live and folds them
    again. More values of a class than its caller-saved registers make the
    allocator take the callee-saved ones too, which the victim must give
    back. It returns nothing (a preserve_all function may not): %main passes
    it where to store the checksum."""
    vectors = "i64x2" in target.abi_types.get("*", ())
    leaf_cc = "system_v" if cc in target.no_return_convs else cc
    lines: list[str] = []
    count = 2  # v0: where to store, v1: the input

    def emit(text: str) -> str:
        nonlocal count
        lines.append(f"    v{count} = {text}")
        count += 1
        return f"v{count - 1}"

    ints, floats, vecs = [], [], []
    for k in range(n):
        rotated = emit(f"rotl v1, {emit(f'iconst.i64 {k + 1}')}")
        salt = emit(f"iconst.i64 {(k * 0x9E37_79B9_7F4A_7C15) % (1 << 63)}")
        ints.append(emit(f"bxor {rotated}, {salt}"))
    for k in range(n):
        word = emit(f"iadd {ints[k]}, {ints[(k + 1) % n]}")
        floats.append(emit(f"bitcast.f64 {word}"))
        if vectors:
            vecs.append(emit(f"splat.i64x2 {emit(f'bxor {word}, {ints[(k + 2) % n]}')}"))

    def fold(acc: str) -> str:
        # last made, first folded: every value is live until the fold starts
        for k in reversed(range(n)):
            rotated = emit(f"rotl {acc}, {emit(f'iconst.i64 {k % 13 + 1}')}")
            acc = emit(f"iadd {rotated}, {ints[k]}")
            acc = emit(f"bxor {acc}, {emit(f'bitcast.i64 {floats[k]}')}")
            if vectors:
                acc = emit(f"iadd {acc}, {emit(f'extractlane {vecs[k]}, 1')}")
        return acc

    after = fold(emit(f"call fn0({fold('v1')})"))
    body = "\n".join(lines)
    return f"""test interpret
test run
target {target.name}

function %leaf(i64) -> i64 {leaf_cc} {{
block0(v0: i64):
    v1 = iconst.i64 0x5DEE_CE66_D
    v2 = bxor v0, v1
    return v2
}}

function %victim(i64, i64) {cc} {{
    sig0 = (i64) -> i64 {leaf_cc}
    fn0 = %leaf sig0
block0(v0: i64, v1: i64):
{body}
    store {after}, v0
    return
}}

function %main(i64) -> i64 {{
    ss0 = explicit_slot 8
    sig0 = (i64, i64) {cc}
    fn0 = %victim sig0
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    call fn0(v1, v0)
    v2 = load.i64 v1
    return v2
}}
; print: %main(81985529216486895)
"""


@dataclass
class _Entries:
    """A call hook that plants nothing (unless given a fault): it keeps the
    CPU state at each function's first entry."""

    fault: CallHook | None = None
    states: dict[str, bytes] = field(default_factory=dict)

    def __call__(self, event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
        if event == "entry":
            self.states.setdefault(frame.callee.name, frame.state)
        if self.fault is not None:
            self.fault(event, mu, target, frame)


def _run_watched(target: Target, cc: str, fault: str | None = None) -> tuple[RunResult, _Entries]:
    entries = _Entries(MACHINE_FAULTS[fault].hooks().call if fault else None)
    result = _run_hooked(_pressure_case(target, cc), target.name, FaultHooks(call=entries))
    return result, entries


def _saved_in_use(target: Target, cc: str, entries: _Entries) -> dict[str, set[str]]:
    """Per register class, the registers convention `cc` preserves whose
    value the victim had changed when it called %leaf: it holds values there,
    so its prologue must have saved them."""
    offsets = layout(target).offsets
    before, during = entries.states["%victim"], entries.states["%leaf"]
    used: dict[str, set[str]] = {}
    for reg, bits in target.preserved(cc):
        at = offsets[reg.name]
        if before[at : at + bits // 8] != during[at : at + bits // 8]:
            used.setdefault(reg.cls, set()).add(reg.name)
    return used


def _classes(target: Target, cc: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for reg, _bits in target.preserved(cc):
        out.setdefault(reg.cls, set()).add(reg.name)
    return out


# Cranelift's own defects on these cases (corpus/known.toml), each shown as
# the registry describes it: riscv64 allocates fs1 (f9) under float pressure
# without saving it (a system_v function breaks the psABI; %main is one, so
# every convention shows it), and its preserve_all prologue saves the vector
# registers with RVV instructions, which RV64GC lacks: the victim dies
# before the contract can check anything.
REGISTRY = {e.id: e for e in load(Path(__file__).parent.parent / "corpus" / "known.toml").entries}
KNOWN = {
    ("riscv64", cc): "riscv64-fs1-not-preserved"
    for cc in TARGETS["riscv64"].call_convs
    if cc != "preserve_all"
} | {("riscv64", "preserve_all"): "riscv64-preserve-all-vector-saves"}


def _violation_text(v: Violation) -> str:
    """As the registry matches a violation (fuzz.triage.known.message_of)."""
    return f"{v.kind} {v.where} ({v.reg_class})"


def _unknown(violations: tuple[Violation, ...], known: KnownFinding | None) -> list[Violation]:
    """The violations that are not the known finding's."""
    return [
        v
        for v in violations
        if known is None or known.message is None or not known.message.search(_violation_text(v))
    ]


# where the allocator does not reach every callee-saved register: how many it
# does (s390x preserve_all: the victim's vectors take 8 of the 16 high halves
# of v0-v15)
FEWER = {("s390x", "preserve_all", "vector"): 8}


def test_the_known_defects_under_pressure_are_in_the_registry() -> None:
    for (target, _cc), known in KNOWN.items():
        entry = REGISTRY[known]
        assert target in entry.targets and entry.message is not None
        assert entry.verdict in ("abi violation", "crash")


@pytest.mark.parametrize(("target", "cc"), CONVENTIONS, ids=[f"{t}-{cc}" for t, cc in CONVENTIONS])
def test_correct_code_under_callee_saved_pressure_breaks_no_contract(target: str, cc: str) -> None:
    t = TARGETS[target]
    result, entries = _run_watched(t, cc)
    outcome = result.outcomes[target]
    verdict = result.judgement.verdicts[target]
    known = REGISTRY[KNOWN[target, cc]] if (target, cc) in KNOWN else None
    if known is not None and known.verdict == "crash":
        # the contract abstains: the code dies in the victim's prologue
        assert known.message is not None and known.message.search(outcome.detail), outcome
        assert verdict is Verdict.CRASH and "%leaf" not in entries.states
        return
    assert not _unknown(outcome.violations, known), [str(v) for v in outcome.violations]
    if known is not None:
        assert outcome.violations, f"{known.id} no longer shows: update KNOWN"
    expected = Verdict.ABI_VIOLATION if known is not None else Verdict.AGREE
    assert verdict is expected, outcome
    assert result.judgement.verdicts["interpreter"] is Verdict.AGREE
    # the victim really kept values in the convention's callee-saved
    # registers: in every one of them, of every class
    used = _saved_in_use(t, cc, entries)
    for cls, regs in _classes(t, cc).items():
        want = FEWER.get((target, cc, cls), len(regs))
        assert len(used.get(cls, ())) >= want, (cls, sorted(regs - used.get(cls, set())))


# (target, convention, register class) the pressure case reaches: clobbered, seen
CLOBBERED = [
    (t, cc, cls)
    for t, cc in CONVENTIONS
    if (t, cc) not in KNOWN or REGISTRY[KNOWN[t, cc]].verdict != "crash"
    for cls in sorted(_classes(TARGETS[t], cc))
]


@pytest.mark.parametrize(
    ("target", "cc", "cls"), CLOBBERED, ids=[f"{t}-{cc}-{cls}" for t, cc, cls in CLOBBERED]
)
def test_a_clobbered_callee_saved_register_under_pressure_is_a_violation(
    target: str, cc: str, cls: str
) -> None:
    result, _entries = _run_watched(TARGETS[target], cc, f"{target}-clobber-{cls}")
    outcome = result.outcomes[target]
    assert result.judgement.verdicts[target] is Verdict.ABI_VIOLATION, outcome
    known = REGISTRY[KNOWN[target, cc]] if (target, cc) in KNOWN else None
    found = {(v.kind, v.reg_class) for v in _unknown(outcome.violations, known)}
    assert found == {(CALLEE_SAVED, cls)}, [str(v) for v in outcome.violations]
