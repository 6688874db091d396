"""Runs are independent and reproducible: every run starts from the same
machine state, a result that depends on state the program never wrote is
`undefined behaviour`, and a reduced reproducer is the same bug, verified the
way a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Kind, Verdict, is_finding
from fuzz.pipeline.runner import Runner, RunResult
from fuzz.targets import TARGETS
from reducers.reduce import goal_for, reduce_text
from reducers.same_bucket import SameBucket

ROOT = Path(__file__).resolve().parents[1]
FRAME_BUG = ROOT / "corpus" / "aarch64-apple-narrow-stack-args.clif"


def _file(target: str, body: str) -> str:
    return f"test interpret\ntest run\ntarget {target}\n\n{body}"


# Reads a slot near the top of the stack and one deep below it, never written.
UNWRITTEN = """\
function %main() -> i64, i64 {
    ss0 = explicit_slot 8
    ss1 = explicit_slot 200000
block0:
    v0 = stack_addr.i64 ss0
    v1 = load.i64 v0
    v2 = stack_addr.i64 ss1
    v3 = load.i64 v2
    return v1, v3
}
; run: %main() == [0, 0]
"""

# Writes a pattern of its own over the same kind of slots.
DIRTY = """\
function %main(i64) -> i64 {
    ss0 = explicit_slot 8
    ss1 = explicit_slot 200000
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store v0, v1
    v2 = stack_addr.i64 ss1
    store v0, v2
    store v0, v2+8
    return v0
}
; run: %main(0x1234567) == 0x1234567
"""


def _run(runner: Runner, target: str, body: str) -> RunResult:
    ft = parse_text(_file(target, body))
    (result,) = runner.run_file(ft, [TargetLine(TARGETS[target])])
    return result


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_run_starts_from_the_same_state_whatever_ran_before(target: str) -> None:
    raw = Runner(ub_check=False)
    first = _run(raw, target, UNWRITTEN).outcomes[target]
    assert first.kind is Kind.RETURN, first
    dirtied = _run(raw, target, DIRTY).outcomes[target]
    assert dirtied.values[0].bits == 0x1234567  # it did run and write
    again = _run(raw, target, UNWRITTEN).outcomes[target]
    fresh = _run(Runner(ub_check=False), target, UNWRITTEN).outcomes[target]
    assert again.identical(first), (first, again)
    assert fresh.identical(first), (first, fresh)


@pytest.mark.parametrize("target", list(TARGETS))
def test_reading_unwritten_state_is_undefined_behaviour(target: str) -> None:
    result = _run(Runner(), target, UNWRITTEN)
    verdict = result.judgement.verdicts[target]
    assert verdict is Verdict.UNDEFINED_BEHAVIOUR, result.outcomes[target]
    assert "reads state it never wrote" in result.outcomes[target].detail
    assert not is_finding(verdict, target in result.judgement.blame)
    assert not result.judgement.divergent


STORE_INTO_CODE = """\
function %victim() -> i64 {
block0:
    v0 = iconst.i64 7
    return v0
}

function %main() -> i64 {
    fn0 = %victim() -> i64
block0:
    v0 = func_addr.i64 fn0
    v1 = iconst.i64 0
    store v1, v0
    v2 = call fn0()
    return v2
}
; print: %main()
"""

CALL_VICTIM = """\
function %victim() -> i64 {
block0:
    v0 = iconst.i64 7
    return v0
}
; run: %victim() == 7
"""


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_store_into_code_is_a_crash_and_changes_nothing(target: str) -> None:
    runner = Runner(ub_check=False)
    crashed = _run(runner, target, STORE_INTO_CODE).outcomes[target]
    assert crashed.kind is Kind.CRASH, crashed
    assert "write to protected memory" in crashed.detail
    assert _run(runner, target, CALL_VICTIM).judgement.verdicts[target] is Verdict.AGREE


# --- reductions are the same bug ---------------------------------------------------


def _uninitialised_candidate(text: str) -> str:
    """The frame bug without the store and the call: the symptom kept only by
    reading the slot nothing wrote (what the reducer took before)."""
    lines = [
        line
        for line in text.splitlines()
        if not line.strip().startswith(("store ", "v2 = call", "v1 = iconst"))
    ]
    return "\n".join(lines) + "\n"


def test_the_frame_bug_is_a_wrong_result_blamed_on_aarch64() -> None:
    ft = parse_text(FRAME_BUG.read_text())
    (result,) = Runner().run_file(ft, [TargetLine(TARGETS["aarch64"])])
    assert result.judgement.verdicts["aarch64"] is Verdict.WRONG_RESULT
    assert result.judgement.blame == ["aarch64"]


def test_an_uninitialised_read_does_not_pass_for_the_bug() -> None:
    text = FRAME_BUG.read_text()
    goal = goal_for(text, "aarch64")
    assert goal is not None and "wrong result" in goal.key
    candidate = _uninitialised_candidate(text)
    assert "call" not in candidate.split("block0", 2)[2]
    # it still diverges from the interpreter, but only by reading unwritten state
    (result,) = Runner().run_file(parse_text(candidate), [TargetLine(TARGETS["aarch64"])])
    assert result.judgement.verdicts["aarch64"] is Verdict.UNDEFINED_BEHAVIOUR
    assert not SameBucket(goal)(candidate)
    assert SameBucket(goal)(text)


def _padded(text: str) -> str:
    """The frame bug with noise around it: an unused helper and extra work."""
    noise = """
