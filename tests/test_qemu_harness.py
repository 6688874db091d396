"""The qemu-user executor never blames Cranelift for its own failures, and
leaves nothing behind (issue 22): a missing qemu program abstains naming
it; a server that dies, an image that does not fit or a failed referee is a
harness error, never a finding nor a confirmation; a run past its deadline
is a timeout even when the deadline is longer than the connection's usual
wait; a late SIGALRM does not spoil the next run; qemu-user dies with the
process that started it, and no file is left in the temporary directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from fuzz.commands.run import Summary
from fuzz.pipeline.emulate import RawOutcome
from fuzz.pipeline.filetest import RunCommand, TargetLine, parse_file, parse_text
from fuzz.pipeline.link import link
from fuzz.pipeline.oracle import Judgement, Kind, Outcome, Verdict
from fuzz.pipeline.qemu import loop, process, qemu_version, server
from fuzz.pipeline.routing import ExecutorChoice
from fuzz.pipeline.runner import Runner, RunResult, default_lines
from fuzz.targets import TARGETS

needs_qemu = pytest.mark.skipif(
    qemu_version() is None, reason="needs qemu-user (Debian package qemu-user)"
)

ONE = """test run
target aarch64

function %one(i64) -> i64 {
block0(v0: i64):
    v1 = iconst.i64 1
    v2 = iadd v0, v1
    return v2
}
; run: %one(41) == 42
"""

SPIN = """test run
target aarch64

function %spin(i64) -> i64 {
block0(v0: i64):
    jump block1(v0)
block1(v1: i64):
    v2 = iconst.i64 1
    v3 = iadd v1, v2
    jump block1(v3)
}
; run: %spin(0) == 0
"""

LINE = [TargetLine(TARGETS["aarch64"])]
CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def run_one(runner: Runner, text: str = ONE) -> tuple[Kind, str, Verdict]:
    ft = parse_text(text)
    [result] = runner.run_file(ft, LINE)
    outcome = result.outcomes["aarch64"]
    return outcome.kind, outcome.detail, result.judgement.verdicts["aarch64"]


def test_a_missing_qemu_program_abstains_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only qemu-x86_64 used to be probed: a missing qemu-aarch64 was a crash."""
    real = process.binary_path
    monkeypatch.setattr(process, "binary_path", lambda b: None if b == "qemu-aarch64" else real(b))
    kind, detail, verdict = run_one(Runner(executor=ExecutorChoice.QEMU))
    assert verdict is Verdict.NOT_EXECUTABLE, detail
    assert "qemu-aarch64 is not installed" in detail
    target = TARGETS["aarch64"]
    assert target.qemu is not None
    image = link([], target)
    raw = server.QemuServer(target, target.qemu.releases[0].cpu).run(image, 0, 0, b"", budget=1000)
    assert raw.kind == "not-executable" and "qemu-aarch64" in raw.detail


@needs_qemu
def test_a_server_that_fails_is_a_harness_error_and_the_next_run_is_clean(
    monkeypatch: pytest.MonkeyPatch, qemu_path: str
) -> None:
    runner = Runner(executor=ExecutorChoice.QEMU)
    assert run_one(runner)[2] is Verdict.AGREE
    monkeypatch.setattr(server if qemu_path == "gdbstub" else loop, "CODE_SPACE", 0)  # none fits
    kind, detail, verdict = run_one(runner)
    assert (kind, verdict) == (Kind.HARNESS, Verdict.HARNESS_ERROR)
    assert "does not fit the code space" in detail
    monkeypatch.undo()
    assert run_one(runner)[2] is Verdict.AGREE


@needs_qemu
def test_a_failed_referee_neither_confirms_nor_refutes(
    monkeypatch: pytest.MonkeyPatch, qemu_path: str
) -> None:
    """unicorn's known s390x overflow defect: qemu-user refutes it; when the
    referee fails instead, the divergence stays unicorn's, unconfirmed (it
    used to be "confirmed" by the referee's crash)."""
    ft = parse_file(str(CORPUS / "emulator-s390x-signed-overflow-cc.clif"))
    lines = default_lines(ft, None)
    [refereed] = Runner().run_file(ft, lines)
    assert refereed.judgement.verdicts["s390x"] is Verdict.EMULATOR_DISAGREEMENT
    monkeypatch.setattr(
        server.QemuServer if qemu_path == "gdbstub" else loop.LoopServer,
        "run",
        lambda *args, **kwargs: RawOutcome("harness", detail="qemu-user died: planted"),
    )
    [result] = Runner().run_file(ft, lines)
    assert result.judgement.verdicts["s390x"] is Verdict.WRONG_RESULT
    assert result.outcomes["s390x"].confirmed_by == ""


