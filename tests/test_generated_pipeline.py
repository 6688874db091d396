"""Generated cases through the whole pipeline on all four targets: the
interpreter and every emulated backend must agree, except where the pinned
Cranelift really diverges (a finding kept in corpus/ with its own test)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.gen.choices import HypothesisSource, RandomSource
from fuzz.gen.expect import with_expectations
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import Runner, RunResult, default_lines
from fuzz.targets import TARGETS

TARGET_LIST = list(TARGETS.values())
RUNNER = Runner()


def known_finding(text: str, result: RunResult) -> bool:
    """corpus/riscv64-preserve-all-vector-saves.clif: a riscv64 `preserve_all`
    function that calls saves v0-v31 with RVV although `has_v` is off;
    corpus/riscv64-fs1-not-preserved.clif: riscv64 treats fs1 (f9) as
    caller-saved."""
    bad = {label: v for label, v in result.judgement.verdicts.items() if v is not Verdict.AGREE}
    rvv = (
        "preserve_all" in text
        and all(label.startswith("riscv64") and v is Verdict.CRASH for label, v in bad.items())
        and all("RVV instruction" in result.outcomes[label].detail for label in bad)
    )
    fs1 = all(
        label.startswith("riscv64")
        and v is Verdict.ABI_VIOLATION
        and all(
            str(violation).startswith("callee-saved register f9 (float)")
            for violation in result.outcomes[label].violations
        )
        for label, v in bad.items()
    )
    return bool(bad) and (rvv or fs1)


def divergences(text: str) -> list[str]:
    ft = parse_text(text)
    results = RUNNER.run_file(ft, default_lines(ft, None))
    assert results, "a generated case has run lines"
    return [
        f"{r.command.text}: {r.judgement.verdicts} blame {r.judgement.blame}"
        for r in results
        if r.judgement.divergent and not known_finding(text, r)
    ]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), index=st.integers(0, len(TARGET_LIST) - 1))
def test_generated_cases_agree_on_every_target(data, index: int) -> None:  # type: ignore[no-untyped-def]
    case = generate(HypothesisSource(data), TARGET_LIST[index])
    assert divergences(case.text) == [], case.text


def test_seeded_cases_agree_with_stated_expectations() -> None:
    """With the interpreter's results written into `; run: ... == [...]`, the
    file itself is the reference and every backend meets it."""
    stated = 0
    for seed in range(12):
        text = with_expectations(generate(RandomSource(seed), TARGET_LIST[seed % 4]).text)
        ft = parse_text(text)
        stated += sum(run.compare == "==" for run in ft.runs)
        assert divergences(text) == [], text
    assert stated >= 12


def test_the_known_finding_shows_up_in_generated_riscv64_cases() -> None:
    """The generator reaches the riscv64 preserve_all finding by itself."""
    seen = 0
    for seed in range(0, 200, 4):
        case = generate(RandomSource(seed), TARGETS["riscv64"])
        if "preserve_all" not in case.text:
            continue
        ft = parse_text(case.text)
        seen += sum(
            known_finding(case.text, r) and r.judgement.divergent
            for r in RUNNER.run_file(ft, default_lines(ft, None))
        )
    assert seen > 0
