"""The delta reducer: CLIF-aware passes, ddmin-style chunking over every list,
repeated to a fixpoint, with "the same bucket still reproduces" as the test.

    reducers.problem      the state: test, cache, counts, clock, best module
    reducers.passes       the passes, plain functions (problem, module) -> module
    reducers.same_bucket  the goal and its interestingness test
    reducers.reference    what candidates are judged against; the result's run lines
    reducers.reduce       this driver: passes to a fixpoint, then final checks
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fuzz import _cranelift
from fuzz.bridge.load import under_test
from fuzz.pipeline.filetest import BadInput
from reducers import reference
from reducers.clif import parse_module, unwritten_slot_reads
from reducers.passes import FINISH, PASSES, Pass
from reducers.problem import Problem, Progress, clif_lines, runs_return
from reducers.same_bucket import Goal, SameBucket
from reducers.struct_args import struct_arguments_addressed

__all__ = ["Goal", "Reduction", "goal_for", "reduce_problem", "reduce_text"]


@dataclass
class Reduction:
    text: str
    lines_before: int
    lines_after: int
    tests: int
    seconds: float
    passes: list[str] = field(default_factory=list)
    # the Cranelift version on which the text, run afresh from itself (new
    # emulators, nothing cached), reproduced the goal; None: not verified
    verified_on: str | None = None
    # what the candidates were judged against (`reducers.reference`)
    reference: str = reference.FILE


def reduce_problem(problem: Problem, text: str, passes: list[Pass] = PASSES) -> Reduction:
    """Run the passes over `text` until a round no longer shrinks it (or time
    is up), then the finishing steps. Never hands back something that lost
    the bug, or a larger text: then the result is `text` itself."""
    best = parse_module(text, value_types=_value_types(text))
    problem.best = best
    problem.runs_return = runs_return(best)
    problem.slot_reads = unwritten_slot_reads(best)
    problem.struct_args_addressed = struct_arguments_addressed(best)
    before = problem.size = clif_lines(text)
    passes_used: list[str] = []
    while not problem.out_of_time():
        size = clif_lines(best.text())
        for reduce_pass in passes:
            after = reduce_pass(problem, best)
            if after.text() != best.text():
                passes_used.append(reduce_pass.__name__)
            problem.best = best = after
        if clif_lines(best.text()) >= size:
            break
    for finish in FINISH:
        problem.best = best = finish(problem, best)
    final = best.text()
    if clif_lines(final) >= before or not problem.interesting(final):
        final = text
    return Reduction(
        final, before, clif_lines(final), problem.tests, problem.seconds(), passes_used
    )


def _value_types(text: str) -> dict[str, dict[str, str]]:
    module = _cranelift.parse(text)
    return {name: module.value_types(name) for name in module.names()}


def goal_for(text: str, target: str, fault: str | None = None) -> Goal | None:
    """The first divergence `text` shows on `target`, as a goal."""
    keys = SameBucket(Goal(target, "", fault)).keys(text)
    return Goal(target, keys[0], fault) if keys else None


def reduce_text(
    text: str,
    goal: Goal,
    progress: Progress | None = None,
    time_limit: float | None = None,
) -> Reduction:
    """Reduce `text`, keeping `goal`: the original is checked as written (its
    stated run lines included), the candidates against the reference
    `reducers.reference.plan` chooses."""
    start = time.monotonic()
    written = SameBucket(goal)
    try:
        found = written.findings(text)
    except (BadInput, _cranelift.CraneliftError):
        found = []
    if goal.key not in [key for _run, key in found]:
        raise ValueError(f"the case does not reproduce {goal.key!r} on {goal.target}")
    plan = reference.plan(text, written, found)
    problem = Problem(plan.test, goal.target, progress, time_limit, start=start)
    problem.tests, problem.cache[plan.text] = 1, True
    problem.accepted.append(plan.text)
    reduction = reduce_problem(problem, plan.text, plan.passes)
    reduction.reference = plan.reference

    def finished(candidate: str) -> str:
        """A candidate as the user gets it: the input itself when nothing
        came off, its run lines stated again when the interpreter judged."""
        if candidate == plan.text:
            return text
        return reference.restate(candidate, text) if plan.recompute else candidate

    return verify(reduction, problem, goal, finished)


def verify(
    reduction: Reduction,
    problem: Problem,
    goal: Goal,
    finished: Callable[[str], str] = lambda text: text,
) -> Reduction:
    """The reduced text must reproduce the goal the way a user will run it:
    from its text alone (its run lines stated as `finished` writes them), on
    a fresh runner. Otherwise the newest smaller text the reduction accepted
    that does is kept (the input, at worst)."""
    fresh = SameBucket(goal)
    candidates = [reduction.text, *reversed(problem.accepted)]
    for candidate in dict.fromkeys(candidates):
        if clif_lines(candidate) > reduction.lines_before:
            continue
        text = finished(candidate)
        if fresh(text):
            return dataclasses.replace(
                reduction,
                text=text,
                lines_after=clif_lines(text),
                verified_on=under_test().describe(),
            )
    return dataclasses.replace(reduction, text=finished(reduction.text))
