"""`callfuzz triage`: review the buckets a campaign filled.

`list` and `stats` summarise, `show` prints one bucket with its best
reproducer, the values that differ and the machine code around the fault,
`mark` records what a reviewer decided, `export` writes a bucket's
reproducer as an upstream filetest (and a C-ABI finding's C and CLIF sides),
`draft` a bug report in upstream's template, `report` a static HTML review
of a campaign (fuzz.triage.report).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fuzz import _cranelift
from fuzz.commands.common import bucket_or_fail, fail, opened_db, target_name
from fuzz.pipeline.filetest import BadInput, FileTest, TargetLine, parse_text
from fuzz.pipeline.link import Image, LinkError, link
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import Runner
from fuzz.targets import Target, UnknownTarget, lookup
from fuzz.triage.cabi_export import CAbiSides, c_abi_sides
from fuzz.triage.export import run_lines_parsed, target_configs
from fuzz.triage.report.exported import export_name, export_text
from fuzz.triage.schema import Bucket, BucketStatus, Finding

F = TypeVar("F", bound=Callable[..., Any])

_RUN_FUNC = re.compile(r"^\s*(?:run|print):\s*(%[\w.$]+|u\d+:\d+)\s*\(")


def _console() -> Console:
    # Wide enough for a log file when stdout is not a terminal.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _db_option(f: F) -> F:
    return click.option(
        "--db", "db_url", help="SQLAlchemy URL or SQLite file (default crashes/triage.sqlite)."
    )(f)


def _bucket_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        fail(f"not a bucket id: {text!r}")
    if value < 1:
        fail(f"not a bucket id: {text!r}")
    return value


_STATUSES = ", ".join(m.value for m in BucketStatus)


def _status(text: str) -> str:
    names = [m.value for m in BucketStatus]
    if text not in names:
        fail(f"unknown status {text!r} (one of: {', '.join(names)})")
    return text


def _cells(*values: object) -> list[Text]:
    # Text, not str: stored titles and values may hold `[...]`, which is not markup
    return [Text(str(v)) for v in values]


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@click.group()
def triage() -> None:
    """Review the triage database: buckets of deduplicated findings."""


# --- list ------------------------------------------------------------------------


@triage.command("list")
@click.option("--status", help=f"{_STATUSES}.")
@click.option("--all", "everything", is_flag=True, help="Known buckets too.")
@click.option("--target", help="x86_64, aarch64, riscv64 or s390x.")
@click.option("--verdict", help="e.g. 'wrong result', 'compile panic', 'hard crash'.")
@click.option("--limit", help="Show at most N buckets.")
@_db_option
def list_(
    status: str | None,
    everything: bool,
    target: str | None,
    verdict: str | None,
    limit: str | None,
    db_url: str | None,
) -> None:
    """Buckets: new ones first, then the rest, the most recently seen first.
    Known buckets (findings in the registry of known findings) only with
    --all or --status known."""
    count = None
    if limit is not None:
        if not limit.isdigit() or int(limit) < 1:
            fail(f"--limit wants a positive number, not {limit!r}")
        count = int(limit)
    wanted_status = _status(status) if status else None
    wanted_target = target_name(target) if target else None
    hide = () if everything or wanted_status else (BucketStatus.KNOWN.value,)
    with opened_db(db_url) as db:
        buckets = db.list_buckets(
            status=wanted_status, target=wanted_target, verdict=verdict, limit=count, hide=hide
        )
        hidden = (
            db.count_buckets(status=BucketStatus.KNOWN.value, target=wanted_target, verdict=verdict)
            if hide
            else 0
        )
    console = _console()
    if not buckets:
        console.print("no buckets" if not hidden else "no buckets besides known ones")
    else:
        console.print(_bucket_table(buckets))
    if hidden:
        noun = "bucket" if hidden == 1 else "buckets"
        console.print(f"{hidden} known {noun} not shown (--all or --status known)")


def _bucket_table(buckets: Sequence[Bucket]) -> Table:
    known = any(b.known_ref for b in buckets)
    table = Table(show_edge=False)
    for column in ("id", "status", "hits", "target", "verdict", "title", "first seen"):
        table.add_column(column, overflow="fold")
    table.add_column("last seen", overflow="fold")
    table.add_column("lines", justify="right")
    if known:
        table.add_column("known as", overflow="fold")
    for b in buckets:
        cells = [
            b.id,
            b.status,
            b.hit_count,
            b.target,
            b.verdict,
            b.title,
            _when(b.first_seen),
            _when(b.last_seen),
            b.best_lines,
        ]
        table.add_row(
            *_cells(*cells, *([b.known_ref or ""] if known else [])),
            style=None if b.status in ("new", "confirmed") else "dim",
        )
    return table


# --- show ------------------------------------------------------------------------


@triage.command()
@click.argument("bucket")
@_db_option
def show(bucket: str, db_url: str | None) -> None:
    """One bucket: reproducer, differences and disassembly at the fault."""
    bucket_id = _bucket_id(bucket)
    with opened_db(db_url) as db:
        info = bucket_or_fail(db, bucket_id)
        [best] = db.bucket_findings(bucket_id, limit=1)  # the best reproducer's
        configs = db.bucket_configs(bucket_id)
        reduced = db.case_text(info.reduced_case_id) if info.reduced_case_id else None
    out = _console()
    out.print(f"[bold]bucket {info.id}: {_escape(info.title)}[/bold]")
    labels = sorted({label for label, _flags in configs})
    flag_sets = sorted({" ".join(flags) or "(none)" for _label, flags in configs})
    rows = [
        ("key", info.key),
        ("status", info.status),
        *([("known as", info.known_ref)] if info.known_ref else []),
        (
            "hits",
            f"{info.hit_count} (first {_when(info.first_seen)}, last {_when(info.last_seen)})",
        ),
        ("cranelift", ", ".join(info.cranelift_versions)),
        ("targets", ", ".join(labels)),
        ("flags", "; ".join(flag_sets)),
        ("reproducer", f"case {info.best_case_id}, {info.best_lines} lines, {best.origin}"),
    ]
    if best.seed is not None:
        rows.append(("seed", str(best.seed)))
    for name, value in rows:
        out.print(f"{name + ':':12}{value}", markup=False)
    if info.notes:
        out.print("notes:", markup=False)
        for line in info.notes.splitlines():
            out.print(f"  {line}", markup=False)
    _section(out, "best reproducer")
    out.print(best.clif.rstrip("\n"), markup=False)
    if reduced:
        verified = (
            f"verified afresh on Cranelift {info.reduced_verified_on}"
            if info.reduced_verified_on
            else "not verified"
        )
        _section(out, f"reduced ({len(reduced.splitlines())} lines, {verified})")
        out.print(reduced.rstrip("\n"), markup=False)
    _print_details(out, best)
    _section(out, f"disassembly ({best.target})")
    compiler = _cranelift.version()
    if best.cranelift_version and best.cranelift_version != compiler:
        # the recorded pc is an offset into the finding's code, not this one's
        out.print(
            f"compiled by Cranelift {compiler}, not {best.cranelift_version} as the finding:"
            f" the marked pc may be another instruction (`callfuzz --cranelift"
            f" {best.cranelift_version} triage show {info.id}`)",
            markup=False,
        )
    for line in disassembly(best.clif, best.target, best.flags, _fault_pc(best)):
        out.print(line, markup=False)


def _escape(text: str) -> str:

    return escape(text)


def _section(out: Console, title: str) -> None:
    out.print()
    out.print(f"[bold]── {title}[/bold]")


def _print_details(out: Console, finding: Finding) -> None:
    d = finding.details
    _section(out, f"finding {finding.id}: {finding.verdict} on {finding.target}")
    if "run" in d:
        out.print(d["run"], markup=False)
    outcomes: dict[str, Any] = d.get("outcomes", {})
    verdicts: dict[str, str] = d.get("verdicts", {})
    blamed = set(finding.blame)
    for label, outcome in outcomes.items():
        mark = "  (blamed)" if label in blamed else ""
        text = outcome.get("text", outcome) if isinstance(outcome, dict) else outcome
        verdict = verdicts.get(label, "")
        out.print(f"  {label:24} {verdict:18} {text}{mark}", markup=False)
    differences = d.get("differences") or []
    if differences:
        table = Table(title="values that differ", title_justify="left", show_edge=False)
        for column in ("#", "type", "expected", "actual"):
            table.add_column(column)
        for diff in differences:
            table.add_row(
                *_cells(
                    diff.get("index"), diff.get("type"), diff.get("expected"), diff.get("actual")
                )
            )
        out.print(table)
    if panic := d.get("panic"):
        out.print(f"panic: {panic.get('message')} at {panic.get('location')}", markup=False)
    violations = d.get("violations") or []
    if violations:
        table = Table(title="call contract violations", title_justify="left", show_edge=False)
        for column in ("kind", "call edge", "where", "class", "expected", "actual"):
            table.add_column(column, overflow="fold")
        for v in violations:
            table.add_row(
                *_cells(
                    v.get("kind"),
                    v.get("edge"),
                    v.get("where"),
                    v.get("class"),
                    v.get("expected"),
                    v.get("actual"),
                )
            )
        out.print(table)
    mismatches = d.get("c_abi") or []
    if mismatches:
        table = Table(title="C ABI mismatches", title_justify="left", show_edge=False)
        for column in ("direction", "cc", "position", "C type", "expected", "actual", "from"):
            table.add_column(column, overflow="fold")
        for m in mismatches:
            table.add_row(
                *_cells(
                    m.get("direction"),
                    m.get("convention"),
                    f"{m.get('position')} {m.get('index')}",
                    m.get("c_type"),
                    m.get("expected"),
                    m.get("actual"),
                    m.get("source"),
                )
            )
        out.print(table)
    shown = {"run", "outcomes", "verdicts", "differences", "panic", "blame", "violations", "c_abi"}
    for key, value in d.items():
        if key not in shown:
            text = f"{value:#x}" if key == "pc" and isinstance(value, int) else value
            out.print(f"{key}: {text}", markup=False)


def _fault_pc(finding: Finding) -> int | None:
    """The faulting pc on the finding's own target, if its outcome had one."""
    d = finding.details
    outcome = d.get("outcomes", {}).get(finding.target)
    if isinstance(outcome, dict) and isinstance(outcome.get("pc"), int):
        return int(outcome["pc"])
    pc = d.get("pc")
    return pc if isinstance(pc, int) else None


