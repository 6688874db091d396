"""Upstream's filetest dialect (issue 12): `set` lines per target line, files
that run nowhere, `test interpret`-only and `test run`-only files, the stated
expectation as the reference and tie-breaker, unexpected interpreter results,
verification with the target ISA, and `callfuzz run DIR` going on past a bad
file with a summary. Each test is built from a small CLIF file of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.pipeline.filetest import BadInput, SkippedFile, TargetLine, parse_text
from fuzz.pipeline.oracle import INTERPRETER, Kind, Outcome, Verdict, judge
from fuzz.pipeline.runner import Runner, default_lines, unselected
from fuzz.targets import TARGETS
from fuzz.values import Value

DATA = Path(__file__).parent / "data" / "dialect"
CORPUS = Path(__file__).resolve().parents[1] / "corpus"

# a function whose code differs between opt_level=none and opt_level=speed
ADD = """
function %f(i64) -> i64 {
block0(v0: i64):
    v1 = iconst.i64 3
    v2 = iconst.i64 4
    v3 = iadd v1, v2
    v4 = iadd v0, v3
    return v4
}
; run: %f(1) == 8
"""


def labels(text: str) -> list[str]:
    return [line.label for line in parse_text(text).targets]


# --- point 1: `set` lines apply to the target lines after them ------------------------


def test_set_lines_apply_to_the_target_lines_after_them() -> None:
    text = (
        "test run\nset opt_level=none\ntarget x86_64\ntarget aarch64\n"
        "set opt_level=speed\ntarget x86_64\n" + ADD
    )
    ft = parse_text(text)
    # the same target twice with different `set` flags: two configurations, told apart
    assert [line.label for line in ft.targets] == [
        "x86_64 [opt_level=none]",
        "aarch64",
        "x86_64 [opt_level=speed]",
    ]
    assert [line.flags for line in ft.targets] == [
        ("opt_level=none",),
        ("opt_level=none",),
        ("opt_level=none", "opt_level=speed"),
    ]
    assert ft.skipped == []
    runner = Runner()
    configs = runner.prepare_file(ft, default_lines(ft, None))
    none, _aarch64, speed = (c.functions[0].code for c in configs)
    assert none != speed  # each line really compiled with its own flags
    [result] = runner.run_configs(ft, configs)
    assert list(result.outcomes) == [line.label for line in ft.targets]
    assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}


def test_a_repeated_configuration_runs_once_and_says_so() -> None:
    ft = parse_text("test run\ntarget x86_64\nset opt_level=none\ntarget x86_64\n" + ADD)
    assert [line.label for line in ft.targets] == [
        "x86_64 [opt_level=default]",
        "x86_64 [opt_level=none]",
    ]
    ft = parse_text("test run\ntarget x86_64 has_bmi2\ntarget x86_64 has_bmi2\n" + ADD)
    assert labels(ft.text) == ["x86_64 has_bmi2"]
    [skipped] = ft.skipped
    assert "same configuration as line 2" in skipped.reason


def test_a_set_line_after_the_last_target_is_bad_input() -> None:
    with pytest.raises(BadInput, match="dangling 'set'"):
        parse_text("test run\ntarget x86_64\nset opt_level=none\n" + ADD)


def test_lines_left_out_by_t_are_listed() -> None:
    ft = parse_text("test run\ntarget x86_64\ntarget aarch64\n" + ADD)
    lines = default_lines(ft, [TargetLine(TARGETS["aarch64"])])
    assert [line.label for line in lines] == ["aarch64"]
    assert [(s.line, s.reason) for s in unselected(ft, lines)] == [("x86_64", "not selected by -t")]


# --- point 2: files whose targets all run nowhere -----------------------------------


def test_a_pulley_only_file_runs_nowhere_and_lists_why() -> None:
    ft = parse_text("test interpret\ntest run\ntarget pulley32\ntarget pulley64be\n" + ADD)
    assert default_lines(ft, None) == []  # not the four 64-bit targets
    assert [s.line for s in ft.skipped] == ["pulley32", "pulley64be"]
    assert all("pulley" in s.reason for s in ft.skipped)
    [result] = Runner().run_file(ft, [])
    assert list(result.outcomes) == [INTERPRETER]
    assert not result.judgement.divergent


def test_a_target_cranelift_lacks_skips_the_file_as_upstream_does() -> None:
    with pytest.raises(SkippedFile, match="unsupported target"):
        parse_text("test run\ntarget i686\n" + ADD)


# --- point 3: `test interpret`-only files are only interpreted --------------------------

# i128 arguments without `enable_llvm_abi_extensions`: a deliberate panic on x86_64
I128 = """test interpret

