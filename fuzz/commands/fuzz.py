"""`callfuzz fuzz`: start or resume a campaign."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

import click

from fuzz.bridge.cache import Entry as BridgeEntry
from fuzz.campaign.parent import Campaign, run_campaign
from fuzz.campaign.state import Options
from fuzz.commands.common import (
    EXIT_AGREE,
    EXIT_DIVERGENCE,
    executor_option,
    fail,
    parse_duration,
    parse_targets,
)
from fuzz.faults import ALL_FAULTS
from fuzz.pipeline.oracle import OUT_OF_PROCESS
from fuzz.triage.engine import DatabaseError
from fuzz.triage.known import Registry, RegistryError
from fuzz.triage.known import load as load_registry
from fuzz.triage.store import TriageDB, open_db
from reducers.reduce import Goal, reduce_text


@click.command()
@click.option("--duration", help="How long to run: 8h, 10m, 90s.")
@click.option(
    "--cases",
    type=click.IntRange(min=0),
    help="Stop after this many cases (0: replay the corpus only).",
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True
)
@click.option("--targets", "-t", multiple=True, help="Targets (default all four).")
@click.option("--seed", type=int, help="First seed (default: a random one, printed).")
@click.option("--db", "db_url", help="SQLAlchemy URL (default sqlite crashes/triage.sqlite).")
@click.option(
    "--corpus",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("corpus"),
    show_default=True,
    help="Replayed first; new cases are added under DIR/generated.",
)
@click.option(
    "--corpus-all-targets",
    is_flag=True,
    help="Replay each corpus case on every campaign target, not only those its "
    "`target` lines name.",
)
@click.option(
    "--known",
    "known_path",
    type=click.Path(path_type=Path),
    help="Registry of known findings (default: DIR/known.toml of --corpus, if present).",
)
@click.option(
    "--engine",
    type=click.Choice(["random", "atheris", "hypothesis"]),
    default="random",
    show_default=True,
)
@click.option("--resume", is_flag=True, help="Continue the latest campaign (or --campaign ID).")
@click.option("--campaign", "campaign_id", type=int, help="The campaign --resume continues.")
@click.option(
    "--hang-limit",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Wall-clock seconds one case may take before its worker is replaced.",
)
@click.option(
    "--status-every",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds between status lines when stdout is not a terminal.",
)
@click.option(
    "--reduce-time",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="At the end, reduce each new bucket's reproducer for up to this many seconds (0: no).",
)
@click.option(
    "--c-abi/--no-c-abi",
    default=True,
    show_default=True,
    help="Check generated signatures against the targets' C compilers (at most "
    "a quarter of each worker's time); --no-c-abi to measure what it costs.",
)
@click.option(
    "--contract/--no-contract",
    default=True,
    show_default=True,
    help="Check the call contract (callee-saved registers, SP, frames, extension); "
    "--no-contract only to measure what the checks cost.",
)
@click.option(
    "--coverage",
    is_flag=True,
    help="With --engine atheris: guide libFuzzer by Cranelift's own edges (the "
    "instrumented bridge of `callfuzz coverage build`, built here if missing); the "
    "summary says which Cranelift code was reached.",
)
@click.option(
    "--trace-compares",
    is_flag=True,
    help="With --coverage: the bridge that also traces comparisons.",
)
@executor_option
@click.option("--plant-fault", type=click.Choice(sorted(ALL_FAULTS)), hidden=True)
def fuzz(
    duration: str | None,
    cases: int | None,
    jobs: int,
    targets: tuple[str, ...],
    seed: int | None,
    db_url: str | None,
    corpus: Path,
    corpus_all_targets: bool,
    known_path: Path | None,
    engine: str,
    resume: bool,
    campaign_id: int | None,
    hang_limit: float,
    status_every: float,
    reduce_time: float,
    contract: bool,
    c_abi: bool,
    coverage: bool,
    trace_compares: bool,
    executor: str,
    plant_fault: str | None,
) -> None:
    """Run a campaign: generate, compile, interpret, emulate and compare on
    worker processes; record findings in the triage database.

    Exit status: 0 nothing new (every finding known or seen before), 1 new
    buckets, 2 bad input, 130/143 stopped by SIGINT/SIGTERM."""
    try:
        seconds = parse_duration(duration) if duration else None
        names = parse_targets(targets)
    except click.BadParameter as err:
        fail(err.message)
    registry = _registry(known_path, corpus)
    try:
        db = open_db(db_url)
    except DatabaseError as err:
        fail(str(err))
    resume_id = None
    if resume:
        info = db.get_campaign(campaign_id) if campaign_id else db.latest_campaign()
        if info is None:
            fail(f"no campaign {campaign_id} to resume" if campaign_id else "no campaign to resume")
        resume_id = info.id
        names, engine, seed = list(info.targets), info.engine, info.seed
        plant_fault = plant_fault or (info.flags or {}).get("fault")
    elif campaign_id is not None:
        fail("--campaign goes with --resume")
    coverage_entry = _coverage(coverage, trace_compares, engine, db.workdir, resume_id)
    if seed is None:
        seed = secrets.randbelow(1 << 32)
    if seconds is None and cases is None:
        seconds = 60.0  # a short look; overnight runs say --duration 8h
    options = Options(
        targets=names,
        jobs=jobs,
        seed=seed,
        engine=engine,
        duration=seconds,
        cases=cases,
        corpus=corpus,
        corpus_all_targets=corpus_all_targets,
        known=registry,
        hang_limit=hang_limit,
        fault=plant_fault,
        contract=contract,
        c_abi=c_abi,
        executor=executor,
        status_every=status_every,
        live=sys.stdout.isatty(),
        workdir=db.workdir,
        coverage=coverage_entry.path if coverage_entry else None,
    )
    what = f"resuming campaign {resume_id}" if resume_id else "new campaign"
    known = (
        f"{len(registry.entries)} known findings in {registry.path}"
        if registry.path
        else "no registry of known findings"
    )
    guided = f" guided by Cranelift's edges ({coverage_entry.key})" if coverage_entry else ""
    click.echo(
        f"callfuzz: {what}: engine {engine}{guided}, seed {seed}, {jobs} jobs, targets "
        f"{' '.join(names)}, database {db.url}, {known}"
    )
    with _worker_environment(coverage_entry):
        campaign, reason = run_campaign(db, options, resume_id)
    campaign.display.summary(reason, campaign.id, db.url)
    if coverage_entry is not None:
        _coverage_summary(campaign.workdir)
    try:
        new = [b for i in campaign.new_bucket_ids if (b := db.get_bucket(i)) is not None]
        known_buckets = db.buckets_with_keys(campaign.known_hits)
    except DatabaseError as err:
        fail(str(err))
    campaign.display.buckets(new, known_buckets, registry)
    if reduce_time > 0 and reason not in ("SIGINT", "SIGTERM"):
        reduce_new_buckets(db, campaign, reduce_time)
    click.echo(f"review: callfuzz triage report --campaign {campaign.id} --db {db.url}")
    db.close()
    signalled = {"SIGINT": 130, "SIGTERM": 143}.get(reason)
    sys.exit(signalled or (EXIT_DIVERGENCE if campaign.new_bucket_ids else EXIT_AGREE))


def _coverage(
    wanted: bool, trace_compares: bool, engine: str, workdir: Path, resume_id: int | None
) -> BridgeEntry | None:
    """The instrumented bridge the workers load, or None. A resumed campaign
    that ran with coverage runs with it again (the same bridge)."""
    from fuzz.bridge.spec import BridgeError
    from fuzz.coverage import session
    from fuzz.coverage.counters import CoverageError
    from fuzz.coverage.preload import PreloadError

    if trace_compares and not wanted:
        fail("--trace-compares goes with --coverage")
    try:
        if resume_id is not None and not wanted:
            entry = session.campaign_entry(workdir / f"campaign-{resume_id}")
            if entry is None:
                return None
            session.preflight(entry)
            return entry
        if not wanted:
            return None
        if engine != "atheris":
            fail(
                "--coverage goes with --engine atheris (`callfuzz coverage replay` "
                "measures any campaign's coverage afterwards)"
            )
        return session.instrumented(trace_compares)
    except (BridgeError, CoverageError, PreloadError) as err:
        fail(str(err))


def _worker_environment(entry: BridgeEntry | None) -> contextlib.AbstractContextManager[None]:
    """Workers start (and are replaced) with the coverage environment."""
    if entry is None:
        return contextlib.nullcontext()
    from fuzz.coverage import preload

    return preload.applied(preload.environment(entry.path, entry.version))


def _coverage_summary(workdir: Path) -> None:
    from fuzz.coverage import session
    from fuzz.coverage.counters import CoverageError
    from fuzz.coverage.live import BITMAPS
    from fuzz.coverage.report import summary_lines

    try:
        report = session.report_for(workdir / BITMAPS)
    except CoverageError as err:
        click.echo(f"callfuzz: coverage: {err}", err=True)
        return
    if report is None:
        click.echo("coverage: no counters recorded (no worker reached the engine)")
        return
    session.record_summary(workdir / BITMAPS, report)
    for line in summary_lines(report):
        click.echo(line)
    click.echo(f"  (details: callfuzz coverage report --dir {workdir / BITMAPS})")


def _registry(path: Path | None, corpus: Path) -> Registry:
    """The registry of known findings: `--known`, else the corpus's own
    `known.toml` when it has one, else none (every bucket is new)."""
    if path is None:
        path = corpus / "known.toml"
        if not path.exists():
            return Registry(None)
    try:
        return load_registry(path)
    except RegistryError as err:
        fail(str(err))


def reduce_new_buckets(db: TriageDB, campaign: Campaign, seconds_each: float) -> None:
    """Reduce the first reproducer of every bucket this campaign opened and
    store the result (at the end of the campaign, in this process), with a
    progress line while each runs; Ctrl-C skips the reductions left."""
    display = campaign.display
    todo = []
    for bucket_id in campaign.new_bucket_ids:
        bucket = db.get_bucket(bucket_id)
        if bucket is not None and bucket.verdict not in OUT_OF_PROCESS:
            todo.append(bucket)  # worker deaths reproduce only out of process
    if not todo:
        return
    plural = "s" if len(todo) > 1 else ""
    display.note(
        f"reducing {len(todo)} new bucket{plural}, up to {seconds_each:.0f}s each (Ctrl-C skips)"
    )
    with display.console.status("", spinner="dots") as status:
        for n, bucket in enumerate(todo, 1):
            doing = f"reducing bucket {bucket.id} ({n}/{len(todo)})"
            status.update(doing)

            def show(lines: int, tests: int, seconds: float, doing: str = doing) -> None:
                status.update(f"{doing}: {lines} CLIF lines, {tests} tests, {seconds:.0f}s")

            text = db.case_text(bucket.best_case_id) or ""
            goal = Goal(bucket.target, bucket.key, campaign.opt.fault)
            try:
                result = reduce_text(text, goal, show, time_limit=seconds_each)
            except KeyboardInterrupt:
                left = len(todo) - n
                display.note(f"bucket {bucket.id}: not reduced (interrupted; {left} more skipped)")
                return
            except ValueError as err:
                display.note(f"bucket {bucket.id}: not reduced ({err})")
                continue
            db.set_reduced_case(bucket.id, result.text, result.verified_on)
            display.note(
                f"bucket {bucket.id} reduced: {result.lines_before} -> {result.lines_after} "
                f"CLIF lines in {result.seconds:.1f}s ({bucket.title})"
            )
