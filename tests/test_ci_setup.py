"""The README's test command is what CI runs, and it prebuilds the old
release bridges the tests check for real (conftest.PREBUILT_RELEASES), so
at least one real older-release check runs in CI rather than skipping."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import PREBUILT, PREBUILT_RELEASES

from fuzz.bridge import cache
from fuzz.targets import TARGETS

ROOT = Path(__file__).parent.parent


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"Run the tests.*?```sh\n(.+?)\n```", readme, re.S)
    assert found, "README has no test command"
    return found.group(1)


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    assert readme_test_command() in (ROOT / ".ci" / "run").read_text()


def test_the_test_command_prebuilds_the_old_bridges_before_the_tests() -> None:
    command = readme_test_command()
    built = re.search(r"callfuzz cranelift build --cache tests/prebuilt ([\d. ]+) &&", command)
    assert built, command
    assert tuple(built.group(1).split()) == PREBUILT_RELEASES
    assert command.index("cranelift build") < command.index("pytest")


@pytest.mark.skipif(not os.environ.get("CI"), reason="CI runs the README's test command")
def test_in_ci_the_old_release_bridges_are_there_and_current() -> None:
    source = cache.source_hash()
    for version in PREBUILT_RELEASES:
        entry = cache.entry_for(f"release-{version}")
        assert entry is not None, f"the test command did not build {version} into {PREBUILT}"
        assert entry.current(source), f"{version} in {PREBUILT} is stale"


def test_ci_installs_the_qemu_user_release_the_newest_table_rows_were_measured_on() -> None:
    """.ci/run installs qemu-user from Debian 12's backports when the one on
    PATH is older than the newest release fuzz/targets.py has facts for."""
    ci = (ROOT / ".ci" / "run").read_text()
    found = re.search(r"^QEMU_MAJOR=(\d+)", ci, re.M)
    assert found, "no QEMU_MAJOR in .ci/run"
    newest = max(
        row.since[0] for t in TARGETS.values() if t.qemu is not None for row in t.qemu.releases
    )
    assert int(found.group(1)) == newest
    assert "qemu-user/bookworm-backports" in ci and "bookworm-backports main" in ci
    assert subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")]).returncode == 0
