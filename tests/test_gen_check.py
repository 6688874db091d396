"""`callfuzz gen --check` tells Cranelift's rejections of generated cases
(the generator's defects: they count against validity and fail the command)
from Cranelift's panics on accepted cases (findings, as campaigns record
them: listed apart)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fuzz.commands import gen
from fuzz.gen.generate import Case
from fuzz.targets import TARGETS


def _checked(monkeypatch: pytest.MonkeyPatch, causes: list[str | None]) -> tuple[int, str]:
    found = iter(causes)

    def fake_check(case: Case, isas: object) -> str | None:
        return next(found)

    monkeypatch.setattr(gen, "check_case", fake_check)
    out = io.StringIO()
    console = Console(file=out, width=200)
    code = gen.run_gen(console, [TARGETS["x86_64"]], len(causes), 1, None, False, True)
    return code, out.getvalue()


def test_a_panic_is_a_finding_and_a_rejection_a_defect(monkeypatch: pytest.MonkeyPatch) -> None:
    panic = "riscv64: panic: assertion `left != right` failed"
    rejected = "x86_64: VerifierError: bad"
    code, text = _checked(monkeypatch, [None, panic, panic, None])
    assert code == 0 and "validity: 4/4" in text
    assert "Cranelift panicked on 2 of the valid cases" in text and f"2 x {panic}" in text
    code, text = _checked(monkeypatch, [rejected, panic, None, None])
    assert code == 1 and "validity: 3/4" in text and f"1 x {rejected}" in text
