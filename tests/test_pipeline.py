"""End-to-end: parse, check, compile, link, emulate and judge.

- the twelve upstream runtests agree everywhere they can run;
- a one-instruction miscompile planted after linking is caught and blamed on
  its target alone;
- call-site/callee signature mismatches are rejected as bad input;
- traps are traps, with the same code, everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import capstone as cs
import pytest
from conftest import NULL_LOAD

from fuzz import _cranelift
from fuzz.pipeline.emulate import Emulator
from fuzz.pipeline.filetest import BadInput, FileTest, TargetLine, parse_file, parse_text
from fuzz.pipeline.link import CompiledFunction, Image, link
from fuzz.pipeline.oracle import INTERPRETER, Kind, Outcome, Verdict
from fuzz.pipeline.routing import UNICORN, ExecutorChoice
from fuzz.pipeline.runner import Runner, RunResult, default_lines
from fuzz.pipeline.trampoline import TRAMPOLINE_NAME, trampoline_clif
from fuzz.targets import TARGETS, Target
from fuzz.values import NanPolicy

RUNTESTS = Path(__file__).resolve().parents[1].parent / "shared" / "runtests"
RUNTEST_FILES = sorted(RUNTESTS.glob("*.clif")) if RUNTESTS.is_dir() else []
needs_runtests = pytest.mark.skipif(not RUNTEST_FILES, reason=f"no runtests in {RUNTESTS}")

ABSTENTIONS = {Verdict.NOT_EXECUTABLE: Kind.NOT_EXECUTABLE, Verdict.UNSUPPORTED: Kind.UNSUPPORTED}


def run(ft: FileTest, plant: Callable[[TargetLine, Image], None] | None = None) -> list[RunResult]:
    """`plant` may patch each linked image before anything runs."""
    # A fresh Runner per file: nothing cached from another test.
    runner = Runner()
    configs = runner.prepare_file(ft, default_lines(ft, None))
    for config in configs:
        if plant is not None and config.image is not None:
            plant(config.line, config.image)
    return runner.run_configs(ft, configs)


# --- 1a: the upstream runtests -------------------------------------------------------


@pytest.fixture(scope="module")
def suite() -> dict[str, tuple[FileTest, list[RunResult]]]:
    out = {}
    for path in RUNTEST_FILES:
        ft = parse_file(str(path))
        out[path.name] = (ft, run(ft))
    return out


@needs_runtests
def test_there_are_twelve_runtests() -> None:
    assert len(RUNTEST_FILES) == 12


@needs_runtests
@pytest.mark.parametrize("name", [p.name for p in RUNTEST_FILES])
def test_runtest_agrees_or_abstains_with_a_reason(
    name: str, suite: dict[str, tuple[FileTest, list[RunResult]]]
) -> None:
    ft, results = suite[name]
    assert ft.runs, "every upstream runtest has run commands"
    assert len(results) == len(ft.runs)
    # a `test run`-only file does not ask the interpreter, as upstream
    asked = [INTERPRETER] if ft.interpreted else []
    labels = [*asked, *(line.label for line in default_lines(ft, None))]
    for r in results:
        assert list(r.outcomes) == labels
        assert not r.judgement.divergent, (r.command.text, r.outcomes, r.judgement)
        assert r.judgement.blame == []
        for label, outcome in r.outcomes.items():
            verdict = r.judgement.verdicts[label]
            where = f"{r.command.text} on {label}: {outcome}"
            if verdict in ABSTENTIONS:
                assert outcome.kind is ABSTENTIONS[verdict], where
                assert outcome.detail.strip(), f"abstention without a reason: {where}"
                continue
            assert verdict is Verdict.AGREE, where
            # Independently of the oracle: an agreeing result is the file's own.
            assert r.command.compare == "==" and r.command.expected is not None
            assert outcome.kind is Kind.RETURN, where
            assert len(outcome.values) == len(r.command.expected), where
            for got, want in zip(outcome.values, r.command.expected, strict=True):
                assert got.same_as(want, NanPolicy.ANY), where


@needs_runtests
def test_every_target_really_executes_somewhere(
    suite: dict[str, tuple[FileTest, list[RunResult]]],
) -> None:
    executed: dict[str, int] = {name: 0 for name in TARGETS}
    interpreted = 0
    for ft, results in suite.values():
        lines = {line.label: line for line in default_lines(ft, None)}
        for r in results:
            interpreted += r.judgement.verdicts.get(INTERPRETER) is Verdict.AGREE
            for label, verdict in r.judgement.verdicts.items():
                if label != INTERPRETER and verdict is Verdict.AGREE:
                    executed[lines[label].target.name] += 1
    assert interpreted > 0
    assert all(executed.values()), executed


# --- 1b: a planted miscompile is caught and blamed on its target --------------------

MISCOMPILE_RUN = 5  # %caller(5) == 5 + 10


def callee_clif(addend: int) -> str:
    return f"""
