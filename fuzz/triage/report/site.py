"""`callfuzz triage report`: static HTML pages to review a campaign's buckets,
self-contained (inline style and charts, no script from anywhere, no
server): an overview, one page per bucket, and beside each its export and
its draft bug report."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fuzz.pipeline.oracle import Verdict
from fuzz.triage.report import jinja, plots, queries
from fuzz.triage.report.draft import draft
from fuzz.triage.report.environment import Environment
from fuzz.triage.report.facts import BucketFacts, facts
from fuzz.triage.report.highlight import clif_html, style_sheet
from fuzz.triage.schema import Bucket, BucketStatus, Campaign, Finding
from fuzz.triage.store import TriageDB

RECENT_FINDINGS = 20  # listed on a bucket's page
# the disassembly of a finding's code (`triage show`'s), or None to leave it out
Disassembler = Callable[[Finding], list[str]]


@dataclass(frozen=True)
class CampaignRow:
    campaign: Campaign
    duration: str


@dataclass(frozen=True)
class CoverageRow:
    """One backend's share of Cranelift reached (a coverage summary.json)."""

    backend: str
    functions: str
    edges: str
    call_lowering: str


@dataclass(frozen=True)
class Coverage:
    campaign_id: int
    source: str  # "replay" or "live"
    rows: list[CoverageRow]


@dataclass(frozen=True)
class BucketPage:
    facts: BucketFacts
    page: str
    draft_name: str
    reproducer_html: str
    disassembly: list[str] | None
    findings: list[Finding]


@dataclass(frozen=True)
class Written:
    directory: Path
    index: Path
    buckets: int
    size: int  # bytes of every file written
    files: list[Path] = field(default_factory=list)


def page_name(bucket: Bucket) -> str:
    return f"bucket-{bucket.id}.html"


def write_report(
    db: TriageDB,
    out: Path,
    env: Environment,
    campaign_id: int | None = None,
    disassemble: Disassembler | None = None,
) -> Written:
    """Write the report of `campaign_id` (None: every campaign) into `out`."""
    chosen = queries.campaigns(db, campaign_id)
    ids = [c.id for c in chosen]
    buckets = queries.buckets(db, ids if campaign_id is not None else None)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    pages = [_bucket_page(db, b, env, disassemble) for b in buckets]
    style = style_sheet()
    for page in pages:
        b = page.facts.bucket
        files.append(_write(out / page.facts.export_name, page.facts.reproducer))
        files.append(_write(out / page.draft_name, draft(page.facts, env)))
        html = jinja.html().get_template("bucket.html.j2").render(p=page, b=b, style=style)
        files.append(_write(out / page.page, html))
    index = out / "index.html"
    files.append(_write(index, _overview(db, chosen, buckets, pages, env, style)))
    return Written(out, index, len(pages), sum(f.stat().st_size for f in files), files)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _bucket_page(
    db: TriageDB, bucket: Bucket, env: Environment, disassemble: Disassembler | None
) -> BucketPage:
    found = db.bucket_findings(bucket.id, limit=RECENT_FINDINGS)
    clif = db.case_text(bucket.reduced_case_id or bucket.best_case_id) or ""
    labels = sorted({label for label, _flags in db.bucket_configs(bucket.id)})
    about = facts(bucket, found[0], clif, labels)
    return BucketPage(
        facts=about,
        page=page_name(bucket),
        draft_name=f"bucket-{bucket.id}.md",
        reproducer_html=clif_html(about.reproducer),
        disassembly=_disassembly(disassemble, found[0]),
        findings=found,
    )


def _disassembly(disassemble: Disassembler | None, finding: Finding) -> list[str] | None:
    if disassemble is None:
        return None
    try:
        return disassemble(finding)
    except Exception as err:  # noqa: BLE001 - a page without it rather than no report
        return [f"no disassembly: {type(err).__name__}: {err}"]


def _overview(
    db: TriageDB,
    chosen: Sequence[Campaign],
    buckets: Sequence[Bucket],
    pages: Sequence[BucketPage],
    env: Environment,
    style: str,
) -> str:
    ids = [c.id for c in chosen]
    times = queries.finding_times(db, ids)
    series = {f"campaign {cid}": moments for cid, moments in times.items()}
    rates = [(c.started_at, c.cases_per_second, f"#{c.id}") for c in chosen if c.cases_done]
    counts = {s.value: sum(1 for b in buckets if b.status == s.value) for s in BucketStatus}
    emulator = sum(1 for b in buckets if b.verdict == Verdict.EMULATOR_DISAGREEMENT.value)
    coverage = [cov for c in chosen if (cov := _coverage(db.workdir, c.id)) is not None]
    return (
        jinja.html()
        .get_template("index.html.j2")
        .render(
            campaigns=[CampaignRow(c, _duration(c)) for c in chosen],
            counts=counts,
            emulator=emulator,
            pages=pages,
            findings_svg=plots.findings_over_time(series),
            throughput_svg=plots.throughput(rates),
            coverage=coverage,
            env=env,
            db_url=db.url,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            style=style,
        )
    )


def _duration(c: Campaign) -> str:
    if c.ended_at is None:
        return "running"
    seconds = int((c.ended_at - c.started_at).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _coverage(workdir: Path, campaign_id: int) -> Coverage | None:
    """A campaign's coverage per backend from the summary its replay (else
    its own coverage-guided run) wrote; None when there is none."""
    from fuzz.coverage.live import BITMAPS
    from fuzz.coverage.session import REPLAY

    for source, sub in (("replay", REPLAY), ("live", BITMAPS)):
        path = workdir / f"campaign-{campaign_id}" / sub / "summary.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows = [
            CoverageRow(
                isa,
                _ratio(area, "functions"),
                _ratio(area, "edges"),
                _ratio(data.get("call_lowering", {}).get(isa, {}), "functions"),
            )
            for isa, area in sorted(data.get("backends", {}).items())
        ]
        return Coverage(campaign_id, source, rows)
    return None


def _ratio(area: dict[str, Any], what: str) -> str:
    whole, part = int(area.get(what, 0)), int(area.get(f"{what}_reached", 0))
    return f"{part:,}/{whole:,} ({100 * part / whole:.1f}%)" if whole else "-"
