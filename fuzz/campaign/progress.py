"""Campaign progress: a live table on a terminal, a plain status line every
so often otherwise (a night's log), and the summary at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fuzz.campaign.state import Options, Stats
from fuzz.pipeline.oracle import Verdict
from fuzz.triage.known import Registry
from fuzz.triage.schema import Bucket

SHOWN = 30  # buckets listed at the end, of each kind


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Display:
    def __init__(self, options: Options, stats: Stats) -> None:
        self.opt = options
        self.stats = stats
        self.console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
        self.live: Live | None = None
        self.last_line = time.monotonic()

    def __enter__(self) -> Display:
        if self.opt.live:
            self.live = Live(self.table(), console=self.console, refresh_per_second=2)
            self.live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(kind, err, tb)
            self.live = None

    def elapsed(self) -> float:
        return time.monotonic() - self.stats.started

    def remaining(self) -> str:
        if self.opt.duration:
            return _clock(max(self.opt.duration - self.elapsed(), 0))
        if self.opt.cases and self.stats.cases:
            left = self.opt.cases - self.stats.cases_before - self.stats.cases
            return _clock(max(left, 0) / max(self.stats.rate(), 1e-9))
        return "until stopped"

    def table(self) -> Table:
        s = self.stats
        table = Table(title="callfuzz campaign", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        table.add_row("cases", f"{s.cases_before + s.cases:,} ({s.rate():,.1f}/s)")
        table.add_row(
            "executions",
            "  ".join(f"{t} {n:,}" for t, n in sorted(s.executions.items())) or "-",
        )
        runs = sum(s.executor_runs.values())
        if runs:
            table.add_row(
                "runs on",
                "  ".join(
                    f"{e} {n:,} ({100 * n / runs:.1f}%)" for e, n in s.executor_runs.most_common()
                ),
            )
        if s.throws:
            table.add_row(
                "throws taken", "  ".join(f"{t} {n:,}" for t, n in sorted(s.throws.items()))
            )
        table.add_row(
            "verdicts", "  ".join(f"{v} {n:,}" for v, n in s.verdicts.most_common()) or "-"
        )
        if s.debug_compiles:
            table.add_row(
                "debug compiles",
                f"{s.debug_compiles:,} target lines compiled again "
                f"({s.debug_without_ranges:,} gave no value-label ranges)",
            )
        table.add_row(
            "findings",
            f"{self.findings()}; {s.hard_crashes} hard crashes, {s.hangs} hangs; "
            f"{self.harness_errors():,} harness errors (callfuzz's own, not findings)",
        )
        table.add_row("elapsed / remaining", f"{_clock(self.elapsed())} / {self.remaining()}")
        return table

    def status_line(self) -> str:
        s = self.stats
        return (
            f"[{_clock(self.elapsed())}] cases {s.cases_before + s.cases:,} "
            f"({s.rate():,.1f}/s) | "
            + " ".join(f"{t} {n:,}" for t, n in sorted(s.executions.items()))
            + f" | findings {self.findings()}, "
            f"crashes {s.hard_crashes}, hangs {s.hangs}, harness errors {self.harness_errors()} "
            f"| remaining {self.remaining()}"
        )

    def harness_errors(self) -> int:
        return self.stats.verdicts.get(Verdict.HARNESS_ERROR.value, 0)

    def findings(self) -> str:
        """`24 in 0 new buckets, 15 known`: new buckets (opened by this run and
        not known) apart from known ones and from buckets opened before."""
        s = self.stats
        text = f"{s.findings:,} in {s.new_buckets} new buckets, {s.known_buckets} known"
        older = s.older_buckets()
        text += f", {older} seen before" if older else ""
        if s.emulator_disagreements:
            text += (
                f" (and {s.emulator_disagreements:,} emulator disagreements in "
                f"{s.emulator_buckets} buckets, not findings)"
            )
        return text

    def update(self) -> None:
        if self.live is not None:
            self.live.update(self.table())
        elif time.monotonic() - self.last_line >= self.opt.status_every:
            self.last_line = time.monotonic()
            self.console.print(self.status_line(), highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)

    def summary(self, reason: str, campaign_id: int, db_url: str) -> None:
        s = self.stats
        cranelift, worker_cpu, writer_cpu = s.split()
        harness = worker_cpu + writer_cpu - cranelift
        total = max(worker_cpu + writer_cpu, 1e-9)
        table = self.table()
        table.title = f"campaign {campaign_id}: stopped ({reason})"
        table.add_row(
            "CPU time",
            f"Cranelift {cranelift:,.1f}s ({100 * cranelift / total:.0f}%), "
            f"harness {harness:,.1f}s ({100 * harness / total:.0f}%: "
            f"emulation {s.stage_seconds('emulate'):,.1f}s, "
            f"generation {s.stage_seconds('generate'):,.1f}s, "
            f"writer process {writer_cpu:,.1f}s)",
        )
        elapsed = max(self.elapsed(), 1e-9)
        table.add_row(
            "executions/s",
            "  ".join(f"{t} {n / elapsed:,.1f}" for t, n in sorted(s.executions.items())) or "-",
        )
        table.add_row("corpus", f"{s.corpus_added} cases added")
        if s.errors:
            table.add_row("skipped", f"{s.errors} unreadable or invalid corpus files")
        if s.not_for_release:
            reasons = "; ".join(f"{n} x {why}" for why, n in s.not_for_release.most_common(3))
            more = len(s.not_for_release) - 3
            table.add_row(
                "not for this release",
                f"{s.not_for_release.total()} corpus files or target lines: {reasons}"
                + (f"; {more} more reasons" if more > 0 else ""),
            )
        if s.generator_defects:
            cases = sum(s.generator_defects.values())
            reasons = "; ".join(
                f"{n:,} x {reason}" for reason, n in s.generator_defects.most_common(3)
            )
            more = len(s.generator_defects) - 3
            table.add_row(
                "generator defects",
                f"{cases:,} generated cases Cranelift rejects: {reasons}"
                + (f"; {more} more reasons" if more > 0 else ""),
            )
        table.add_row("database", db_url)
        self.console.print(table)

    def buckets(self, new: Sequence[Bucket], known: Sequence[Bucket], registry: Registry) -> None:
        """What the campaign found: its new buckets, then the known ones it hit
        with the registry's reference; the last line says whether anything is new."""
        out = self.console
        if new:
            out.print("new buckets (callfuzz triage show ID):", highlight=False)
            for b in new[:SHOWN]:
                out.print(f"  {b.id:>5}  {b.title}", highlight=False, markup=False)
            if len(new) > SHOWN:
                out.print(f"  ... and {len(new) - SHOWN} more (callfuzz triage list)")
        if known:
            where = registry.path or "the registry"
            out.print(f"known findings ({where}):", highlight=False, markup=False)
            for b in known[:SHOWN]:
                entry = registry.get(b.known_ref or "")
                about = f"{entry.kind}; {entry.reference()}" if entry else ""
                out.print(
                    f"  {b.id:>5}  {b.target} {b.verdict}: {b.known_ref} ({about})",
                    highlight=False,
                    markup=False,
                )
            if len(known) > SHOWN:
                out.print(f"  ... and {len(known) - SHOWN} more (triage list --status known)")
        older = self.stats.older_buckets()
        seen = f", {older} seen before" if older else ""
        if new:
            out.print(f"{len(new)} new buckets ({len(known)} known{seen})", highlight=False)
        else:
            out.print(f"nothing new ({len(known)} known buckets{seen})", highlight=False)
