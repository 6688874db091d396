"""The `callfuzz run` command line, run as a separate process: exit codes, the
one-line error on bad input, JSON output; and panics in the bridge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS

GOOD = """test interpret
test run

function %callee(i64) -> i64 {
block0(v0: i64):
    v1 = iconst.i64 10
    v2 = iadd v0, v1
    return v2
}

function %caller(i64) -> i64 {
    fn0 = %callee(i64) -> i64
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}
; run: %caller(5) == 15
; run: %caller(-10) == 0
"""

SYNTAX_ERROR = """function %f(i64) -> i64 {
block0(v0: i64):
    v1 = iadd v0 v0
    return v1
}
"""

UNDEFINED_VALUE = """function %f(i64) -> i64 {
block0(v0: i64):
    return v7
}
"""

TYPE_MISMATCH = """function %f(i64) -> i32 {
block0(v0: i64):
    return v0
}
"""


def callfuzz(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fuzz.commands.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_bad_input(proc: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_good_file_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, "good.clif", GOOD)
    proc = callfuzz("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stderr == ""
    assert "Traceback" not in proc.stdout


def test_json_has_every_targets_outcome(tmp_path: Path) -> None:
    path = write(tmp_path, "good.clif", GOOD)
    proc = callfuzz("run", str(path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (entry,) = report["files"]
    assert entry["file"] == str(path)
    runs = entry["runs"]
    assert [r["command"] for r in runs] == ["run: %caller(5) == 15", "run: %caller(-10) == 0"]
    for r, want in zip(runs, (15, 0), strict=True):
        assert r["divergent"] is False
        assert r["blame"] == []
        assert set(r["outcomes"]) == {"interpreter", *TARGETS}
        for label, outcome in r["outcomes"].items():
            assert outcome["kind"] == "return", label
            assert outcome["verdict"] == "agree", label
            assert [int(v["value"]) for v in outcome["values"]] == [want], label


def test_json_with_one_target(tmp_path: Path) -> None:
    path = write(tmp_path, "good.clif", GOOD)
    proc = callfuzz("run", str(path), "--json", "-t", "riscv64", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["files"][0]["runs"]
    assert all(set(r["outcomes"]) == {"interpreter", "riscv64"} for r in runs)


def test_wrong_expectation_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "wrong.clif", GOOD.replace("== 15", "== 16"))
    proc = callfuzz("run", str(path), "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    first = json.loads(proc.stdout)["files"][0]["runs"][0]
    assert first["divergent"] is True


def test_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "syntax.clif", SYNTAX_ERROR)
    line = assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), str(path), "line 3")
    assert "malformed" in line


def test_undefined_value(tmp_path: Path) -> None:
    path = write(tmp_path, "undefined.clif", UNDEFINED_VALUE)
    assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), str(path), "v7")


def test_verifier_error(tmp_path: Path) -> None:
    path = write(tmp_path, "types.clif", TYPE_MISMATCH)
    line = assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), str(path), "%f")
    assert "verifier" in line


def test_unknown_target(tmp_path: Path) -> None:
    path = write(tmp_path, "good.clif", GOOD)
    assert_bad_input(callfuzz("run", str(path), "-t", "mips", cwd=tmp_path), "mips")


def test_unknown_shared_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "good.clif", GOOD)
    proc = callfuzz("run", str(path), "--set", "no_such_flag=1", cwd=tmp_path)
    assert_bad_input(proc, "no_such_flag")


def test_bad_shared_flag_value(tmp_path: Path) -> None:
    path = write(tmp_path, "good.clif", GOOD)
    proc = callfuzz("run", str(path), "--set", "opt_level=fastest", cwd=tmp_path)
    assert_bad_input(proc, "opt_level", "fastest")


def test_unknown_isa_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "good.clif", GOOD)
    proc = callfuzz("run", str(path), "-t", "aarch64 has_nothing", cwd=tmp_path)
    assert_bad_input(proc, "has_nothing")


def test_unknown_isa_flag_on_a_target_line(tmp_path: Path) -> None:
    path = write(tmp_path, "isa.clif", "test run\ntarget s390x has_nothing\n" + GOOD)
    assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), "has_nothing")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.clif"
    assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), str(path))


def test_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.clif"
    path.write_bytes(b"\xff\xfe\x00function")
    assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), str(path))


def test_unreadable_path(tmp_path: Path) -> None:
    # A path through a regular file cannot be opened, even by root.
    blocker = write(tmp_path, "plain.clif", GOOD)
    path = blocker / "inner.clif"
    assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), str(path))


def test_directory_without_clif_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_bad_input(callfuzz("run", str(empty), cwd=tmp_path), str(empty))


def test_signature_mismatch_is_bad_input(tmp_path: Path) -> None:
    text = GOOD.replace("fn0 = %callee(i64) -> i64", "fn0 = %callee(i64 sext) -> i64")
    path = write(tmp_path, "sig.clif", text)
    assert_bad_input(callfuzz("run", str(path), cwd=tmp_path), "(i64 sext) -> i64", "(i64) -> i64")


PANIC_SCRIPT = """
from fuzz import _cranelift
for _ in range(2):
    try:
        _cranelift.panic_for_test()
    except _cranelift.CraneliftPanic as err:
        message, location = err.args
        assert isinstance(err, _cranelift.CraneliftError)
        print(f"{message}|{location}")
    else:
        raise SystemExit("no exception")
print("still alive")
"""


def test_panic_becomes_an_exception_and_the_process_survives(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PANIC_SCRIPT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "still alive"
    assert len(lines) == 3 and lines[0] == lines[1]
    message, location = lines[0].split("|")
    assert "panic" in message
    assert ".rs:" in location  # file:line:column of the Rust panic


def test_panic_in_process() -> None:
    from fuzz import _cranelift

    with pytest.raises(_cranelift.CraneliftPanic) as info:
        _cranelift.panic_for_test()
    assert len(info.value.args) == 2
    message, location = info.value.args
    assert isinstance(message, str) and message
    assert isinstance(location, str) and location.rsplit(":", 2)[1].isdigit()
