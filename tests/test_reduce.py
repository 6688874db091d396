"""The reducer: valid CLIF at every step, the same bucket at the end, and the
known minimal form of a planted bug; exports that cranelift-reader accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import _cranelift
from fuzz.faults import FAULTS
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import parse_text
from fuzz.targets import TARGETS
from fuzz.triage.export import filetest, run_lines_parsed
from reducers.clif import parse_module, unwritten_slot_reads
from reducers.edits import forward_operand, forwardable
from reducers.passes import ddmin
from reducers.problem import Problem, clif_lines
from reducers.reduce import goal_for, reduce_problem, reduce_text
from reducers.same_bucket import SameBucket

CORPUS = Path(__file__).parents[1] / "corpus"
FINDING = CORPUS / "riscv64-preserve-all-vector-saves.clif"
FAULT = "aarch64-tail-i128"

# The planted bug's minimal form, as the reducer writes it: a 4-line callee
# taking eight i64 and an i128, a tail caller the run line calls directly.
# (Passing the zero in as a parameter instead of a constant gives a 14-line
# variant; the reducer does not add parameters.)
MINIMAL = """\
test interpret
test run
target aarch64

function %f0(i64, i64, i64, i64, i64, i64, i64, i64, i128) -> i64 tail {
block0(v0: i64, v1: i64, v2: i64, v3: i64, v4: i64, v5: i64, v6: i64, v7: i64, v8: i128):
    return v0
}

function %main() -> i64 tail {
    fn0 = %f0(i64, i64, i64, i64, i64, i64, i64, i64, i128) -> i64 tail
block0:
    v0 = iconst.i64 0
    v1 = uextend.i128 v0
    return_call fn0(v0, v0, v0, v0, v0, v0, v0, v0, v1)
}
; print: %main()
"""


def planted(count: int) -> list[str]:
    out: list[str] = []
    seed = 0
    while len(out) < count:
        text = generate(RandomSource(seed), TARGETS["aarch64"]).text
        if FAULTS[FAULT].trigger(parse_text(text), "%main"):
            out.append(text)
        seed += 1
    return out


def test_the_model_prints_back_what_it_read() -> None:
    texts = [p.read_text() for p in sorted(CORPUS.glob("*.clif"))]
    texts += [generate(RandomSource(s), TARGETS["s390x"]).text for s in range(10)]
    for text in texts:
        again = parse_module(text).text()
        a = [f["text"] for f in _cranelift.parse(text).functions()]
        b = [f["text"] for f in _cranelift.parse(again).functions()]
        assert a == b


def test_ddmin_finds_a_one_minimal_subset() -> None:
    tests = []

    def works(items: list[int]) -> bool:
        tests.append(items)
        return {3, 11} <= set(items)

    assert ddmin(list(range(20)), works) == [3, 11]
    assert len(tests) < 60


def test_the_minimal_form_is_the_planted_bug_and_cannot_shrink() -> None:
    goal = goal_for(MINIMAL, "aarch64", FAULT)
    # keyed as campaigns key it (fuzz.triage.attribution): plain calls clear it
    assert goal is not None and goal.key == "aarch64|wrong result|tail calls"
    assert clif_lines(MINIMAL) == 15
    assert goal_for(MINIMAL, "aarch64") is None  # without the fault: no bug
    result = reduce_text(MINIMAL, goal)
    assert result.lines_after == 15  # nothing to take away


@pytest.mark.parametrize("index", range(3))
def test_generated_planted_bugs_reduce_to_the_minimal_form(index: int) -> None:
    text = planted(3)[index]
    goal = goal_for(text, "aarch64", FAULT)
    assert goal is not None
    result = reduce_text(text, goal, time_limit=120)
    assert clif_lines(text) > 100
    assert result.lines_after <= 22  # 15 for most; see benchmarks/reduce.py
    assert SameBucket(goal)(result.text)
    module = parse_module(result.text)
    tail_sites = [
        i for f in module.funcs for _b, _x, i in f.all_insts() if i.opcode == "return_call"
    ]
    assert len(tail_sites) == 1


def test_a_real_finding_reduces_and_keeps_its_bucket() -> None:
    text = FINDING.read_text()
    goal = goal_for(text, "riscv64")
    assert goal is not None and "RVV instruction" in goal.key
    result = reduce_text(text, goal)
    assert result.lines_after <= 21 < result.lines_before
    assert goal.key in SameBucket(goal).keys(result.text)
    assert "preserve_all" in result.text and "target x86_64" not in result.text
    # the function the run line calls still returns a value, so the export
    # can state `; run: %main() == 0`
    written, parsed = run_lines_parsed(filetest(result.text, "t", goal.key, "v"))
    assert written == parsed == 1


def test_export_is_a_filetest_the_reader_accepts_with_every_run_line() -> None:
    goal = goal_for(MINIMAL, "aarch64", FAULT)
    assert goal is not None
    text = filetest(MINIMAL, "aarch64: wrong result", goal.key, _cranelift.version())
    written, parsed = run_lines_parsed(text)
    assert written == parsed == 1
    assert "; run: %main() == 0" in text
    header = [line for line in text.splitlines() if not line.startswith(";")][:3]
    assert header == ["test interpret", "test run", "target aarch64"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fuzz.commands.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_reduce_a_file_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "small.clif"
    proc = cli("reduce", str(FINDING), "--target", "riscv64", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert clif_lines(out.read_text()) <= 21
    run = cli("run", str(out))
    assert run.returncode == 1 and "RVV instruction" in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reduce", str(FINDING)], "needs --target"),
        (["reduce", str(FINDING), "-t", "mips"], "mips"),
        (["reduce", str(CORPUS / "i128-split-stack.clif"), "-t", "x86_64"], "no divergence"),
        (["reduce", "7", "--db", "sqlite:///nowhere/x.sqlite"], "nowhere"),
    ],
)
def test_reduce_bad_input_is_one_line(args: list[str], message: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_a_result_gives_way_to_an_operand_but_never_to_a_loads_address() -> None:
    text = """\
