"""Throwing callees (issue 24): a `try_call` of the thrower lands in its
handler through the executors' unwinder stand-in (fuzz.pipeline.unwind),
agrees with the interpreter's twin (a jump to the handler), and a stand-in
or metadata fault is caught."""

from __future__ import annotations

import dataclasses
import re

import pytest

from fuzz import _cranelift
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline import unwind
from fuzz.pipeline.contract import CALLEE_SAVED, FRAME_OFFSET
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.qemu.process import qemu_version
from fuzz.pipeline.routing import QEMU, UNICORN, ExecutorChoice
from fuzz.pipeline.runner import Runner
from fuzz.pipeline.twin import interpretable
from fuzz.targets import TARGETS

NAMES = ("x86_64", "aarch64", "riscv64", "s390x")


def _case(cc: str) -> str:
    """%main throws tag 2 through a `cc` thrower, with values live across
    the try_call in both the handler and after it; the tag-2 handler takes
    the payloads swapped."""
    return f"""test interpret
test run
target x86_64
target aarch64
target riscv64
target s390x

function %main(i64, i64) -> i64, i64 {{
    sig0 = (i32, i64, i64) {cc}
    fn0 = %Throw_{cc} sig0
block0(v0: i64, v1: i64):
    v2 = iconst.i32 2
    v3 = iadd v0, v1
    v20 = iconst.i64 0x1234_5678
    v21 = bxor v0, v20
    try_call fn0(v2, v3, v1), sig0, block1(v0), [ tag1: block2(exn0, exn1, v0), \
tag2: block3(exn1, exn0, v21), default: block2(exn0, exn1, v1) ]
block1(v4: i64):
    return v4, v4
block2(v5: i64, v6: i64, v7: i64):
    v8 = iadd v5, v7
    return v8, v6
block3(v9: i64, v10: i64, v11: i64):
    v12 = isub v9, v11
    v13 = bxor v10, v11
    return v12, v13
}}
; print: %main(10, 3)
"""


