"""Findings on the pinned Cranelift: each reduced reproducer in corpus/ must
keep showing its divergence until Cranelift fixes it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from fuzz.pipeline.filetest import parse_file
from fuzz.pipeline.oracle import BENIGN, INTERPRETER, Kind, Verdict
from fuzz.pipeline.runner import Runner, default_lines

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def test_riscv64_preserve_all_saves_vector_registers_without_has_v() -> None:
    ft = parse_file(str(CORPUS / "riscv64-preserve-all-vector-saves.clif"))
    (result,) = Runner().run_file(ft, default_lines(ft, None))
    riscv = result.outcomes["riscv64"]
    assert riscv.kind is Kind.CRASH
    assert "RVV instruction although has_v is off" in riscv.detail
    assert result.judgement.verdicts["riscv64"] is Verdict.CRASH
    assert result.judgement.blame == ["riscv64"]
    for label in (INTERPRETER, "x86_64", "aarch64", "s390x"):
        assert result.judgement.verdicts[label] is Verdict.AGREE, label


@dataclass(frozen=True)
class CompilePanic:
    """A finding where Cranelift 0.135.8 panics while compiling verifier-accepted
    IR: which target lines panic, a piece of the panic message, and where the
    panic is raised (source file and line; the column is not checked)."""

    file: str
    targets: tuple[str, ...]
    message: str
    location: str  # regular expression matched against the end of the location
    issue: str | None = None  # upstream issue, when one exists

    def __str__(self) -> str:
        return self.file


COMPILE_PANICS = [
    # every backend; a deliberate check the verifier does not make
    CompilePanic(
        "sret-with-normal-returns.clif",
        ("x86_64", "aarch64", "riscv64", "s390x"),
        "No return values are allowed when using StructReturn",
        r"src/machinst/abi\.rs:900",
    ),
    # assert: "not implemented ... yet"
    CompilePanic(
        "aarch64-tail-sret-panic.clif",
        ("aarch64",),
        "support for StructReturn parameters is not implemented for the `tail`",
        r"src/isa/aarch64/abi\.rs:241",
    ),
    # another architecture's convention
    CompilePanic(
        "x86_64-apple-aarch64-callconv.clif",
        ("x86_64",),
        "entered unreachable code",
        r"src/isa/x64/abi\.rs:1100",
    ),
    # todo!()
    CompilePanic(
        "x86_64-probestack-callconv.clif",
        ("x86_64",),
        "not yet implemented",
        r"src/isa/x64/abi\.rs:1099",
    ),
    # deliberately disabled (wasmtime#8056)
    CompilePanic(
        "riscv64-winch-callconv.clif",
        ("riscv64",),
        "riscv64 does not support the 'winch' calling convention yet",
        r"src/isa/riscv64/abi\.rs:96",
    ),
    CompilePanic(
        "s390x-winch-callconv.clif",
        ("s390x",),
        "s390x does not support the 'winch' calling convention yet",
        r"src/isa/s390x/abi\.rs:310",
    ),
    # unimplemented!() for probestack_strategy=outline
    CompilePanic(
        "aarch64-outline-probestack.clif",
        ("aarch64",),
        "Stack probing is unimplemented on AArch64",
        r"src/isa/aarch64/abi\.rs:748",
    ),
    CompilePanic(
        "s390x-outline-probestack.clif",
        ("s390x",),
        "Stack probing is unimplemented on S390x",
        r"src/isa/s390x/abi\.rs:640",
    ),
    # 128-bit vectors without the V extension
    CompilePanic(
        "riscv64-vector-load-without-has-v.clif",
        ("riscv64",),
        "entered unreachable code",
        r"src/isa/riscv64/inst/args\.rs:1225",
        issue="wasmtime#13959",
    ),
    CompilePanic(
        "riscv64-vector-store-without-has-v.clif",
        ("riscv64",),
        "entered unreachable code",
        r"src/isa/riscv64/inst/args\.rs:1283",
        issue="wasmtime#13959",
    ),
    # raised in the ISLE-generated code; the message names the ISLE source
    CompilePanic(
        "riscv64-vector-extractlane-without-has-v.clif",
        ("riscv64",),
        "no rule matched for term gen_extractlane at src/isa/riscv64/inst_vector.isle line 1581",
        r"/isle_riscv64\.rs:\d+",
        issue="wasmtime#13959",
    ),
]


@pytest.mark.parametrize("case", COMPILE_PANICS, ids=str)
def test_compile_panic_findings(case: CompilePanic) -> None:
    text = (CORPUS / case.file).read_text()
    assert "FINDING" in text
    if case.issue:
        assert case.issue in text
    ft = parse_file(str(CORPUS / case.file))
    results = Runner().run_file(ft, default_lines(ft, None))
    assert results
    for result in results:
        verdicts = result.judgement.verdicts
        assert verdicts[INTERPRETER] is Verdict.AGREE
        for label in case.targets:
            outcome = result.outcomes[label]
            assert outcome.kind is Kind.COMPILE_PANIC, (label, outcome)
            assert verdicts[label] is Verdict.COMPILE_PANIC
            message, _, location = outcome.detail.rpartition(" at ")
            assert case.message in message, (label, message)
            assert re.search(case.location + r":\d+$", location), (label, location)
        # Only the panicking targets are blamed; the others agree with the
        # interpreter or cannot run here (an unlinked libcall), never diverge.
        assert result.judgement.blame == list(case.targets)
        for label, verdict in verdicts.items():
            if label not in case.targets:
                assert verdict in BENIGN, (label, verdict, result.outcomes[label])


def test_corpus_seeds_other_than_findings_agree() -> None:
    runner = Runner()
    for path in sorted(CORPUS.glob("*.clif")):
        if "FINDING" in path.read_text():
            continue
        ft = parse_file(str(path))
        results = runner.run_file(ft, default_lines(ft, None))
        assert results, path
        for r in results:
            assert not r.judgement.divergent, (path, r.command.text, r.outcomes)


def test_every_finding_in_the_corpus_is_expected_here() -> None:
    own = Path(__file__).read_text()
    for path in sorted(CORPUS.glob("*.clif")):
        if "FINDING" in path.read_text():
            assert f'"{path.name}"' in own, f"{path.name} has no test in {Path(__file__).name}"
