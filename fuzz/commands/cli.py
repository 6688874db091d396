"""The `callfuzz` command line (click for parsing, rich for tables)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from fuzz import _cranelift
from fuzz.emulate import DEFAULT_BUDGET
from fuzz.filetest import BadInput, FileTest, TargetLine, parse_file
from fuzz.oracle import BENIGN, Verdict
from fuzz.runner import Runner, RunResult, default_lines
from fuzz.targets import UnknownTarget, lookup
from fuzz.triagecmd import triage
from fuzz.values import NanPolicy, Value, format_values

EXIT_AGREE, EXIT_DIVERGENCE, EXIT_BAD_INPUT = 0, 1, 2

# Wide enough for a night's log file when stdout is not a terminal.
console = Console(width=None if sys.stdout.isatty() else 160)


def fail(message: str) -> NoReturn:
    click.echo(f"callfuzz: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def parse_target_option(spec: str) -> TargetLine:
    """`--target aarch64` or `--target "riscv64 has_c"`."""
    words = spec.split()
    if not words:
        fail("empty --target")
    try:
        return TargetLine(lookup(words[0]), tuple(words[1:]))
    except UnknownTarget as err:
        fail(str(err))


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


@click.group()
@click.version_option(
    message=f"callfuzz %(version)s (cranelift {_cranelift.version()})", package_name="callfuzz"
)
def cli() -> None:
    """Differential fuzzing of Cranelift's call lowering on four emulated backends."""


cli.add_command(triage)


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
                "verdict": r.judgement.verdicts[label].value,
            }
            for label, o in r.outcomes.items()
        },
        "divergent": r.judgement.divergent,
        "blame": r.judgement.blame,
    }


@cli.command()
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


@cli.command()
@click.option("--count", "-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first case.")
@click.option(
    "--target", "-t", "targets", multiple=True, help="Targets, round-robin (default all)."
)
@click.option(
    "--out", "-o", type=click.Path(file_okay=False), help="Write one .clif per case here."
)
@click.option("--stats", is_flag=True, help="Print the coverage table.")
@click.option("--check", is_flag=True, help="Parse, verify and compile every case.")
@click.option(
    "--expect/--no-expect",
    default=True,
    show_default=True,
    help="State the interpreter's results in `; run: ... == [...]` lines.",
)
def gen(
    count: int,
    seed: int,
    targets: tuple[str, ...],
    out: str | None,
    stats: bool,
    check: bool,
    expect: bool,
) -> None:
    """Generate call-ABI test cases (stdout, or files with --out)."""
    from pathlib import Path

    from fuzz.gencmd import run_gen
    from fuzz.targets import TARGETS

    chosen = [parse_target_option(t).target for t in targets] or list(TARGETS.values())
    sys.exit(
        run_gen(console, chosen, count, seed, Path(out) if out else None, stats, check, expect)
    )


@cli.command()
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Runs per measurement.",
)
def bench(repeat: int) -> None:
    """Time each pipeline stage on a fixed set of CLIF files."""
    from fuzz.bench import run_bench

    run_bench(console, repeat)


def _register() -> None:
    from fuzz.fuzzcmd import fuzz
    from fuzz.reducecmd import reduce

    cli.add_command(fuzz)
    cli.add_command(reduce)


_register()


def main() -> None:
    """Entry point: bad input anywhere is one line on stderr and exit 2."""
    try:
        cli()
    except BadInput as err:
        fail(str(err))


if __name__ == "__main__":
    main()
