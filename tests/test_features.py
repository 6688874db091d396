"""The feature table (fuzz.features): the generator uses only what the
Cranelift under test has. The bridges themselves are built in
tests/test_bridge.py; here the table and the generator's use of it."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from fuzz.features import (
    FEATURES,
    Version,
    abi_for_version,
    callee_saved,
    for_version,
    has,
    lacking,
    parse_version,
    used,
)
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


# --- reading back what a generated case uses ----------------------------------

_TYPE = r"(?:i8|i16|i32|i64|i128|f16|f32|f64|f128)(?:x\d+)?"
# a type anywhere: a signature, a block parameter, an opcode's `.type`
# (not `%f16`, a function's name, nor `has_fp16`, an ISA flag)
_TYPE_USE = re.compile(rf"(?<![%\w]){_TYPE}(?!\w)")
_IS_TYPE = re.compile(_TYPE)
_SETTING = re.compile(r"^set (\w+)=", re.M)
_SETTING_VALUE = re.compile(r"^set (\w+=\w+)$", re.M)
_TARGET = re.compile(r"^target (.*)$", re.M)
# `function %f1(i64, f32) -> i8 uext fast {` (system_v left out), `sig0 = (...) -> ... cc`
_SIGNATURE = re.compile(r"^function %\w+(\(.*\).*?) \{$|^ +sig\d+ = (\(.*\).*)$", re.M)
# `v3 = iadd.i64 v1, v2`, `v4, v5 = isplit v0`, `store v1, v2`, `return_call fn0(v1)`,
# not the preamble's declarations (`ss0 = explicit_slot 8`, `sig0 = ...`, `fn0 = ...`)
_INSTRUCTION = re.compile(r"^ +(?:v\d+(?:, v\d+)* = )?(?!(?:ss|sig|fn)\d+ = )([a-z_]+)\b", re.M)
# syntax features: how a case would use each
SYNTAX = {
    "slot_align": re.compile(r"explicit_slot \d+, align = \d+"),
    "try_call_context": re.compile(r"\bcontext v\d+\]"),
    "patchable": re.compile(r"= colocated patchable "),
}
# every kind of feature the table may hold, each read back from cases below
# (a `rule` restricts releases from its version on: read by its own test; a
# `lowering` gates corpus files, the generator does not use it: its own test)
KINDS = {
    *("setting", "setting value", "convention", "type", "isa flag", "syntax"),
    *("instruction", "rule", "lowering"),
}
UNGENERATED = ("rule", "lowering")


def _convention(signature: str) -> str:
    """The convention a signature names (a function header leaves system_v out)."""
    last = signature.rsplit(None, 1)[-1]
    if last.endswith(")") or _IS_TYPE.fullmatch(last) or last in ("uext", "sext", "sret"):
        return "system_v"
    return last


@dataclass
class Uses:
    """What one generated case uses, by kind of feature, as the table names it
    (`f16` anywhere, `f16:abi` in a signature)."""

    target: str
    names: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def uses(text: str) -> Uses:
    (target_line,) = _TARGET.findall(text)
    target, *isa_flags = target_line.split()
    out = Uses(target)
    out.names["setting"].update(_SETTING.findall(text))
    out.names["setting value"].update(_SETTING_VALUE.findall(text))
    out.names["isa flag"].update(isa_flags)
    out.names["type"].update(_TYPE_USE.findall(text))
    signatures = [a or b for a, b in _SIGNATURE.findall(text)]
    assert signatures, "no signature read"
    for signature in signatures:
        out.names["convention"].add(_convention(signature))
        out.names["type"].update(f"{t}:abi" for t in _TYPE_USE.findall(signature))
    out.names["instruction"].update(_INSTRUCTION.findall(text))
    out.names["syntax"].update(name for name, used in SYNTAX.items() if used.search(text))
    return out


def test_the_case_reader_reads_what_a_case_uses() -> None:
    text = """test run
set opt_level=none
set regalloc_algorithm=backtracking
target s390x has_mie3

function %f16(f16, i8 uext) -> f128, i8x16 tail {
    ss0 = explicit_slot 16, align = 16
    sig0 = (i64 sret) preserve_all
    sig1 = () -> i128 uext
    fn0 = colocated %f2 sig0
block0(v0: f16, v1: i8):
    v2, v3 = isplit v9
    v4 = bitcast.i64x2 little v0
    store v4, v2
    return_call fn0(v1)
}