function %callee(i64) -> i64 {{
block0(v0: i64):
    v1 = iconst.i64 {addend}
    v2 = iadd v0, v1
    return v2
}}
"""


CALLER_CLIF = f"""
function %caller(i64) -> i64 {{
    fn0 = %callee(i64) -> i64
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}}
; run: %caller({MISCOMPILE_RUN}) == {MISCOMPILE_RUN + 10}
"""


def compile_callee(target: Target, addend: int) -> bytes:
    isa = _cranelift.Isa(target.triple, [], [])
    (compiled,) = _cranelift.parse(callee_clif(addend)).compile(isa)
    return bytes(compiled["code"])


def differing_instruction(target: Target) -> tuple[bytes, int, bytes]:
    """(the +10 callee, offset, the +11 instruction that replaces the one there)."""
    good, bad = compile_callee(target, 10), compile_callee(target, 11)
    md = cs.Cs(target.cs_arch, target.cs_mode)
    good_insns, bad_insns = list(md.disasm(good, 0)), list(md.disasm(bad, 0))
    assert sum(i.size for i in good_insns) == len(good), "capstone decodes the whole callee"
    assert [i.size for i in good_insns] == [i.size for i in bad_insns]
    differ = [
        (g, b)
        for g, b in zip(good_insns, bad_insns, strict=True)
        if bytes(g.bytes) != bytes(b.bytes)
    ]
    assert len(differ) == 1, [(g.mnemonic, g.op_str, b.op_str) for g, b in differ]
    g, b = differ[0]
    return good, g.address, bytes(b.bytes)


@pytest.mark.parametrize("name", list(TARGETS))
def test_unpatched_caller_agrees(name: str) -> None:
    ft = parse_text(callee_clif(10) + CALLER_CLIF)
    (result,) = run(ft)
    assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}
    assert result.outcomes[name].values[0].signed() == MISCOMPILE_RUN + 10


@pytest.mark.parametrize("name", list(TARGETS))
def test_planted_miscompile_is_caught_and_blamed_on_its_target(name: str) -> None:
    target = TARGETS[name]
    good, offset, replacement = differing_instruction(target)
    patched: list[str] = []

    def plant(line: TargetLine, image: Image) -> None:
        if line.target is not target:
            return
        start = image.symbols["%callee"] - image.base
        assert bytes(image.data[start : start + len(good)]) == good, "linked callee is the +10 one"
        at = start + offset
        image.data[at : at + len(replacement)] = replacement
        patched.append(line.label)

    ft = parse_text(callee_clif(10) + CALLER_CLIF)
    (result,) = run(ft, plant=plant)
    assert patched == [name]
    j = result.judgement
    assert j.verdicts[name] in (Verdict.WRONG_RESULT, Verdict.CRASH), result.outcomes[name]
    if j.verdicts[name] is Verdict.WRONG_RESULT:
        assert result.outcomes[name].values[0].signed() == MISCOMPILE_RUN + 11
    assert j.blame == [name]
    assert j.divergent
    for label, verdict in j.verdicts.items():
        if label != name:
            assert verdict is Verdict.AGREE, (label, result.outcomes[label])


# --- 1c: call-site / callee signature mismatches are user error --------------------

CALLEE_I64 = callee_clif(10)

MISMATCHES = {
    "param type": (
        """