function %f(i128) -> i128 {
block0(v0: i128):
    v1 = iadd v0, v0
    return v1
}
; run: %f(3) == 6
"""


def test_an_interpret_only_file_without_targets_is_not_compiled() -> None:
    ft = parse_text(I128)
    assert default_lines(ft, None) == []
    [result] = Runner().run_file(ft, default_lines(ft, None))
    assert list(result.outcomes) == [INTERPRETER]
    assert result.judgement.verdicts == {INTERPRETER: Verdict.AGREE}
    # asked for by name, a target still runs
    assert [line.label for line in default_lines(ft, [TargetLine(TARGETS["aarch64"])])] == [
        "aarch64"
    ]


# --- point 4: in a `test run`-only file the reference is the expectation -------------

# the interpreter traps on the load that reaches past the slot, which the file
# makes on purpose; the machines read the slot's last stored bytes and beyond
OUT_OF_BOUNDS = """test run
target x86_64
target aarch64

function %f() -> i8 {
    ss0 = explicit_slot 16
block0:
    v0 = iconst.i64 0x05050505_05050505
    v1 = stack_addr.i64 ss0
    store v0, v1
    store v0, v1+8
    v2 = load.i64 v1+12
    v3 = iconst.i64 0
    v4 = icmp ne v2, v3
    return v4
}
; run: %f() == 1
"""


def test_a_run_only_file_does_not_ask_the_interpreter() -> None:
    ft = parse_text(OUT_OF_BOUNDS)
    assert not ft.interpreted
    [result] = Runner().run_file(ft, default_lines(ft, None))
    assert INTERPRETER not in result.outcomes
    assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}
    # with `test interpret` too, the interpreter's trap is its own opinion
    both = parse_text("test interpret\n" + OUT_OF_BOUNDS)
    [result] = Runner().run_file(both, default_lines(both, None))
    assert result.outcomes[INTERPRETER].kind is Kind.TRAP
    assert result.judgement.blame == [INTERPRETER]


def test_a_run_only_file_checks_targets_against_the_expectation() -> None:
    ft = parse_text("test run\ntarget x86_64\ntarget aarch64\n" + ADD.replace("== 8", "== 9"))
    [result] = Runner().run_file(ft, default_lines(ft, None))
    assert result.judgement.verdicts == {
        "x86_64": Verdict.WRONG_RESULT,
        "aarch64": Verdict.WRONG_RESULT,
    }
    assert result.judgement.blame == ["x86_64", "aarch64"]


# --- point 5: ties are broken by the stated expectation ---------------------------------


def i64(n: int) -> Outcome:
    return Outcome(Kind.RETURN, (Value.from_bridge(("i64", n)),))


EIGHT = (Value.from_bridge(("i64", 8)),)


def test_a_tie_is_broken_by_the_expectation_not_the_interpreter() -> None:
    j = judge({INTERPRETER: i64(9), "x86_64": i64(8)}, "==", EIGHT)
    assert j.verdicts == {INTERPRETER: Verdict.WRONG_RESULT, "x86_64": Verdict.AGREE}
    assert j.blame == [INTERPRETER]


def test_without_the_interpreter_the_expectation_is_an_opinion() -> None:
    # two targets agree with each other against the file and a third target
    j = judge({"x86_64": i64(9), "aarch64": i64(9), "s390x": i64(8)}, "==", EIGHT)
    assert j.blame == ["x86_64", "aarch64"]
    assert j.verdicts["s390x"] is Verdict.AGREE


def test_without_an_expectation_the_interpreter_still_decides() -> None:
    j = judge({INTERPRETER: i64(9), "x86_64": i64(8)})
    assert j.blame == ["x86_64"]


# --- points 6 and 10: an interpreter result of another shape --------------------------

BITCAST = (CORPUS / "interpreter-bitcast-to-vector.clif").read_text()


def test_a_result_of_another_shape_is_a_wrong_result_not_an_exception() -> None:
    ft = parse_text(BITCAST)
    results = Runner().run_file(ft, default_lines(ft, None))
    assert len(results) == len(ft.runs)
    for result in results:
        interp = result.outcomes[INTERPRETER]
        assert interp.kind is Kind.RETURN
        assert interp.values[0].ty != "i32x2"  # one lane, as the interpreter gives it
        assert result.judgement.verdicts[INTERPRETER] is Verdict.WRONG_RESULT
        assert result.judgement.blame == [INTERPRETER]
        others = {v for label, v in result.judgement.verdicts.items() if label != INTERPRETER}
        assert others == {Verdict.AGREE}


# --- point 7: verification with the target ISA ---------------------------------------

PINNED = """test interpret
test run
set enable_pinned_reg
target x86_64
target aarch64

function %f(i64) -> i64 {
block0(v0: i64):
    set_pinned_reg v0
    v1 = get_pinned_reg.i64
    return v1
}
; run: %f(0xDEADBEEF) == 0xDEADBEEF
"""

FRAME_POINTER = """test run
set preserve_frame_pointers
target x86_64
target aarch64

