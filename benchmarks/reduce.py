"""The issue-5 reducer benchmark: planted-bug cases of 50-200 generated lines,
reduced by callfuzz's CLIF-aware reducer and by picire's line-based ddmin with
the same interestingness test ("the same bucket still reproduces").

    .venv/bin/python benchmarks/reduce.py [CASES] [TIME_LIMIT_SECONDS]

Every reduced case is then run again in a fresh process (its text alone, a
new runner) and must reproduce its bucket; the same is done for every
finding in corpus/, reduced on each target it diverges on.

The planted fault (fuzz/faults.py, test-only): on aarch64, a call passing an
i128 as its third or later argument returns a flipped bit. (The tail-call
variant, an i128 after eight arguments, needs a tail callee with nine or more
parameters; generated cases holding one have 209 lines or more, so it is
tested in tests/test_reduce.py instead.) Its minimal form is 16 CLIF lines:
3 header lines, a 4-line callee `(i64, i64, i128) -> i64`, an 8-line caller
(a zero, its i128, the call, the return), the run line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


# Runs in a fresh interpreter: does each (text, target, key, fault) still
# reproduce its bucket from the text alone?
_FRESH = """
import json, sys
from reducers.same_bucket import Goal, SameBucket
cases = json.load(sys.stdin)
print(json.dumps([SameBucket(Goal(t, k, f))(text) for text, t, k, f in cases]))
"""


def reproduce_in_fresh_process(cases: list[tuple[str, str, str, str | None]]) -> list[bool]:
    done = subprocess.run(
        [sys.executable, "-c", _FRESH],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
    )
    return [bool(ok) for ok in json.loads(done.stdout)]


def corpus_reductions(console: Console, limit: float) -> None:
    """Every corpus finding reduced on each target it diverges on, then
    checked in a fresh process."""
    table = Table(title="corpus findings, reduced")
    for col in ("file", "target", "lines", "reduced", "verified on"):
        table.add_column(col)
    checks: list[tuple[str, str, str, str | None]] = []
    for path in sorted((Path(__file__).resolve().parents[1] / "corpus").glob("*.clif")):
        text = path.read_text()
        for target in TARGETS:
            try:
                goal = goal_for(text, target)
            except Exception:  # noqa: BLE001 - a corpus case with no such target
                goal = None
            if goal is None:
                continue
            r = reduce_text(text, goal, time_limit=limit)
            checks.append((r.text, target, goal.key, None))
            table.add_row(
                path.name,
                target,
                str(r.lines_before),
                str(r.lines_after),
                str(getattr(r, "verified_on", None)),
            )
    console.print(table)
    fresh = reproduce_in_fresh_process(checks)
    console.print(
        f"corpus: {sum(fresh)}/{len(fresh)} reduced findings reproduce in a fresh process"
    )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    limit = float(sys.argv[2]) if len(sys.argv) > 2 else 300.0
    console = Console()
    table = Table(title=f"{count} planted-bug cases ({FAULT}), 50-200 lines each")
    for col in ("seed", "lines", "callfuzz lines", "s", "tests", "picire lines", "s", "tests"):
        table.add_column(col, justify="right")
    ours, theirs = [], []
    fresh_checks: list[tuple[str, str, str, str | None]] = []
    for seed, text in planted_cases(count):
        goal = goal_for(text, "aarch64", FAULT)
        assert goal is not None
        r = reduce_text(text, goal, time_limit=limit)
        fresh_checks.append((r.text, "aarch64", goal.key, FAULT))
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
    fresh = reproduce_in_fresh_process(fresh_checks)
    console.print(f"callfuzz: {sum(fresh)}/{len(fresh)} reduced cases reproduce in a fresh process")
    corpus_reductions(console, limit)


if __name__ == "__main__":
    main()
