"""Cranelift version numbers (`fuzz.versions`): the one parser every module
uses, which releases are supported (0.105 and newer, newer than the newest
known included), and the feature table's answer for a newer release."""

from __future__ import annotations

import pytest

from fuzz import features, versions
from fuzz.bridge import spec
from fuzz.commands import bisect
from fuzz.features import FEATURES, for_version, has
from fuzz.targets import TARGETS
from fuzz.versions import (
    NEWEST_KNOWN,
    is_newer_than_known,
    is_supported,
    looks_like_version,
    parse_release,
    parse_version,
)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("0.135.8", (0, 135, 8)),
        (" 0.136.0-dev ", (0, 136, 0)),  # a checkout
        ("0.131", (0, 131, 0)),
        ("0.150.2+build", (0, 150, 2)),
    ],
)
def test_a_reported_version_is_parsed(text: str, version: versions.Version) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["", "main", "v0.135.8", "0"])
def test_what_is_no_version_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a Cranelift version"):
        parse_version(text)


@pytest.mark.parametrize(
    ("text", "release"),
    [
        ("0.131", (0, 131, None)),
        ("0.131.x", (0, 131, None)),
        (" 0.128.4 ", (0, 128, 4)),
        ("0.150", (0, 150, None)),
        ("0.128.4-dev", None),  # releases only
        ("../wasmtime", None),
        ("0.128.", None),
    ],
)
def test_a_release_choice_is_read(text: str, release: tuple[int, int, int | None] | None) -> None:
    assert parse_release(text) == release
    assert looks_like_version(text) is (release is not None)


def test_one_parser_serves_every_module() -> None:
    assert features.parse_version is parse_version
    assert spec.parse_version is parse_version and spec.parse_release is parse_release
    assert bisect.releases.__module__ == "fuzz.commands.bisect"
    for module in (features, spec, bisect):
        private = [n for n in vars(module) if n in ("_VERSION", "_version_tuple")]
        assert private == [], module.__name__


def test_release_lines_sort_by_number_past_the_newest_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = spec.Index(
        ("0.99.0", "0.105.4", "0.137.1", "0.138.0", "0.150.2", "0.150.10", "0.150.9"),
        (),
        fetched=1e12,
    )
    monkeypatch.setattr(spec.Index, "load", classmethod(lambda cls: index))
    assert bisect.releases("0.105.4", "0.150.10") == ["0.105.4", "0.137.1", "0.138.0", "0.150.10"]


@pytest.mark.parametrize(
    ("version", "supported", "newer"),
    [
        ((0, 104, 3), False, False),
        ((0, 105, 0), True, False),
        ((0, 137, 1), True, False),
        ((0, 138, 0), True, True),
        ((0, 150, 2), True, True),
        ((1, 0, 0), False, True),  # Cranelift is 0.x
    ],
)
def test_supported_releases_are_0_105_and_newer(
    version: versions.Version, supported: bool, newer: bool
) -> None:
    assert is_supported(version) is supported
    assert is_newer_than_known(version) is newer
    assert versions.SUPPORTED == "0.105 and newer"


@pytest.mark.parametrize("newer", [(0, 138, 0), (0, 150, 2)])
def test_the_feature_table_answers_for_a_newer_release_as_for_the_newest_known(
    newer: versions.Version,
) -> None:
    newest = (0, 137, 1)  # the newest release measured (fuzz/features.py)
    assert features.known(newer) == NEWEST_KNOWN
    assert features.known(newest) == newest
    for name in FEATURES:
        on, _, bare = name.rpartition(":")
        assert has(bare, newer, on) == has(bare, newest, on), name
        assert has(name, newer) == has(name, newest), name
    for target in TARGETS.values():
        assert for_version(target, newer) == for_version(target, newest), target.name