function %main(i64) -> i64 {
block0(v0: i64):
    return v0
}
"""
    read = uses(text)
    assert read.target == "s390x"
    assert read.names == {
        "setting": {"opt_level", "regalloc_algorithm"},
        "setting value": {"opt_level=none", "regalloc_algorithm=backtracking"},
        "isa flag": {"has_mie3"},
        "type": {
            *("f16", "i8", "f128", "i8x16", "i64", "i128", "i64x2"),
            *("f16:abi", "i8:abi", "f128:abi", "i8x16:abi", "i64:abi", "i128:abi"),
        },
        "convention": {"tail", "preserve_all", "system_v"},
        "instruction": {"isplit", "bitcast", "store", "return_call", "return"},
        "syntax": {"slot_align"},
    }


def _lacking(read: Uses, version: Version | None) -> list[tuple[str, str]]:
    return [
        (kind, name)
        for kind, names in read.names.items()
        for name in sorted(names)
        if not has(name, version, read.target)
    ]


def test_every_kind_of_feature_in_the_table_is_read_back_from_cases() -> None:
    assert {f.kind for f in FEATURES.values()} <= KINDS
    assert {f.name for f in FEATURES.values() if f.kind == "syntax"} <= set(SYNTAX)


def test_the_newest_release_generates_every_feature_in_the_table() -> None:
    """The reader sees each table entry in cases that may use it: the check
    below cannot pass by reading nothing."""
    seen: set[tuple[str, str]] = set()
    for seed in range(80):
        target = list(TARGETS.values())[seed % len(TARGETS)]
        read = uses(generate(RandomSource(seed), target).text)
        assert not _lacking(read, None)
        for kind, names in read.names.items():
            seen |= {(kind, n) for n in names} | {(kind, f"{read.target}:{n}") for n in names}
    missing = [
        f.name
        for f in FEATURES.values()
        if f.kind not in UNGENERATED and (f.kind, f.name) not in seen
    ]
    assert not missing, missing


@pytest.mark.parametrize("version", [(0, 105, 4), (0, 110, 0), (0, 115, 1), (0, 121, 2)])
def test_generated_cases_use_nothing_their_release_lacks(version: Version) -> None:
    missing = [f for f in FEATURES.values() if f.kind != "rule" and version < f.since]
    assert missing
    for seed in range(80):
        target = list(TARGETS.values())[seed % len(TARGETS)]
        text = generate(RandomSource(seed), target, version=version).text
        lacking = _lacking(uses(text), version)
        assert not lacking, (seed, target.name, lacking)


_HEADER = re.compile(r"^function %\S+\((.*)\)(.*) (\w+) \{$", re.MULTILINE)


def _preserve_all_with_returns(text: str) -> int:
    """preserve_all functions that return values, in a case's text."""
    return sum(
        1 for _params, rest, cc in _HEADER.findall(text) if cc == "preserve_all" and "->" in rest
    )


def test_preserve_all_returns_values_only_where_the_release_accepts_them() -> None:
    """A rule with its first release: 0.129 rejects preserve_all functions
    with returns, 0.128 accepts them (and was buggy there), so the
    generator gives them returns on 0.128 only."""
    aarch64 = TARGETS["aarch64"]
    counts = {
        version: sum(
            _preserve_all_with_returns(generate(RandomSource(seed), aarch64, version=version).text)
            for seed in range(120)
        )
        for version in ((0, 128, 4), (0, 129, 2), None)
    }
    assert counts[(0, 128, 4)] > 0, counts
    assert counts[(0, 129, 2)] == counts[None] == 0, counts


def test_single_pass_is_chosen_only_where_the_release_accepts_it() -> None:
    """`regalloc_algorithm=single_pass` is in 0.115-0.119 and 0.124 on, not
    in 0.120-0.123 (0.121.2: "invalid setting value"): a setting value
    withdrawn and back, as the table records it."""
    target = TARGETS["riscv64"]

    def uses_single_pass(version: Version) -> int:
        return sum(
            "regalloc_algorithm=single_pass"
            in generate(RandomSource(seed), target, version=version).text
            for seed in range(60)
        )

    assert uses_single_pass((0, 119, 0)) > 0
    assert uses_single_pass((0, 121, 2)) == uses_single_pass((0, 123, 0)) == 0
    assert uses_single_pass((0, 124, 0)) > 0


