"""What a wrong result depends on (fuzz.triage.attribution): the single
edit that clears it names its bucket, so the apple_aarch64 bug from a
generated case is the registry's known bucket, not a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.campaign.worker import generated
from fuzz.pipeline.filetest import TargetLine, parse_file, parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import TARGETS
from fuzz.triage.attribution import attributed_bucket, edits
from fuzz.triage.known import load

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


@pytest.mark.parametrize(
    "name",
    ["aarch64-apple-narrow-stack-args.clif", "aarch64-apple-narrow-stack-args-generated.clif"],
)
def test_the_apple_bug_depends_on_its_convention(name: str) -> None:
    ft = parse_file(str(CORPUS / name))
    runner = Runner()
    lines = default_lines(ft, [TargetLine(TARGETS["aarch64"])])
    [line] = lines
    keys = [
        attributed_bucket(runner, ft, line, line.label, result).key
        for result in runner.run_file(ft, lines)
        if result.judgement.verdicts[line.label] is Verdict.WRONG_RESULT
    ]
    assert keys and set(keys) == {"aarch64|wrong result|convention apple_aarch64"}
    entry = load(CORPUS / "known.toml").get("aarch64-apple-narrow-stack-args")
    assert entry is not None and entry.key is not None and entry.key.fullmatch(keys[0])


def test_the_tail_call_edit_gives_a_valid_case() -> None:
    """Every generated case with tail calls, made plain, still parses and
    verifies (an edit that breaks the case would attribute nothing)."""
    target = TARGETS["aarch64"]
    edited = 0
    for seed in range(120):
        ft = parse_text(generated(seed, [target]))
        for edit in edits(ft):
            if edit.name != "tail calls":
                continue
            assert "return_call" not in edit.text
            Runner().prepare_file(parse_text(edit.text), [TargetLine(target)])
            edited += 1
    assert edited >= 5


def test_a_convention_edit_swaps_every_use_and_nothing_else() -> None:
    text = (
        "function %g(i64) -> i64 apple_aarch64 {\nblock0(v0: i64):\n    return v0\n}\n\n"
        "function %apple_aarch64_user(i64) -> i64 {\n"
        "    sig0 = (i64) -> i64 apple_aarch64\n    fn0 = %g sig0\n"
        "block0(v0: i64):\n    v1 = call fn0(v0)\n    return v1\n}\n"
    )
    [edit] = [e for e in edits(parse_text(text)) if e.name.startswith("convention")]
    assert edit.name == "convention apple_aarch64"
    assert "apple_aarch64 {" not in edit.text and "-> i64 apple_aarch64\n" not in edit.text
    assert "%apple_aarch64_user" in edit.text  # a name is not a convention


@pytest.mark.parametrize(
    "name",
    ["riscv64-f16-store-large-offset.clif", "riscv64-f16-store-large-offset-generated.clif"],
)
def test_the_f16_store_bug_depends_on_the_lowering_without_zfhmin(name: str) -> None:
    """Making the tail calls plain clears it too, but the ISA flag that
    changes the f16 lowering is tried first and names the bucket."""
    ft = parse_file(str(CORPUS / name))
    runner = Runner()
    [line] = default_lines(ft, [TargetLine(TARGETS["riscv64"])])
    keys = [
        attributed_bucket(runner, ft, line, line.label, result).key
        for result in runner.run_file(ft, [line])
        if result.judgement.verdicts[line.label] is Verdict.WRONG_RESULT
    ]
    assert keys and set(keys) == {"riscv64|wrong result|without has_zfhmin"}
    entry = load(CORPUS / "known.toml").get("riscv64-f16-store-large-offset")
    assert entry is not None and entry.key is not None and entry.key.fullmatch(keys[0])


def test_the_struct_argument_edit_passes_each_sarg_as_a_pointer() -> None:
    """Every generated x86_64 case with struct arguments, each `sarg(N)`
    parameter made a plain pointer, still parses, verifies and compiles (the
    edit that names x86_64-sarg-memcpy-tail-registers-wrong-result on
    0.105-0.106), and the edit is tried after the others."""
    target = TARGETS["x86_64"]
    edited = 0
    for seed in range(120):
        ft = parse_text(generated(seed, [target]))
        names = [edit.name for edit in edits(ft)]
        for edit in edits(ft):
            if edit.name != "struct arguments":
                continue
            assert "sarg(" not in edit.text and "sarg(" in ft.text
            assert names[-1] == "struct arguments"
            Runner().prepare_file(parse_text(edit.text), [TargetLine(target)])
            edited += 1
    assert edited >= 5
