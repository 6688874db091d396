"""The second executor (fuzz.pipeline.qemu) and the routing between the two
(fuzz.pipeline.routing). Tests that run code need qemu-user (Debian package
`qemu-user`, which .ci/run installs); without it they skip and say so."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import NULL_LOAD

from fuzz.faults import hooks
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline import routing
from fuzz.pipeline.contract import CALLEE_SAVED, STACK_POINTER, CallMap, Function
from fuzz.pipeline.filetest import TargetLine, parse_file, parse_text
from fuzz.pipeline.link import CompiledFunction, link
from fuzz.pipeline.oracle import Kind, Verdict
from fuzz.pipeline.qemu import (
    QemuServer,
    cpu_option,
    installed_facts,
    process,
    qemu_version,
    signals,
)
from fuzz.pipeline.qemu.loop import LoopServer
from fuzz.pipeline.routing import QEMU, UNICORN, ExecutorChoice, route
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
needs_qemu = pytest.mark.skipif(
    qemu_version() is None, reason="needs qemu-user (Debian package qemu-user)"
)
ALL = list(TARGETS.values())
NEW_RISCV = frozenset({"has_zcb", "has_zfa", "has_zicond", "has_zvbb", "has_zvfh"})


def _riscv_lacks() -> frozenset[str]:
    riscv = TARGETS["riscv64"].qemu
    assert riscv is not None
    return installed_facts(riscv).lacks & NEW_RISCV if qemu_version() else NEW_RISCV


needs_qemu_10 = pytest.mark.skipif(
    bool(_riscv_lacks()),
    reason=f"needs qemu-user 10 (installed: {qemu_version()}, which lacks "
    f"{', '.join(sorted(_riscv_lacks()))})",
)


def _case(body: str, run: str, targets: str = "") -> str:
    lines = targets or "\n".join(f"target {t}" for t in TARGETS)
    return f"test interpret\ntest run\n{lines}\n\n{body}\n; run: {run}\n"


# --- routing (no qemu needed) ----------------------------------------------------


def test_a_line_unicorn_runs_stays_on_unicorn_with_qemu_as_referee(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routing, "qemu_installed", lambda target: True)
    _installed(monkeypatch, "7.2.22")
    r = route(TARGETS["riscv64"], frozenset({"has_zca"}), ExecutorChoice.AUTO)
    assert (r.executor, r.referee) == (UNICORN, True)
    r = route(TARGETS["riscv64"], frozenset({"has_v", "has_zba"}), ExecutorChoice.AUTO)
    assert (r.executor, r.referee) == (QEMU, False)
    r = route(TARGETS["riscv64"], frozenset({"has_zcb"}), ExecutorChoice.AUTO)
    assert r.executor is None and "qemu-user 7.2.22 lacks has_zcb" in r.reason
    r = route(TARGETS["x86_64"], frozenset(), ExecutorChoice.AUTO, "`vpaddd`: unicorn would")
    assert r.executor == QEMU
    assert route(TARGETS["aarch64"], frozenset(), ExecutorChoice.UNICORN).referee is False
    assert route(TARGETS["aarch64"], frozenset(), ExecutorChoice.QEMU).executor == QEMU


def _installed(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """As if every qemu-user program installed were of `version`."""
    monkeypatch.setattr(process, "binary_version", lambda binary: version)
    monkeypatch.setattr(routing, "binary_version", lambda binary: version)


def test_what_qemu_runs_is_the_row_of_the_installed_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """qemu-user 7.2 lacks Zcb, Zfa, Zicond, Zvfh, Zvbb; 10.0 runs them (and
    any later release gets the newest row); the row follows the program's
    `--version`, not a constant."""
    monkeypatch.setattr(routing, "qemu_installed", lambda target: True)
    riscv = TARGETS["riscv64"]
    new = frozenset({"has_zca", "has_zcb", "has_zfa", "has_zicond", "has_zvbb", "has_zvfh"})
    for version, runs in (("7.2.22", False), ("10.0.2", True), ("11.1.0", True)):
        _installed(monkeypatch, version)
        r = route(riscv, new, ExecutorChoice.AUTO)
        assert (r.executor == QEMU) is runs, (version, r)
    _installed(monkeypatch, "unknown")  # a version it does not say: the oldest row
    assert route(riscv, new, ExecutorChoice.AUTO).executor is None
    # x86_64 has no AVX-512 in either release
    _installed(monkeypatch, "10.0.2")
    r = route(TARGETS["x86_64"], frozenset({"has_avx512f"}), ExecutorChoice.AUTO)
    assert r.executor is None and "qemu-user 10.0.2 lacks has_avx512f" in r.reason


def test_the_generators_qemu_only_cases_use_what_the_installed_qemu_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On qemu 10 a qemu-only riscv64 case sets Zcb, Zfa, Zicond, Zvbb, Zvfh
    too; on 7.2 it leaves them out, so it still runs there."""
    monkeypatch.setattr(routing, "qemu_installed", lambda target: True)
    for version, new in (("10.0.2", True), ("7.2.22", False)):
        _installed(monkeypatch, version)
        target = routing.for_installed_qemu(TARGETS["riscv64"])
        cases = [generate(RandomSource(seed), target) for seed in range(60)]
        qemu_only = [c for c in cases if "has_zba" in c.isa_flags]
        assert qemu_only, version
        for case in qemu_only:
            assert NEW_RISCV.issubset(case.isa_flags) is new, (version, case.isa_flags)