function %caller(i32) -> i64 {
    fn0 = %callee(i32) -> i64
block0(v0: i32):
    v1 = call fn0(v0)
    return v1
}
""",
        "(i32) -> i64",
    ),
    "extension": (
        """
function %caller(i64) -> i64 {
    fn0 = %callee(i64 uext) -> i64
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}
""",
        "(i64 uext) -> i64",
    ),
    "calling convention": (
        """
function %caller(i64) -> i64 {
    fn0 = %callee(i64) -> i64 tail
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}
""",
        "(i64) -> i64 tail",
    ),
    "call_indirect of func_addr": (
        """
function %caller(i32) -> i64 {
    sig0 = (i32) -> i64
    sig1 = (i64) -> i64
    fn0 = %callee sig1
block0(v0: i32):
    v1 = func_addr.i64 fn0
    v2 = call_indirect sig0, v1(v0)
    return v2
}
""",
        "(i32) -> i64",
    ),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_signature_mismatch_is_bad_input(case: str) -> None:
    caller, used = MISMATCHES[case]
    ran: list[str] = []
    with pytest.raises(BadInput) as info:
        ft = parse_text(CALLEE_I64 + caller + "; run: %caller(1) == 11\n")
        run(ft, plant=lambda line, _image: ran.append(line.label))
    message = str(info.value)
    assert used in message
    assert "(i64) -> i64 fast" in message  # the callee's definition, default convention
    assert "%callee" in message and "%caller" in message
    assert ran == [], "rejected before anything is linked"


@pytest.mark.parametrize(
    "caller",
    [
        """
function %caller(i64) -> i64 {
    fn0 = %callee(i64) -> i64
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}
""",
        """
function %caller(i64) -> i64 {
    sig0 = (i64) -> i64
    sig1 = (i64) -> i64
    fn0 = %callee sig1
block0(v0: i64):
    v1 = func_addr.i64 fn0
    v2 = call_indirect sig0, v1(v0)
    return v2
}
""",
    ],
    ids=["call", "call_indirect of func_addr"],
)
def test_matching_signatures_run(caller: str) -> None:
    ft = parse_text(CALLEE_I64 + caller + "; run: %caller(1) == 11\n")
    (result,) = run(ft)
    assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}


# --- 1d: traps ------------------------------------------------------------------

TRAPS = {
    "trap": (
        """
function %f(i64) -> i64 {
block0(v0: i64):
    trap user1
}
; print: %f(1)
""",
        "user1",
    ),
    "trapnz": (
        """
function %f(i64) -> i64 {
block0(v0: i64):
    trapnz v0, user7
    return v0
}
; print: %f(1)
""",
        "user7",
    ),
    "udiv by zero": (
        """
function %f(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = udiv v0, v1
    return v2
}
; print: %f(1, 0)
""",
        "int_divz",
    ),
    "trap in a callee": (
        """
function %g(i64) -> i64 {
block0(v0: i64):
    trapz v0, int_ovf
    return v0
}

