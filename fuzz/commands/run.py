"""`callfuzz run`: run CLIF filetests on the interpreter and every target,
print what each executor did and the verdict, and a summary of the whole run:
files, run commands, and per executor what ran, diverged or abstained (and
why), and which configurations were skipped (and why). A bad file is one line
on stderr; the run goes on with the next."""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from fuzz import _cranelift
from fuzz.commands.common import (
    EXIT_AGREE,
    EXIT_BAD_INPUT,
    EXIT_DIVERGENCE,
    console,
    executor_option,
    fail,
    parse_target_option,
)
from fuzz.pipeline.emulate import DEFAULT_BUDGET
from fuzz.pipeline.filetest import BadInput, FileTest, Skipped, SkippedFile, parse_file
from fuzz.pipeline.oracle import BENIGN, INTERPRETER, Outcome, Verdict, is_finding
from fuzz.pipeline.routing import ExecutorChoice
from fuzz.pipeline.runner import (
    C_ABI_DIRECTIVE,
    Runner,
    RunResult,
    default_lines,
    release_lines,
    unselected,
)
from fuzz.targets import TARGETS
from fuzz.values import NanPolicy, Value, format_values


def collect_files(paths: Sequence[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(
                os.path.join(root, name)
                for root, _dirs, names in os.walk(path)
                for name in names
                if name.endswith(".clif")
            )
        else:
            files.append(path)
    return files


def _style(verdict: Verdict) -> str:
    if verdict is Verdict.AGREE:
        return "green"
    return "yellow" if verdict in BENIGN else "bold red"


def print_table(
    path: str, ft: FileTest, results: list[RunResult], skipped: Sequence[Skipped]
) -> None:
    """One row per run command and executor: the file's expectation, the
    interpreter, then every target line, each with its verdict."""
    # the path on a line of its own: a table title would wrap it to the table's width
    if not results:
        console.print(path, style="bold", markup=False, highlight=False, end="")
        console.print(": no run commands", highlight=False)
        _print_skipped(skipped)
        return
    console.print(path, style="bold", markup=False, highlight=False, soft_wrap=True)
    table = Table(show_edge=False)
    for column in ("run", "executor", "result", "verdict"):
        table.add_column(column, overflow="fold")
    for r in results:
        j = r.judgement
        first = r.command.text.removeprefix("run: ")
        if r.command.expected is not None:
            expected = format_values(r.command.expected)
            table.add_row(
                first, "expected", ("" if r.command.compare == "==" else "!= ") + expected, ""
            )
            first = ""
        for label, outcome in r.outcomes.items():
            verdict = j.verdicts[label]
            style = _style(verdict)
            text = escape(str(outcome))
            if outcome.confirmed_by:
                text += f"  (confirmed by {escape(outcome.confirmed_by)})"
            if label in j.blame:
                text += "  [bold](blamed)[/bold]"
            where = f"{label} [dim]on {outcome.executor}[/dim]" if outcome.executor else label
            table.add_row(
                first, where, f"[{style}]{text}[/{style}]", f"[{style}]{verdict.value}[/{style}]"
            )
            first = ""
        table.add_section()
    console.print(table)
    for r in results:
        for label, outcome in r.outcomes.items():
            for v in outcome.violations:
                console.print(f"  {r.command.text}: {label}: {v}", highlight=False, markup=False)
    _print_skipped(skipped)
    agreed = sum(not r.judgement.divergent for r in results)
    console.print(f"  {agreed}/{len(results)} run commands agree\n", highlight=False)


def _print_skipped(skipped: Sequence[Skipped]) -> None:
    for s in skipped:
        console.print(f"  skipped `{s.line}`: {s.reason}", highlight=False, markup=False)


def _value_json(v: Value) -> dict[str, Any]:
    return {"type": v.ty, "value": str(v), "bits": hex(v.bits)}


def result_json(r: RunResult) -> dict[str, Any]:
    return {
        "function": r.command.func,
        "command": r.command.text,
        "compare": r.command.compare,
        "expected": None
        if r.command.expected is None
        else [_value_json(v) for v in r.command.expected],
        "outcomes": {
            label: {
                "kind": o.kind.value,
                "values": [_value_json(v) for v in o.values],
                "detail": o.detail,
                "pc": o.pc,
                "violations": [str(v) for v in o.violations],
                "verdict": r.judgement.verdicts[label].value,
                "executor": o.executor or None,
                "confirmed_by": o.confirmed_by or None,
            }
            for label, o in r.outcomes.items()
        },
        "divergent": r.judgement.divergent,
        "blame": r.judgement.blame,
    }


# Verdicts that say an executor did not take part, for a stated reason.
ABSTAINED = BENIGN - {Verdict.AGREE, Verdict.NO_REFERENCE, Verdict.HARNESS_ERROR}

_QUOTED = re.compile(r"`[^`]*`|'[^']*'")
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\b\d+\b")


def abstention_reason(verdict: Verdict, outcome: Outcome) -> str:
    """An abstention's reason, general enough to count: quoted code and
    numbers masked, the first clause only."""
    detail = _NUMBER.sub("N", _QUOTED.sub("`...`", outcome.detail)).split(";")[0].strip()
    return f"{verdict.value}: {detail[:70]}" if detail else verdict.value


@dataclass
class Tally:
    """One executor (the interpreter, or a target over all its lines) over the run."""

    configs: int = 0  # target lines (configurations) it ran as
    executed: int = 0  # ran, and nothing diverged
    divergent: int = 0
    abstained: Counter[str] = field(default_factory=Counter)  # reason -> run commands
    # callfuzz's own failures (an executor, the C-ABI glue): counted apart,
    # never a finding, never an abstention that hides them
    harness: Counter[str] = field(default_factory=Counter)  # reason -> run commands
    on: Counter[str] = field(default_factory=Counter)  # executor -> runs it made

    def json(self) -> dict[str, Any]:
        return {
            "runs_by_executor": dict(self.on.most_common()),
            "configurations": self.configs,
            "executed": self.executed,
            "divergent": self.divergent,
            "abstained": sum(self.abstained.values()),
            "abstained_by_reason": dict(self.abstained.most_common()),
            "harness_errors": sum(self.harness.values()),
            "harness_errors_by_reason": dict(self.harness.most_common()),
        }


@dataclass
class Summary:
    files: int = 0
    bad: int = 0  # files rejected as bad input
    skipped_files: int = 0  # files upstream skips too (a target Cranelift lacks)
    runs: int = 0
    executors: dict[str, Tally] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)  # "target: reason" -> configurations

    def add(self, configs: Sequence[str], results: Sequence[RunResult]) -> None:
        for label in configs:
            self._tally(label).configs += 1
        self.runs += len(results)
        for r in results:
            for label, verdict in r.judgement.verdicts.items():
                tally = self._tally(label)
                if r.outcomes[label].executor:
                    tally.on[r.outcomes[label].executor] += 1
                if is_finding(verdict, label in r.judgement.blame):
                    tally.divergent += 1
                elif verdict is Verdict.HARNESS_ERROR:
                    tally.harness[abstention_reason(verdict, r.outcomes[label])] += 1
                elif verdict in ABSTAINED:
                    tally.abstained[abstention_reason(verdict, r.outcomes[label])] += 1
                else:
                    tally.executed += 1

    def add_skipped(self, skipped: Sequence[Skipped]) -> None:
        for s in skipped:
            self.skipped[f"{s.line.split()[0]}: {s.reason}"] += 1

    def _tally(self, label: str) -> Tally:
        return self.executors.setdefault(label.split()[0], Tally())

    def ordered(self) -> list[tuple[str, Tally]]:
        """The interpreter, then the targets in their table's order."""
        rank = {name: i for i, name in enumerate((INTERPRETER, *TARGETS))}
        return sorted(self.executors.items(), key=lambda item: rank.get(item[0], len(rank)))

    @property
    def divergent(self) -> bool:
        return any(t.divergent for t in self.executors.values())

    @property
    def harness_errors(self) -> int:
        return sum(sum(t.harness.values()) for t in self.executors.values())

    def exit_code(self) -> int:
        """1 on any divergence, else 2 if a file was bad input or callfuzz
        itself failed (a harness error), else 0."""
        if self.divergent:
            return EXIT_DIVERGENCE
        return EXIT_BAD_INPUT if self.bad or self.harness_errors else EXIT_AGREE

    def headline(self) -> str:
        files = f"{self.files} files"
        notes = [f"{self.bad} bad input"] * bool(self.bad) + [
            f"{self.skipped_files} skipped"
        ] * bool(self.skipped_files)
        if notes:
            files += f" ({', '.join(notes)})"
        per = ", ".join(
            f"{name} {t.executed}/{t.divergent}/{sum(t.abstained.values())}"
            for name, t in self.ordered()
        )
        line = f"{files}, {self.runs} run commands"
        if per:
            line += f"; executed/divergent/abstained: {per}"
        configs = sum(self.skipped.values())
        if configs:
            line += f"; {configs} configurations skipped"
        harness = self.harness_errors
        return line + (f"; {harness} harness errors (callfuzz's own failures)" if harness else "")

    def json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "bad_input": self.bad,
            "skipped_files": self.skipped_files,
            "run_commands": self.runs,
            "executors": {name: t.json() for name, t in self.ordered()},
            "skipped_configurations": dict(self.skipped.most_common()),
        }

    def print(self) -> None:
        if self.executors:
            self._print_table()
        for reason, n in self.skipped.most_common():
            console.print(f"  skipped {n} x {reason}", highlight=False, markup=False)
        for name, t in self.ordered():
            for reason, n in t.harness.most_common():
                console.print(f"  {name}: {n} x {reason}", highlight=False, markup=False)
        console.print(self.headline(), highlight=False, markup=False, soft_wrap=True)

    def _print_table(self) -> None:
        table = Table(title="summary", title_justify="left", show_edge=False)
        for column in (
            "executor",
            "configs",
            "ran on",
            "executed",
            "divergent",
            "abstained",
            "why",
        ):
            table.add_column(column, overflow="fold")
        for name, t in self.ordered():
            why = "; ".join(f"{n} x {reason}" for reason, n in t.abstained.most_common(3))
            if len(t.abstained) > 3:
                why += f"; {len(t.abstained) - 3} more reasons (--json)"
            table.add_row(
                name,
                str(t.configs),
                ", ".join(f"{n} {e}" for e, n in t.on.most_common()),
                str(t.executed),
                str(t.divergent),
                str(sum(t.abstained.values())),
                why,
            )
        console.print(table)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    help="x86_64, aarch64, riscv64, s390x, optionally with ISA flags: 'riscv64 has_c'.",
)
@click.option(
    "--set", "-s", "flags", multiple=True, help="Shared Cranelift flag, e.g. opt_level=speed."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option(
    "--nan",
    type=click.Choice([p.value for p in NanPolicy]),
    default=NanPolicy.ANY.value,
    show_default=True,
    help="NaN comparison policy.",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Instruction budget per emulated run.",
)
@click.option(
    "--c-abi/--no-c-abi",
    default=False,
    show_default=True,
    help="Also check every signature with a C counterpart against the target's C compiler.",
)
@executor_option
def run(
    paths: tuple[str, ...],
    targets: tuple[str, ...],
    flags: tuple[str, ...],
    as_json: bool,
    nan: str,
    budget: int,
    c_abi: bool,
    executor: str,
) -> None:
    """Run CLIF filetests on the interpreter and every target; compare.

    Exit 1 on any divergence, else 2 if a file was bad input, else 0."""
    wanted = [parse_target_option(t) for t in targets]
    runner = Runner(NanPolicy(nan), budget=budget, executor=ExecutorChoice(executor), c_abi=c_abi)
    files = collect_files(paths)
    if not files:
        fail(f"no .clif files in {' '.join(paths)}")
    report: list[dict[str, Any]] = []
    summary = Summary()
    for path in files:
        summary.files += 1
        try:
            ft = parse_file(path)
            runner.c_abi = c_abi or C_ABI_DIRECTIVE in ft.text
            lines = default_lines(ft, wanted)
            skipped = [*ft.skipped, *unselected(ft, lines)]
            lines, too_new = release_lines(ft, lines, runner.release)
            skipped += too_new
            results = runner.run_file(ft, lines, flags)
        except SkippedFile as err:
            summary.skipped_files += 1
            report.append({"file": path, "skipped": str(err)})
            if not as_json:
                click.echo(str(err))  # names the file already
            continue
        except BadInput as err:
            # one line, and on with the next file
            message = str(err) if str(err).startswith(path) else f"{path}: {err}"
            click.echo(f"callfuzz: error: {message}", err=True)
            summary.bad += 1
            report.append({"file": path, "error": message})
            continue
        asked = [INTERPRETER] if ft.interpreted else []
        summary.add([*asked, *(line.label for line in lines)], results)
        summary.add_skipped(skipped)
        if as_json:
            report.append(
                {
                    "file": path,
                    "skipped_configurations": [
                        {"line": s.line, "reason": s.reason} for s in skipped
                    ],
                    "runs": [result_json(r) for r in results],
                }
            )
        else:
            print_table(path, ft, results, skipped)
    if as_json:
        click.echo(
            json.dumps(
                {"cranelift": _cranelift.version(), "files": report, "summary": summary.json()},
                indent=2,
            )
        )
    else:
        summary.print()
    sys.exit(summary.exit_code())
