"""`callfuzz bisect`: the first published release where a finding reproduces
and the release that fixed it, by a search over release lines
(fuzz.commands.bisect_search).

Each step runs the case in a child process on that release's bridge (built
into the cache the first time, fuzz.bridge), since a process holds one
Cranelift. `classify` turns what a step gave into one of three answers:

- reproduces: a finding with the goal's bucket key (fuzz.triage.buckets; a
  compile panic's key without its line number, which moves between
  releases, and the same panic message);
- does not reproduce: the case ran on the target and gave no such finding;
- skip: the release could not try it: the file does not read or verify
  there (`bad input`), the bridge did not build, the step crashed or timed
  out, or, for a finding seen when the code runs, the target did not get
  that far (it did not compile, or could not be executed here).

A release the feature table (fuzz.features) says lacks something the file
uses is a skip without a build, once the release line just before that
feature appeared, run for real, could not read the file either.

The result is printed step by step and, for a bucket, appended to its notes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from fuzz.commands.bisect_search import Kind, Step, describe, search
from fuzz.commands.common import bucket_or_fail, console, fail, opened_db, target_name

# building a bridge takes minutes; a step that outlives this is a skip
STEP_TIMEOUT = 3600.0
STEP_MODULE = "fuzz.commands.bisect_step"
# a finding of these verdicts is seen only once the target's code runs
_COMPILE_TIME = ("compile panic", "compile error")
# the target did not run the code: a finding seen when it runs cannot show
_DID_NOT_RUN = ("compile panic", "compile error", "unsupported", "not executable here")


@dataclass(frozen=True)
class Goal:
    target: str
    key: str  # comparable bucket key (see `comparable_key`); "" until known
    message: str = ""  # a compile panic's masked message, else ""

    @property
    def verdict(self) -> str:
        return self.key.split("|")[1] if self.key.count("|") else ""


def comparable_key(key: str) -> str:
    """A bucket key as steps on other releases can match it: a known
    bucket's `|known:ID` dropped, a compile panic's line number too."""
    from fuzz.triage.known import KNOWN_SUFFIX

    key = key.split(KNOWN_SUFFIX)[0]
    return re.sub(r":\d+$", "", key) if "|compile panic|" in key else key


@dataclass(frozen=True)
class Ran:
    """What a step's child process gave."""

    code: int  # exit status; negative: killed by that signal
    stdout: str
    stderr_tail: str  # its last lines, for why it failed
    timed_out: bool = False


def _summary(outcomes: list[dict[str, Any]]) -> str:
    shown = [o for o in outcomes if o.get("finding")] or outcomes
    return "; ".join(_said(o) for o in shown) or "nothing ran"


def _said(outcome: dict[str, Any]) -> str:
    detail = str(outcome["detail"]).removeprefix(f"{outcome['verdict']}: ")
    return f"{outcome['verdict']}: {detail[:70]}"


def _failed(ran: Ran) -> str:
    if ran.timed_out:
        return f"the step timed out after {STEP_TIMEOUT:.0f} s"
    if ran.code < 0:
        return f"the step died of {_signal_name(-ran.code)}"
    last = ran.stderr_tail.strip().splitlines()[-1:] or ["no message"]
    return f"the step failed (exit {ran.code}): {last[0].removeprefix('callfuzz: ')[:110]}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def same_bug(goal: Goal, outcome: dict[str, Any]) -> bool:
    if not outcome.get("finding") or comparable_key(outcome["key"]) != goal.key:
        return False
    return not goal.message or outcome.get("message") == goal.message


def classify(goal: Goal, ran: Ran) -> tuple[Kind, str]:
    """Reproduces, does not, or skip (and what the step gave, in a few words)."""
    if ran.code < 0 and goal.key == f"{goal.target}|hard crash|{_signal_name(-ran.code)}":
        return Kind.REPRODUCES, f"died of {_signal_name(-ran.code)}"
    if ran.code != 0 or ran.timed_out:
        return Kind.SKIP, _failed(ran)
    try:
        outcomes: list[dict[str, Any]] = json.loads(ran.stdout)
    except ValueError:
        return Kind.SKIP, f"unreadable step output: {ran.stdout[:80]!r}"
    if any(o["verdict"] == "bad input" for o in outcomes):
        return Kind.SKIP, f"bad input: {outcomes[0]['detail'][:160]}"
    if any(o["verdict"] == "not for this release" for o in outcomes):
        return Kind.SKIP, outcomes[0]["detail"][:160]
    if any(same_bug(goal, o) for o in outcomes):
        return Kind.REPRODUCES, _summary(outcomes)
    if goal.verdict not in _COMPILE_TIME:
        stopped = [o for o in outcomes if o["verdict"] in _DID_NOT_RUN]
        if stopped or not outcomes:
            return Kind.SKIP, f"the code did not run: {_summary(stopped)}"
    others = [o for o in outcomes if o.get("finding")]
    return Kind.CLEAN, _summary(others) if others else "no finding"


