"""The generator: every choice source gives valid, compilable cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz import _cranelift
from fuzz.commands.gen import check_case
from fuzz.gen.cells import supported_cells
from fuzz.gen.choices import ByteSource, HypothesisSource, RandomSource
from fuzz.gen.generate import generate
from fuzz.targets import TARGETS

TARGET_LIST = list(TARGETS.values())


def _valid(case) -> None:  # type: ignore[no-untyped-def]
    assert check_case(case, {}) is None, case.text


@pytest.mark.parametrize("target", TARGET_LIST, ids=lambda t: t.name)
@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff" * 64, bytes(range(256))])
def test_edge_byte_strings_decode_to_valid_cases(target, data: bytes) -> None:  # type: ignore[no-untyped-def]
    _valid(generate(ByteSource(data), target))


@settings(max_examples=60)
@given(data=st.binary(max_size=512), index=st.integers(0, len(TARGET_LIST) - 1))
def test_every_byte_string_decodes_to_a_valid_case(data: bytes, index: int) -> None:
    _valid(generate(ByteSource(data), TARGET_LIST[index]))


@settings(max_examples=30)
@given(data=st.data(), index=st.integers(0, len(TARGET_LIST) - 1))
def test_hypothesis_strategy_cases_are_valid(data, index: int) -> None:  # type: ignore[no-untyped-def]
    _valid(generate(HypothesisSource(data), TARGET_LIST[index]))


def test_a_seed_gives_the_same_case() -> None:
    a = generate(RandomSource(1234), TARGETS["s390x"]).text
    b = generate(RandomSource(1234), TARGETS["s390x"]).text
    assert a == b
    assert a != generate(RandomSource(1235), TARGETS["s390x"]).text


def test_cases_only_use_supported_cells() -> None:
    for seed in range(40):
        target = TARGET_LIST[seed % 4]
        case = generate(RandomSource(seed), target)
        wanted = supported_cells(target) | {
            (target.name, "-", cc, form) for (_, _, cc, form) in supported_cells(target)
        }
        assert set(case.cells) <= wanted, set(case.cells) - wanted


def test_call_sites_carry_the_callees_exact_signature() -> None:
    from fuzz.pipeline.sigcheck import signature_mismatches

    for seed in range(40):
        case = generate(RandomSource(seed), TARGET_LIST[seed % 4])
        functions = {f["name"]: f for f in _cranelift.parse(case.text).functions()}
        assert signature_mismatches(functions) == []


def test_narrow_stack_arguments_fall_at_every_offset_modulo_16() -> None:
    """Stack-heavy signatures: past the integer argument registers, narrow
    extended integers follow arguments of varying sizes; packed at their
    natural size and alignment (Apple's arm64 rule), they land at every
    offset modulo 16."""
    from fuzz.gen.generate import Generator
    from fuzz.values import type_info

    target = TARGETS["aarch64"]
    offsets = set()
    for seed in range(1000):
        params = Generator(RandomSource(seed), target).stack_heavy_params("apple_aarch64")
        at = 0
        for p in params[len(target.int_arg_regs) :]:
            size = type_info(p.ty).bytes
            at = -(-at // size) * size
            if p.ext:
                offsets.add(at % 16)
            at += size
    assert offsets == set(range(16))


def test_every_function_keeps_a_canary_and_calls_keep_state() -> None:
    kept = 0
    for seed in range(30):
        text = generate(RandomSource(seed), TARGETS["x86_64"]).text
        functions = text.split("\nfunction ")[1:]
        assert functions
        for body in functions:
            slots = body.count("explicit_slot")
            assert slots >= 1, body  # the canary
            kept += slots - 1 - body.count("explicit_slot 16, align = 16")  # not sret areas
    assert kept > 0


def test_shared_settings_that_change_call_lowering_are_toggled_where_the_release_has_them() -> None:
    """Each of a target's `fuzz_shared_flags` (is_pic everywhere, aarch64's
    enable_compact_unwind_abi) in about a quarter of cases; compact unwind
    only from 0.133, and never on a target whose table does not name it."""
    from fuzz.gen.generate import SHARED_FLAG_PCT

    def share(target: str, flag: str, version: tuple[int, int, int] | None = None) -> float:
        texts = [
            generate(RandomSource(seed), TARGETS[target], version=version).text
            for seed in range(400)
        ]
        return sum(f"set {flag}=true" in t for t in texts) / len(texts)

    for target in TARGETS.values():
        assert target.fuzz_shared_flags
        for flag in target.fuzz_shared_flags:
            assert abs(share(target.name, flag) - SHARED_FLAG_PCT / 100) < 0.08, (target, flag)
    assert share("aarch64", "enable_compact_unwind_abi", (0, 132, 3)) == 0
    assert share("x86_64", "enable_compact_unwind_abi") == 0