def test_the_cpu_option_asks_for_each_extension_a_line_sets_and_no_other() -> None:
    """On 10.0 a riscv64 line gets RV64G plus what its flags ask (C, Zb*, Zfa
    are otherwise off, so code using them unasked is SIGILL); Zcb needs
    Zca, Zvbb needs V; a property asked twice is written once."""
    assert TARGETS["riscv64"].qemu is not None
    facts = TARGETS["riscv64"].qemu.facts((10, 0))
    base = "rv64,c=false,zba=false,zbb=false,zbc=false,zbs=false,zfa=false"
    assert cpu_option(facts, frozenset()) == base
    assert cpu_option(facts, frozenset({"has_zca", "has_zcd", "has_zcb"})) == (
        f"{base},zca=true,zcb=true,zcd=true"
    )
    assert cpu_option(facts, frozenset({"has_v", "has_zvbb"})) == (
        f"{base},v=true,vlen=128,elen=64,vext_spec=v1.0,zvbb=true"
    )
    old = TARGETS["riscv64"].qemu.facts((7, 2))
    assert cpu_option(old, frozenset({"has_zfh", "has_zca"})) == "rv64,Zfh=true"


def test_without_qemu_lines_unicorn_lacks_abstain_and_say_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routing, "qemu_installed", lambda target: False)
    r = route(TARGETS["riscv64"], frozenset({"has_v"}), ExecutorChoice.AUTO)
    assert r.executor is None and r.reason.startswith("unicorn lacks has_v; needs qemu-user")
    assert "qemu-riscv64 is not installed" in r.reason
    r = route(TARGETS["s390x"], frozenset(), ExecutorChoice.AUTO)
    assert (r.executor, r.referee) == (UNICORN, False)
    alone = route(TARGETS["s390x"], frozenset(), ExecutorChoice.QEMU)
    assert alone.reason.startswith("needs qemu-user (qemu-s390x")


