"""A reduced case as a Cranelift filetest for an upstream report, written so
upstream's own `clif-util test FILE` reproduces the finding: `test compile`
for a finding made while compiling (it reproduces on any host), `test run` on
the finding's target otherwise, `test interpret` for an interpreter finding
or when the interpreter states every run line; only the finding's target
lines, each after the `set` lines that applied to it in the case; the
functions, `; run:` lines whose expected values are the interpreter's, and a
short text saying what to expect."""

from __future__ import annotations

from fuzz import _cranelift
from fuzz.gen.expect import with_expectations
from fuzz.pipeline.oracle import INTERPRETER, Verdict
from fuzz.targets import UnknownTarget, lookup

# findings made while compiling: `test compile` reproduces them on any host
_COMPILE_TIME = frozenset({Verdict.COMPILE_PANIC.value, Verdict.COMPILE_ERROR.value})


def filetest(clif: str, title: str, key: str, version: str) -> str:
    """The filetest for the bucket `key` (`target|verdict|...`) made from `clif`."""
    target, _, rest = key.partition("|")
    verdict = rest.partition("|")[0]
    body = with_expectations(clif)
    lines = [line for line in body.splitlines() if not _is_plain_comment(line)]
    start = next((i for i, line in enumerate(lines) if line.startswith("function")), len(lines))
    header = [line.strip() for line in lines[:start] if line.strip()]
    prints = any(line.lstrip(";").strip().startswith("print:") for line in lines[start:])
    tests = _tests(target, verdict, prints)
    head = [
        f"; {title}",
        f"; callfuzz bucket key: {key}",
        f"; Cranelift {version}; reduced by callfuzz. Expected values are the interpreter's.",
        *(f"; {line}" for line in expectation(target, verdict)),
    ]
    configs = _configs(header, target)
    features = [line for line in header if line.startswith("feature")]
    return "\n".join([*head, *tests, *configs, *features, "", *lines[start:]]) + "\n"


def expectation(target: str, verdict: str) -> list[str]:
    """What `clif-util test FILE` does with the export, in a few lines."""
    if verdict in _COMPILE_TIME:
        what = "panics" if verdict == Verdict.COMPILE_PANIC.value else "fails with an error"
        return [f"Expect: `clif-util test FILE` {what} compiling for {target}, on any host."]
    if target == INTERPRETER:
        return [
            "Expect: `clif-util test FILE` fails in `test interpret`, on any host:",
            "the interpreter's result differs from the run line's.",
        ]
    if verdict == Verdict.ABI_VIOLATION.value:
        return [
            "Expect: `clif-util test FILE` passes: upstream's `test run` does not check the",
            f"call contract; `clif-util compile -D FILE` shows the {target} code breaking it.",
        ]
    where = (
        "on an x86_64 host"
        if target == "x86_64"
        else f"run on {target} (real hardware, or QEMU user emulation); an x86_64 host skips it"
    )
    if verdict in (Verdict.HARD_CRASH.value, Verdict.HANG.value):
        return [f"Expect: `clif-util test FILE` dies or hangs, as callfuzz's worker did, {where}."]
    return [f"Expect: `clif-util test FILE` fails a run line ({verdict}) {where}."]


def _tests(target: str, verdict: str, prints: bool) -> list[str]:
    if verdict in _COMPILE_TIME:
        return ["test compile"]
    if target == INTERPRETER:
        return ["test interpret"]
    # upstream's interpreter panics on a `print:` line it cannot finish
    return ["test run"] if prints else ["test interpret", "test run"]


def _name(words: list[str]) -> str:
    try:
        return lookup(words[1]).name if len(words) > 1 else ""
    except UnknownTarget:
        return ""


def _configs(header: list[str], target: str) -> list[str]:
    """The case's `set` and `target` lines in their order, keeping only the
    finding's target lines (the interpreter's finding keeps them all: they
    only give flags), so each kept line still has the `set` lines that
    applied to it; `set` lines after the last kept target are dropped (upstream
    rejects a dangling `set`). Without a line for the target, one is added."""
    configs = [line for line in header if line.split()[0] in ("set", "target")]
    keep = [
        line
        for line in configs
        if line.startswith("set") or target == INTERPRETER or _name(line.split()) == target
    ]
    last = max((i for i, line in enumerate(keep) if line.startswith("target")), default=None)
    if last is not None:
        return keep[: last + 1]
    return keep if target == INTERPRETER else [*keep, f"target {target}"]


def _is_plain_comment(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(";") and not stripped[1:].strip().startswith(("run:", "print:"))


def run_lines_parsed(text: str) -> tuple[int, int]:
    """(`; run:` lines in the text, run commands cranelift-reader parsed)."""
    written = sum(1 for line in text.splitlines() if line.strip().startswith("; run:"))
    parsed = sum(
        1
        for f in _cranelift.parse(text).functions()
        for r in f["runs"]
        if r["text"].startswith("run:")
    )
    return written, parsed