# --- disassembly -------------------------------------------------------------------


def disassembly(clif: str, label: str, flags: Sequence[str], pc: int | None) -> list[str]:
    """Recompile and link `clif` for the target line `label` as the campaign
    did (same layout, so the recorded pc points into it) and disassemble the
    functions involved: the run's function, what it calls, and the function
    holding `pc`, whose instruction is marked `=>`."""

    # a label may tag a configuration with its set lines: `x86_64 [opt_level=none]`
    # (the finding's flags hold them); the rest are the target and its ISA flags
    words = re.sub(r"\[[^\]]*\]", " ", label).split()
    try:
        target = lookup(words[0] if words else "?")
        ft = parse_text(clif)
        shared = [*ft.shared_flags, *(f for f in flags if f not in ft.shared_flags)]
        config = Runner().prepare(ft, TargetLine(target, tuple(words[1:])), shared)
    except (UnknownTarget, BadInput) as err:
        return [f"cannot recompile for {label!r}: {err}"]
    image = config.image
    if image is None and config.functions:
        try:  # not runnable here (e.g. a libcall), but the code is still worth reading
            image = link(config.functions, target)
        except LinkError as err:
            return [f"cannot link for {label}: {err}"]
    if image is None:
        return [f"no code for {label}: {config.failure}"]
    names = _involved(ft, _run_function(ft), image, pc)
    lines: list[str] = []
    for name in names:
        lines += _disassemble(target, image, name, pc)
    if pc is not None and not any(line.startswith("=>") for line in lines):
        lines.append(f"faulting pc {pc:#x} is outside the compiled code")
    return lines


