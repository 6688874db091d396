"""Patchable calls and stack switching (issue 24): patchable calls run like
calls and agree; `stack_switch` (x86_64 only) is compiled, never called."""

from __future__ import annotations

import re

import pytest

from fuzz.commands.gen import check_case
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.routing import for_installed_qemu
from fuzz.pipeline.runner import Runner
from fuzz.targets import TARGETS

_VECTOR = re.compile(r"\b[if]\d+x\d+\b")


def _cases(name: str, wanted: str, count: int) -> list[str]:
    texts = []
    for seed in range(3000):
        text = generate(RandomSource(seed), TARGETS[name]).text
        # known findings elsewhere: preserve_all (riscv64, aarch64),
        # riscv64 vectors without has_v
        known = ") preserve_all {" in text or (name == "riscv64" and _VECTOR.search(text))
        known = known or "tls_value" in text  # compile-only: not executable here
        if wanted in text and not known:
            texts.append(text)
        if len(texts) == count:
            break
    return texts


@pytest.mark.parametrize("name", list(TARGETS))
def test_patchable_calls_run_and_agree(name: str) -> None:
    texts = _cases(name, "= colocated patchable ", 2)
    assert len(texts) == 2
    runner = Runner()
    for text in texts:
        for result in runner.run_file(parse_text(text), [TargetLine(TARGETS[name])]):
            verdicts = set(result.judgement.verdicts.values())
            assert verdicts <= {Verdict.AGREE, Verdict.NOT_EXECUTABLE}, result.outcomes
            assert Verdict.AGREE in verdicts


def test_stack_switch_is_compiled_on_x86_64_only() -> None:
    [text] = _cases("x86_64", "stack_switch ", 1)
    assert "set stack_switch_model=basic" in text
    case = generate(RandomSource(0), TARGETS["x86_64"])
    assert check_case(case, {}) is None
    ft = parse_text(text)
    runner = Runner()
    [config] = runner.prepare_file(ft, [TargetLine(TARGETS["x86_64"])])
    assert config.failure is None and "%switch" in {f.name for f in config.functions}
    for result in runner.run_configs(ft, [config]):
        assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}, result.outcomes
    for name in ("aarch64", "riscv64", "s390x"):
        assert not _cases(name, "stack_switch ", 1)


@pytest.mark.parametrize("name", list(TARGETS))
def test_thread_locals_are_compiled_and_not_run(name: str) -> None:
    """An uncalled `tls_value` function, with each TLS model the backend
    lowers: compiled; the case's target line is not executable (the linker
    has no TLS), which is no finding."""
    models = set()
    runner = Runner()
    for seed in range(4000):
        # as campaigns generate: what the installed qemu-user runs
        case = generate(RandomSource(seed), for_installed_qemu(TARGETS[name]))
        if "tls_value" not in case.text:
            continue
        assert check_case(case, {}) is None
        models |= set(re.findall(r"set tls_model=(\w+)", case.text))
        if len(models) == 1:
            ft = parse_text(case.text)
            [config] = runner.prepare_file(ft, ft.targets)
            assert config.failure is not None and "link: relocation kind" in config.failure.detail
    assert models == set(TARGETS[name].tls_models)


def test_dynamic_stack_slots_are_compiled_on_aarch64_only() -> None:
    [text] = _cases("aarch64", "explicit_dynamic_slot", 1)
    ft = parse_text(text)
    [config] = Runner().prepare_file(ft, ft.targets)
    assert config.failure is None and "%dyn" in {f.name for f in config.functions}
    for name in ("x86_64", "riscv64", "s390x"):
        assert not _cases(name, "explicit_dynamic_slot", 1)
