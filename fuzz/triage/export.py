"""A reduced case as a Cranelift filetest for an upstream report: `test
interpret`, `test run`, `set` lines, the `target` line with its ISA flags,
the functions, and `; run:` lines whose expected values are the interpreter's."""

from __future__ import annotations

from fuzz import _cranelift
from fuzz.gen.expect import with_expectations


def filetest(clif: str, title: str, key: str, version: str) -> str:
    body = with_expectations(clif)
    lines = [line for line in body.splitlines() if not _is_plain_comment(line)]
    head = [
        f"; {title}",
        f"; callfuzz bucket key: {key}",
        f"; Cranelift {version}; reduced by callfuzz. Expected values are the interpreter's.",
    ]
    tests = [line for line in lines if line.startswith("test ")]
    for needed in ("test interpret", "test run"):
        if needed not in tests:
            lines.insert(0, needed)
    return "\n".join(head + _ordered(lines)) + "\n"


def _is_plain_comment(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(";") and not stripped[1:].strip().startswith(("run:", "print:"))


def _ordered(lines: list[str]) -> list[str]:
    """`test` lines, then `set`, then `target`, then the rest (filetest order)."""
    rank = {"test": 0, "set": 1, "target": 2}
    header = [line for line in lines if line.split(" ", 1)[0] in rank]
    rest = [line for line in lines if line.split(" ", 1)[0] not in rank]
    header.sort(key=lambda line: rank[line.split(" ", 1)[0]])
    return header + rest


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