# --- ABI rules per release ------------------------------------------------------

# Read from `get_regs_clobbered_by_call` in cranelift/codegen/src/isa/*/abi.rs
# at the wasmtime tags: until these releases `tail` callees clobbered every
# allocatable register (the release is the first with the full set).
TAIL_SAVES_FROM = {"x86_64": (0, 107, 0), "aarch64": (0, 108, 0), "riscv64": (0, 108, 0)}
# what an all-clobbering `tail` left out of its clobbers (frame pointer,
# reserved registers; riscv64's fs0, which its TAIL_CLOBBERS forgot)
TAIL_KEPT_BEFORE = {
    "x86_64": {"rbp"},
    "aarch64": {"x29"},
    "riscv64": {"x3", "x4", "x8", "f8"},
}


@pytest.mark.parametrize("target", sorted(TAIL_SAVES_FROM))
def test_tail_callees_saved_nothing_allocatable_before_their_rule(target: str) -> None:
    t = TARGETS[target]
    first = TAIL_SAVES_FROM[target]
    last_without = (0, first[1] - 1, 9)
    full = {r.name for r, _bits in t.preserved("tail")}
    old = abi_for_version(t, last_without)
    assert {r.name for r, _bits in old.preserved("tail")} == TAIL_KEPT_BEFORE[target]
    assert TAIL_KEPT_BEFORE[target] < full
    for version in (first, (0, 135, 8), None):
        assert {r.name for r, _bits in abi_for_version(t, version).preserved("tail")} == full
    # the other conventions kept their sets in every release
    for cc in t.call_convs:
        if cc != "tail":
            assert old.preserved(cc) == t.preserved(cc), cc
    assert callee_saved(t, None) == t.callee_saved


def test_s390x_tail_has_one_set_in_every_release_that_has_it() -> None:
    t = TARGETS["s390x"]
    since = FEATURES["s390x:tail"].since
    assert abi_for_version(t, since).preserved("tail") == t.preserved("tail")


def test_the_generators_view_carries_the_releases_call_contract() -> None:
    t = TARGETS["x86_64"]
    assert for_version(t, (0, 106, 2)).callee_saved == callee_saved(t, (0, 106, 2))
    assert for_version(t, (0, 106, 2)).preserved("tail") != t.preserved("tail")


def test_a_files_features_are_read_per_target_line() -> None:
    """`used` (the corpus replay's gate, and bisect's prediction) reads the
    table's names from code: words, `opcode.type`, `setting=value`; a
    target's own entries on that target only; one target line's ISA flags,
    not another's; not comments nor function names."""
    text = """test run
set regalloc_algorithm=single_pass
target s390x has_mie3
target x86_64

function %tail(i64) -> i32x2 tail {  ; preserve_all
block0(v0: i64):
    v1 = bitcast.i32x2 little v0
    v2, v3 = ssub_overflow v0, v0
    return v1
}
"""

    def names(target: str, flags: tuple[str, ...] | None = ()) -> set[str]:
        return {f.name for f in used(text, target, flags)}

    setting = {"regalloc_algorithm", "regalloc_algorithm=single_pass"}
    assert names("s390x") == {"s390x:tail", "s390x:ssub_overflow", *setting}
    assert names("x86_64") == {"x86_64:bitcast.i32x2", *setting}
    assert "has_mie3" in names("s390x", ("has_mie3",)) and "has_mie3" not in names("x86_64")
    assert "has_mie3" in names("x86_64", None)  # the whole file, target lines and all
    assert [f.name for f in lacking(text, (0, 124, 3), "x86_64", ())] == []
    assert {f.name for f in lacking(text, (0, 121, 2), "s390x", ())} == {
        "s390x:ssub_overflow",
        "regalloc_algorithm=single_pass",  # withdrawn in 0.120-0.123
    }


def test_a_reason_names_the_releases_a_withdrawn_value_was_missing_from() -> None:
    """0.121 rejects single_pass, which 0.115 had: "new in 0.115" alone
    would say the release is too old."""
    from fuzz.pipeline.runner import release_needs

    text = "set regalloc_algorithm=single_pass\ntarget x86_64\n"
    missing = lacking(text, (0, 121, 2), "x86_64")
    assert [f.name for f in missing] == ["regalloc_algorithm=single_pass"]
    assert "(new in 0.115, not in 0.120-0.123)" in release_needs(missing, "x86_64")
