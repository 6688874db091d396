"""Exports written for upstream (issue 12, point 12): `test compile` for
compile-time findings, only the finding's target lines with the `set` lines
that applied to them, no `test interpret` the interpreter cannot pass, and a
short text on what to expect. Each export parses in cranelift-reader."""

from __future__ import annotations

from fuzz import _cranelift
from fuzz.triage.export import filetest

CASE = """; a case as a campaign stores it
test interpret
test run
set opt_level=none
target x86_64
set opt_level=speed
target aarch64 has_lse
target aarch64
set enable_probestack=true
target s390x

function %main() -> i64 {
block0:
    v0 = iconst.i64 7
    return v0
}
; print: %main()
"""


def config_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.split(" ")[0] in ("test", "set", "target")]


def test_a_compile_panic_exports_as_test_compile_on_its_target_only() -> None:
    text = filetest(CASE, "aarch64: compile panic", "aarch64|compile panic|abi.rs:1", "0.135.8")
    assert config_lines(text) == [
        "test compile",
        "set opt_level=none",
        "set opt_level=speed",  # applies to the aarch64 lines, as in the case
        "target aarch64 has_lse",
        "target aarch64",
    ]
    assert "panics compiling for aarch64, on any host" in text
    _cranelift.parse(text)  # no dangling `set`: the s390x one went with its line


def test_a_runtime_finding_says_where_it_reproduces() -> None:
    text = filetest(CASE, "x86_64: wrong result", "x86_64|wrong result|0:i64", "0.135.8")
    assert config_lines(text) == [
        "test interpret",
        "test run",
        "set opt_level=none",
        "target x86_64",
    ]
    assert "; run: %main() == 7" in text  # the interpreter's value, stated
    assert "on an x86_64 host" in text
    other = filetest(CASE, "s390x: crash", "s390x|crash|x", "0.135.8")
    assert "target s390x" in other and "QEMU user emulation" in other
    _cranelift.parse(other)


def test_a_case_without_the_target_line_gets_one() -> None:
    bare = "\n".join(line for line in CASE.splitlines() if not line.startswith(("set", "target")))
    text = filetest(bare, "riscv64: compile panic", "riscv64|compile panic|abi.rs:96", "v")
    assert config_lines(text) == ["test compile", "target riscv64"]
    _cranelift.parse(text)


def test_no_test_interpret_when_the_interpreter_cannot_state_a_run_line() -> None:
    trapping = CASE.replace("iconst.i64 7", "iconst.i64 0\n    trap user1")
    trapping = trapping.replace("    return v0\n", "")
    text = filetest(trapping, "x86_64: crash", "x86_64|crash|x", "v")
    assert "; print: %main()" in text
    assert config_lines(text)[:2] == ["test run", "set opt_level=none"]


def test_an_interpreter_finding_exports_as_test_interpret() -> None:
    text = filetest(CASE, "interpreter: wrong result", "interpreter|wrong result|0:i64", "v")
    assert config_lines(text)[0] == "test interpret"
    assert "test run" not in text
    assert "fails in `test interpret`" in text
    _cranelift.parse(text)


def test_an_abi_violation_says_upstream_does_not_check_it() -> None:
    text = filetest(CASE, "riscv64: abi violation", "riscv64|abi violation|x|float", "v")
    assert "passes: upstream's `test run` does not check" in text