function %f(i64) -> i64 {
    fn0 = %g(i64) -> i64
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}
; print: %f(0)
""",
        "int_ovf",
    ),
}


@pytest.fixture(scope="module")
def trap_results() -> dict[str, RunResult]:
    out = {}
    for case, (text, _code) in TRAPS.items():
        (out[case],) = run(parse_text(text))
    return out


@pytest.mark.parametrize("case", list(TRAPS))
def test_interpreter_traps(case: str, trap_results: dict[str, RunResult]) -> None:
    outcome = trap_results[case].outcomes[INTERPRETER]
    assert outcome.kind is Kind.TRAP and outcome.detail == TRAPS[case][1], outcome


@pytest.mark.parametrize("name", list(TARGETS))
@pytest.mark.parametrize("case", list(TRAPS))
def test_target_traps_with_the_same_code(
    case: str, name: str, trap_results: dict[str, RunResult]
) -> None:
    result = trap_results[case]
    outcome = result.outcomes[name]
    assert outcome.kind is Kind.TRAP, outcome
    assert outcome.detail == TRAPS[case][1]
    assert result.judgement.verdicts[name] is Verdict.AGREE


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_fault_at_a_trap_site_is_that_trap_on_unicorn(name: str) -> None:
    """Cranelift records a load without `notrap` as a heap_oob trap site: its
    fault there is that trap, which the interpreter reports too (issue 24)."""
    ft = parse_text(NULL_LOAD.format(target=name, flags=""))
    [result] = Runner(executor=ExecutorChoice.UNICORN).run_file(ft, ft.targets)
    assert result.outcomes[INTERPRETER] == Outcome(Kind.TRAP, detail="heap_oob")
    outcome = result.outcomes[name]
    assert (outcome.kind, outcome.detail, outcome.executor) == (Kind.TRAP, "heap_oob", UNICORN)
    assert result.judgement.verdicts[name] is Verdict.AGREE


@pytest.mark.parametrize("name", ["x86_64", "aarch64", "riscv64"])  # s390x: an illegal errno
def test_unicorn_names_the_trap_code_recorded_where_an_access_faults(name: str) -> None:
    for flags, code in (("", "heap_oob"), (" notrap", "")):
        ft = parse_text(NULL_LOAD.format(target=name, flags=flags))
        runner = Runner(executor=ExecutorChoice.UNICORN, ub_check=False)
        [config] = runner.prepare_file(ft, ft.targets)
        outcome = runner.execute(ft, config, ft.runs[0])
        assert (outcome.kind, outcome.trap_site) == (Kind.CRASH, code), outcome


def test_the_same_functions_return_when_they_do_not_trap() -> None:
    text = (
        TRAPS["trapnz"][0]
        + "; run: %f(0) == 0\n"
        + TRAPS["udiv by zero"][0].replace("%f", "%h")
        + "; run: %h(6, 3) == 2\n"
    )
    results = run(parse_text(text))
    returns = [r for r in results if r.command.compare == "=="]
    assert len(returns) == 2
    for r in returns:
        assert set(r.judgement.verdicts.values()) == {Verdict.AGREE}, r.outcomes


# --- the emulator never runs a stale image -------------------------------------------


def test_emulator_loads_a_new_image_that_reuses_a_freed_ones_id() -> None:
    target = TARGETS["aarch64"]
    isa = _cranelift.Isa(target.triple, [], [])
    ft = parse_text(callee_clif(0))
    tramp = CompiledFunction.from_bridge(
        _cranelift.parse(trampoline_clif(ft.functions["%callee"]["signature"])).compile(isa)[0]
    )
    images = []
    for addend in (10, 11):
        (callee,) = _cranelift.parse(callee_clif(addend)).compile(isa)
        images.append(link([CompiledFunction.from_bridge(callee), tramp], target))
    emulator = Emulator(target)
    slots = (5).to_bytes(8, "little") + bytes(8)

    def result(image: Image) -> int:
        raw = emulator.run(image, image.symbols[TRAMPOLINE_NAME], image.symbols["%callee"], slots)
        assert raw.kind == "return", raw
        return int.from_bytes(raw.slots[:8], "little")

    # Fresh Image objects, made and dropped in turn, the way CPython reuses
    # a freed object's id: every run must see the code of the image it was given.
    parts = [(im.base, im.data, im.symbols, im.sizes, im.trap_sites) for im in images]
    for attempt in range(20):
        addend = 10 + attempt % 2
        image = Image(*parts[attempt % 2])
        assert result(image) == 5 + addend, f"attempt {attempt} ran a stale image"
        del image


def test_an_endless_loop_times_out_on_every_target_by_the_instruction_budget() -> None:
    """The wall-clock limit only triggers a counted re-run: the verdict is
    the instruction budget's, whatever the machine's speed."""
    text = """test run
function %spin(i64) -> i64 {
block0(v0: i64):
    jump block1(v0)
block1(v1: i64):
    v3 = iconst.i64 1
    v2 = iadd v1, v3
    jump block1(v2)
}
; run: %spin(0) == 0
"""
    ft = parse_text(text)
    runner = Runner(budget=100_000)
    [result] = runner.run_file(ft, [TargetLine(t) for t in TARGETS.values()])
    for target in TARGETS:
        outcome = result.outcomes[target]
        assert outcome.kind is Kind.TIMEOUT, (target, outcome)
        assert "100000" in outcome.detail