def goal_from(target: str, ran: Ran) -> Goal | None:
    """A file's goal: the first finding a step gave, if any."""
    if ran.code != 0 or ran.timed_out:
        return None
    try:
        outcomes: list[dict[str, Any]] = json.loads(ran.stdout)
    except ValueError:
        return None
    found = [o for o in outcomes if o.get("finding")]
    if not found:
        return None
    return Goal(target, comparable_key(found[0]["key"]), found[0].get("message", ""))


# --- running a step -------------------------------------------------------------


def _forward(stream: IO[str], tail: deque[str]) -> None:
    """Shows the child's stderr (a bridge build's progress) and keeps its end."""
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line)


def run_step(path: Path, target: str, version: str, c_abi: bool = False) -> Ran:
    """`path` on `target` with Cranelift `version`, in a child process (in its
    own session, so a timeout ends it and its build whole)."""
    env = dict(os.environ, CALLFUZZ_CRANELIFT=version)
    env.pop("CALLFUZZ_BRIDGE", None)
    command = [sys.executable, "-m", STEP_MODULE, str(path), target]
    child = subprocess.Popen(
        command + (["--c-abi"] if c_abi else []),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tail: deque[str] = deque(maxlen=20)
    assert child.stdout is not None and child.stderr is not None
    reader = threading.Thread(target=_forward, args=(child.stderr, tail), daemon=True)
    reader.start()
    timed_out = threading.Event()
    timer = threading.Timer(STEP_TIMEOUT, _end, args=(child.pid, timed_out))
    timer.start()
    try:
        stdout = child.stdout.read()
        child.wait()
    finally:
        timer.cancel()
    reader.join(5)
    return Ran(child.returncode, stdout, "".join(tail), timed_out.is_set())


def _end(pid: int, timed_out: threading.Event) -> None:
    timed_out.set()
    with contextlib.suppress(ProcessLookupError):  # it ended just now
        os.killpg(pid, signal.SIGKILL)


# --- the feature table's prediction ----------------------------------------------


@dataclass(frozen=True)
class Needs:
    """The newest feature of the table a file uses, by the table."""

    feature: str
    since: tuple[int, int, int]


def needs(text: str) -> Needs | None:
    """Of the features the table knows the reader rejects when missing (a
    convention, type, setting or ISA flag, named as a word), the one the
    file uses that appeared last."""
    from fuzz.features import used

    read = [f for f in used(text) if f.kind in ("convention", "type", "setting", "isa flag")]
    newest = max(read, key=lambda f: f.since, default=None)
    return Needs(newest.name, newest.since) if newest else None


def check_release(need: Needs | None, versions: list[str]) -> int | None:
    """The release run for real to check the table: the newest before the
    feature appeared, when older ones are in the range to skip."""
    from fuzz.versions import parse_version

    if need is None:
        return None
    before = [i for i, v in enumerate(versions) if parse_version(v)[:2] < need.since[:2]]
    return before[-1] if before and before[-1] > 0 else None


# --- the judge --------------------------------------------------------------------


class Judge:
    """Runs and classifies steps, prints each as it comes; adopts a file's
    goal from the first finding; skips what the feature table predicts."""

    def __init__(self, goal: Goal, path: Path, versions: list[str]) -> None:
        self.goal = goal
        self.path = path
        self.versions = versions
        self.check: int | None = None
        self.need: Needs | None = None
        self.predicted: set[str] = set()
        self.c_abi = "|c abi mismatch|" in goal.key

    def predict(self, need: Needs | None) -> int | None:
        self.need, self.check = need, check_release(need, self.versions)
        return self.check

    def __call__(self, version: str) -> Step:
        if version in self.predicted and self.need is not None:
            since = ".".join(map(str, self.need.since[:2]))
            got = f"not run: it uses {self.need.feature}, new in {since} (fuzz/features.py)"
            return self._shown(Step(version, Kind.SKIP, got))
        started = time.monotonic()
        ran = run_step(self.path, self.goal.target, version, self.c_abi)
        if not self.goal.key and (adopted := goal_from(self.goal.target, ran)):
            self.goal = adopted
            console.print(f"  goal: {adopted.key} (seen on {version})", highlight=False)
        kind, got = classify(self.goal, ran)
        step = self._shown(Step(version, kind, got, time.monotonic() - started))
        if self.check is not None and version == self.versions[self.check]:
            self._checked(step)
        return step

    def _checked(self, step: Step) -> None:
        if step.kind is Kind.SKIP and step.got.startswith("bad input"):
            self.predicted = set(self.versions[: self.check])

    def _shown(self, step: Step) -> Step:
        mark = {
            Kind.REPRODUCES: "[red]reproduces[/red]",
            Kind.CLEAN: "[green]does not reproduce[/green]",
            Kind.SKIP: "[yellow]skip[/yellow]",
        }[step.kind]
        console.print(
            f"  {step.version:>9}  {mark}  ({step.seconds:.0f} s)  {step.got}", highlight=False
        )
        sys.stdout.flush()  # each verdict as it comes, in a log file too
        return step


def releases(first: str, last: str) -> list[str]:
    """The newest published patch of every release line from `first` to
    `last` (both resolved), oldest first."""
    from fuzz.bridge.spec import Index
    from fuzz.versions import parse_version

    index = Index.load()
    if not index.fresh():
        index = index.refresh()
    lo, hi = parse_version(first), parse_version(last)
    newest: dict[tuple[int, int], str] = {}
    for v in index.published:
        t = parse_version(v)
        if lo[:2] <= t[:2] <= hi[:2]:
            if t[:2] == lo[:2] and t < lo or t[:2] == hi[:2] and t > hi:
                continue
            key = (t[0], t[1])
            if key not in newest or parse_version(newest[key]) < t:
                newest[key] = v
    return [newest[k] for k in sorted(newest)]


# --- the command ------------------------------------------------------------------


def bucket_goal(db_url: str | None, bucket_id: int, target: str) -> tuple[Goal, str]:
    """A bucket's goal (its key, and a compile panic's message from its best
    finding) and its best case's text."""
    from fuzz.triage.buckets import mask

    with opened_db(db_url) as db:
        info = bucket_or_fail(db, bucket_id)
        if info.target != target:
            fail(f"bucket {bucket_id} is on {info.target}, not {target}")
        message = ""
        if info.verdict == "compile panic":
            findings = db.bucket_findings(bucket_id, limit=1)
            panic = findings[0].details.get("panic", {}) if findings else {}
            message = mask(panic["message"]) if panic else ""
        text = db.case_text(info.best_case_id) or ""
        return Goal(target, comparable_key(info.key), message), text


def _range(from_: str | None, to: str | None) -> list[str]:
    from fuzz.bridge.spec import BridgeError, Index, resolve
    from fuzz.versions import OLDEST_MINOR, parse_version

    try:
        oldest = resolve(from_ or f"0.{OLDEST_MINOR}")
        newest = resolve(to) if to else None
    except BridgeError as err:
        fail(str(err))
    first = getattr(oldest, "version", None)
    if first is None:
        fail("--from must name a release, not a checkout")
    if newest is None:
        index = Index.load()
        if not index.fresh():
            index = index.refresh()
        last = max(index.published, key=parse_version)
    else:
        last = getattr(newest, "version", "")
        if not last:
            fail("--to must name a release, not a checkout")
    versions = releases(first, last)
    if len(versions) < 2:
        fail(f"nothing to bisect between {first} and {last}")
    return versions


def _note(bucket_id: int, db_url: str | None, text: str) -> None:
    with opened_db(db_url) as db:
        info = db.get_bucket(bucket_id)
        if info is not None:
            db.mark_bucket(bucket_id, info.status, note=text)


@click.command()
@click.argument("what")
@click.option("--target", "-t", "target_text", required=True, help="The target to bisect on.")
@click.option(
    "--from", "from_", metavar="VERSION", help="Oldest release (default: the oldest supported)."
)
@click.option("--to", metavar="VERSION", help="Newest release (default: the newest published).")
@click.option("--db", "db_url", help="Triage database (for a bucket id).")
@click.option(
    "--scan",
    is_flag=True,
    help="Try every release line, not a search: for a finding that "
    "comes and goes (a search takes the releases between two that agree to agree).",
)
@click.option(
    "--predict/--no-predict",
    default=True,
    show_default=True,
    help="Skip without a build the releases the feature table says cannot read the file.",
)
def bisect(
    what: str,
    target_text: str,
    from_: str | None,
    to: str | None,
    db_url: str | None,
    scan: bool,
    predict: bool,
) -> None:
    """The first release where bucket WHAT (an id) or file WHAT reproduces on
    --target, and the release that fixed it: both ends first, the releases
    between in halving order when neither end reproduces, then halving each
    boundary; a release that cannot try it is a skip. Each step is built
    into the bridge cache and run in a child process."""
    target = target_name(target_text)
    bucket_id = int(what) if re.fullmatch(r"\d+", what) else None
    if bucket_id is not None:
        goal, text = bucket_goal(db_url, bucket_id, target)
    else:
        goal = Goal(target, "")
        try:
            text = Path(what).read_text()
        except OSError as err:
            fail(f"cannot read {what}: {err.strerror}")
    versions = _range(from_, to)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.clif"
        path.write_text(text)
        judge = Judge(goal, path, versions)
        check = judge.predict(needs(text)) if predict else None
        console.print(
            f"bisect {what} on {target} over {len(versions)} release lines, "
            f"{versions[0]} to {versions[-1]}" + (f"; goal: {goal.key}" if goal.key else ""),
            highlight=False,
        )
        note = lambda line: console.print(f"  {line}", highlight=False)  # noqa: E731
        found = search(judge, versions, scan, [] if check is None else [check], note)
    elapsed = time.monotonic() - started
    if not judge.goal.key:
        fail(
            f"{what} gives no finding on {target} with any release from {versions[0]} "
            f"to {versions[-1]} ({elapsed:.0f} s)"
        )
    result = describe(found)
    console.print(f"{result} ({elapsed:.0f} s)", highlight=False)
    if bucket_id is not None:
        _note(bucket_id, db_url, f"bisect on {target}: {result}")
