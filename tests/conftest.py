"""Shared test set-up: hypothesis profiles ("ci" is reproducible, "dev"
explores), and a hermetic environment for every test and every child process
it starts: the crates.io index is a fixture file (never the live registry,
whose next release would change what a release line resolves to) and the
bridge cache is a fresh directory (never the user's), holding only the
old-release bridges the README's test command builds before the tests
(`callfuzz cranelift build --cache tests/prebuilt ...`, in the install
step, so the tests need no network). Builds of the bridge use a fake cargo
(`fake_cargo`)."""

import atexit
import importlib.machinery
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

import fuzz

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The old releases the README's test command prebuilds for the tests; one
# place, checked against the README by tests/test_readme.py.
PREBUILT = Path(__file__).parent / "prebuilt"
PREBUILT_RELEASES = ("0.105.4", "0.128.4")

INDEX_FIXTURE = Path(__file__).parent / "data" / "crates-index"
os.environ["CALLFUZZ_INDEX_URL"] = INDEX_FIXTURE.as_uri() + "/"
# CALLFUZZ_TEST_CACHE keeps real bridges built by CALLFUZZ_SLOW=1 runs between runs
if os.environ.get("CALLFUZZ_TEST_CACHE"):
    os.environ["CALLFUZZ_CACHE"] = os.environ["CALLFUZZ_TEST_CACHE"]
else:
    os.environ["CALLFUZZ_CACHE"] = tempfile.mkdtemp(prefix="callfuzz-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CALLFUZZ_CACHE"], ignore_errors=True)
    # copies, so a test that removes cache entries cannot damage the artifact
    for prebuilt in sorted((PREBUILT / "bridges").glob("release-*")):
        shutil.copytree(prebuilt, Path(os.environ["CALLFUZZ_CACHE"]) / "bridges" / prebuilt.name)


# a load that may trap (a heap_oob trap site), or with `notrap` (none), from address 0
NULL_LOAD = """test interpret
test run
target {target}

function %f(i64) -> i64 {{
block0(v0: i64):
    v1 = load.i64{flags} v0
    return v1
}}
; print: %f(0)
"""


FAKE_CARGO = Path(__file__).parent / "data" / "fake_cargo.py"


@pytest.fixture
def fake_cargo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake cargo (tests/data/fake_cargo.py) first on PATH, in
    `tmp_path/bin`; returns the file it logs its calls to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cargo = bin_dir / "cargo"
    cargo.write_text(f"#!{sys.executable}\n" + FAKE_CARGO.read_text())
    cargo.chmod(0o755)
    log = tmp_path / "cargo-calls.txt"
    # it hands back the bridge pip installed (not whatever a finder would choose)
    found = importlib.machinery.PathFinder.find_spec("fuzz._cranelift", list(fuzz.__path__))
    assert found is not None and found.origin is not None
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CARGO_LOG", str(log))
    monkeypatch.setenv("FAKE_CARGO_LIB", found.origin)
    return log


@pytest.fixture(params=["loop", "gdbstub"])
def qemu_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A qemu-user test runs on each of the executor's two paths: the run
    loop (the default) and the gdbstub (CALLFUZZ_QEMU_GDBSTUB=1)."""
    if request.param == "gdbstub":
        monkeypatch.setenv("CALLFUZZ_QEMU_GDBSTUB", "1")
    else:
        monkeypatch.delenv("CALLFUZZ_QEMU_GDBSTUB", raising=False)
    return str(request.param)


def release_bridge_current(version: str) -> bool:
    """Whether the tests' cache holds a current bridge of `version` (one
    PREBUILT_RELEASES copied in, or CALLFUZZ_TEST_CACHE's)."""
    from fuzz.bridge import cache

    entry = cache.entry_for(f"release-{version}")
    return entry is not None and entry.current(cache.source_hash())


def findings_on_release(version: str, path: Path, target: str, timeout: float) -> list[dict]:
    """What a campaign finds in `path` on `target` with another release's
    bridge: `bisect_step` in a child process (a process loads one bridge)."""
    import json
    import subprocess

    env = dict(os.environ, CALLFUZZ_CRANELIFT=version)
    env.pop("CALLFUZZ_BRIDGE", None)
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.commands.bisect_step", str(path), target],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    found: list[dict] = json.loads(done.stdout)
    return found
