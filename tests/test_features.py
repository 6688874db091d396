"""The feature table (fuzz.features): the generator uses only what the
Cranelift under test has. The bridges themselves are built in
tests/test_bridge.py; here the table and the generator's use of it."""

from __future__ import annotations

import pytest

from fuzz.features import FEATURES, for_version, has, parse_version
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.targets import TARGETS


def test_versions_parse_as_releases_and_checkouts() -> None:
    assert parse_version("0.135.8") == (0, 135, 8)
    assert parse_version("0.136.0-dev") == (0, 136, 0)
    assert parse_version("0.131") == (0, 131, 0)
    with pytest.raises(ValueError):
        parse_version("main")


def test_a_feature_is_there_from_its_first_release_on() -> None:
    since = FEATURES["preserve_all"].since
    assert not has("preserve_all", (0, since[1] - 1, 9))
    assert has("preserve_all", since) and has("preserve_all", None)
    assert has("system_v", (0, 105, 0))  # not in the table: in every release
    # a feature of one target only
    assert not has("tail", (0, 105, 4), "s390x") and has("tail", (0, 105, 4), "aarch64")


def test_an_old_release_sees_a_target_without_its_newer_features() -> None:
    old = for_version(TARGETS["s390x"], (0, 105, 4))
    assert "preserve_all" not in old.call_convs and "tail" not in old.call_convs
    assert "has_mie3" not in old.qemu_isa_flags
    assert all("f128" not in types for types in old.abi_types.values())
    assert for_version(TARGETS["s390x"], None) is TARGETS["s390x"]


@pytest.mark.parametrize("version", [(0, 105, 4), (0, 110, 0), (0, 115, 1)])
def test_generated_cases_use_nothing_their_release_lacks(version: tuple[int, int, int]) -> None:
    missing = [f for f in FEATURES.values() if version < f.since]
    assert missing
    for seed in range(80):
        target = list(TARGETS.values())[seed % 4]
        text = generate(RandomSource(seed), target, version=version).text
        for feature in missing:
            head, _, tail = feature.name.partition(":")
            only = head if head in TARGETS else ""  # a feature of one target
            name = tail if only else head
            if only not in ("", target.name):
                continue
            if feature.kind == "setting":
                assert f"set {name}" not in text
            elif feature.kind in ("convention", "isa flag"):
                assert f" {name} " not in text and not text.count(f" {name}\n"), (seed, name)
        if version < FEATURES["slot_align"].since:
            assert "align =" not in text
