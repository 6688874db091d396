"""`callfuzz triage draft`: a bucket as a bug report in wasmtime's Cranelift
template, ready to paste into a new upstream issue."""

from __future__ import annotations

from fuzz.triage.report import jinja
from fuzz.triage.report.environment import Environment
from fuzz.triage.report.facts import BucketFacts

# wasmtime's .github/ISSUE_TEMPLATE for Cranelift bugs, in its order
SECTIONS = (
    "`.clif` Test Case",
    "Steps to Reproduce",
    "Expected Results",
    "Actual Results",
    "Versions and Environment",
    "Extra Info",
)


def _cell(value: object) -> str:
    # a Markdown table cell: one line, no column break
    return str(value).replace("|", "\\|").replace("\n", " ")


def draft(facts: BucketFacts, env: Environment) -> str:
    template = jinja.markdown().get_template("draft.md.j2")
    return template.render(f=facts, b=facts.bucket, env=env, sections=SECTIONS, cell=_cell)