def test_a_vector_sigill_is_cranelifts_only_where_vectors_are_off() -> None:
    """An RVV instruction met on a riscv64 line without has_v is Cranelift
    emitting a disabled extension (a crash); with has_v on, it is one qemu
    cannot run (e.g. Zvbb on a qemu without it): not executable, no finding."""
    t = TARGETS["riscv64"]
    vadd = (0x02000057).to_bytes(4, "little")  # vadd.vv v0, v0, v0
    image = link([CompiledFunction("%t", vadd + t.return_insn, [], [])], t)
    pc = image.symbols["%t"]
    off = signals.classify(t, image, 4, pc, lambda: "")
    assert (off.kind, off.detail) == (
        "crash",
        "illegal instruction: RVV instruction although has_v is off",
    )
    on = signals.classify(t, image, 4, pc, lambda: "", frozenset({"has_v", "has_zvbb"}))
    assert on.kind == "not-executable", on


# --- the executor ------------------------------------------------------------------


@needs_qemu
def test_riscv64_vectors_run_on_qemu_and_agree() -> None:
    """The shape of a real upstream segfault: a hidden sret pointer meeting a
    vector argument, on `riscv64 has_v`, which unicorn cannot run."""
    ft = parse_file(str(CORPUS / "riscv64-sret-vector.clif"))
    results = Runner().run_file(ft, default_lines(ft, None))
    assert results
    for r in results:
        outcome = r.outcomes["riscv64 has_v"]
        assert outcome.executor == QEMU and outcome.kind is Kind.RETURN
        assert not r.judgement.divergent, r.outcomes


@needs_qemu
@pytest.mark.parametrize("target", ALL, ids=lambda t: t.name)
def test_qemu_gives_unicorns_results_traps_and_libcalls(target, qemu_path) -> None:  # type: ignore[no-untyped-def]
    text = _case(
        """function %f(i64, i64, f32) -> i64, f32 {
block0(v0: i64, v1: i64, v2: f32):
    v3 = udiv v0, v1
    v4 = ceil v2
    return v3, v4
}""",
        "%f(100, 7, 0x1.8p0) == [14, 0x1.0p1]",
        f"target {target.name}",
    )
    text += "; run: %f(1, 0, 0x0.0p0) == [0, 0x0.0p0]\n"
    ft = parse_text(text)
    line = [TargetLine(target)]
    on_unicorn = Runner(executor=ExecutorChoice.UNICORN).run_file(ft, line)
    on_qemu = Runner(executor=ExecutorChoice.QEMU).run_file(ft, line)
    for a, b in zip(on_unicorn, on_qemu, strict=True):
        mine, theirs = a.outcomes[target.name], b.outcomes[target.name]
        assert (mine.executor, theirs.executor) == (UNICORN, QEMU)
        assert mine.kind is theirs.kind and mine.values == theirs.values
        assert mine.detail == theirs.detail  # the trap code of the second run
    assert on_qemu[1].outcomes[target.name].kind is Kind.TRAP
    assert on_qemu[0].judgement.verdicts[target.name] is Verdict.AGREE


NEW_EXTENSIONS = """test interpret
test run
set enable_multi_ret_implicit_sret
target riscv64 has_c has_zcb
target riscv64 has_zfa has_zicond has_zbb
target riscv64 has_v has_zvbb has_zvfh

function %zext(i8) -> i64 {
block0(v0: i8):
    v1 = uextend.i64 v0
    return v1
}
; run: %zext(-1) == 255

function %sel(i64, i64, i64) -> i64 {
block0(v0: i64, v1: i64, v2: i64):
    v3 = select v0, v1, v2
    return v3
}
; run: %sel(0, 1, 2) == 2
; run: %sel(5, 1, 2) == 1

function %fmin(f64, f64) -> f64 {
block0(v0: f64, v1: f64):
    v2 = fmin v0, v1
    return v2
}
; run: %fmin(0x1.0, 0x2.0) == 0x1.0

function %div(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = udiv v0, v1
    return v2
}
; run: %div(7, 2) == 3
; run: %div(1, 0) == 0
"""
VECTOR_EXTENSIONS = """test interpret
test run
set enable_multi_ret_implicit_sret
target riscv64 has_v has_zvbb has_zvfh

function %pop(i8x16) -> i8x16 {
block0(v0: i8x16):
    v1 = popcnt v0
    return v1
}
; run: %pop([1 3 7 15 0 0 0 0 0 0 0 0 0 0 0 -1]) == [1 2 3 4 0 0 0 0 0 0 0 0 0 0 0 8]
"""


