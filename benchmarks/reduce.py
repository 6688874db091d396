"""The issue-5 reducer benchmark: planted-bug cases of 50-200 generated lines,
reduced by callfuzz's CLIF-aware reducer and by picire's line-based ddmin with
the same interestingness test ("the same bucket still reproduces").

    .venv/bin/python benchmarks/reduce.py [CASES] [TIME_LIMIT_SECONDS]

The planted fault (fuzz/faults.py, test-only): on aarch64, a call passing an
i128 as its third or later argument returns a flipped bit. (The tail-call
variant, an i128 after eight arguments, needs a tail callee with nine or more
parameters; generated cases holding one have 209 lines or more, so it is
tested in tests/test_reduce.py instead.) Its minimal form is 16 CLIF lines:
3 header lines, a 4-line callee `(i64, i64, i128) -> i64`, an 8-line caller
(a zero, its i128, the call, the return), the run line.
"""

from __future__ import annotations

import statistics
import sys
import time

import picire
from rich.console import Console
from rich.table import Table

from fuzz.faults import FAULTS
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import parse_text
from fuzz.targets import TARGETS
from reducers.problem import Problem, clif_lines
from reducers.reduce import goal_for, reduce_text
from reducers.same_bucket import SameBucket

FAULT = "aarch64-call-i128"
MINIMAL_LINES = 16


def planted_cases(count: int) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    seed = 0
    while len(out) < count:
        text = generate(RandomSource(seed), TARGETS["aarch64"]).text
        if 50 <= clif_lines(text) <= 200 and FAULTS[FAULT].trigger(parse_text(text), "%main"):
            out.append((seed, text))
        seed += 1
    return out


def picire_lines(text: str, problem: Problem, limit: float) -> tuple[str, float, int]:
    lines = text.splitlines(keepends=True)
    start = time.monotonic()
    before = problem.tests

    def interesting(config: list[int], _config_id: object) -> picire.Outcome:
        if time.monotonic() - start > limit:
            return picire.Outcome.PASS
        candidate = "".join(lines[i] for i in config)
        return picire.Outcome.FAIL if problem.interesting(candidate) else picire.Outcome.PASS

    kept = picire.DD(interesting, cache=picire.ConfigCache())(list(range(len(lines))))
    return "".join(lines[i] for i in kept), time.monotonic() - start, problem.tests - before


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    limit = float(sys.argv[2]) if len(sys.argv) > 2 else 300.0
    console = Console()
    table = Table(title=f"{count} planted-bug cases ({FAULT}), 50-200 lines each")
    for col in ("seed", "lines", "callfuzz lines", "s", "tests", "picire lines", "s", "tests"):
        table.add_column(col, justify="right")
    ours, theirs = [], []
    for seed, text in planted_cases(count):
        goal = goal_for(text, "aarch64", FAULT)
        assert goal is not None
        r = reduce_text(text, goal, time_limit=limit)
        p_text, p_seconds, p_tests = picire_lines(text, Problem(SameBucket(goal)), limit)
        ours.append((r.lines_after, r.seconds))
        theirs.append((clif_lines(p_text), p_seconds))
        table.add_row(
            str(seed),
            str(r.lines_before),
            str(r.lines_after),
            f"{r.seconds:.1f}",
            str(r.tests),
            str(clif_lines(p_text)),
            f"{p_seconds:.1f}",
            str(p_tests),
        )
    console.print(table)
    for name, rows in (("callfuzz", ours), ("picire ddmin over lines", theirs)):
        sizes = [n for n, _ in rows]
        console.print(
            f"{name}: median {statistics.median(sizes)} lines (worst {max(sizes)}), "
            f"median {statistics.median(s for _, s in rows):.1f}s, "
            f"minimal form ({MINIMAL_LINES} lines) reached {sum(n <= MINIMAL_LINES for n in sizes)}"
            f"/{len(sizes)}"
        )
    larger = sum(a > b for (a, _), (b, _) in zip(ours, theirs, strict=True))
    console.print(f"callfuzz larger than picire on {larger}/{len(ours)} cases")


if __name__ == "__main__":
    main()
