"""`callfuzz bench`: time per pipeline stage on a fixed set of CLIF modules.

Goals (issue 2): one emulated run on a reused emulator <= 100 us; a
three-function module through all four targets and the interpreter <= 5 ms.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from fuzz import _cranelift
from fuzz.commands.common import console as default_console
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import FileTest, TargetLine, parse_text
from fuzz.pipeline.qemu import qemu_version
from fuzz.pipeline.routing import ExecutorChoice
from fuzz.pipeline.runner import Runner
from fuzz.targets import TARGETS

# A three-function module: a call chain mixing i64, f64 and i128 arguments.
THREE_FUNCTIONS = """\
test interpret
test run
set enable_llvm_abi_extensions=true
target x86_64
target aarch64
target riscv64
target s390x

function %leaf(i64, f64, i128) -> i64, f64 {
block0(v0: i64, v1: f64, v2: i128):
    v3 = ireduce.i64 v2
    v4 = iadd v0, v3
    v5 = fadd v1, v1
    return v4, v5
}

function %mid(i64, f64, i128) -> i64, f64 {
    fn0 = %leaf(i64, f64, i128) -> i64, f64
block0(v0: i64, v1: f64, v2: i128):
    v6 = iconst.i64 1
    v3 = iadd v0, v6
    v4, v5 = call fn0(v3, v1, v2)
    return v4, v5
}

function %top(i64, f64, i128) -> i64, f64 {
    fn0 = colocated %mid(i64, f64, i128) -> i64, f64
block0(v0: i64, v1: f64, v2: i128):
    v3, v4 = call fn0(v0, v1, v2)
    return v3, v4
}
; run: %top(1, 0x1.0p0, 2) == [4, 0x1.0p1]
"""


def _calls(text: str) -> int:
    """Call instructions in a case (the contract checks cost per call)."""
    return sum(" call " in line or "= call" in line for line in text.splitlines())


def _per(total: float, count: int) -> str:
    return f"{total / max(count, 1) * 1e6:,.1f}"


def run_bench(console: Console, repeat: int) -> None:
    console.print(f"cranelift {_cranelift.version()}, {repeat} repetitions per measurement")
    lines = [TargetLine(t) for t in TARGETS.values()]
    modules = {"three-function chain": THREE_FUNCTIONS}
    corpus = Path(__file__).resolve().parents[1] / "corpus"
    for path in sorted(corpus.glob("*.clif")):
        modules[f"corpus/{path.name}"] = path.read_text()

    table = Table(title="time per stage (us per call)")
    for col in (
        "module",
        "parse",
        *(f"compile {t}" for t in TARGETS),
        "link",
        *(f"emulate {t}" for t in TARGETS),
        "interpret",
        "whole file (ms)",
        "runs/s",
    ):
        table.add_column(col, justify="right")

    for name, text in modules.items():
        runner = Runner()
        runner.run_file(parse_text(text), lines)  # warm: emulators, ISAs, trampolines
        runner.timings.clear()
        runner.counts.clear()
        parse_total = 0.0
        start = time.perf_counter()
        runs = 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            ft = parse_text(text)
            parse_total += time.perf_counter() - t0
            runs += len(runner.run_file(ft, lines))
        whole = time.perf_counter() - start
        t, c = runner.timings, runner.counts
        table.add_row(
            name,
            _per(parse_total, repeat),
            *(_per(t[f"compile {n}"], c[f"compile {n}"]) for n in TARGETS),
            _per(t["link"], c["link"]),
            *(_per(t[f"emulate {n}"], c[f"emulate {n}"]) for n in TARGETS),
            _per(t["interpret"], c["interpret"]),
            f"{whole / repeat * 1e3:.2f}",
            f"{runs / whole:,.0f}",
        )
    console.print(table)

    # One run on a reused emulator with the image already loaded: the cost a
    # campaign pays per run command once a case is linked, with the call
    # contract checks (fuzz.pipeline.contract) and without them.
    steady = Table(title="one emulated run, image already loaded (us per run)")
    steady.add_column("case")
    steady.add_column("target")
    for col in ("with contract checks", "without", "on qemu-user", "call sites"):
        steady.add_column(col, justify="right")
    for line in lines:
        seed = next(n for n in range(3, 100) if _calls(generate(RandomSource(n), line.target).text))
        generated = generate(RandomSource(seed), line.target).text
        for case, text in (
            ("three-function chain", THREE_FUNCTIONS),
            (f"generated seed {seed}", generated),
        ):
            ft = parse_text(text)
            row = []
            for checked in (True, False):
                runner = Runner()
                config = runner.prepare(ft, line, ft.shared_flags)
                if not checked:
                    config.calls = None  # no entry or return hooks
                runner.execute(ft, config, ft.runs[0])
                start = time.perf_counter()
                for _ in range(repeat * 5):
                    runner.execute(ft, config, ft.runs[0])
                row.append(_per(time.perf_counter() - start, repeat * 5))
            row.append(_qemu_run(ft, line, repeat * 5))
            calls = len(config.functions) and sum(len(f.call_returns) for f in config.functions)
            steady.add_row(case, line.label, *row, str(calls))
    console.print(steady)
    bench_generation(console, repeat * 10)
    console.print(
        "goals: emulate <= 100 us per run on a reused emulator; "
        "three-function chain (whole file, 4 targets + interpreter) <= 5 ms; "
        "generation >= 2,000 cases/s (text alone)"
    )


def _qemu_run(ft: FileTest, line: TargetLine, repeat: int) -> str:
    """Microseconds per run on the qemu-user executor (fuzz.pipeline.qemu),
    the image already loaded; "-" without qemu-user."""
    if qemu_version() is None:
        return "-"
    runner = Runner(executor=ExecutorChoice.QEMU)
    config = runner.prepare(ft, line, ft.shared_flags)
    runner.execute(ft, config, ft.runs[0])
    start = time.perf_counter()
    for _ in range(repeat):
        runner.execute(ft, config, ft.runs[0])
    elapsed = time.perf_counter() - start
    runner.qemu.close()
    return _per(elapsed, repeat)


def bench_generation(console: Console, count: int) -> None:
    """Cases/s for the generator's text alone, round-robin over the targets
    (the same seeds every time, so figures compare across changes)."""
    targets = list(TARGETS.values())
    table = Table(title=f"generation: {count} cases, text alone")
    table.add_column("target")
    table.add_column("cases/s", justify="right")
    table.add_column("median lines", justify="right")
    overall = 0.0
    for target in targets:
        sizes = []
        start = time.perf_counter()
        for seed in range(count // len(targets)):
            sizes.append(generate(RandomSource(seed), target).text.count("\n"))
        elapsed = time.perf_counter() - start
        overall += elapsed
        table.add_row(target.name, f"{len(sizes) / elapsed:,.0f}", str(statistics.median(sizes)))
    table.add_row("all", f"{count // len(targets) * len(targets) / overall:,.0f}", "")
    console.print(table)


@click.command()
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Runs per measurement.",
)
def bench(repeat: int) -> None:
    """Time each pipeline stage on a fixed set of CLIF files."""
    run_bench(default_console, repeat)