@needs_qemu_10
def test_riscv64_extensions_of_qemu_10_run_and_agree_with_the_interpreter(qemu_path: str) -> None:
    """Compressed code (Zca, Zcd, Zcb: its trap sites are 2-byte `c.unimp`),
    Zfa, Zicond, Zvbb and Zvfh run on qemu-user 10, each line's -cpu asking
    for what its flags set; a division by zero is the interpreter's trap."""
    results = []
    for text in (NEW_EXTENSIONS, VECTOR_EXTENSIONS):
        ft = parse_text(text)
        results += Runner(executor=ExecutorChoice.QEMU).run_file(ft, default_lines(ft, None))
    ran = 0
    for r in results:
        for name, outcome in r.outcomes.items():
            if name == "interpreter":
                continue
            assert outcome.executor == QEMU, (name, r.command.text, outcome)
            ran += 1
            if "%div(1, 0)" in r.command.text:  # the interpreter's trap, not a heap_oob
                assert (outcome.kind, outcome.detail) == (Kind.TRAP, "int_divz"), outcome
                continue
            assert r.judgement.verdicts[name] is Verdict.AGREE, (name, r.command.text, outcome)
    assert ran == 3 * 6 + 1


@needs_qemu
@pytest.mark.parametrize("target", ALL, ids=lambda t: t.name)
def test_a_libcalls_result_register_is_written_right(target) -> None:  # type: ignore[no-untyped-def]
    """A libcall's result goes into a vector register with a `P` packet;
    qemu 10.0.2's gdbstub swaps the 64-bit halves of an SVE register it
    writes (aarch64 `z0`), so the server probes that once and pre-swaps."""
    text = _case(
        """function %f(f32) -> f32 {
    fn0 = %CeilF32(f32) -> f32
block0(v0: f32):
    v1 = call fn0(v0)
    return v1
}""",
        "%f(0x0.5) == 0x1.0",
        f"target {target.name}",
    )
    [result] = Runner(executor=ExecutorChoice.QEMU).run_file(parse_text(text), [TargetLine(target)])
    outcome = result.outcomes[target.name]
    assert outcome.executor == QEMU and outcome.kind is Kind.RETURN, outcome
    assert result.judgement.verdicts[target.name] is Verdict.AGREE, outcome


@needs_qemu
@pytest.mark.parametrize("target", ALL, ids=lambda t: t.name)
def test_a_crash_names_the_faulting_address_and_the_server_survives(target, qemu_path) -> None:  # type: ignore[no-untyped-def]
    text = _case(
        """function %f(i64) -> i64 {
block0(v0: i64):
    v1 = load.i64 v0
    return v1
}""",
        "%f(0x1234_5678) == 0",
        f"target {target.name}",
    )
    ft = parse_text(text)
    runner = Runner(executor=ExecutorChoice.QEMU, ub_check=False)
    [config] = runner.prepare_file(ft, [TargetLine(target)])
    outcome = runner.execute(ft, config, ft.runs[0])
    assert outcome.kind is Kind.CRASH
    assert "SIGSEGV access at 0x12345" in outcome.detail  # riscv64 names the page
    # kill the server: the next run starts another and loses nothing
    [server] = runner.qemu.servers.values()
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    dead = runner.execute(ft, config, ft.runs[0])
    # the harness's failure, never a finding of Cranelift's
    assert dead.kind is Kind.HARNESS and "qemu-user died" in dead.detail
    again = runner.execute(ft, config, ft.runs[0])
    assert again.identical(outcome)


