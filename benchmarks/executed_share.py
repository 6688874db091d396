"""Executed share of (file, target line) pairs: how much of a directory of
runtests each executor choice runs (issue 11's figure).

    python benchmarks/executed_share.py ../shared/runtests-upstream unicorn auto

A pair counts as executed when every one of its run commands ran machine
code to an outcome: a result (right, wrong or breaking the call contract), a
trap, a crash, a timeout, or what only a run can tell (undefined behaviour,
an emulator disagreement, a C-ABI mismatch). A compile error or panic,
"unsupported", "not executable here" or a harness error ran nothing of the
file's code; pairs that stopped there are counted by that reason."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping

from fuzz.pipeline.oracle import INTERPRETER, Kind, Verdict

# outcomes that only code that ran can have (fuzz.pipeline.oracle.Kind)
RAN = frozenset(
    {
        Kind.RETURN,
        Kind.TRAP,
        Kind.CRASH,
        Kind.TIMEOUT,
        Kind.UNDEFINED,
        Kind.EMULATOR,
        Kind.C_ABI,
    }
)


def ran(outcome: Mapping[str, object]) -> bool:
    """Whether a `callfuzz run --json` outcome is one of code that executed."""
    return (
        Kind(str(outcome["kind"])) in RAN
        and Verdict(str(outcome["verdict"])) is not Verdict.HARNESS_ERROR
    )


def why_not(outcomes: list[Mapping[str, object]]) -> str:
    """The first reason a pair's code did not run (its kind, or harness error)."""
    for o in outcomes:
        if not ran(o):
            verdict = Verdict(str(o["verdict"]))
            return verdict.value if verdict is Verdict.HARNESS_ERROR else str(o["kind"])
    raise ValueError("every run executed")


def share(
    directory: str, executor: str
) -> tuple[Counter[str], Counter[str], Counter[str], Counter[str], float]:
    start = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz.commands.cli",
            "run",
            "--json",
            "--executor",
            executor,
            directory,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - start
    report = json.loads(out.stdout)
    pairs: Counter[str] = Counter()
    executed: Counter[str] = Counter()
    on_qemu: Counter[str] = Counter()
    not_run: Counter[str] = Counter()  # "reason" -> pairs (all targets)
    for entry in report["files"]:
        lines: dict[str, list[dict[str, object]]] = {}
        for run in entry.get("runs", []):
            for label, outcome in run["outcomes"].items():
                if label != INTERPRETER:
                    lines.setdefault(label, []).append(outcome)
        for label, outcomes in lines.items():
            target = label.split()[0]
            pairs[target] += 1
            if all(ran(o) for o in outcomes):
                executed[target] += 1
                if any(o.get("executor") == "qemu-user" for o in outcomes):
                    on_qemu[target] += 1
            else:
                not_run[why_not(outcomes)] += 1
    return pairs, executed, on_qemu, not_run, seconds


def main() -> None:
    directory, *choices = sys.argv[1:]
    for executor in choices or ["unicorn", "auto"]:
        pairs, executed, on_qemu, not_run, seconds = share(directory, executor)
        parts = [
            f"{t} {executed[t]}/{pairs[t]} ({100 * executed[t] / pairs[t]:.0f}%"
            + (f", {on_qemu[t]} on qemu-user)" if on_qemu[t] else ")")
            for t in pairs
        ]
        print(f"--executor {executor}: {'; '.join(parts)}  [{seconds:.0f} s]", flush=True)
        if not_run:
            reasons = ", ".join(f"{n} {reason}" for reason, n in not_run.most_common())
            print(f"  not executed: {reasons}", flush=True)


if __name__ == "__main__":
    main()
