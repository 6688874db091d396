"""Machine values (issue 24): get_frame_pointer, get_stack_pointer,
get_return_address and symbol_value, which the interpreter lacks, compared
through relations every machine guarantees (fuzz.pipeline.twin)."""

from __future__ import annotations

import re

import pytest

from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Kind, Verdict
from fuzz.pipeline.runner import Runner
from fuzz.pipeline.twin import interpretable
from fuzz.targets import TARGETS

RELATIONS = """test interpret
test run
set preserve_frame_pointers=true
set enable_multi_ret_implicit_sret=true
target x86_64
target aarch64
target riscv64
target s390x

function %g() -> i64 {
block0:
    v0 = iconst.i64 1
    return v0
}

function %f(i64) -> i64, i8, i8, i8, i8 {
    gv0 = symbol colocated %g
    gv1 = symbol %g
    fn0 = %g() -> i64
block0(v0: i64):
    v1 = get_frame_pointer.i64
    v2 = get_stack_pointer.i64
    v3 = get_return_address.i64
    v4 = iconst.i64 0
    v5 = icmp ule v2, v1
    v6 = icmp ne v3, v4
    v7 = symbol_value.i64 gv0
    v8 = func_addr.i64 fn0
    v9 = icmp eq v7, v8
    v10 = symbol_value.i64 gv1
    v11 = icmp eq v10, v8
    return v0, v5, v6, v9, v11
}
; run: %f(7) == [7, 1, 1, 1, 1]
"""


def test_guaranteed_relations_run_everywhere_and_agree() -> None:
    ft = parse_text(RELATIONS)
    [result] = Runner().run_file(ft, [TargetLine(t) for t in TARGETS.values()])
    assert result.outcomes["interpreter"].kind is Kind.RETURN
    assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}
    assert len(result.judgement.verdicts) == 5


def test_a_machine_value_used_otherwise_is_left_to_the_executors() -> None:
    # the stack pointer itself returned: no relation, no twin
    used = RELATIONS.replace("return v0, v5, v6, v9, v11", "return v2, v5, v6, v9, v11")
    assert "get_stack_pointer" in interpretable(used)
    assert "get_stack_pointer" not in interpretable(RELATIONS)


@pytest.mark.parametrize("name", list(TARGETS))
def test_generated_machine_values_agree(name: str) -> None:
    wanted = re.compile(r"get_frame_pointer(.|\n)*symbol_value|symbol_value(.|\n)*get_frame_p")
    texts = []
    for seed in range(3000):
        text = generate(RandomSource(seed), TARGETS[name]).text
        # known findings elsewhere: preserve_all (riscv64, aarch64, x86_64),
        # riscv64 vectors without has_v
        vector = name == "riscv64" and re.search(r"\b[if]\d+x\d+\b", text)
        tls = "tls_value" in text  # compile-only: not executable here
        if wanted.search(text) and ") preserve_all {" not in text and not vector and not tls:
            texts.append(text)
        if len(texts) == 2:
            break
    assert len(texts) == 2
    runner = Runner()
    for text in texts:
        ft = parse_text(text)
        assert ft.twin is not None
        for result in runner.run_file(ft, [TargetLine(TARGETS[name])]):
            assert result.outcomes["interpreter"].kind in (Kind.RETURN, Kind.TRAP)
            verdicts = set(result.judgement.verdicts.values())
            assert verdicts <= {Verdict.AGREE, Verdict.NOT_EXECUTABLE}, result.outcomes