@needs_qemu
def test_a_loop_past_its_deadline_is_a_timeout_and_the_next_run_is_clean(qemu_path: str) -> None:
    spin = parse_text(
        _case(
            """function %spin(i64) -> i64 {
block0(v0: i64):
    jump block1(v0)
block1(v1: i64):
    v2 = iconst.i64 1
    v3 = iadd v1, v2
    jump block1(v3)
}""",
            "%spin(0) == 0",
            "target aarch64",
        )
    )
    one = parse_text(
        _case(
            """function %one(i64) -> i64 {
block0(v0: i64):
    v1 = iconst.i64 1
    v2 = iadd v0, v1
    return v2
}""",
            "%one(41) == 42",
            "target aarch64",
        )
    )
    runner = Runner(executor=ExecutorChoice.QEMU, budget=1_000, ub_check=False)
    line = [TargetLine(TARGETS["aarch64"])]
    [config] = runner.prepare_file(spin, line)
    assert runner.execute(spin, config, spin.runs[0]).kind is Kind.TIMEOUT
    [config] = runner.prepare_file(one, line)
    after = runner.execute(one, config, one.runs[0])
    assert after.kind is Kind.RETURN and after.values[0].bits == 42


@needs_qemu
def test_a_new_image_at_the_same_addresses_runs_its_own_code(qemu_path: str) -> None:
    """qemu translates code once: loading another image must drop the old
    translation, or a run would execute the previous file's code."""
    runner = Runner(executor=ExecutorChoice.QEMU)
    answers = []
    for constant in (1, 2, 1):
        ft = parse_text(
            _case(
                f"""function %f() -> i64 {{
block0:
    v0 = iconst.i64 {constant}
    return v0
}}""",
                f"%f() == {constant}",
                "target riscv64",
            )
        )
        [result] = runner.run_file(ft, [TargetLine(TARGETS["riscv64"])])
        answers.append(result.outcomes["riscv64"].values[0].bits)
    assert answers == [1, 2, 1]


@needs_qemu
def test_a_run_is_the_same_from_the_same_state_whatever_ran_before(qemu_path: str) -> None:
    """The variant's initial state is set in full each run: registers the
    code never writes read the same canaries on qemu as on unicorn."""
    text = _case(
        """function %f(i64) -> i64 {
block0(v0: i64):
    v1 = get_pinned_reg.i64
    v2 = iadd v0, v1
    return v2
}""",
        "%f(1) == 0",
        "set enable_pinned_reg\ntarget aarch64",
    )
    ft = parse_text(text)
    line = [TargetLine(TARGETS["aarch64"])]
    unicorn = Runner(executor=ExecutorChoice.UNICORN, ub_check=False)
    qemu = Runner(executor=ExecutorChoice.QEMU, ub_check=False)
    [config_u] = unicorn.prepare_file(ft, line)
    [config_q] = qemu.prepare_file(ft, line)
    for variant in (0, 1, 0):
        a = unicorn.execute(ft, config_u, ft.runs[0], variant)
        b = qemu.execute(ft, config_q, ft.runs[0], variant)
        assert a.values == b.values
    assert qemu.execute(ft, config_q, ft.runs[0], 0).values != (
        qemu.execute(ft, config_q, ft.runs[0], 1).values
    )


@needs_qemu
def test_a_planted_fault_is_found_on_the_qemu_executor() -> None:
    text = _case(
        """function %g(i64, i64, i128) -> i64 {
block0(v0: i64, v1: i64, v2: i128):
    v3 = ireduce.i64 v2
    return v3
}

function %f(i64) -> i64 {
    fn0 = %g(i64, i64, i128) -> i64
block0(v0: i64):
    v1 = uextend.i128 v0
    v2 = call fn0(v0, v0, v1)
    return v2
}""",
        "%f(6) == 6",
        "target aarch64",
    )
    ft = parse_text(text)
    runner = Runner(executor=ExecutorChoice.QEMU, fault=hooks("aarch64-call-i128"))
    [result] = runner.run_file(ft, [TargetLine(TARGETS["aarch64"])])
    assert result.outcomes["aarch64"].executor == QEMU
    assert result.judgement.verdicts["aarch64"] is Verdict.WRONG_RESULT


