"""The call contract checks (fuzz/pipeline/contract.py): planted machine-level
faults are detected on every target with the right kind, register class and
blame; correct code raises no alarm."""

from __future__ import annotations

import pytest

from fuzz.faults import MACHINE_FAULTS, hooks
from fuzz.pipeline.contract import (
    ALIGNMENT,
    CALLEE_SAVED,
    CALLER_FRAME,
    EXTENSION,
    STACK_POINTER,
)
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import Runner, RunResult
from fuzz.targets import TARGETS
from fuzz.triage.buckets import bucket_for


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
    runner = Runner(fault=hooks(fault))
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


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("cc", ["system_v", "fast", "tail", "windows_fastcall"])
def test_correct_code_breaks_no_contract(target: str, cc: str) -> None:
    if cc not in TARGETS[target].call_convs:
        pytest.skip(f"{cc} is not a convention callfuzz generates on {target}")
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