def _run_function(ft: FileTest) -> str | None:
    for run in ft.runs:
        if m := _RUN_FUNC.match(run.text):
            return m.group(1)
    return None


def _involved(ft: FileTest, entry: str | None, image: Image, pc: int | None) -> list[str]:
    """Functions reachable from the run's entry, plus the one holding `pc`,
    in address order (all of the module's when no run line names an entry)."""
    wanted = set(ft.reachable(entry) if entry in ft.functions else ft.functions)
    if pc is not None and (hit := image.function_at(pc)) is not None:
        wanted.add(hit[0])
    return sorted((n for n in wanted if n in image.symbols), key=image.symbols.__getitem__)


def _disassemble(target: Target, image: Image, name: str, pc: int | None) -> list[str]:
    import capstone

    start = image.symbols[name]
    code = image.code_of(name)
    md = capstone.Cs(target.cs_arch, target.cs_mode)
    md.skipdata = True  # constants after the code
    lines = [f"{name} @ {start:#x} ({len(code)} bytes):"]
    for address, size, mnemonic, operands in md.disasm_lite(code, start):
        here = pc is not None and address <= pc < address + size
        trap = _trap_at(image, address, size)
        text = f"{address:#x}: {mnemonic} {operands}".rstrip()
        if trap:
            text += f"    ; trap {trap}"
        lines.append(("=> " if here else "   ") + text)
    return lines


