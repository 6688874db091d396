"""Struct arguments (issue 24): generated `sarg(N)` parameters on x86_64, the
only backend that has them, copied by the Memcpy libcall the harness
emulates, agree with the interpreter; conventions whose memcpy is miscompiled
(corpus/x86_64-sarg-memcpy-*.clif) are left out."""

from __future__ import annotations

import re

from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Kind, Verdict
from fuzz.pipeline.runner import Runner
from fuzz.targets import TARGETS

_SARG_SIG = re.compile(r"^ +sig\d+ = (\(.*\bsarg\(\d+\).*\)).* (\w+)$", re.M)


def _sarg_cases(count: int, large: bool = False) -> list[str]:
    texts = []
    for seed in range(600):
        text = generate(RandomSource(seed), TARGETS["x86_64"]).text
        tls = "tls_value" in text  # compile-only: the case is not executable here
        if "sarg(" in text and not tls and (not large or re.search(r"sarg\((520|4096)\)", text)):
            texts.append(text)
        if len(texts) == count:
            break
    return texts


def test_struct_arguments_are_copied_by_memcpy_and_agree() -> None:
    runner = Runner()
    texts = _sarg_cases(3, large=True)
    assert len(texts) == 3
    returned = 0
    for text in texts:
        ft = parse_text(text)
        [config] = runner.prepare_file(ft, [TargetLine(TARGETS["x86_64"])])
        assert config.image is not None
        assert "Memcpy" in config.image.libcalls.values(), "no Memcpy libcall linked"
        for result in runner.run_configs(ft, [config]):
            # (a tripped stack limit traps alike: it agrees too)
            returned += result.outcomes["interpreter"].kind is Kind.RETURN
            assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}, result.outcomes
    assert returned


def test_struct_arguments_only_where_the_backend_copies_them_right() -> None:
    convs: dict[str, set[str]] = {name: set() for name in TARGETS}
    for seed in range(1200):
        target = list(TARGETS.values())[seed % len(TARGETS)]
        text = generate(RandomSource(seed), target).text
        convs[target.name] |= {cc for _params, cc in _SARG_SIG.findall(text)}
    assert convs == {
        "x86_64": {"system_v", "fast", "tail", "winch"},
        "aarch64": set(),
        "riscv64": set(),
        "s390x": set(),
    }


def test_large_sret_structs_are_written_and_read_back() -> None:
    """An `sret` struct of up to 1 KiB: the callee writes its first, middle
    and last words, the caller reads them back (a wrong pointer shows)."""
    large = re.compile(r"explicit_slot (264|1032), align = 16")
    runner = Runner()
    seen = 0
    for seed in range(600):
        text = generate(RandomSource(seed), TARGETS["aarch64"]).text
        if not large.search(text) or ") preserve_all {" in text or "tls_value" in text:
            continue
        assert re.search(r"load.i64 v\d+\+(256|1024)\n", text), text
        for result in runner.run_file(parse_text(text), [TargetLine(TARGETS["aarch64"])]):
            assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}, result.outcomes
        seen += 1
        if seen == 2:
            break
    assert seen == 2
