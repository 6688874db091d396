"""What a reduction judges its candidates against, and what the reduced file
states.

A `; run: %f(x) == y` line states a fact about the function as written. Once
the reducer edits the code it no longer holds, and judging a candidate by it
lets anything "reproduce" (`return 0` where the file expects a checksum). So a
stated expectation checks the original only, and the reduction is judged:

- `interpreter`: when the interpreter finishes the original's finding run
  lines with the values they state, every candidate is judged against the
  interpreter (its run lines printed, the interpreter asked even in a `test
  run` file); the reduced file then states what the interpreter computes for
  it (`restate`);
- `stated`: when it cannot (it fails, traps or disagrees with the file), the
  file's statements stay the reference, and only passes that keep every run
  line's result apply (`reducers.passes.KEEPING`): what the original's
  statement says then holds for each candidate too;
- `file`: nothing stated: the file's own reference, as it is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fuzz import _cranelift
from fuzz.gen.expect import restated
from fuzz.pipeline.filetest import BadInput, FileTest, RunCommand, parse_text
from fuzz.pipeline.oracle import Kind, matches_expectation
from fuzz.pipeline.runner import Runner
from fuzz.values import Value, clif_literal
from reducers.clif import RUN_LINE, Module, NotUnderstood, parse_module, split_top
from reducers.passes import KEEPING, PASSES, Pass
from reducers.same_bucket import SameBucket, printed

INTERPRETER = "interpreter"
STATED = "stated"
FILE = "file"


@dataclass
class Plan:
    reference: str  # INTERPRETER, STATED or FILE
    text: str  # where the passes start
    test: SameBucket  # the test of that reference, with the goal as it judges it
    passes: list[Pass]

    @property
    def recompute(self) -> bool:
        return self.reference == INTERPRETER


def plan(text: str, written: SameBucket, found: Sequence[tuple[int, str]]) -> Plan:
    """How to judge the reduction of `text`, given the test as written and
    the findings (run line index, key) the original shows under it."""
    if not any(r.compare for r in parse_module(text).runs()):
        return Plan(FILE, text, written, PASSES)
    goal = written.goal
    runs = {i for i, key in found if key == goal.key}
    if _interpreter_confirms(parse_text(text), runs):
        working = printed(text)
        test = SameBucket(goal, recompute=True)
        key = _same_finding(goal.key, [k for i, k in test.findings(working) if i in runs])
        if key is not None:
            test.goal = dataclasses.replace(goal, key=key)
            return Plan(INTERPRETER, working, test, PASSES)
    return Plan(STATED, text, written, KEEPING)


def _interpreter_confirms(ft: FileTest, runs: set[int]) -> bool:
    """The interpreter finishes each of these run lines with what it states
    (a `print:` line states nothing: the interpreter is its reference)."""
    runner = Runner()
    for i in sorted(runs):
        run = ft.runs[i] if 0 <= i < len(ft.runs) else None
        if run is None or run.compare is None:
            continue
        outcome = runner.interpret(ft, run)
        if matches_expectation(outcome, run.compare, run.expected, runner.nan_policy) is not True:
            return False
    return True


def _same_finding(key: str, keys: list[str]) -> str | None:
    """The goal's key when the interpreter's judgement still shows it, else
    the first key of the same target and verdict (a wrong result's positions
    are only known with a reference that returns values)."""
    if key in keys:
        return key
    head = key.split("|")[:2]
    return next((k for k in keys if k.split("|")[:2] == head), None)


def restate(text: str, original: str, runner: Runner | None = None) -> str:
    """`text`, a reduction of `original`, with each `print:` line stated as a
    `run:` line: the original's own statement where the call and every
    function it reaches are as they were (names aside), the interpreter's
    values for `text` otherwise. A line without values to write (a trap, a
    NaN payload) stays a `print:` line."""
    try:
        ft = parse_text(text)
        now, before = parse_module(text), parse_module(original)
    except (BadInput, NotUnderstood, _cranelift.CraneliftError):
        return text
    kept = {
        (_closure(before, r.func), tuple(r.args)): f"{r.compare} {r.expected}"
        for r in before.runs()
        if r.compare
    }
    runner = runner or Runner()
    stated: dict[str, str] = {}
    for run in ft.runs:
        line = RUN_LINE.match(f"; {run.text}")
        if run.compare is not None or line is None or line[1] != "print":
            continue
        call = run.text.removeprefix("print:").strip()
        same = kept.get((_closure(now, line[2]), tuple(split_top(line[3]))))
        expected = same or _interpreted(ft, run, runner)
        if expected is not None:
            stated[run.text] = f"run: {call} {expected}"
    return restated(text, stated)


def _interpreted(ft: FileTest, run: RunCommand, runner: Runner) -> str | None:
    """`== values` for what the interpreter returns, or None."""
    outcome = runner.interpret(ft, run)
    returns = [ty for ty, _ext, _purpose in ft.functions[run.func]["signature"]["returns"]]
    # the interpreter's one-lane `bitcast` returns another type than declared
    if outcome.kind is not Kind.RETURN or [v.ty for v in outcome.values] != returns:
        return None
    written = [w for v in outcome.values if (w := _literal(v)) is not None]
    if not written or len(written) != len(outcome.values):
        return None
    return "== " + (written[0] if len(written) == 1 else f"[{', '.join(written)}]")


def _literal(v: Value) -> str | None:
    """A vector as the hexadecimal immediate upstream reads (lane 0 lowest),
    any other value as callfuzz writes it."""
    if v.info.is_vector:
        return f"0x{v.bits:0{v.info.bytes * 2}x}"
    return clif_literal(v)


def _closure(m: Module, name: str) -> str:
    """The functions a call of `name` reaches, as text with every function
    name blanked: equal for the same code under other names."""
    seen = [name]
    for n in seen:
        f = m.func(n)
        if f is not None:
            seen += [c for c, _sig, _col in f.fn_decls().values() if c not in seen]
    bodies = [dataclasses.replace(f, runs=[]).text() for n in seen if (f := m.func(n))]
    return re.sub(r"%[\w.]+", "%", "\n".join(bodies))