@needs_qemu
def test_with_both_every_unicorn_run_is_rerun_and_agreement_stays_agreement() -> None:
    ft = parse_file(str(CORPUS / "emulator-s390x-signed-overflow-cc.clif"))
    [result] = Runner(executor=ExecutorChoice.BOTH).run_file(ft, default_lines(ft, None))
    assert result.judgement.verdicts["s390x"] is Verdict.EMULATOR_DISAGREEMENT
    assert "qemu-user" in result.outcomes["s390x"].detail
    ft = parse_file(str(CORPUS / "riscv64-sret-vector.clif"))
    for r in Runner(executor=ExecutorChoice.BOTH).run_file(ft, default_lines(ft, None)):
        assert not r.judgement.divergent
        assert Verdict.EMULATOR_DISAGREEMENT not in r.judgement.verdicts.values()


# --- the call contract at the final stop -------------------------------------------

# Hand-written trampolines (system_v) that break its contract one way each:
# the first callee-saved integer register, the first float/vector one (a
# register the `g` packet lacks, read by `p`), SP 16 bytes off; and `ret`.
FINAL_STOP = {
    "x86_64": {
        "int": ("4831dbc3", "rbx"),  # xor rbx, rbx; ret
        "sp": ("584883c410ffe0", "sp"),  # pop rax; add rsp, 16; jmp rax
        "ret": ("c3", ""),
    },
    "aarch64": {
        "int": ("f3031faac0035fd6", "x19"),  # mov x19, xzr; ret
        "float": ("e803679ec0035fd6", "v8"),  # fmov d8, xzr; ret
        "sp": ("ff430091c0035fd6", "sp"),  # add sp, sp, #16; ret
        "ret": ("c0035fd6", ""),
    },
    "riscv64": {
        "int": ("1304000067800000", "x8"),  # mv s0, zero; ret
        "float": ("530400f267800000", "f8"),  # fmv.d.x fs0, zero; ret
        "sp": ("1301010167800000", "sp"),  # addi sp, sp, 16; ret
        "ret": ("67800000", ""),
    },
    "s390x": {
        "int": ("a769000007fe", "r6"),  # lghi %r6, 0; br %r14
        "float": ("b375008007fe", "f8"),  # lzdr %f8; br %r14
        "sp": ("a7fb001007fe", "sp"),  # aghi %r15, 16; br %r14
        "ret": ("07fe", ""),
    },
}
BROKEN = [(t, what) for t, cases in FINAL_STOP.items() for what in cases]


@needs_qemu
@pytest.mark.parametrize(("target", "what"), BROKEN, ids=[f"{t}-{w}" for t, w in BROKEN])
def test_qemu_checks_the_harness_call_at_the_final_stop(
    target: str, what: str, qemu_path: str
) -> None:
    """qemu-user has no per-call hooks, but at the sentinel stop it reads
    every register: the trampoline's convention's callee-saved registers
    must hold the canaries the run started with (of either variant), and SP
    must be back; without the call map (contract off) nothing is checked."""
    t = TARGETS[target]
    assert t.qemu is not None
    code, where = FINAL_STOP[target][what]
    image = link([CompiledFunction("%t", bytes.fromhex(code), [], [])], t)
    entry = image.symbols["%t"]
    calls = CallMap({entry: Function("%t", "system_v")}, {})
    server_kind = QemuServer if qemu_path == "gdbstub" else LoopServer
    server = server_kind(t, cpu_option(installed_facts(t.qemu), frozenset()))
    try:
        for variant in (0, 1):
            raw = server.run(image, entry, entry, bytes(16), 1_000_000, variant, calls)
            assert raw.kind == "return", raw
            found = [(v.kind, v.where, v.edge, v.cc) for v in raw.violations]
            if not where:
                assert found == []
                continue
            kind = STACK_POINTER if where == "sp" else CALLEE_SAVED
            assert found == [(kind, where, "harness -> %t", "system_v")], raw.violations
            [violation] = raw.violations
            if kind is STACK_POINTER:
                assert violation.actual - violation.expected == 16
            else:
                assert violation.actual == 0 and violation.expected != 0
            unchecked = server.run(image, entry, entry, bytes(16), 1_000_000, variant)
            assert unchecked.kind == "return" and not unchecked.violations
    finally:
        server.stop()


