"""Findings on the pinned Cranelift: each reduced reproducer in corpus/ must
keep showing its divergence until Cranelift fixes it."""

from __future__ import annotations

from pathlib import Path

from fuzz.filetest import parse_file
from fuzz.oracle import INTERPRETER, Kind, Verdict
from fuzz.runner import Runner, default_lines

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