function %f() -> i8 {
block0:
    v0 = get_frame_pointer.i64
    v1 = iconst.i64 0
    v2 = icmp ne v0, v1
    return v2
}
; run: %f() == 1
"""


@pytest.mark.parametrize("text", [PINNED, FRAME_POINTER], ids=["pinned-reg", "frame-pointer"])
def test_isa_dependent_instructions_verify_with_the_target(text: str) -> None:
    ft = parse_text(text)
    [result] = Runner().run_file(ft, default_lines(ft, None))
    assert not result.judgement.divergent, result.outcomes
    assert result.judgement.verdicts["x86_64"] is Verdict.AGREE


def test_isa_dependent_instructions_still_need_their_flag() -> None:
    ft = parse_text(FRAME_POINTER.replace("set preserve_frame_pointers\n", ""))
    with pytest.raises(BadInput, match="preserve_frame_pointers"):
        Runner().run_file(ft, default_lines(ft, None))


# --- point 11: `callfuzz run DIR` goes on past a bad file, with a summary ---------------


def callfuzz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fuzz.commands.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_directory_run_reports_a_bad_file_and_goes_on() -> None:
    proc = callfuzz(str(DATA))
    assert "Traceback" not in proc.stderr + proc.stdout
    [error] = proc.stderr.strip().splitlines()
    assert error.startswith("callfuzz: error: ") and "bad-syntax.clif" in error
    # every other file ran, and the summary counts them all
    for name in ("agree.clif", "pulley-only.clif", "interpret-only.clif"):
        assert name in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("4 files (1 bad input), 3 run commands")
    assert "x86_64 1/0/0" in last and "8 configurations skipped" in last
    assert proc.returncode == 2  # bad input, nothing diverged


def test_a_directory_run_in_json_has_the_summary() -> None:
    proc = callfuzz(str(DATA), "--json")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    summary = report["summary"]
    assert (summary["files"], summary["bad_input"], summary["run_commands"]) == (4, 1, 3)
    assert summary["executors"]["interpreter"]["executed"] == 3
    assert summary["executors"]["aarch64"] == {
        "runs_by_executor": {"unicorn": 1},
        "configurations": 1,
        "executed": 1,
        "divergent": 0,
        "abstained": 0,
        "abstained_by_reason": {},
        "harness_errors": 0,
        "harness_errors_by_reason": {},
    }
    skipped = summary["skipped_configurations"]
    assert sum(skipped.values()) == 8 and all("pulley" in reason for reason in skipped)
    [bad] = [f for f in report["files"] if "error" in f]
    assert bad["file"].endswith("bad-syntax.clif")


def test_a_divergence_outranks_bad_input(tmp_path: Path) -> None:
    (tmp_path / "bad.clif").write_text((DATA / "bad-syntax.clif").read_text())
    (tmp_path / "wrong.clif").write_text("test run\ntarget x86_64\n" + ADD.replace("== 8", "== 9"))
    proc = callfuzz(str(tmp_path))
    assert proc.returncode == 1
    assert "x86_64 0/1/0" in proc.stdout.strip().splitlines()[-1]


# --- point 8: a stack as large as upstream's tests assume ------------------------------

# a 2 MiB frame with inline stack probes touching every page on the way down
BIG_FRAME = """test interpret
test run
set enable_probestack=true
set probestack_strategy=inline
target x86_64
target aarch64
target riscv64
target s390x

function %f(i64) -> i64 {
    ss0 = explicit_slot 2097152
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store v0, v1
    store v0, v1+2097144
    v2 = load.i64 v1
    v3 = load.i64 v1+2097144
    v4 = iadd v2, v3
    return v4
}
; run: %f(21) == 42
"""


def test_a_frame_past_one_mib_runs_on_every_target() -> None:
    ft = parse_text(BIG_FRAME)
    [result] = Runner().run_file(ft, default_lines(ft, None))
    assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}, result.outcomes


# --- point 9: the interpreter's libcalls ------------------------------------------------

LIBCALLS = """test interpret

function %f(f32, f64, f64, f64) -> f32, f64, f64 {
    fn0 = %CeilF32(f32) -> f32
    fn1 = %NearestF64(f64) -> f64
    fn2 = %FmaF64(f64, f64, f64) -> f64
block0(v0: f32, v1: f64, v2: f64, v3: f64):
    v4 = call fn0(v0)
    v5 = call fn1(v1)
    v6 = call fn2(v1, v2, v3)
    return v4, v5, v6
}
; run: %f(0x1.8p0, 0x1.4p1, 0x1.0p1, 0x1.0p0) == [0x1.0p1, 0x1.0p1, 0x1.8p2]
"""


def test_the_interpreter_computes_libcalls() -> None:
    ft = parse_text(LIBCALLS)
    [result] = Runner().run_file(ft, [])
    assert result.judgement.verdicts == {INTERPRETER: Verdict.AGREE}, result.outcomes


def test_a_file_upstream_skips_is_skipped_not_bad(tmp_path: Path) -> None:
    (tmp_path / "i686.clif").write_text("test run\ntarget i686\n" + ADD)
    proc = callfuzz(str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "skipped as upstream does" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "1 files (1 skipped), 0 run commands"
