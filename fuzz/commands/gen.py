"""`callfuzz gen`: write or stream generated cases, check their validity and
print the coverage of type x convention x call form cells per target."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from fuzz import _cranelift
from fuzz.commands.common import console as default_console
from fuzz.commands.common import parse_target_option
from fuzz.gen.cells import CALL_FORMS, Cell, supported_cells
from fuzz.gen.choices import RandomSource
from fuzz.gen.expect import with_expectations
from fuzz.gen.generate import Case, generate
from fuzz.pipeline.routing import for_installed_qemu
from fuzz.pipeline.runner import Runner
from fuzz.targets import TARGETS, Target
from fuzz.versions import parse_version


def check_case(case: Case, isas: dict[tuple[str, ...], _cranelift.Isa]) -> str | None:
    """None when the case parses, verifies and compiles; else the cause
    (`target: panic: ...` when Cranelift panicked)."""
    try:
        module = _cranelift.parse(case.text)
        key = (case.target.triple, *case.flags, "|", *case.isa_flags)
        if key not in isas:
            isas[key] = _cranelift.Isa(case.target.triple, case.flags, case.isa_flags)
        # with the ISA, as the runner and upstream verify (get_frame_pointer needs one)
        module.verify(isa=isas[key])
        module.compile(isas[key])
    except _cranelift.CraneliftPanic as err:
        return f"{case.target.name}: panic: {err.args[0][:100]}"
    except _cranelift.CraneliftError as err:
        return f"{case.target.name}: {type(err).__name__}: {str(err)[:100]}"
    return None


def run_gen(
    console: Console,
    targets: list[Target],
    count: int,
    seed: int,
    out: Path | None,
    stats: bool,
    check: bool,
    expect: bool = True,
) -> int:
    cells: Counter[Cell] = Counter()
    causes: Counter[str] = Counter()  # rejected: generator defects
    panics: Counter[str] = Counter()  # Cranelift panicked: findings
    isas: dict[tuple[str, ...], _cranelift.Isa] = {}
    runner = Runner()
    version = parse_version(_cranelift.version())
    start = time.perf_counter()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        case_seed = seed + i
        target = for_installed_qemu(targets[i % len(targets)])
        case = generate(RandomSource(case_seed), target, version=version)
        cells.update(case.cells)
        writes = out is not None or not (stats or check)
        text = with_expectations(case.text, runner) if writes and expect else case.text
        if out is not None:
            (out / f"case-{case_seed}-{case.target.name}.clif").write_text(text)
        elif writes:
            # plain echo: rich would wrap long run lines and break the CLIF
            click.echo(f"; seed {case_seed}\n{text}")
        if check and (cause := check_case(case, isas)):
            (panics if ": panic: " in cause else causes)[cause] += 1
    elapsed = time.perf_counter() - start
    if stats:
        for target in targets:
            wanted = supported_cells(target)
            table = Table(title=f"{target.name}: cases exercising each cell")
            types = sorted({c[1] for c in wanted}, key=str)
            table.add_column("convention / form")
            for ty in types:
                table.add_column(ty, justify="right")
            for cc in target.call_convs:
                for form in CALL_FORMS:
                    row = [
                        str(cells[(target.name, ty, cc, form)])
                        if (target.name, ty, cc, form) in wanted
                        else "-"
                        for ty in types
                    ]
                    if any(r != "-" for r in row):
                        table.add_row(f"{cc} {form}", *row)
            console.print(table)
            empty = sorted(c for c in wanted if cells[c] == 0)
            console.print(
                f"{target.name}: {len(wanted) - len(empty)}/{len(wanted)} supported cells hit"
                + (f"; empty: {empty[:8]}" if empty else ""),
                highlight=False,
            )
    if check:
        bad = sum(causes.values())
        console.print(
            f"validity: {count - bad}/{count} cases parse, verify and compile "
            f"({100 * (count - bad) / count:.2f}%)",
            highlight=False,
        )
        for cause, n in causes.most_common(10):
            console.print(f"  {n} x {cause}", highlight=False)
        if panics:
            # accepted, then crashed Cranelift: what campaigns hunt for
            console.print(
                f"Cranelift panicked on {sum(panics.values())} of the valid cases "
                "(findings, not generator defects; campaigns record them as compile panics):",
                highlight=False,
            )
            for cause, n in panics.most_common(10):
                console.print(f"  {n} x {cause}", highlight=False)
    console.print(f"{count} cases in {elapsed:.1f}s", highlight=False)
    return 0 if not causes else 1


@click.command()
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
    chosen = [parse_target_option(t).target for t in targets] or list(TARGETS.values())
    sys.exit(
        run_gen(
            default_console, chosen, count, seed, Path(out) if out else None, stats, check, expect
        )
    )
