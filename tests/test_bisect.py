"""`callfuzz bisect`: the search itself, with steps faked (a real step builds
a release's bridge: minutes; the closing note of issue 13 has a real run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.commands import bisect as b
from fuzz.commands.common import EXIT_BAD_INPUT

VERSIONS = [f"0.{minor}.{minor % 3}" for minor in range(109, 129)]


def _fake(first_bad: str, seen: list[str]):  # type: ignore[no-untyped-def]
    rank = {v: i for i, v in enumerate(VERSIONS)}

    def judge(goal: b.Goal, version: str, path: Path, started: float) -> b.Step:
        seen.append(version)
        return b.Step(version, rank[version] >= rank[first_bad], "fake", 0.0)

    return judge


@pytest.mark.parametrize("first_bad", ["0.110.2", "0.120.0", "0.128.2"])
def test_the_search_names_the_first_release_that_reproduces(
    first_bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(b, "judge_step", _fake(first_bad, seen))
    found = b.search(b.Goal("x86_64", "compile panic", ""), VERSIONS, Path("x"))
    assert found.after == first_bad and found.newest_reproduces
    assert found.before == VERSIONS[VERSIONS.index(first_bad) - 1]
    assert len(seen) <= 2 + 5  # both ends, then log2(20) halvings
    assert found.describe(VERSIONS[0], VERSIONS[-1]).startswith(f"first reproduces on {first_bad}")


def test_a_fixed_finding_names_the_release_that_fixed_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rank = {v: i for i, v in enumerate(VERSIONS)}
    fixed_in = "0.117.0"
    monkeypatch.setattr(
        b,
        "judge_step",
        lambda goal, v, p, s: b.Step(v, rank[v] < rank[fixed_in], "fake", 0.0),
    )
    found = b.search(b.Goal("aarch64", "abi violation", ""), VERSIONS, Path("x"))
    assert (found.before, found.after) == (VERSIONS[rank[fixed_in] - 1], fixed_in)
    assert found.describe(VERSIONS[0], VERSIONS[-1]).startswith(f"fixed in {fixed_in}")


def test_a_finding_at_both_ends_or_at_neither_has_nothing_to_bisect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(b, "judge_step", _fake(VERSIONS[0], []))
    both = b.search(b.Goal("x86_64", "crash", ""), VERSIONS, Path("x"))
    assert (both.before, both.after) == (None, None) and both.oldest_reproduces
    assert "every release" in both.describe(VERSIONS[0], VERSIONS[-1])
    monkeypatch.setattr(b, "judge_step", lambda goal, v, p, s: b.Step(v, False, "no finding", 0.0))
    neither = b.search(b.Goal("x86_64", "crash", ""), VERSIONS, Path("x"))
    assert "nothing to bisect" in neither.describe(VERSIONS[0], VERSIONS[-1])


def test_release_lines_are_the_newest_patch_of_each(monkeypatch: pytest.MonkeyPatch) -> None:
    from fuzz.bridge import spec

    index = spec.Index(
        ("0.109.0", "0.109.1", "0.110.0", "0.111.2", "0.111.10", "0.112.0"), (), 1e18
    )
    monkeypatch.setattr(spec.Index, "load", classmethod(lambda cls: index))
    assert b.releases("0.109.1", "0.111.10") == ["0.109.1", "0.110.0", "0.111.10"]


def test_a_bad_target_or_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(b.bisect, [str(tmp_path / "missing.clif"), "-t", "x86_64"])
    assert result.exit_code == EXIT_BAD_INPUT
    result = runner.invoke(b.bisect, ["x.clif", "-t", "sparc"])
    assert result.exit_code == EXIT_BAD_INPUT
