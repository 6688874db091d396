"""Turn `; print:` run lines into `; run: ... == [...]` lines whose expected
values are the interpreter's, the way a Cranelift filetest states them.

A line whose call the interpreter cannot finish (trap, fuel, failure) stays a
`print:` line: there is no value to state.
"""

from __future__ import annotations

from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.oracle import Kind
from fuzz.pipeline.runner import Runner
from fuzz.values import clif_literals


def with_expectations(text: str, runner: Runner | None = None) -> str:
    runner = runner or Runner()
    ft = parse_text(text)
    stated: dict[str, str] = {}
    for run in ft.runs:
        if run.compare is not None or not run.text.startswith("print:"):
            continue
        outcome = runner.interpret(ft, run)
        expected = clif_literals(outcome.values) if outcome.kind is Kind.RETURN else None
        if outcome.values and expected is not None:
            call = run.text.removeprefix("print:").strip()
            stated[run.text] = f"run: {call} == {expected}"
    return restated(text, stated)


def restated(text: str, stated: dict[str, str]) -> str:
    """`text` with each run-line comment whose body is a key of `stated`
    replaced by `; value`."""
    if not stated:
        return text
    out = []
    for line in text.splitlines(keepends=True):
        body = line.removeprefix(";").strip()
        if line.startswith(";") and body in stated:
            line = f"; {stated[body]}\n"
        out.append(line)
    return "".join(out)
