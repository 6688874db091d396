"""`callfuzz run`: run CLIF filetests on the interpreter and every target,
print what each executor did and the verdict."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from fuzz import _cranelift
from fuzz.commands.common import (
    EXIT_AGREE,
    EXIT_DIVERGENCE,
    console,
    fail,
    parse_target_option,
)
from fuzz.pipeline.emulate import DEFAULT_BUDGET
from fuzz.pipeline.filetest import BadInput, FileTest, parse_file
from fuzz.pipeline.oracle import BENIGN, Verdict
from fuzz.pipeline.runner import Runner, RunResult, default_lines
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


def print_table(path: str, ft: FileTest, results: list[RunResult]) -> None:
    """One row per run command and executor: the file's expectation, the
    interpreter, then every target line, each with its verdict."""
    if not results:
        console.print(f"[bold]{path}[/bold]: no run commands")
        return
    table = Table(title=path, title_justify="left", show_edge=False)
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
            text = str(outcome)
            if label in j.blame:
                text += "  [bold](blamed)[/bold]"
            table.add_row(
                first, label, f"[{style}]{text}[/{style}]", f"[{style}]{verdict.value}[/{style}]"
            )
            first = ""
        table.add_section()
    console.print(table)
    for r in results:
        for label, outcome in r.outcomes.items():
            for v in outcome.violations:
                console.print(f"  {r.command.text}: {label}: {v}", highlight=False, markup=False)
    for skipped in ft.skipped_targets:
        console.print(f"  skipped target `{skipped}`: no emulator for it", highlight=False)
    agreed = sum(not r.judgement.divergent for r in results)
    console.print(f"  {agreed}/{len(results)} run commands agree\n", highlight=False)


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
            }
            for label, o in r.outcomes.items()
        },
        "divergent": r.judgement.divergent,
        "blame": r.judgement.blame,
    }


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
def run(
    paths: tuple[str, ...],
    targets: tuple[str, ...],
    flags: tuple[str, ...],
    as_json: bool,
    nan: str,
    budget: int,
) -> None:
    """Run CLIF filetests on the interpreter and every target; compare."""
    wanted = [parse_target_option(t) for t in targets]
    runner = Runner(NanPolicy(nan), budget=budget)
    files = collect_files(paths)
    if not files:
        fail(f"no .clif files in {' '.join(paths)}")
    report: list[dict[str, Any]] = []
    divergent = False
    for path in files:
        try:
            ft = parse_file(path)
            results = runner.run_file(ft, default_lines(ft, wanted), flags)
        except BadInput as err:
            fail(str(err) if str(err).startswith(path) else f"{path}: {err}")
        divergent |= any(r.judgement.divergent for r in results)
        if as_json:
            report.append(
                {
                    "file": path,
                    "skipped_targets": ft.skipped_targets,
                    "runs": [result_json(r) for r in results],
                }
            )
        else:
            print_table(path, ft, results)
    if as_json:
        click.echo(json.dumps({"cranelift": _cranelift.version(), "files": report}, indent=2))
    sys.exit(EXIT_DIVERGENCE if divergent else EXIT_AGREE)