function %main(i64) -> i64 {
    ss0 = explicit_slot 8
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store v0, v1
    v2 = load.i64 v1
    v3 = iadd v2, v0
    return v3
}
; print: %main(1)
"""
    parsed = _cranelift.parse(text)
    module = parse_module(text, {n: parsed.value_types(n) for n in parsed.names()})
    # `return v1` would return an address: the interpreter's and a target's differ
    assert forwardable(module) == [("%main", "v3")]
    forwarded = forward_operand(module, "%main", "v3", 0)
    assert forwarded is not None and "return v2" in forwarded.text()
    assert "iadd" not in forwarded.text()


SLOT_CASE = """\
function %f(i64) -> i64 {
    ss0 = explicit_slot 8
    ss1 = explicit_slot 8
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store v0, v1
    v2 = load.i64 v1
    v3 = stack_addr.i64 ss1
    v4 = iadd v3, v0
    v5 = load.i64 v3
    v6 = iadd v2, v5
    return v6
}
; print: %f(1)
"""


def test_a_stack_slot_read_before_any_write_is_seen() -> None:
    """ss0 is stored before it is loaded; ss1's address escapes (an iadd),
    so it may be written elsewhere: neither is an unwritten read. Without
    the store, or the escape, it is."""
    assert unwritten_slot_reads(parse_module(SLOT_CASE)) == set()
    no_store = SLOT_CASE.replace("    store v0, v1\n", "")
    assert unwritten_slot_reads(parse_module(no_store)) == {("%f", "ss0")}
    no_escape = SLOT_CASE.replace("    v4 = iadd v3, v0\n", "")
    assert unwritten_slot_reads(parse_module(no_escape)) == {("%f", "ss1")}


def test_the_reducer_never_deletes_the_store_a_load_reads() -> None:
    """A reduction of the 0.111 campaign's riscv64 wrong result deleted the
    store that initialised a slot and kept a divergence of its own: the
    interpreter reads zeros there, the code an earlier frame's leftovers
    (still a divergence on 0.122, which fixed the bug). With a test that
    only wants a load from the slot, the store it reads stays."""
    text = """\
function %f(i64) -> i64 {
    ss0 = explicit_slot 8
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store v0, v1
    v2 = load.i64 v1
    return v2
}
; print: %f(1)
"""
    problem = Problem(lambda candidate: "stack_addr" in candidate and "= load" in candidate)
    reduced = reduce_problem(problem, text).text
    assert "= load.i64" in reduced and not unwritten_slot_reads(parse_module(reduced)), reduced
    assert "store" in reduced