@needs_qemu
def test_qemu_finds_a_callee_saved_register_cranelift_does_not_preserve(qemu_path: str) -> None:
    """The known riscv64 fs1 bug (corpus/known.toml), found by qemu-user
    alone: the trampoline returns to the harness with f9 changed."""
    ft = parse_file(str(CORPUS / "riscv64-fs1-not-preserved.clif"))
    [result] = Runner(executor=ExecutorChoice.QEMU).run_file(ft, default_lines(ft, None))
    outcome = result.outcomes["riscv64"]
    assert outcome.executor == QEMU
    assert result.judgement.verdicts["riscv64"] is Verdict.ABI_VIOLATION
    assert [(v.kind, v.where, v.reg_class) for v in outcome.violations] == [
        (CALLEE_SAVED, "f9", "float")
    ]


@needs_qemu
@pytest.mark.parametrize("target", ALL, ids=lambda t: t.name)
def test_correct_code_breaks_no_contract_on_qemu(target, qemu_path) -> None:  # type: ignore[no-untyped-def]
    """Cranelift's own code, run on qemu-user from both initial states,
    gives the harness back every register and SP: no false alarm."""
    text = _case(
        """function %g(i64, f64) -> f64 {
block0(v0: i64, v1: f64):
    v2 = fcvt_from_sint.f64 v0
    v3 = fadd v1, v2
    return v3
}

function %f(i64) -> f64 {
    fn0 = %g(i64, f64) -> f64
block0(v0: i64):
    v1 = f64const 0x1.8p1
    v2 = call fn0(v0, v1)
    return v2
}""",
        "%f(2) == 0x1.4p2",
        f"target {target.name}",
    )
    ft = parse_text(text)
    runner = Runner(executor=ExecutorChoice.QEMU)
    [config] = runner.prepare_file(ft, [TargetLine(target)])
    for variant in (0, 1):
        outcome = runner.execute(ft, config, ft.runs[0], variant)
        assert outcome.executor == QEMU
        assert outcome.kind is Kind.RETURN and not outcome.violations, outcome


@needs_qemu
@pytest.mark.parametrize("target", ALL, ids=lambda t: t.name)
def test_a_fault_at_a_trap_site_is_that_trap_on_qemu(target, qemu_path) -> None:  # type: ignore[no-untyped-def]
    """qemu-user's SIGSEGV at a load Cranelift recorded as a heap_oob trap
    site is that trap where the interpreter reports it; at a `notrap` load it
    is a crash naming no trap code (issue 24)."""
    ft = parse_text(NULL_LOAD.format(target=target.name, flags=""))
    [result] = Runner(executor=ExecutorChoice.QEMU).run_file(ft, ft.targets)
    outcome = result.outcomes[target.name]
    assert (outcome.kind, outcome.detail, outcome.executor) == (Kind.TRAP, "heap_oob", QEMU)
    assert result.judgement.verdicts[target.name] is Verdict.AGREE
    for flags, code in (("", "heap_oob"), (" notrap", "")):
        ft = parse_text(NULL_LOAD.format(target=target.name, flags=flags))
        runner = Runner(executor=ExecutorChoice.QEMU, ub_check=False)
        [config] = runner.prepare_file(ft, ft.targets)
        raw = runner.execute(ft, config, ft.runs[0])
        assert (raw.kind, raw.trap_site) == (Kind.CRASH, code), raw
