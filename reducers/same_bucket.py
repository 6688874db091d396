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
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz import _cranelift
from fuzz.faults import hooks
from fuzz.pipeline.filetest import BadInput, TargetLine, parse_text
from fuzz.pipeline.oracle import INTERPRETER, Verdict, is_finding
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import TARGETS
from fuzz.triage.buckets import bucket_for


@dataclass
class Goal:
    """What must keep reproducing: a bucket on one target."""

    target: str
    key: str
    fault: str | None = None  # a planted fault (tests and benchmarks only)


class SameBucket:
    """The test, text -> bool: does the text still show the goal's bucket?"""

    def __init__(self, goal: Goal) -> None:
        self.goal = goal
        # a C-ABI finding is only seen with the oracle on
        self.runner = Runner(
            fault=hooks(goal.fault), c_abi=f"|{Verdict.C_ABI_MISMATCH.value}|" in goal.key
        )

    def keys(self, text: str) -> list[str]:
        """Bucket keys of the findings the text shows on the goal's target."""
        ft = parse_text(text)
        lines = default_lines(ft, [TargetLine(TARGETS[self.goal.target])])
        out = []
        for result in self.runner.run_file(ft, lines):
            for label, verdict in result.judgement.verdicts.items():
                if label.split()[0] != self.goal.target:
                    continue
                blame = result.judgement.blame
                if not is_finding(verdict, label in blame):
                    continue
                if label not in blame or INTERPRETER in blame:
                    continue  # the difference has another cause
                out.append(bucket_for(ft, label, result).key)
        return out

    def __call__(self, text: str) -> bool:
        try:
            return self.goal.key in self.keys(text)
        except (BadInput, _cranelift.CraneliftError):
            return False
