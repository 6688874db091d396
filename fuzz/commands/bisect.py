"""`callfuzz bisect`: the first published release where a finding reproduces,
and the last where it does not, by binary search over release lines.

Each step runs the case in a child process on that release's bridge (built
into the cache the first time, fuzz.bridge), since a process holds one
Cranelift. A step reproduces when the target line gives a finding of the
same verdict (a compile panic: the same message; its line number moves
between releases). The result is printed step by step and, for a bucket,
appended to its notes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

from fuzz.commands.common import console, fail, target_name


@dataclass(frozen=True)
class Step:
    version: str
    reproduces: bool
    got: str  # what the target line gave, in a few words
    seconds: float


@dataclass(frozen=True)
class Goal:
    target: str
    verdict: str
    message: str  # a compile panic's message (masked), else ""


def _panic_message(detail: str) -> str:
    from fuzz.triage.buckets import mask

    return mask(detail.rpartition(" at ")[0] or detail)[:60]


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


def run_step(path: Path, target: str, version: str) -> list[dict[str, str]]:
    """The findings `path` gives on `target` with Cranelift `version` (a child
    process: building the bridge shows its progress on stderr)."""
    env = dict(os.environ, CALLFUZZ_CRANELIFT=version)
    env.pop("CALLFUZZ_BRIDGE", None)
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.commands.bisect_step", str(path), target],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise click.ClickException(f"step on {version} failed (exit {done.returncode})")
    findings: list[dict[str, str]] = json.loads(done.stdout)
    return findings


def judge_step(goal: Goal, version: str, path: Path, started: float) -> Step:
    findings = run_step(path, goal.target, version)
    same = [
        f
        for f in findings
        if f["verdict"] == goal.verdict
        and (not goal.message or _panic_message(f["detail"]) == goal.message)
    ]
    got = "; ".join(f"{f['verdict']}: {f['detail'][:60]}" for f in findings) or "no finding"
    return Step(version, bool(same), got, time.monotonic() - started)


def _print(step: Step) -> None:
    mark = "[red]reproduces[/red]" if step.reproduces else "[green]does not reproduce[/green]"
    console.print(
        f"  {step.version:>9}  {mark}  ({step.seconds:.0f} s)  {step.got}", highlight=False
    )
    sys.stdout.flush()  # each verdict as it comes, in a log file too


@dataclass(frozen=True)
class Boundary:
    """Where a finding starts (a regression: `newest_reproduces`) or stops (a
    fix): `before` is the last release on the older side, `after` the first
    on the newer side; None for a side the range does not reach."""

    newest_reproduces: bool
    oldest_reproduces: bool
    before: str | None
    after: str | None

    def describe(self, oldest: str, newest: str) -> str:
        if self.newest_reproduces and self.oldest_reproduces:
            return f"reproduces on every release from {oldest} to {newest}"
        if not (self.newest_reproduces or self.oldest_reproduces):
            return f"reproduces neither on {oldest} nor on {newest}: nothing to bisect"
        if self.newest_reproduces:
            return f"first reproduces on {self.after}; last release without it: {self.before}"
        return f"fixed in {self.after}; last release with it: {self.before}"


def search(goal: Goal, versions: list[str], path: Path) -> Boundary:
    """Both ends first, then halving between them while they differ."""
    newest = judge_step(goal, versions[-1], path, time.monotonic())
    _print(newest)
    oldest = judge_step(goal, versions[0], path, time.monotonic())
    _print(oldest)
    if newest.reproduces == oldest.reproduces:
        return Boundary(newest.reproduces, oldest.reproduces, None, None)
    lo, hi = 0, len(versions) - 1  # lo: the oldest end's side; hi: the newest's
    while hi - lo > 1:
        mid = (lo + hi) // 2
        step = judge_step(goal, versions[mid], path, time.monotonic())
        _print(step)
        if step.reproduces == newest.reproduces:
            hi = mid
        else:
            lo = mid
    return Boundary(newest.reproduces, oldest.reproduces, versions[lo], versions[hi])


@click.command()
@click.argument("what")
@click.option("--target", "-t", "target_text", required=True, help="The target to bisect on.")
@click.option(
    "--from", "from_", metavar="VERSION", help="Oldest release (default: the oldest supported)."
)
@click.option("--to", metavar="VERSION", help="Newest release (default: the newest published).")
@click.option("--db", "db_url", help="Triage database (for a bucket id).")
def bisect(
    what: str, target_text: str, from_: str | None, to: str | None, db_url: str | None
) -> None:
    """The first release where bucket WHAT (an id) or file WHAT reproduces on
    --target, and the last where it does not: a binary search over the
    published releases, each step built into the bridge cache and run in a
    child process."""
    from fuzz.bridge.spec import BridgeError, resolve
    from fuzz.versions import OLDEST_MINOR, parse_version

    target = target_name(target_text)
    bucket_id: int | None = None
    text: str
    goal_verdict: str | None = None
    message = ""
    if re.fullmatch(r"\d+", what):
        from fuzz.triage.engine import DatabaseError
        from fuzz.triage.store import open_db

        bucket_id = int(what)
        try:
            db = open_db(db_url, create=False)
        except DatabaseError as err:
            fail(str(err))
        info = db.get_bucket(bucket_id)
        if info is None:
            fail(f"no bucket {bucket_id}")
        text = db.case_text(info.best_case_id) or ""
        goal_verdict = info.verdict
        db.close()
    else:
        try:
            text = Path(what).read_text()
        except OSError as err:
            fail(f"cannot read {what}: {err.strerror}")
    try:
        oldest = resolve(from_ or f"0.{OLDEST_MINOR}")
        newest = resolve(to) if to else None
    except BridgeError as err:
        fail(str(err))
    first_version = getattr(oldest, "version", None)
    if first_version is None:
        fail("--from must name a release, not a checkout")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.clif"
        path.write_text(text)
        if newest is None:
            from fuzz.bridge.spec import Index

            index = Index.load()
            if not index.fresh():
                index = index.refresh()
            last = max(index.published, key=parse_version)
        else:
            last = getattr(newest, "version", "")
            if not last:
                fail("--to must name a release, not a checkout")
        versions = releases(first_version, last)
        if len(versions) < 2:
            fail(f"nothing to bisect between {first_version} and {last}")
        started = time.monotonic()
        if goal_verdict is None:
            # a file: the finding is what the newest end gives (or, for a
            # bug fixed since, the oldest)
            findings = run_step(path, target, versions[-1]) or run_step(path, target, versions[0])
            if not findings:
                fail(f"{what} gives no finding on {target} with {versions[0]} or {versions[-1]}")
            goal_verdict = findings[0]["verdict"]
            if goal_verdict == "compile panic":
                message = _panic_message(findings[0]["detail"])
        goal = Goal(target, goal_verdict, message)
        console.print(
            f"bisect {what} on {target} ({goal.verdict}) over {len(versions)} release lines, "
            f"{versions[0]} to {versions[-1]}",
            highlight=False,
        )
        boundary = search(goal, versions, path)
    elapsed = time.monotonic() - started
    result = boundary.describe(versions[0], versions[-1])
    console.print(f"{result} ({elapsed:.0f} s)", highlight=False)
    if bucket_id is not None:
        from fuzz.triage.store import open_db

        db = open_db(db_url, create=False)
        info = db.get_bucket(bucket_id)
        if info is not None:
            db.mark_bucket(bucket_id, info.status, note=f"bisect on {target}: {result}")
        db.close()
