"""`callfuzz reduce`: shrink a bucket's reproducer (or a file) to minimal CLIF."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from fuzz.commands.common import bucket_or_fail, fail, opened_db
from fuzz.faults import ALL_FAULTS
from fuzz.pipeline.filetest import BadInput
from fuzz.pipeline.oracle import OUT_OF_PROCESS
from fuzz.targets import UnknownTarget, lookup
from fuzz.triage.known import base_key
from reducers import reference
from reducers.problem import Progress
from reducers.reduce import Goal, goal_for, reduce_text

# what the candidates were judged against, for the closing line
_JUDGED = {
    reference.INTERPRETER: "judged by the interpreter; the run lines state its values",
    reference.STATED: "the interpreter cannot confirm the run lines: only edits that "
    "keep what every run returns",
}


def _progress(console: Console) -> Progress:
    """A line whenever the case shrinks (the reducer reports every test)."""
    shown = [0]

    def show(lines: int, tests: int, seconds: float) -> None:
        if lines != shown[0]:
            shown[0] = lines
            console.print(
                f"  {lines} lines, {tests} tests, {seconds:.1f}s", highlight=False, soft_wrap=True
            )

    return show


@click.command()
@click.argument("what")
@click.option("--target", "-t", help="The target whose divergence to keep (for a file).")
@click.option("--db", "db_url", help="Triage database (for a bucket id).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write the result here.")
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds before the reducer stops with what it has.",
)
@click.option("--plant-fault", type=click.Choice(sorted(ALL_FAULTS)), hidden=True)
def reduce(
    what: str,
    target: str | None,
    db_url: str | None,
    out: str | None,
    time_limit: float,
    plant_fault: str | None,
) -> None:
    """Reduce bucket WHAT (an id) or the file WHAT (with --target) to minimal
    CLIF that still reproduces the same bucket."""

    console = Console(stderr=True)
    path = Path(what)
    bucket_id = None
    if path.exists() or not what.isdigit():
        if target is None:
            fail("reducing a file needs --target")
        try:
            name = lookup(target).name
            text = path.read_text()
            goal = goal_for(text, name, plant_fault)
        except UnknownTarget as err:
            fail(str(err))
        except (OSError, UnicodeDecodeError) as err:
            fail(f"cannot read {what}: {err}")
        except BadInput as err:
            fail(f"{what}: {err}")
        if goal is None:
            fail(f"{what} shows no divergence on {name}")
    else:
        bucket_id = int(what)
        text, goal = _bucket_goal(db_url, bucket_id, plant_fault)
    console.print(f"reducing to keep {goal.key!r} ({text.count(chr(10))} lines)", highlight=False)
    assert goal is not None
    result = reduce_text(text, goal, _progress(console), time_limit)
    console.print(
        f"{result.lines_before} -> {result.lines_after} CLIF lines, {result.tests} tests, "
        f"{result.seconds:.1f}s",
        highlight=False,
    )
    if result.reference in _JUDGED:
        console.print(f"({_JUDGED[result.reference]})", highlight=False)
    if bucket_id is not None:
        _store(db_url, bucket_id, result.text, result.verified_on)
        console.print(f"stored as bucket {bucket_id}'s reduced reproducer", highlight=False)
    if out:
        Path(out).write_text(result.text)
    elif bucket_id is None:
        sys.stdout.write(result.text)


def _bucket_goal(db_url: str | None, bucket_id: int, fault: str | None) -> tuple[str, Goal]:
    with opened_db(db_url) as db:
        bucket = bucket_or_fail(db, bucket_id)
        if bucket.verdict in OUT_OF_PROCESS:
            fail(f"bucket {bucket_id} is a {bucket.verdict}: it only reproduces out of process")
        text = db.case_text(bucket.best_case_id) or ""
        findings = db.bucket_findings(bucket_id, limit=1)
        if fault is None and findings and findings[0].campaign_id is not None:
            campaign = db.get_campaign(findings[0].campaign_id)
            fault = (campaign.flags or {}).get("fault") if campaign else None
        # a known bucket's findings carry the plain key (fuzz.triage.known)
        return text, Goal(bucket.target, base_key(bucket.key, bucket.known_ref), fault)


def _store(db_url: str | None, bucket_id: int, text: str, verified_on: str | None) -> None:
    with opened_db(db_url) as db:
        db.set_reduced_case(bucket_id, text, verified_on)
