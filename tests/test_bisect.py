"""`callfuzz bisect`: the search, the classification of a step (reproduces,
does not, skip) and the steps themselves.

- The search logic runs on faked child processes (`run_step` gives what a
  child would print), but through the real `Judge` and `classify`.
- Real steps run the real child (`fuzz.commands.bisect_step`) on the bridge
  pip installed, placed in a temporary cache under its own release's key
  (what a build leaves there): no build, no network.
- The real bisection of corpus/aarch64-preserve-all-vector-low-half.clif
  needs the bridges of 0.121.2, 0.128.4, 0.130.2 and 0.131.3 built already
  (CALLFUZZ_TEST_CACHE pointing at a cache that has them, e.g. after
  `callfuzz cranelift build 0.128.4`: about 4 minutes each); it is skipped,
  saying which are missing, otherwise."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import fuzz
from fuzz.bridge import cache
from fuzz.commands import bisect as b
from fuzz.commands.bisect_search import Kind, Search, describe, search
from fuzz.commands.bisect_step import BAD_INPUT, outcome, outcomes
from fuzz.commands.common import EXIT_BAD_INPUT
from fuzz.pipeline import runner as runner_module

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
VERSIONS = [f"0.{minor}.{minor % 3}" for minor in range(109, 129)]
KEY = "aarch64|abi violation|callee-saved register|vector"
PANIC_KEY = "aarch64|compile panic|cranelift-codegen/src/isa/aarch64/abi.rs"
PANIC = (
    "support for StructReturn parameters is not implemented for the `tail` calling convention yet"
)


def ran(*outcomes: dict[str, object]) -> b.Ran:
    """What a child prints for these outcomes (bisect_step's own format)."""
    return b.Ran(0, json.dumps(list(outcomes)), "")


BUG = ran(outcome("abi violation", "callee-saved register v0 (vector) ...", KEY))
OTHER_BUG = ran(outcome("abi violation", "callee-saved register x19 (int) ...", KEY[:-6] + "int"))
NO_FINDING = ran(outcome("agree", "7"))
BAD = ran(outcome(BAD_INPUT, "malformed CLIF: line 9: unknown calling convention"))
DIED = b.Ran(-signal.SIGSEGV, "", "")
NO_BRIDGE = b.Ran(2, "", "callfuzz: building the bridge for Cranelift 0.120.0 failed: ...\n")


def fake_steps(
    monkeypatch: pytest.MonkeyPatch, at: Callable[[int], b.Ran], versions: list[str] = VERSIONS
) -> list[str]:
    """`run_step` gives `at(index of the version)`; returns the versions run."""
    seen: list[str] = []

    def run_step(path: Path, target: str, version: str, c_abi: bool = False) -> b.Ran:
        seen.append(version)
        return at(versions.index(version))

    monkeypatch.setattr(b, "run_step", run_step)
    return seen


def bisect(goal_key: str = KEY, scan: bool = False, message: str = "") -> Search:
    judge = b.Judge(b.Goal("aarch64", goal_key, message), Path("case.clif"), VERSIONS)
    return search(judge, VERSIONS, scan)


# --- the search, with the real classification ---------------------------------------


@pytest.mark.parametrize("first_bad", ["0.110.2", "0.120.0", "0.128.2"])
def test_the_search_names_the_first_release_that_reproduces(
    first_bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = VERSIONS.index(first_bad)
    seen = fake_steps(monkeypatch, lambda i: BUG if i >= start else NO_FINDING)
    text = describe(bisect())
    assert text.startswith(
        f"first reproduces on {first_bad}; last release without it: {VERSIONS[start - 1]}"
    )
    assert len(seen) <= 2 + 5  # both ends, then log2(20) halvings


def test_a_fixed_finding_names_the_release_that_fixed_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = VERSIONS.index("0.117.0")
    fake_steps(monkeypatch, lambda i: BUG if i < fixed else NO_FINDING)
    assert describe(bisect()) == (
        f"reproduces on the oldest release tried, {VERSIONS[0]}; "
        f"fixed in 0.117.0; last release with it: {VERSIONS[fixed - 1]}"
    )


def test_the_same_verdict_with_another_bucket_key_does_not_reproduce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every release breaks a callee-saved register; only from 0.121 a vector one
    start = VERSIONS.index("0.121.1")
    fake_steps(monkeypatch, lambda i: BUG if i >= start else OTHER_BUG)
    found = bisect()
    assert describe(found).startswith("first reproduces on 0.121.1; last release without it:")
    assert found.seen[0].kind is Kind.CLEAN and "x19 (int)" in found.seen[0].got


def test_a_compile_panic_reproduces_on_its_message_whatever_its_line() -> None:
    def panic(line: int, message: str) -> b.Ran:
        detail = f"{message} at /x/cranelift-codegen-0.120.0/src/isa/aarch64/abi.rs:{line}:17"
        return ran(outcome("compile panic", detail, f"{PANIC_KEY}:{line}", message))

    goal = b.Goal("aarch64", b.comparable_key(f"{PANIC_KEY}:241"), PANIC)
    assert b.classify(goal, panic(241, PANIC))[0] is Kind.REPRODUCES
    assert b.classify(goal, panic(198, PANIC))[0] is Kind.REPRODUCES  # the line moved
    assert b.classify(goal, panic(241, "assertion failed: x"))[0] is Kind.CLEAN
    # a known bucket's key matches the findings it took in
    assert b.comparable_key(f"{KEY}|known:some-entry") == KEY


def test_a_bucket_goal_has_its_key_and_its_panic_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'triage.sqlite'}"
    make_bucket(url, f"{PANIC_KEY}:241", PANIC)
    goal, text = b.bucket_goal(url, 1, "aarch64")
    assert goal == b.Goal("aarch64", PANIC_KEY, PANIC)
    assert text == (CORPUS / "aarch64-tail-sret-panic.clif").read_text()
    other = ran(outcome("compile panic", "unreachable at x.rs:3", f"{PANIC_KEY}:3", "unreachable"))
    assert b.classify(goal, other)[0] is Kind.CLEAN


def test_bad_input_is_a_skip_and_never_the_goal(monkeypatch: pytest.MonkeyPatch) -> None:
    # a file that the oldest releases cannot read, and that gives its finding
    # from 0.121 on: bad input is neither the goal nor a boundary
    unreadable, start = VERSIONS.index("0.115.1"), VERSIONS.index("0.121.1")
    fake_steps(
        monkeypatch, lambda i: BAD if i <= unreadable else (BUG if i >= start else NO_FINDING)
    )
    found = bisect(goal_key="")
    assert describe(found).startswith("first reproduces on 0.121.1; last release without it:")
    assert all(s.kind is Kind.SKIP for i, s in found.seen.items() if i <= unreadable)
    # nothing but bad input and no finding: no goal at all, nothing reproduces
    fake_steps(monkeypatch, lambda i: BAD if i % 2 else NO_FINDING)
    judge = b.Judge(b.Goal("aarch64", ""), Path("case.clif"), VERSIONS)
    found = search(judge, VERSIONS)
    assert judge.goal.key == "" and not found.kinds(Kind.REPRODUCES)
    assert describe(found) == "reproduces on no release from 0.109.1 to 0.128.2 (10 skipped)"


def test_skips_next_to_the_boundary_are_named_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    start = VERSIONS.index("0.121.1")
    fake_steps(
        monkeypatch,
        lambda i: BAD if start - 3 <= i < start else (BUG if i >= start else NO_FINDING),
    )
    assert describe(bisect()).startswith(
        "first reproduces on 0.121.1, or on a skipped release before it "
        "(0.118.1 to 0.120.0 (3 releases)); last release without it: 0.117.0"
    )


def test_a_step_that_crashes_or_has_no_bridge_is_a_skip_and_the_search_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = VERSIONS.index("0.121.1")
    broken = {VERSIONS.index("0.118.1"): NO_BRIDGE, start: DIED, len(VERSIONS) - 1: NO_BRIDGE}
    fake_steps(monkeypatch, lambda i: broken.get(i) or (BUG if i >= start else NO_FINDING))
    found = bisect()
    assert describe(found).startswith(
        "first reproduces on 0.122.2, or on a skipped release before it (0.121.1); "
        "last release without it: 0.120.0"
    )
    assert "died of SIGSEGV" in found.seen[start].got
    assert "building the bridge" in found.seen[len(VERSIONS) - 1].got


def test_a_bug_only_in_the_middle_of_the_range_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    first, last = VERSIONS.index("0.113.2"), VERSIONS.index("0.115.1")
    seen = fake_steps(monkeypatch, lambda i: BUG if first <= i <= last else NO_FINDING)
    assert describe(bisect()) == (
        "first reproduces on 0.113.2; last release without it: 0.112.1; "
        "fixed in 0.116.2; last release with it: 0.115.1"
    )
    assert len(seen) < len(VERSIONS)


def test_scan_finds_a_finding_that_comes_and_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    back = {VERSIONS.index(v) for v in ("0.111.0", "0.112.1", "0.125.2", "0.126.0")}
    seen = fake_steps(monkeypatch, lambda i: BUG if i in back else NO_FINDING)
    assert describe(bisect(scan=True)) == (
        "first reproduces on 0.111.0; last release without it: 0.110.2; "
        "fixed in 0.113.2; last release with it: 0.112.1; then "
        "first reproduces on 0.125.2; last release without it: 0.124.1; "
        "fixed in 0.127.1; last release with it: 0.126.0"
    )
    assert sorted(seen) == sorted(VERSIONS)


def test_both_ends_reproducing_says_what_was_not_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_steps(monkeypatch, lambda i: BUG)
    assert describe(bisect()) == (
        "reproduces on the oldest release tried, 0.109.1; still reproduces on the newest, "
        "0.128.2 (18 releases between were not tried: --scan tries them)"
    )


def test_a_run_that_did_not_get_to_execute_is_a_skip_for_a_runtime_goal() -> None:
    goal = b.Goal("aarch64", KEY)
    stopped = ran(outcome("compile error", "Unsupported feature: preserve_all", "aarch64|x"))
    assert b.classify(goal, stopped)[0] is Kind.SKIP
    assert b.classify(goal, ran(outcome("not executable here", "no qemu")))[0] is Kind.SKIP
    assert b.classify(goal, ran())[0] is Kind.SKIP  # nothing ran on the target


def test_a_hard_crash_goal_reproduces_when_the_step_dies_the_same_way() -> None:
    goal = b.Goal("aarch64", "aarch64|hard crash|SIGSEGV")
    assert b.classify(goal, DIED)[0] is Kind.REPRODUCES
    assert b.classify(goal, b.Ran(-signal.SIGABRT, "", ""))[0] is Kind.SKIP


def test_the_feature_table_skips_releases_before_a_checked_one_without_a_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (CORPUS / "aarch64-preserve-all-vector-low-half.clif").read_text()
    need = b.needs(text)
    assert need == b.Needs("preserve_all", (0, 128, 0))
    versions = [f"0.{minor}.0" for minor in range(121, 136)]
    first, fixed = versions.index("0.128.0"), versions.index("0.131.0")
    for check_reads_it in (False, True):

        def at(i: int, reads: bool = check_reads_it) -> b.Ran:
            if i < first:
                return NO_FINDING if reads and i == first - 1 else BAD
            return BUG if i < fixed else NO_FINDING

        seen = fake_steps(monkeypatch, at, versions)
        judge = b.Judge(b.Goal("aarch64", ""), Path("case.clif"), versions)
        check = judge.predict(need)
        assert check == versions.index("0.127.0")
        found = search(judge, versions, early=[check])
        text = describe(found)
        assert text.endswith("fixed in 0.131.0; last release with it: 0.130.0")
        older = [v for v in seen if versions.index(v) < first - 1]
        if check_reads_it:  # the table is wrong for this file: nothing predicted
            assert older and text.startswith("first reproduces on 0.128.0; last release without")
        else:
            assert older == [] and text.startswith(
                "first reproduces on 0.128.0; no older release could be tried "
                "(0.121.0 to 0.127.0 (7 releases))"
            )
            assert "uses preserve_all, new in 0.128" in found.seen[0].got
    assert b.needs("function %preserve_all() {\nblock0:\n  return\n}  ; f16\n") is None


def test_release_lines_are_the_newest_patch_of_each(monkeypatch: pytest.MonkeyPatch) -> None:
    from fuzz.bridge import spec

    index = spec.Index(
        ("0.109.0", "0.109.1", "0.110.0", "0.111.2", "0.111.10", "0.112.0"), (), 1e18
    )
    monkeypatch.setattr(spec.Index, "load", classmethod(lambda cls: index))
    assert b.releases("0.109.1", "0.111.10") == ["0.109.1", "0.110.0", "0.111.10"]


def test_a_bad_target_or_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(b.bisect, [str(tmp_path / "missing.clif"), "-t", "x86_64"])
    assert result.exit_code == EXIT_BAD_INPUT
    result = runner.invoke(b.bisect, ["x.clif", "-t", "sparc"])
    assert result.exit_code == EXIT_BAD_INPUT


# --- real steps: the child process, on the bridge pip installed -----------------------

INSTALLED = subprocess.run(
    [sys.executable, "-c", "from fuzz import _cranelift; print(_cranelift.version())"],
    capture_output=True,
    text=True,
    check=True,
    env={k: v for k, v in os.environ.items() if k not in ("CALLFUZZ_CRANELIFT", "CALLFUZZ_BRIDGE")},
).stdout.strip()


@pytest.fixture
def installed_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding the bridge pip installed as its release's entry, and
    no cargo: any other release is a failed build."""
    monkeypatch.setenv(cache.ENV_CACHE, str(tmp_path / "cache"))
    for var in ("CALLFUZZ_CRANELIFT", "CALLFUZZ_BRIDGE"):
        monkeypatch.delenv(var, raising=False)
    found = importlib.machinery.PathFinder.find_spec("fuzz._cranelift", list(fuzz.__path__))
    assert found is not None and found.origin is not None
    entry = cache.bridges_dir() / f"release-{INSTALLED}"
    entry.mkdir(parents=True)
    shutil.copy(found.origin, entry / cache.LIBRARY)
    record = {"format": cache.RECORD_FORMAT, "kind": "release", "version": INSTALLED}
    (entry / cache.RECORD).write_text(json.dumps(record | {"bridge_source": cache.source_hash()}))
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path / "cache"


def test_a_real_step_reproduces_a_compile_panic_and_no_other_message(
    installed_cache: Path,
) -> None:
    step = b.run_step(CORPUS / "aarch64-tail-sret-panic.clif", "aarch64", INSTALLED)
    goal = b.goal_from("aarch64", step)
    assert goal == b.Goal("aarch64", PANIC_KEY, PANIC)
    assert b.classify(goal, step) == (Kind.REPRODUCES, f"compile panic: {PANIC[:70]}")
    assert b.classify(b.Goal("aarch64", PANIC_KEY, "other"), step)[0] is Kind.CLEAN
    assert b.classify(b.Goal("aarch64", KEY), step)[0] is Kind.SKIP  # it never ran
    clean = b.run_step(CORPUS / "aarch64-preserve-all-vector-low-half.clif", "aarch64", INSTALLED)
    assert b.classify(b.Goal("aarch64", KEY), clean) == (Kind.CLEAN, "no finding")


def test_a_real_step_on_a_file_the_release_cannot_read_is_a_skip(
    installed_cache: Path, tmp_path: Path
) -> None:
    path = tmp_path / "old.clif"
    path.write_text("test run\ntarget aarch64\nfunction %f() fancy_new_cc {\nblock0:\n return\n}\n")
    step = b.run_step(path, "aarch64", INSTALLED)
    kind, got = b.classify(b.Goal("aarch64", KEY), step)
    assert kind is Kind.SKIP and got.startswith("bad input: ") and "fancy_new_cc" in got
    assert b.goal_from("aarch64", step) is None


def test_a_step_on_code_the_release_lacks_a_feature_for_is_a_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the gate `callfuzz run` applies: try_call is new in 0.120 by the table;
    # run anyway on an older release it gave the harness's own failure (a
    # throw with no try_call site known) as "does not reproduce", a false
    # boundary
    monkeypatch.setattr(runner_module._cranelift, "version", lambda: "0.119.1")
    path = CORPUS / "aarch64-tail-try-call-callee-saves-0.121.clif"
    step = ran(*outcomes(str(path), "aarch64"))
    goal = b.Goal("aarch64", "aarch64|abi violation|tail|callee-saved register|int")
    kind, got = b.classify(goal, step)
    assert (kind, got) == (
        Kind.SKIP,
        "not for this release: it uses try_call (new in 0.120) (fuzz/features.py)",
    )
    assert b.goal_from("aarch64", step) is None


def test_a_real_step_whose_bridge_does_not_build_is_a_skip(installed_cache: Path) -> None:
    step = b.run_step(CORPUS / "aarch64-tail-sret-panic.clif", "aarch64", "0.131.3")
    kind, got = b.classify(b.Goal("aarch64", PANIC_KEY, PANIC), step)
    assert kind is Kind.SKIP
    assert got == (
        "the step failed (exit 2): cannot build a bridge: cargo is not on PATH (install Rust)"
    )


def test_a_real_step_that_dies_is_a_skip(
    installed_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dying_step.py").write_text("import os, signal\nos.kill(os.getpid(), 11)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(b, "STEP_MODULE", "dying_step")
    step = b.run_step(CORPUS / "aarch64-tail-sret-panic.clif", "aarch64", INSTALLED)
    assert step.code == -signal.SIGSEGV
    assert b.classify(b.Goal("aarch64", PANIC_KEY), step) == (
        Kind.SKIP,
        "the step died of SIGSEGV",
    )


def test_a_real_step_that_hangs_is_ended_and_a_skip(
    installed_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hanging_step.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(b, "STEP_MODULE", "hanging_step")
    monkeypatch.setattr(b, "STEP_TIMEOUT", 1.0)
    step = b.run_step(CORPUS / "aarch64-tail-sret-panic.clif", "aarch64", INSTALLED)
    assert step.timed_out
    assert b.classify(b.Goal("aarch64", PANIC_KEY), step) == (
        Kind.SKIP,
        "the step timed out after 1 s",
    )


def test_the_command_bisects_a_bucket_with_real_steps(
    installed_cache: Path, tmp_path: Path
) -> None:
    """0.131.3 cannot be built here (no cargo): a skip, and the search names
    the installed release as the first that reproduces."""
    if INSTALLED != "0.135.8":
        pytest.skip(f"the fixture index names 0.135.8, the bridge pip installed is {INSTALLED}")
    url = f"sqlite:///{tmp_path / 'triage.sqlite'}"
    make_bucket(url, f"{PANIC_KEY}:241", PANIC)
    args = ["1", "-t", "aarch64", "--db", url, "--from", "0.131", "--to", "0.135"]
    result = CliRunner().invoke(b.bisect, args)
    assert result.exit_code == 0, result.output
    assert "0.131.3  skip" in result.output and "0.135.8  reproduces" in result.output
    expected = (
        "first reproduces on 0.135.8; no older release could be tried (0.131.3); "
        "still reproduces on the newest, 0.135.8"
    )
    assert expected in result.output
    from fuzz.triage.store import open_db

    db = open_db(url, create=False)
    info = db.get_bucket(1)
    db.close()
    assert info is not None and f"bisect on aarch64: {expected}" in info.notes


def make_bucket(url: str, key: str, message: str) -> None:
    from fuzz.triage.records import FindingRecord, Progress
    from fuzz.triage.store import open_db

    db = open_db(url)
    campaign = db.start_campaign(
        host="box",
        cranelift_version="0.135.8",
        targets=["aarch64"],
        flags={},
        engine="random",
        seed=1,
        jobs=1,
    )
    where = "/x/cranelift-codegen-0.135.8/src/isa/aarch64/abi.rs:241:17"
    record = FindingRecord(
        clif=(CORPUS / "aarch64-tail-sret-panic.clif").read_text(),
        target="aarch64",
        flags=[],
        verdict="compile panic",
        details={"panic": {"message": message, "location": where}},
        blame=["aarch64"],
        cranelift_version="0.135.8",
        bucket_key=key,
        bucket_title="aarch64: compile panic",
    )
    db.record_batch(campaign, [record], Progress(1, 1, {}, {}, 1.0))
    db.close()


# --- real bridges of old releases (built already, or skipped) -------------------------

PRESERVE_ALL = ["0.121.2", "0.128.4", "0.130.2", "0.131.3"]


def _missing(versions: list[str]) -> list[str]:
    source = cache.source_hash()
    return [
        v
        for v in versions
        if (entry := cache.entry_for(f"release-{v}")) is None or not entry.current(source)
    ]


def test_a_bug_of_the_middle_of_the_range_on_real_bridges() -> None:
    """preserve_all's lost vector halves on aarch64: unreadable on 0.121.2
    (no preserve_all), gone in 0.131.3; both ends agree that it does not
    reproduce, and the search finds it between them."""
    if missing := _missing(PRESERVE_ALL):
        pytest.skip(
            f"needs the bridges of Cranelift {', '.join(missing)} already built: set "
            "CALLFUZZ_TEST_CACHE to a cache that has them (callfuzz cranelift build "
            "VERSION builds one in about 4 minutes)"
        )
    path = CORPUS / "aarch64-preserve-all-vector-low-half.clif"
    judge = b.Judge(b.Goal("aarch64", ""), path, PRESERVE_ALL)
    found = search(judge, PRESERVE_ALL)
    assert judge.goal.key.startswith("aarch64|abi violation|") and judge.goal.key.endswith("vector")
    assert found.seen[0].got.startswith("bad input: ")
    assert describe(found) == (
        "first reproduces on 0.128.4; no older release could be tried (0.121.2); "
        "fixed in 0.131.3; last release with it: 0.130.2"
    )