def _trap_at(image: Image, address: int, size: int) -> str | None:
    return next(
        (image.trap_sites[a] for a in range(address, address + size) if a in image.trap_sites), None
    )


# --- mark ------------------------------------------------------------------------


@triage.command()
@click.argument("bucket")
@click.option("--status", "status", required=True, help=f"{_STATUSES}.")
@click.option("--note", help="Appended to the bucket's notes with a timestamp.")
@_db_option
def mark(bucket: str, status: str, note: str | None, db_url: str | None) -> None:
    """Set a bucket's status (and add a note)."""
    bucket_id = _bucket_id(bucket)
    _status(status)
    with opened_db(db_url) as db:
        try:
            info = db.mark_bucket(bucket_id, status, note)
        except KeyError:
            fail(f"no bucket {bucket_id}")
    click.echo(f"bucket {info.id}: {info.status}" + (" (note added)" if note else ""))


# --- stats -----------------------------------------------------------------------


@triage.command()
@_db_option
def stats(db_url: str | None) -> None:
    """Buckets per status, target and verdict; findings; campaigns."""
    with opened_db(db_url) as db:
        summary = db.summary()
    out = _console()
    for title, counts in (
        ("buckets by status", summary.buckets_by_status),
        ("buckets by target", summary.buckets_by_target),
        ("buckets by verdict", summary.buckets_by_verdict),
    ):
        out.print(_counts_table(title, counts.items()))
    total = sum(summary.buckets_by_status.values())
    out.print(
        f"{total} buckets, {summary.findings} findings, {summary.cases} distinct cases",
        markup=False,
    )
    if not summary.campaigns:
        out.print("no campaigns")
        return
    table = Table(title="campaigns", title_justify="left", show_edge=False)
    for column in ("id", "status", "started", "host", "engine", "seed", "targets"):
        table.add_column(column)
    for column in ("cases", "cases/s"):
        table.add_column(column, justify="right")
    for c in summary.campaigns:
        table.add_row(
            *_cells(
                c.id,
                c.status,
                _when(c.started_at),
                c.host,
                c.engine,
                c.seed,
                " ".join(c.targets),
                f"{c.cases_done:,}",
                f"{c.cases_per_second:.1f}",
            )
        )
    out.print(table)


