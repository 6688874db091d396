"""`callfuzz coverage build | report | replay`: coverage over Cranelift's own
code. `build` makes the instrumented bridge (`fuzz.coverage.build`);
`callfuzz fuzz --engine atheris --coverage` runs on it; `report` maps a
campaign's reached counters to Cranelift's functions per backend; `replay`
measures any campaign (a `random` one too) the same way, by running its
cases' Cranelift stages again on the instrumented bridge."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path

import click

from fuzz.bridge.spec import BridgeError
from fuzz.commands.common import fail
from fuzz.coverage.report import BACKENDS


@click.group(help="Coverage over Cranelift's own code (an instrumented bridge).")
def coverage() -> None:
    pass


@coverage.command("build")
@click.option(
    "--trace-compares",
    is_flag=True,
    help="Also trace comparisons (libFuzzer's value profile; compile() about 3x slower).",
)
@click.option("--force", is_flag=True, help="Build again even when it is built.")
def build_command(trace_compares: bool, force: bool) -> None:
    """Build the instrumented bridge (minutes; the log is kept)."""
    from fuzz.coverage import build

    try:
        want = build.wanted(trace_compares)
        entry = build.build(want, force=force) if force else build.ensure(want)
    except BridgeError as err:
        fail(str(err))
    except build.preload.PreloadError as err:
        fail(str(err))
    counters = entry.record.get("coverage", {}).get("counters", "?")
    click.echo(
        f"instrumented bridge: {entry.path} (Cranelift {entry.version}, {counters} counters)"
    )


def _bitmaps_dir(db_url: str | None, campaign_id: int | None, replayed: bool) -> Path:
    """The directory of a campaign's bitmaps (its own, or its replay's)."""
    from fuzz.coverage.live import BITMAPS
    from fuzz.coverage.session import REPLAY

    info = _campaign(db_url, campaign_id)
    return info.workdir / (REPLAY if replayed else BITMAPS)


@dataclass(frozen=True)
class CampaignRef:
    id: int
    engine: str
    targets: list[str]
    seed: int
    next_seed: int
    corpus_all_targets: bool
    workdir: Path


def _campaign(db_url: str | None, campaign_id: int | None) -> CampaignRef:
    from fuzz.triage.engine import DatabaseError
    from fuzz.triage.store import open_db

    try:
        db = open_db(db_url)
        info = db.get_campaign(campaign_id) if campaign_id else db.latest_campaign()
    except DatabaseError as err:
        fail(str(err))
    if info is None:
        fail(f"no campaign {campaign_id}" if campaign_id else f"no campaign in {db.url}")
    ref = CampaignRef(
        info.id,
        info.engine,
        list(info.targets),
        info.seed,
        info.next_seed,
        bool((info.flags or {}).get("corpus_all_targets")),
        db.workdir / f"campaign-{info.id}",
    )
    db.close()
    return ref


@coverage.command("report")
@click.option("--campaign", "campaign_id", type=int, help="Default: the latest campaign.")
@click.option("--db", "db_url", help="SQLAlchemy URL (default sqlite crashes/triage.sqlite).")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="A directory of bitmaps (*.cov) instead of a campaign's.",
)
@click.option(
    "--replayed", is_flag=True, help="The coverage `coverage replay` measured, not the live one."
)
@click.option(
    "--least",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Least-covered call-lowering functions listed per backend.",
)
@click.option("--backend", "backends", multiple=True, type=click.Choice(BACKENDS))
@click.option("--crates", is_flag=True, help="Also list edges per crate.")
def report(
    campaign_id: int | None,
    db_url: str | None,
    directory: Path | None,
    replayed: bool,
    least: int,
    backends: tuple[str, ...],
    crates: bool,
) -> None:
    """Which Cranelift code a campaign reached: edges and functions per
    backend, call lowering singled out, its least-covered functions named."""
    from fuzz.coverage import session
    from fuzz.coverage.counters import CoverageError
    from fuzz.coverage.report import least_covered, summary_lines, unreached

    if directory is None:
        directory = _bitmaps_dir(db_url, campaign_id, replayed)
    try:
        found = session.report_for(directory)
    except CoverageError as err:
        fail(str(err))
    if found is None:
        fail(
            f"no coverage bitmaps in {directory} (run the campaign with --engine atheris "
            "--coverage, or measure it with `callfuzz coverage replay`)"
        )
    click.echo(f"bitmaps: {directory}")
    for line in summary_lines(found):
        click.echo(line)
    if crates:
        click.echo(f"  {'crate':<32} {'functions':>22} {'edges':>24}")
        for name, area in sorted(found.crates.items(), key=lambda kv: -kv[1].edges):
            if area.edges_reached or name.startswith("cranelift-"):
                click.echo(
                    f"  {name:<32} {_ratio(area.functions_reached, area.functions):>22} "
                    f"{_ratio(area.edges_reached, area.edges):>24}"
                )
    for backend in backends or BACKENDS:
        missed = unreached(found, backend)
        if missed:
            names = ", ".join(f"{fn.short} ({fn.edges})" for fn in missed)
            click.echo(f"{backend}: call-lowering functions never entered (their edges): {names}")
        fns = least_covered(found, backend, least)
        if fns:
            click.echo(
                f"{backend}: least-covered call-lowering functions entered (edges reached/total)"
            )
        for fn in fns:
            click.echo(f"  {fn.reached:>4}/{fn.edges:<4} {fn.short:<40} {fn.file}")


def _ratio(part: int, whole: int) -> str:
    return f"{part:,}/{whole:,} ({100 * part / whole:.1f}%)" if whole else "-"


# -- replay ---------------------------------------------------------------------

SAVE_EVERY = 10.0  # seconds between a replay process's bitmap writes


def _replay_child(
    tasks: list[tuple[str, str]],
    targets: list[str],
    all_targets: bool,
    out: str,
    done: SynchronizedArray[float],
    slot: int,
) -> None:
    """Runs the Cranelift stages of each case (parse, verify, compile and link
    for its target lines, interpret its run lines: every call a campaign
    worker makes into Cranelift, without emulating; a generated case is
    regenerated with the same `; callfuzz:` lines, so the debug compiles of
    fuzz.pipeline.debuginfo are the campaign's), ORing the counters into a
    bitmap after each case."""
    import signal

    from fuzz.campaign.worker import corpus_lines, from_bytes, generated
    from fuzz.coverage import live
    from fuzz.coverage.counters import Counters, Recorder
    from fuzz.pipeline.filetest import BadInput, TargetLine, parse_text
    from fuzz.pipeline.runner import Runner, default_lines
    from fuzz.targets import TARGETS

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    entry = live.entry_path()
    assert entry is not None
    counters = Counters(live.check_loaded(entry))
    recorder = Recorder(counters, entry.name, Path(out), every=SAVE_EVERY)
    recorder.take()
    runner = Runner(contract=False)
    chosen = [TARGETS[t] for t in targets]
    wanted = [TargetLine(t) for t in chosen]
    for kind, value in tasks:
        try:
            if kind == "seed":
                text = generated(int(value), chosen)
            elif kind == "bytes":
                text = from_bytes(Path(value).read_bytes(), chosen)
            else:
                text = Path(value).read_text()
            ft = parse_text(text)
            if kind == "file":
                lines = corpus_lines(ft, wanted, all_targets)
            else:
                lines = default_lines(ft, None)
            if lines:
                runner.prepare_file(ft, lines)
                if ft.interpreted:
                    for run in ft.runs:
                        runner.interpret(ft, run)
        except (BadInput, OSError, UnicodeDecodeError):
            pass
        recorder.take()
        counters.clear()
        done[slot] += 1
    recorder.save()


def _tasks(ref: CampaignRef, corpus: Path | None) -> list[tuple[str, str]]:
    from fuzz.coverage.live import CORPUS

    tasks: list[tuple[str, str]] = []
    if corpus is not None:
        tasks += [("file", str(p)) for p in sorted(corpus.rglob("*.clif"))]
    if ref.engine == "random":
        tasks += [("seed", str(s)) for s in range(ref.seed, ref.next_seed)]
    elif ref.engine == "atheris" and (ref.workdir / CORPUS).is_dir():
        tasks += [("bytes", str(p)) for p in sorted((ref.workdir / CORPUS).iterdir())]
    else:
        fail(
            f"campaign {ref.id} ({ref.engine}) kept no cases to replay: a random campaign "
            "replays its seeds, an atheris one with --coverage its libFuzzer corpus"
        )
    return tasks


@coverage.command("replay")
@click.option("--campaign", "campaign_id", type=int, help="Default: the latest campaign.")
@click.option("--db", "db_url", help="SQLAlchemy URL (default sqlite crashes/triage.sqlite).")
@click.option(
    "--corpus",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Also replay the .clif files under DIR (the campaign's corpus, replayed first).",
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True
)
def replay(campaign_id: int | None, db_url: str | None, corpus: Path | None, jobs: int) -> None:
    """Measure a campaign's Cranelift coverage by running its cases again on
    the instrumented bridge (any engine that keeps its cases: random replays
    its seeds, atheris --coverage its libFuzzer corpus). The same measure for
    every engine; the bitmaps go to the campaign's coverage-replay/."""
    import multiprocessing as mp
    import shutil

    from fuzz.bridge.spec import BridgeError
    from fuzz.coverage import preload, session
    from fuzz.coverage.counters import SUFFIX, CoverageError
    from fuzz.coverage.preload import PreloadError
    from fuzz.coverage.report import summary_lines

    ref = _campaign(db_url, campaign_id)
    tasks = _tasks(ref, corpus)
    try:
        entry = session.campaign_entry(ref.workdir) or session.instrumented(False)
        session.preflight(entry)
    except (BridgeError, CoverageError, PreloadError) as err:
        fail(str(err))
    out = ref.workdir / session.REPLAY
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    click.echo(
        f"replaying {len(tasks):,} cases of campaign {ref.id} ({ref.engine}) on "
        f"{entry.key} with {jobs} processes"
    )
    ctx = mp.get_context("spawn")
    done = ctx.Array("d", jobs)
    started = time.monotonic()
    with preload.applied(preload.environment(entry.path, entry.version)):
        procs = [
            ctx.Process(
                target=_replay_child,
                args=(
                    tasks[i::jobs],
                    ref.targets,
                    ref.corpus_all_targets,
                    str(out / f"replay-{i}{SUFFIX}"),
                    done,
                    i,
                ),
            )
            for i in range(jobs)
        ]
        for proc in procs:
            proc.start()
    last = started
    while any(p.is_alive() for p in procs):
        for p in procs:
            p.join(1)
        if time.monotonic() - last > 30:
            last = time.monotonic()
            count = int(sum(done[:]))
            click.echo(f"  {count:,}/{len(tasks):,} cases, {time.monotonic() - started:.0f} s")
    dead = [p.exitcode for p in procs if p.exitcode != 0]
    if dead:
        click.echo(f"callfuzz: {len(dead)} replay process(es) died ({dead}); partial", err=True)
    try:
        found = session.report_for(out)
    except CoverageError as err:
        fail(str(err))
    if found is None:
        fail("the replay recorded nothing")
    session.record_summary(out, found)
    rate = len(tasks) / max(time.monotonic() - started, 1e-9)
    click.echo(f"replayed in {time.monotonic() - started:.0f} s ({rate:.0f} cases/s)")
    for line in summary_lines(found):
        click.echo(line)