@needs_qemu
def test_a_deadline_longer_than_the_usual_wait_is_a_timeout(
    monkeypatch: pytest.MonkeyPatch, qemu_path: str
) -> None:
    """The connection used to wait 30 s whatever the deadline: with a budget
    worth more than that, a spin loop was a crash, "timed out". Here the
    usual wait is shorter than the 1 s deadline."""
    monkeypatch.setattr(server, "SOCKET_SLACK", 0.3)
    runner = Runner(executor=ExecutorChoice.QEMU, budget=1_000, ub_check=False)
    kind, detail, _verdict = run_one(runner, SPIN)
    assert kind is Kind.TIMEOUT, detail
    assert run_one(runner)[0] is Kind.RETURN


@needs_qemu
def test_a_late_alarm_does_not_spoil_the_next_run(qemu_path: str) -> None:
    """A SIGALRM that rings after a run's last stop is pending when the next
    run starts: it used to stop the fill, a crash."""
    runner = Runner(executor=ExecutorChoice.QEMU)
    assert run_one(runner)[0] is Kind.RETURN
    [qemu] = runner.qemu.servers.values()
    assert qemu.pid is not None
    os.kill(qemu.pid, signal.SIGALRM)
    kind, detail, verdict = run_one(runner)
    assert (kind, verdict) == (Kind.RETURN, Verdict.AGREE), detail


CHILD = textwrap.dedent(
    """
    import json, sys
    from fuzz.pipeline.filetest import TargetLine, parse_text
    from fuzz.pipeline.routing import ExecutorChoice
    from fuzz.pipeline.runner import Runner
    from fuzz.targets import TARGETS

    one, spin = json.load(sys.stdin)
    line = [TargetLine(TARGETS["aarch64"])]
    runner = Runner(executor=ExecutorChoice.QEMU, budget=10**12)
    runner.run_file(parse_text(one), line)
    [server] = runner.qemu.servers.values()
    print(server.pid, flush=True)
    runner.run_file(parse_text(spin), line)  # spins until the test kills it
    """
)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _spinning(pid: int, seconds: float = 20.0) -> bool:
    """Whether `pid` burns CPU (the guest's loop runs) within `seconds`."""
    first = _cpu_ticks(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _cpu_ticks(pid) - first >= 20:  # 0.2 s of CPU at 100 ticks a second
            return True
        time.sleep(0.02)
    return False


def _gone(pid: int, seconds: float = 10.0) -> bool:
    """Whether `pid` is gone (or a zombie) within `seconds`: waits for an
    event, polling; a live process fails the test at the end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


@needs_qemu
@pytest.mark.parametrize("round_", range(3))
def test_a_killed_process_leaves_no_qemu_and_no_file(round_: int, qemu_path: str) -> None:
    """A campaign SIGKILLs hung workers: their qemu-user used to live on,
    re-parented to PID 1 and spinning, and their server files stayed in /tmp."""
    tmp = tempfile.gettempdir()
    before = set(os.listdir(tmp))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    json.dump([ONE, SPIN], child.stdin)
    child.stdin.close()
    qemu = int(child.stdout.readline())
    # killed mid-run: the guest spins, and no gdb stop would notice the
    # lost connection
    assert _spinning(qemu), "the spin run did not start"
    child.kill()
    child.wait()
    assert _gone(qemu), f"qemu-user {qemu} outlived its parent"
    mine = f"-{child.pid}-"  # fuzz.scratch names a directory after its process
    left = [name for name in set(os.listdir(tmp)) - before if mine in name]
    assert not left, f"left in {tmp}: {left}"
    assert not list(Path(tmp).glob(f"callfuzz-{os.getuid()}/server-*-{child.pid}"))


def test_a_harness_error_is_counted_apart_and_run_exits_2() -> None:
    """`callfuzz run`: a harness error is neither a divergence nor an
    abstention that hides it; with nothing divergent the exit is 2."""
    failed = Outcome(Kind.HARNESS, detail="qemu-user died: planted", executor="qemu-user")
    ok = Outcome(Kind.RETURN, executor="unicorn")
    command = RunCommand("f", "run: %f()", (), None, None)
    summary = Summary()
    summary.add(
        ["aarch64", "x86_64"],
        [
            RunResult(
                command,
                {"aarch64": failed, "x86_64": ok},
                Judgement({"aarch64": Verdict.HARNESS_ERROR, "x86_64": Verdict.AGREE}),
            )
        ],
    )
    assert summary.harness_errors == 1 and not summary.divergent
    assert summary.exit_code() == 2
    assert "1 harness errors" in summary.headline()
    assert sum(summary.executors["aarch64"].abstained.values()) == 0