def _counts_table(title: str, counts: Iterable[tuple[str, int]]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("")
    table.add_column("buckets", justify="right")
    rows = list(counts)
    for name, n in rows:
        table.add_row(*_cells(name, n))
    if not rows:
        table.add_row("(none)", "0")
    return table


# --- export ----------------------------------------------------------------------

C_ABI = Verdict.C_ABI_MISMATCH.value


def _c_abi_sides(clif: str, target: str, stem: str) -> CAbiSides | None:
    try:
        found = lookup(target)
    except UnknownTarget:
        return None
    return c_abi_sides(clif, found, target_configs(clif, target), stem)


@triage.command()
@click.argument("bucket")
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), help="Default: crashes/bucket-ID-TARGET.clif"
)
@_db_option
def export(bucket: str, out: str | None, db_url: str | None) -> None:
    """Write a bucket's reproducer (reduced when it has been) as a Cranelift
    filetest with the interpreter's expected values, for an upstream report."""

    bucket_id = _bucket_id(bucket)
    with opened_db(db_url) as db:
        info = bucket_or_fail(db, bucket_id)
        case_id = info.reduced_case_id or info.best_case_id
        clif = db.case_text(case_id) or ""
    text = export_text(info, clif)
    path = Path(out) if out else Path("crashes") / export_name(info)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stem = path.with_suffix("")
    sides = _c_abi_sides(clif, info.target, stem.name) if info.verdict == C_ABI else None
    if sides is not None:
        Path(f"{stem}.c").write_text(sides.c_source)
        Path(f"{stem}.cabi.clif").write_text(sides.clif_source)
        click.echo(f"{stem}.c, {stem}.cabi.clif: the C and Cranelift sides, with their commands")
    written, parsed = run_lines_parsed(text)
    state = "reduced" if info.reduced_case_id else "not reduced yet (callfuzz reduce ID)"
    if info.reduced_case_id:
        state += ", verified" if info.reduced_verified_on else ", not verified"
    click.echo(f"{path}: {state}, {written} run lines, {parsed} parsed by cranelift-reader")


# --- draft -----------------------------------------------------------------------


@triage.command()
@click.argument("bucket")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Default: standard output.")
@_db_option
def draft(bucket: str, out: str | None, db_url: str | None) -> None:
    """A bucket as an upstream bug report (Markdown, wasmtime's Cranelift
    template), with its reproducer as `triage export` writes it."""
    from fuzz.triage.report.draft import draft as render
    from fuzz.triage.report.environment import environment
    from fuzz.triage.report.facts import gather

    bucket_id = _bucket_id(bucket)
    with opened_db(db_url) as db:
        facts = gather(db, bucket_id)
    if facts is None:
        fail(f"no bucket {bucket_id}")
    text = render(facts, environment())
    if out is None:
        click.echo(text, nl=False)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(f"{path}: bug report for bucket {bucket_id} ({facts.bucket.title})")


# --- report ----------------------------------------------------------------------


@triage.command()
@click.option("--campaign", "campaign_id", type=int, help="Only this campaign's buckets.")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory (default: report/ beside an SQLite database, else crashes/report).",
)
@_db_option
def report(campaign_id: int | None, out: Path | None, db_url: str | None) -> None:
    """Static HTML pages to review buckets: an overview of the campaigns and
    one page per bucket, with its export and draft bug report beside it.
    Opens from disk; needs no server and no network."""
    from fuzz.triage.report.environment import environment
    from fuzz.triage.report.site import write_report

    def disassemble(f: Finding) -> list[str]:
        return disassembly(f.clif, f.target, f.flags, _fault_pc(f))

    with opened_db(db_url) as db:
        if campaign_id is not None and db.get_campaign(campaign_id) is None:
            fail(f"no campaign {campaign_id}")
        written = write_report(
            db, out or db.workdir / "report", environment(), campaign_id, disassemble
        )
    click.echo(
        f"{written.index}: {written.buckets} bucket pages, "
        f"{written.size / 1e6:.2f} MB in {written.directory}"
    )
