"""Executed share of (file, target line) pairs: how much of a directory of
runtests each executor choice runs (issue 11's figure).

    python benchmarks/executed_share.py ../shared/runtests-upstream unicorn auto

A pair counts as executed when every one of its run commands ran to an
outcome (a result, a trap, a crash), not "not executable here"."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter


def share(directory: str, executor: str) -> tuple[Counter[str], Counter[str], Counter[str], float]:
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
    for entry in report["files"]:
        lines: dict[str, list[dict[str, object]]] = {}
        for run in entry.get("runs", []):
            for label, outcome in run["outcomes"].items():
                if label != "interpreter":
                    lines.setdefault(label, []).append(outcome)
        for label, outcomes in lines.items():
            target = label.split()[0]
            pairs[target] += 1
            if all(o["kind"] != "not executable here" for o in outcomes):
                executed[target] += 1
                if any(o.get("executor") == "qemu-user" for o in outcomes):
                    on_qemu[target] += 1
    return pairs, executed, on_qemu, seconds


def main() -> None:
    directory, *choices = sys.argv[1:]
    for executor in choices or ["unicorn", "auto"]:
        pairs, executed, on_qemu, seconds = share(directory, executor)
        parts = [
            f"{t} {executed[t]}/{pairs[t]} ({100 * executed[t] / pairs[t]:.0f}%"
            + (f", {on_qemu[t]} on qemu-user)" if on_qemu[t] else ")")
            for t in pairs
        ]
        print(f"--executor {executor}: {'; '.join(parts)}  [{seconds:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