function %unused(i64) -> i64 {
block0(v0: i64):
    v3 = iconst.i64 5
    v1 = iadd v0, v3
    v2 = imul v1, v1
    return v2
}
"""
    return text.replace("function %main", noise.lstrip() + "\nfunction %main", 1)


def test_the_reduced_frame_bug_keeps_call_and_store_and_reproduces_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    text = _padded(FRAME_BUG.read_text())
    goal = goal_for(text, "aarch64")
    assert goal is not None
    reduction = reduce_text(text, goal, time_limit=60)
    reduced = reduction.text
    assert reduction.verified_on is not None
    body = reduced.split("function %main", 1)[-1] if "%main" in reduced else reduced
    assert "call " in reduced and "store " in reduced, reduced
    assert reduction.lines_after < reduction.lines_before
    path = tmp_path / "reduced.clif"
    path.write_text(reduced)
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.commands.cli", "run", str(path), "-t", "aarch64", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    verdicts = [
        o["verdict"] for f in report["files"] for r in f["runs"] for o in r["outcomes"].values()
    ]
    assert "wrong result" in verdicts and "undefined behaviour" not in verdicts, body


def test_a_stored_reduction_says_it_was_verified(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fuzz import _cranelift
    from fuzz.commands.cli import cli
    from fuzz.triage.attribution import attributed_bucket
    from fuzz.triage.buckets import details
    from fuzz.triage.records import FindingRecord, Progress
    from fuzz.triage.store import open_db

    text = _padded(FRAME_BUG.read_text())
    ft = parse_text(text)
    line = TargetLine(TARGETS["aarch64"])
    runner = Runner()
    (result,) = runner.run_file(ft, [line])
    bucket = attributed_bucket(runner, ft, line, "aarch64", result)  # as a campaign keys it
    url = f"sqlite:///{tmp_path / 'triage.sqlite'}"
    db = open_db(url)
    cid = db.start_campaign(
        host="h",
        cranelift_version="0.135.8",
        targets=["aarch64"],
        flags={},
        engine="random",
        seed=1,
        jobs=1,
    )
    record = FindingRecord(
        clif=text,
        target="aarch64",
        flags=[],
        verdict=result.judgement.verdicts["aarch64"].value,
        details=details(ft, result, "aarch64"),
        blame=result.judgement.blame,
        bucket_key=bucket.key,
        bucket_title=bucket.title,
        cranelift_version=_cranelift.version(),
    )
    [bucket_id] = db.record_batch(cid, [record], Progress(1, 2, {}, {}, 1.0))
    db.close()
    cli_runner = CliRunner()
    reduced = cli_runner.invoke(cli, ["reduce", str(bucket_id), "--db", url, "--time-limit", "60"])
    assert reduced.exit_code == 0, reduced.output
    shown = cli_runner.invoke(cli, ["triage", "show", str(bucket_id), "--db", url])
    assert f"verified afresh on Cranelift {_cranelift.version()}" in shown.output
    out = tmp_path / "export.clif"
    exported = cli_runner.invoke(
        cli, ["triage", "export", str(bucket_id), "--db", url, "-o", str(out)]
    )
    assert exported.exit_code == 0 and "verified" in exported.output
    assert "reproduced this bucket when run afresh" in out.read_text()


def test_a_stray_jump_past_the_image_faults_whatever_ran_before() -> None:
    """Code pages are mapped for the current image only: a jump past its end
    faults as in a fresh emulator, not into an earlier, larger image's code."""
    from fuzz.pipeline.emulate import Emulator
    from fuzz.pipeline.link import CODE_BASE, Image

    def image(code: bytes, size: int) -> Image:
        data = bytearray(size)
        data[: len(code)] = code
        return Image(CODE_BASE, data, {"%f": CODE_BASE}, {"%f": len(code)})

    larger = image(b"\xc3", 0x2000)
    larger.data[0x1000:0x1006] = b"\xb8\x2a\x00\x00\x00\xc3"  # mov eax, 42; ret
    jumps = image(b"\xe9" + (0x1000 - 5).to_bytes(4, "little"), 64)  # jmp +0x1000
    fresh = Emulator(TARGETS["x86_64"]).run(jumps, CODE_BASE, 0, bytes(16))
    used = Emulator(TARGETS["x86_64"])
    used.run(larger, CODE_BASE, 0, bytes(16))
    after = used.run(jumps, CODE_BASE, 0, bytes(16))
    assert fresh.kind == "crash" and "unmapped" in fresh.detail
    assert (after.kind, after.detail) == (fresh.kind, fresh.detail)


def test_the_two_initial_states_differ_in_every_register_byte() -> None:
    from fuzz.pipeline.emulate import canary

    for index in range(64):
        for bits in (64, 128):
            a, b = canary(0, index, bits), canary(1, index, bits)
            size = bits // 8
            assert all(
                x != y
                for x, y in zip(a.to_bytes(size, "little"), b.to_bytes(size, "little"), strict=True)
            )


def test_a_small_budget_is_always_counted() -> None:
    """A loop of ~300,000 instructions under a 100,000 budget is a timeout on
    any machine: the wall-clock shortcut is not taken for such a budget."""
    text = _file(
        "x86_64",
        """function %main(i64) -> i64 {
block0(v0: i64):
    jump block1(v0)
block1(v1: i64):
    v3 = iconst.i64 -1
    v2 = iadd v1, v3
    brif v2, block1(v2), block2
block2:
    return v2
}
; run: %main(100000) == 0
""",
    )
    (result,) = Runner(budget=100_000).run_file(parse_text(text), [TargetLine(TARGETS["x86_64"])])
    assert result.outcomes["x86_64"].kind is Kind.TIMEOUT


def test_pinned_register_spelled_on_is_not_checked() -> None:
    ft = parse_text((ROOT / "tests" / "data" / "contract" / "pinned-on.clif").read_text())
    for target in ("x86_64", "aarch64"):
        (result,) = Runner().run_file(ft, [TargetLine(TARGETS[target])])
        assert result.judgement.verdicts[target] is Verdict.AGREE, result.outcomes[target]
