"""The reducer's interestingness test: "the same bucket still reproduces".

It runs the real pipeline on a text (parse, verify, compile for the goal's
target, interpret, emulate, compare) and accepts it only when a finding with
the goal's bucket key comes out, so reduction cannot slip to a different bug.
What counts as a finding is `is_finding`, the rule campaigns use too, and
more: the goal's target must be blamed for it and the interpreter not, so a
candidate whose difference has another cause (the interpreter failing, a tie
the interpreter breaks against the target) is not the same bug. A candidate
that reads state it never wrote is judged `undefined behaviour` by the
runner (it is run from a second initial state whenever it diverges), which
is not the goal's verdict, so it is never taken. The cache and the test
count live in `reducers.problem.Problem`.

With `recompute`, a candidate is judged against the interpreter whatever its
`test` lines say: a value a `; run:` line states is true of the original
only, and a `test run` file has no other reference (`reducers.reference`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fuzz import _cranelift
from fuzz.faults import hooks
from fuzz.pipeline.filetest import BadInput, TargetLine, parse_text
from fuzz.pipeline.oracle import INTERPRETER, Verdict, is_finding
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import TARGETS
from fuzz.triage.attribution import attributed_bucket
from reducers.clif import RUN_LINE


@dataclass
class Goal:
    """What must keep reproducing: a bucket on one target."""

    target: str
    key: str
    fault: str | None = None  # a planted fault (tests and benchmarks only)


def printed(text: str) -> str:
    """`text` with every `; run:` line a `; print:` line of the same call."""
    out = []
    for line in text.splitlines(keepends=True):
        run = RUN_LINE.match(line.strip())
        if run and run[4]:
            line = f"; print: {run[2]}({run[3]})\n"
        out.append(line)
    return "".join(out)


_TEST_RUN = re.compile(r"^test run\b.*$", re.MULTILINE)


def interpreter_judged(text: str) -> str:
    """`text` as the interpreter judges it: its run lines printed, and a
    `test interpret` line before a `test run` one (upstream asks the
    interpreter in `test interpret` files only)."""
    text = printed(text)
    if re.search(r"^test interpret\b", text, re.MULTILINE):
        return text
    return _TEST_RUN.sub(lambda m: f"test interpret\n{m[0]}", text, count=1)


class SameBucket:
    """The test, text -> bool: does the text still show the goal's bucket?"""

    def __init__(self, goal: Goal, recompute: bool = False) -> None:
        self.goal = goal
        self.recompute = recompute
        # a C-ABI finding is only seen with the oracle on
        self.runner = Runner(
            fault=hooks(goal.fault), c_abi=f"|{Verdict.C_ABI_MISMATCH.value}|" in goal.key
        )

    def keys(self, text: str) -> list[str]:
        """Bucket keys of the findings the text shows on the goal's target."""
        return [key for _run, key in self.findings(text)]

    def findings(self, text: str) -> list[tuple[int, str]]:
        """(run line index, bucket key) of each finding the text shows on the
        goal's target; -1 for a C-ABI finding (no run line)."""
        ft = parse_text(interpreter_judged(text) if self.recompute else text)
        lines = default_lines(ft, [TargetLine(TARGETS[self.goal.target])])
        line_of = {line.label: line for line in lines}
        out = []
        for index, result in enumerate(self.runner.run_file(ft, lines)):
            for label, verdict in result.judgement.verdicts.items():
                if label.split()[0] != self.goal.target:
                    continue
                blame = result.judgement.blame
                if not is_finding(verdict, label in blame):
                    continue
                if label not in blame or INTERPRETER in blame:
                    continue  # the difference has another cause
                bucket = attributed_bucket(self.runner, ft, line_of.get(label), label, result)
                out.append((index if index < len(ft.runs) else -1, bucket.key))
        return out

    def __call__(self, text: str) -> bool:
        try:
            return self.goal.key in self.keys(text)
        except (BadInput, _cranelift.CraneliftError):
            return False
