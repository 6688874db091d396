"""The reducer's interestingness test: "the same bucket still reproduces".

It runs the real pipeline on a text (parse, verify, compile for the goal's
target, interpret, emulate, compare) and accepts it only when a finding with
the goal's bucket key comes out, so reduction cannot slip to a different bug.
What counts as a finding is `is_finding`, the rule campaigns use too. The
cache and the test count live in `reducers.problem.Problem`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz import _cranelift
from fuzz.faults import outcome_hook
from fuzz.pipeline.filetest import BadInput, TargetLine, parse_text
from fuzz.pipeline.oracle import is_finding
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
        self.runner = Runner(outcome_hook=outcome_hook(goal.fault))

    def keys(self, text: str) -> list[str]:
        """Bucket keys of the findings the text shows on the goal's target."""
        ft = parse_text(text)
        lines = default_lines(ft, [TargetLine(TARGETS[self.goal.target])])
        out = []
        for result in self.runner.run_file(ft, lines):
            for label, verdict in result.judgement.verdicts.items():
                if label.split()[0] != self.goal.target:
                    continue
                if not is_finding(verdict, label in result.judgement.blame):
                    continue
                out.append(bucket_for(ft, label, result).key)
        return out

    def __call__(self, text: str) -> bool:
        try:
            return self.goal.key in self.keys(text)
        except (BadInput, _cranelift.CraneliftError):
            return False