def _runs(text: str, name: str, runner: Runner | None = None) -> tuple[dict[str, Verdict], str]:
    ft = parse_text(text)
    [result] = (runner or Runner()).run_file(ft, [TargetLine(TARGETS[name])])
    # tag 2: block3(exn1 = v1, exn0 = v0 + v1, v0 ^ 0x12345678), v0 = 10, v1 = 3
    v21 = 10 ^ 0x1234_5678
    expected = [str((3 - v21) & ((1 << 64) - 1) - (1 << 64)), str(13 ^ v21)]
    if "iconst.i32 2" in text:
        assert [str(v) for v in result.outcomes["interpreter"].values] == expected
    return result.judgement.verdicts, str(result.outcomes[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_throw_takes_the_handler_and_agrees(name: str) -> None:
    runner = Runner()
    verdicts, outcome = _runs(_case("system_v"), name, runner)
    assert verdicts == {"interpreter": Verdict.AGREE, name: Verdict.AGREE}, outcome
    assert runner.emulator(TARGETS[name]).throws == 1
    assert runner.throws == {name: 1}  # what a campaign's summary counts
    assert runner.executor_runs[UNICORN] == 1  # and never qemu-user


@pytest.mark.parametrize("name", ("x86_64", "aarch64", "s390x"))
def test_a_throw_that_clobbers_everything_agrees(name: str) -> None:
    """`tail`: every register but SP and FP poisoned at the handler, the
    caller's callee-saved ones checked when it returns (riscv64 is left
    out: its f9 is the known riscv64-fs1-not-preserved finding)."""
    runner = Runner()
    verdicts, outcome = _runs(_case("tail"), name, runner)
    assert verdicts == {"interpreter": Verdict.AGREE, name: Verdict.AGREE}, outcome
    assert runner.emulator(TARGETS[name]).throws == 1


def test_riscv64_tail_throw_meets_the_known_fs1_finding() -> None:
    verdicts, outcome = _runs(_case("tail"), "riscv64")
    assert verdicts["riscv64"] is Verdict.ABI_VIOLATION
    assert "callee-saved register f9 (float)" in outcome


needs_qemu = pytest.mark.skipif(
    qemu_version() is None, reason="needs qemu-user (Debian package qemu-user)"
)


@needs_qemu
@pytest.mark.parametrize("cc", ("system_v", "tail"))
@pytest.mark.parametrize("name", NAMES)
def test_a_throw_on_qemu_user_takes_the_handler_and_agrees(name: str, cc: str) -> None:
    """The gdbstub server hosts the same stand-in at the thrower's
    breakpoint: registers poisoned, payloads set, SP and PC moved."""
    if (name, cc) == ("riscv64", "tail"):
        pytest.skip("riscv64 tail throws meet the known fs1 finding (test above)")
    runner = Runner(executor=ExecutorChoice.QEMU)
    verdicts, outcome = _runs(_case(cc), name, runner)
    assert verdicts == {"interpreter": Verdict.AGREE, name: Verdict.AGREE}, outcome
    assert runner.executor_runs == {QEMU: 1}
    assert runner.throws == {name: 1}


@needs_qemu
@pytest.mark.parametrize("name", NAMES)
def test_swapped_payload_registers_are_caught_on_qemu_user(name: str) -> None:
    target = TARGETS[name]
    line = _with(name, payload_regs=tuple(reversed(target.payload_regs)))
    ft = parse_text(_case("system_v"))
    [result] = Runner(executor=ExecutorChoice.QEMU).run_file(ft, [line])
    assert result.judgement.verdicts[name] is Verdict.WRONG_RESULT, result.outcomes[name]


def _with(name: str, **changes: object) -> TargetLine:
    return TargetLine(dataclasses.replace(TARGETS[name], **changes))  # type: ignore[arg-type]


def _verdict(
    text: str, line: TargetLine, executor: ExecutorChoice = ExecutorChoice.AUTO
) -> tuple[Verdict, str]:
    ft = parse_text(text)
    [result] = Runner(executor=executor).run_file(ft, [line])
    name = line.target.name
    return result.judgement.verdicts[name], str(result.outcomes[name])


@pytest.mark.parametrize("name", NAMES)
def test_swapped_payload_registers_are_caught(name: str) -> None:
    target = TARGETS[name]
    line = _with(name, payload_regs=tuple(reversed(target.payload_regs)))
    verdict, _ = _verdict(_case("system_v"), line)
    assert verdict is Verdict.WRONG_RESULT


@pytest.mark.parametrize("name", NAMES)
def test_a_handler_off_by_one_instruction_is_caught(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = unwind.TrySite.handler
    step = 2 if name == "s390x" else 4  # the shortest instruction there

    def off(self: unwind.TrySite, tag: int) -> int | None:
        at = real(self, tag)
        return None if at is None else at + step

    monkeypatch.setattr(unwind.TrySite, "handler", off)
    verdict, _ = _verdict(_case("system_v"), TargetLine(TARGETS[name]))
    assert verdict is not Verdict.AGREE


@pytest.mark.parametrize("name", NAMES)
def test_poisoning_what_the_convention_preserves_is_caught(name: str) -> None:
    """A stand-in that clobbers the callee-saved registers of a system_v
    throw (which an unwinder restores): the caller returns with them
    changed, which the contract checks at its return, or kept a value in
    one across the try_call, which its handler then reads wrong."""
    line = _with(name, exception_clobbers_all=("system_v",))
    verdict, outcome = _verdict(_case("system_v"), line)
    assert verdict in (Verdict.ABI_VIOLATION, Verdict.WRONG_RESULT), outcome
    assert verdict is Verdict.WRONG_RESULT or CALLEE_SAVED in outcome


def _skew_frame_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every try_call site's frame_offset 16 bytes off, as the linker places it."""
    real = unwind.TrySite.moved

    def skewed(self: unwind.TrySite, base: int) -> unwind.TrySite:
        site = real(self, base)
        assert site.frame_offset is not None
        return dataclasses.replace(site, frame_offset=site.frame_offset + 16)

    monkeypatch.setattr(unwind.TrySite, "moved", skewed)


@pytest.mark.parametrize("name", ("x86_64", "aarch64", "riscv64"))
def test_a_wrong_frame_offset_is_a_violation(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _skew_frame_offsets(monkeypatch)
    verdict, outcome = _verdict(_case("system_v"), TargetLine(TARGETS[name]))
    assert verdict is Verdict.ABI_VIOLATION
    assert FRAME_OFFSET in outcome


@needs_qemu
@pytest.mark.parametrize("name", NAMES)
def test_the_planted_stand_in_faults_are_caught_on_qemu_user(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Poisoning what system_v preserves, and a frame_offset 16 bytes off
    (s390x has no frame pointer to check it against)."""
    qemu = ExecutorChoice.QEMU
    line = _with(name, exception_clobbers_all=("system_v",))
    verdict, outcome = _verdict(_case("system_v"), line, qemu)
    assert verdict in (Verdict.ABI_VIOLATION, Verdict.WRONG_RESULT), outcome
    if name == "s390x":
        return
    _skew_frame_offsets(monkeypatch)
    verdict, outcome = _verdict(_case("system_v"), TargetLine(TARGETS[name]), qemu)
    assert verdict is Verdict.ABI_VIOLATION and FRAME_OFFSET in outcome, outcome


def test_a_throw_nothing_catches_is_a_crash() -> None:
    text = _case("system_v").replace(", default: block2(exn0, exn1, v1)", "")
    text = text.replace("iconst.i32 2", "iconst.i32 7")
    verdict, outcome = _verdict(text, TargetLine(TARGETS["x86_64"]))
    assert "not caught by the try_call" in outcome
    assert verdict is not Verdict.AGREE


# --- the landing itself --------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cc", ("system_v", "tail"))
def test_the_landing_poisons_all_but_sp_fp_and_what_the_convention_keeps(
    name: str, cc: str
) -> None:
    t = TARGETS[name]
    args = t.int_arg_regs_by_conv.get(cc, t.int_arg_regs)
    values = {r.name: 0x1111 * (i + 1) for i, r in enumerate(t.registers)}
    values[args[0]], values[args[1]], values[args[2]] = 5, 0xAAAA, 0xBBBB
    sp, ret = 0x7000_1000, 0x1000_0040
    if t.link_reg is not None:
        values[t.link_reg_info.name] = ret
    if t.frame_pointer:
        values[t.frame_pointer] = sp + 64 + t.ra_slot
    site = unwind.TrySite(ret, 64, ((1, 0x1000_0100), (None, 0x1000_0200)))
    landing = unwind.land(
        t,
        cc,
        lambda r: sp if r.name == "sp" else values[r.name],
        lambda at: ret if at == sp else 0,
        {ret: site},
    )
    assert landing.pc == 0x1000_0200  # tag 5: the default
    assert landing.sp == sp + t.ra_slot
    assert landing.fp_sp is None
    written = {r.name: v for r, v in landing.writes}
    assert [written[p] for p in t.payload_regs] == [0xAAAA, 0xBBBB]
    kept = {t.frame_pointer, *t.reserved_regs}
    assert not kept & written.keys()
    preserved = {} if cc in t.exception_clobbers_all else {r.name: b for r, b in t.preserved(cc)}
    for index, reg in enumerate(t.registers):
        if reg.name in kept or reg.name in t.payload_regs:
            continue
        poison = unwind.poison(index, reg.bits)
        mask = (1 << preserved.get(reg.name, 0)) - 1
        assert written[reg.name] == (values[reg.name] & mask) | (poison & ~mask), reg.name
    if cc == "tail":
        assert len(written) == len(t.registers) - len(kept & {r.name for r in t.registers})


# --- the twin ------------------------------------------------------------------


def test_the_twin_jumps_to_the_handler_the_tag_picks() -> None:
    twin = interpretable(_case("tail"))
    assert "try_call" not in twin
    assert "    jump block3(v1, v3, v21)\n" in twin  # tag2: exn1, exn0 swapped
    untagged = interpretable(_case("tail").replace("iconst.i32 2", "iconst.i32 9"))
    assert "    jump block2(v3, v1, v1)\n" in untagged  # the default
    tag1 = interpretable(_case("tail").replace("iconst.i32 2", "iconst.i32 1"))
    assert "    jump block2(v3, v1, v0)\n" in tag1


def test_the_twin_leaves_an_uncaught_throw_and_drops_the_throwers_address() -> None:
    uncaught = _case("tail").replace(", default: block2(exn0, exn1, v1)", "")
    uncaught = uncaught.replace("iconst.i32 2", "iconst.i32 9")
    assert "try_call fn0" in interpretable(uncaught)  # the interpreter says unsupported
    indirect = _case("tail").replace(
        "    try_call fn0(", "    v30 = func_addr.i64 fn0\n    try_call_indirect v30("
    )
    twin = interpretable(indirect)
    assert "    v30 = iconst.i64 0\n" in twin
    assert "    jump block3(v1, v3, v21)\n" in twin


def test_a_generated_callee_is_still_a_call_and_a_jump() -> None:
    text = _case("tail").replace("%Throw_tail", "%f1")
    assert "    call fn0(v2, v3, v1)\n    jump block1(v0)\n" in interpretable(text)


# --- the bridge and the generator ---------------------------------------------------


def test_the_bridge_reports_each_try_call_sites_handlers() -> None:
    module = _cranelift.parse(_case("system_v"))
    for name in NAMES:
        [compiled] = module.compile(_cranelift.Isa(name, [], []))
        [(ret, frame_offset, handlers)] = compiled["try_sites"]
        assert ret in compiled["call_returns"]
        assert frame_offset is not None
        assert [tag for tag, _ in handlers] == [1, 2, None]
        assert all(0 < at < len(compiled["code"]) for _, at in handlers)
        assert len({at for _, at in handlers}) == 3


_THROW_DECL = re.compile(r"^ +(fn\d+) = (?:colocated )?%Throw_(\w+) (sig\d+)$", re.M)


@pytest.mark.parametrize("name", NAMES)
def test_generated_throws_catch_what_they_throw_and_agree(name: str) -> None:
    """Generated cases with throwers: each thrower's convention has payload
    registers, and the executed code lands where the twin jumps."""
    target = TARGETS[name]
    texts = []
    for seed in range(300):
        text = generate(RandomSource(seed), target).text
        decls = _THROW_DECL.findall(text)
        if not decls:
            continue
        assert {cc for _, cc, _ in decls} <= set(target.exception_payloads)
        assert all(target.exception_payloads[cc] for _, cc, _ in decls)
        # known findings on riscv64 (fs1, RVV saves) and preserve_all
        # callers (corpus/*-preserve-all-*) are not this test's subject
        if "preserve_all" in text or "tls_value" in text or "i8x16" in text:
            continue
        if name == "riscv64" and any(cc != "system_v" for _, cc, _ in decls):
            continue
        texts.append(text)
        if len(texts) == 2:
            break
    assert len(texts) == 2
    runner = Runner()
    for text in texts:
        assert "try_call" not in interpretable(text)
        for result in runner.run_file(parse_text(text), [TargetLine(target)]):
            verdicts = result.judgement.verdicts
            assert set(verdicts.values()) <= {Verdict.AGREE, Verdict.NOT_EXECUTABLE}, verdicts
    assert runner.emulator(target).throws > 0
