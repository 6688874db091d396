"""Exports written for upstream (issue 12, point 12): `test compile` for
compile-time findings, only the finding's target lines with the `set` lines
that applied to them, no `test interpret` the interpreter cannot pass, and a
short text on what to expect. Each export parses in cranelift-reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import _cranelift
from fuzz.pipeline.cabi.build import compile_unit, compiler_path
from fuzz.pipeline.runner import C_ABI_DIRECTIVE, layout_of
from fuzz.targets import TARGETS
from fuzz.triage.cabi_export import c_abi_sides
from fuzz.triage.export import filetest, target_configs

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


BITCAST = """test interpret
test run
target x86_64
target aarch64

function %bitcast_i64_to_i32x2(i64) -> i32x2 {
block0(v0: i64):
    v1 = bitcast.i32x2 little v0
    return v1
}
; print: %bitcast_i64_to_i32x2(0x00000002_00000001)
"""


def test_an_interpreter_finding_states_the_targets_values() -> None:
    # the interpreter returns one lane here; stating its value would make the
    # export pass upstream's `test interpret` (or not parse: `== 1` is no i32x2)
    text = filetest(BITCAST, "interpreter: wrong result", "interpreter|wrong result|0:i32x2", "v")
    assert "; run: %bitcast_i64_to_i32x2(0x00000002_00000001) == 0x0000000200000001" in text
    assert "Expected values are the compiled targets'" in text
    _cranelift.parse(text)


def test_a_value_of_another_type_than_returned_is_not_stated() -> None:
    text = filetest(BITCAST, "x86_64: wrong result", "x86_64|wrong result|0:i32x2", "v")
    assert "; print: %bitcast_i64_to_i32x2(0x00000002_00000001)" in text
    assert config_lines(text)[0] == "test run"  # upstream's interpreter panics on the print
    _cranelift.parse(text)


def test_no_test_interpret_when_the_interpreter_disagrees_with_a_stated_run_line() -> None:
    stated = BITCAST.replace(
        "; print: %bitcast_i64_to_i32x2(0x00000002_00000001)",
        "; run: %bitcast_i64_to_i32x2(0x00000002_00000001) == [1 2]",
    )
    text = filetest(stated, "aarch64: wrong result", "aarch64|wrong result|0:i32x2", "v")
    assert config_lines(text) == ["test run", "target aarch64"]
    srem = """test interpret
test run
target x86_64

function %srem_i64(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = srem v0, v1
    return v2
}
; run: %srem_i64(0x80000000_00000000, -1) == 0
"""
    # the interpreter traps on it: `test interpret` would fail before `test run`
    text = filetest(srem, "x86_64: crash", "x86_64|crash|x", "v")
    assert config_lines(text) == ["test run", "target x86_64"]
    # its own finding keeps it, and says it may panic on the trap
    text = filetest(srem, "interpreter: wrong result", "interpreter|wrong result|arity", "v")
    assert config_lines(text)[0] == "test interpret"
    assert "panics on" in text


def test_a_run_export_with_outline_stack_probes_warns_of_the_missing_libcall() -> None:
    probed = CASE.replace("set opt_level=none", "set opt_level=none enable_probestack=true")
    text = filetest(probed, "x86_64: wrong result", "x86_64|wrong result|0:i64", "v")
    assert "unknown libcall" in text
    inline = probed.replace("target x86_64", "set probestack_strategy=inline\ntarget x86_64")
    assert "unknown libcall" not in filetest(inline, "x86_64: crash", "x86_64|crash|x", "v")
    compiled = filetest(probed, "x86_64: compile panic", "x86_64|compile panic|x", "v")
    assert "unknown libcall" not in compiled


C_ABI_CASE = Path(__file__).parent.parent / "corpus" / "c-abi-x86_64-i128-last-register.clif"
C_ABI_KEY = "x86_64|c abi mismatch|system_v|C calls Cranelift|argument integer"


def test_a_c_abi_finding_exports_the_c_and_the_cranelift_sides(tmp_path: Path) -> None:
    """The filetest compiles (upstream's `test run` has nothing to compare
    with C) and `callfuzz run` reproduces it; the C file builds with the
    target's compiler and the CLIF side compiles: both as their commands say."""
    target = TARGETS["x86_64"]
    c = target.c_abi_for("system_v")
    assert c is not None
    if compiler_path(c.compiler) is None:
        pytest.skip(f"needs {c.compiler}")
    case = C_ABI_CASE.read_text()
    text = filetest(case, "x86_64: c abi mismatch", C_ABI_KEY, "v")
    # `test run`: the reader gives a function without a convention the
    # target's default there (`fast` in `test compile`: no C counterpart)
    assert "test run" in config_lines(text) and C_ABI_DIRECTIVE in text
    assert "set enable_llvm_abi_extensions=true" in config_lines(text)
    path = tmp_path / "bucket-1-x86_64.clif"
    path.write_text(text)
    run = subprocess.run(
        [sys.executable, "-m", "fuzz.commands.cli", "run", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1 and "c abi mismatch" in run.stdout, run.stdout + run.stderr
    sides = c_abi_sides(case, target, target_configs(case, "x86_64"), path.stem)
    assert sides is not None
    assert f"clif-util compile -D {path.stem}.cabi.clif" in sides.c_source
    code = compile_unit(c, sides.c_source)
    assert any(name.startswith("cf_c_callee_") for name in code)
    module = _cranelift.parse(sides.clif_source)
    isa = _cranelift.Isa(target.triple, ["enable_llvm_abi_extensions=true"], [])
    for function in module.functions():
        assert module.compile(isa, function["name"])


def test_a_compile_export_keeps_the_convention_test_run_gave_its_functions() -> None:
    """The reader gives a function without a convention the target's default
    in `test run` and `fast` in `test compile`: the export of a compile-time
    finding writes out the one callfuzz compiled (upstream's clif-util then
    panics quoting the same signature)."""
    text = filetest(CASE, "aarch64: compile panic", "aarch64|compile panic|abi.rs:1", "v")
    assert "function %main() -> i64 system_v {" in text
    parsed = _cranelift.parse(text).functions()[0]
    assert parsed["signature"]["call_conv"] == "system_v"


def test_an_export_keeps_the_layout_its_case_was_linked_with() -> None:
    """A case a campaign linked apart replays apart (callfuzz reads the
    line); the text says upstream's JIT places functions its own way."""
    case = "; callfuzz: layout edge\n" + CASE
    text = filetest(case, "x86_64: crash", "x86_64|crash|x", "0.135.8")
    assert layout_of(text) == "edge" and "edge layout, not upstream's" in text
    assert layout_of(filetest(CASE, "x86_64: crash", "x86_64|crash|x", "0.135.8")) == "near"
    _cranelift.parse(text)
