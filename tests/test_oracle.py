"""Unit tests of fuzz.values (bit-exact comparison, NaN policy) and fuzz.pipeline.oracle
(verdicts and blame). Pure Python: no Cranelift, no emulator."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.pipeline.oracle import (
    BENIGN,
    INTERPRETER,
    Kind,
    Outcome,
    Verdict,
    at_trap_sites,
    judge,
)
from fuzz.values import NanPolicy, Value

TARGETS = ("x86_64", "aarch64", "riscv64", "s390x")


def i64(n: int) -> Outcome:
    return Outcome(Kind.RETURN, (Value.from_bridge(("i64", n)),))


def trap(code: str) -> Outcome:
    return Outcome(Kind.TRAP, detail=code)


def everyone(interp: Outcome, **targets: Outcome) -> dict[str, Outcome]:
    """Interpreter first, then the four targets; unnamed targets agree with the interpreter."""
    return {INTERPRETER: interp, **{t: targets.get(t, interp) for t in TARGETS}}


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f32x4(*lanes: int) -> Value:
    # lane 0 in the low bits
    return Value("f32x4", sum(lane << (32 * i) for i, lane in enumerate(lanes)))


# --- values: width ------------------------------------------------------------


@given(st.integers(min_value=-(1 << 200), max_value=1 << 200))
def test_from_bridge_keeps_only_the_low_8_bits_of_an_i8(raw: int) -> None:
    v = Value.from_bridge(("i8", raw))
    assert v.bits == raw % 256
    assert v.same_as(Value("i8", raw & 0xFF), NanPolicy.EXACT)


@given(
    st.integers(min_value=0, max_value=0xFF),
    st.binary(min_size=15, max_size=15),
    st.binary(min_size=15, max_size=15),
    st.booleans(),
)
def test_i8_from_a_slot_ignores_the_bytes_beyond_its_width(
    low: int, junk_a: bytes, junk_b: bytes, big_endian: bool
) -> None:
    # A 16-byte trampoline slot: the i8 is the first byte in either byte order.
    a = Value.from_memory("i8", bytes([low]) + junk_a, big_endian)
    b = Value.from_memory("i8", bytes([low]) + junk_b, big_endian)
    assert a.bits == low
    assert a.same_as(b, NanPolicy.EXACT)
    verdicts = judge(everyone(Outcome(Kind.RETURN, (a,)), s390x=Outcome(Kind.RETURN, (b,))))
    assert set(verdicts.verdicts.values()) == {Verdict.AGREE}


@pytest.mark.parametrize(
    ("ty", "a", "b"),
    [("i8", 0x80, 0x81), ("i16", 0x8000, 0x0000), ("i32", 1, 1 << 31), ("i64", 0, 1 << 63)],
)
def test_one_bit_inside_the_width_is_a_difference(ty: str, a: int, b: int) -> None:
    va, vb = Value.from_bridge((ty, a)), Value.from_bridge((ty, b))
    assert not va.same_as(vb, NanPolicy.ANY)
    assert not va.same_as(vb, NanPolicy.EXACT)


def test_i128_high_half_counts() -> None:
    lo = Value.from_bridge(("i128", 5))
    hi = Value.from_bridge(("i128", 5 | (1 << 127)))
    assert not lo.same_as(hi)
    assert Value.from_bridge(("i128", -1)).bits == (1 << 128) - 1


def test_same_bits_of_different_types_differ() -> None:
    assert not Value("i32", 7).same_as(Value("i64", 7))
    assert not Value("f32", 0).same_as(Value("i32", 0))


# --- values: NaN policy ----------------------------------------------------------

QUIET_NAN = 0x7FC0_0000
NAN_PAYLOAD = 0x7FC0_0001
SIGNALLING_NAN = 0x7F80_0001
NEGATIVE_NAN = 0xFFC0_0000
INF = 0x7F80_0000


@pytest.mark.parametrize("other", [NAN_PAYLOAD, SIGNALLING_NAN, NEGATIVE_NAN])
def test_f32_nans_with_different_payloads(other: int) -> None:
    a, b = Value("f32", QUIET_NAN), Value("f32", other)
    assert a.same_as(b, NanPolicy.ANY)
    assert not a.same_as(b, NanPolicy.EXACT)


@given(
    st.integers(min_value=1, max_value=(1 << 23) - 1),
    st.integers(min_value=1, max_value=(1 << 23) - 1),
    st.booleans(),
    st.booleans(),
)
def test_any_two_f32_nans_are_equal_under_any(m1: int, m2: int, s1: bool, s2: bool) -> None:
    a = Value("f32", (s1 << 31) | 0x7F80_0000 | m1)
    b = Value("f32", (s2 << 31) | 0x7F80_0000 | m2)
    assert a.same_as(b, NanPolicy.ANY)
    assert a.same_as(b, NanPolicy.EXACT) == (a.bits == b.bits)


def test_nan_is_not_infinity_and_zeroes_keep_their_sign() -> None:
    assert not Value("f32", QUIET_NAN).same_as(Value("f32", INF), NanPolicy.ANY)
    pos, neg = Value("f32", f32_bits(0.0)), Value("f32", f32_bits(-0.0))
    assert not pos.same_as(neg, NanPolicy.ANY)


def test_nan_policy_applies_to_floats_only() -> None:
    # The same bit patterns as i32 are plain integers.
    assert not Value("i32", QUIET_NAN).same_as(Value("i32", NAN_PAYLOAD), NanPolicy.ANY)


def test_f64_and_f16_nans() -> None:
    quiet, other = Value("f64", 0x7FF8_0000_0000_0000), Value("f64", 0xFFF0_0000_0000_0001)
    assert quiet.same_as(other, NanPolicy.ANY)
    assert not quiet.same_as(other, NanPolicy.EXACT)
    assert not quiet.same_as(Value("f64", 0x7FF0_0000_0000_0000), NanPolicy.ANY)  # +inf
    assert Value("f16", 0x7E00).same_as(Value("f16", 0x7C01), NanPolicy.ANY)
    assert not Value("f16", 0x7E00).same_as(Value("f16", 0x7C01), NanPolicy.EXACT)


def test_f32x4_nan_lanes() -> None:
    one = f32_bits(1.0)
    a = f32x4(one, QUIET_NAN, 0, NEGATIVE_NAN)
    same_lanes_other_payloads = f32x4(one, NAN_PAYLOAD, 0, SIGNALLING_NAN)
    assert a.same_as(same_lanes_other_payloads, NanPolicy.ANY)
    assert not a.same_as(same_lanes_other_payloads, NanPolicy.EXACT)
    # NaN in a lane where the other vector has a number: different.
    assert not a.same_as(f32x4(one, QUIET_NAN, QUIET_NAN, NEGATIVE_NAN), NanPolicy.ANY)
    # A non-NaN lane still compares bit-exact.
    assert not a.same_as(f32x4(f32_bits(2.0), QUIET_NAN, 0, NEGATIVE_NAN), NanPolicy.ANY)


def test_nan_policy_through_the_oracle() -> None:
    mine = Outcome(Kind.RETURN, (Value("f32", QUIET_NAN),))
    theirs = Outcome(Kind.RETURN, (Value("f32", NAN_PAYLOAD),))
    outcomes = everyone(mine, riscv64=theirs)
    assert not judge(outcomes, policy=NanPolicy.ANY).divergent
    exact = judge(outcomes, policy=NanPolicy.EXACT)
    assert exact.verdicts["riscv64"] is Verdict.WRONG_RESULT
    assert exact.blame == ["riscv64"]


# --- oracle: verdicts and blame -----------------------------------------------------


def test_everyone_agrees() -> None:
    j = judge(everyone(i64(15)), "==", (Value("i64", 15),))
    assert set(j.verdicts) == {INTERPRETER, *TARGETS}
    assert set(j.verdicts.values()) == {Verdict.AGREE}
    assert j.blame == []
    assert not j.divergent


@pytest.mark.parametrize("odd", TARGETS)
def test_blame_picks_the_odd_target_out(odd: str) -> None:
    j = judge(everyone(i64(15), **{odd: i64(16)}))
    assert j.verdicts[odd] is Verdict.WRONG_RESULT
    assert j.blame == [odd]
    assert j.divergent
    assert all(v is Verdict.AGREE for label, v in j.verdicts.items() if label != odd)


def test_blame_picks_the_interpreter_when_it_is_the_odd_one_out() -> None:
    j = judge(everyone(i64(16), **{t: i64(15) for t in TARGETS}))
    assert j.blame == [INTERPRETER]
    assert j.divergent


def test_a_tie_falls_back_to_the_interpreter() -> None:
    # interpreter + x86_64 say 1, aarch64 + riscv64 say 2, s390x abstains: 2 against 2.
    outcomes = everyone(
        i64(1),
        aarch64=i64(2),
        riscv64=i64(2),
        s390x=Outcome(Kind.NOT_EXECUTABLE, detail="emulator lacks has_mie3"),
    )
    j = judge(outcomes)
    assert j.blame == ["aarch64", "riscv64"]
    assert j.verdicts["x86_64"] is Verdict.AGREE
    assert j.verdicts["s390x"] is Verdict.NOT_EXECUTABLE


def test_a_tie_of_three_opinions_falls_back_to_the_interpreter() -> None:
    j = judge(
        {INTERPRETER: i64(1), "x86_64": i64(2), "aarch64": i64(3)},
    )
    assert j.blame == ["x86_64", "aarch64"]


def test_missing_trap() -> None:
    j = judge(everyone(trap("int_divz"), aarch64=i64(0)))
    assert j.verdicts["aarch64"] is Verdict.MISSING_TRAP
    assert j.blame == ["aarch64"]
    assert j.verdicts["x86_64"] is Verdict.AGREE


def test_unexpected_trap() -> None:
    j = judge(everyone(i64(3), s390x=trap("heap_oob")))
    assert j.verdicts["s390x"] is Verdict.UNEXPECTED_TRAP
    assert j.blame == ["s390x"]


def test_traps_compare_by_code() -> None:
    assert not judge(everyone(trap("user1"))).divergent
    j = judge(everyone(trap("user1"), x86_64=trap("user2")))
    assert j.verdicts["x86_64"] is not Verdict.AGREE
    assert j.blame == ["x86_64"]


def test_a_crash_at_a_trap_site_is_that_trap_only_where_the_interpreter_traps_so() -> None:
    """A fault at an instruction Cranelift recorded as a heap_oob trap site
    is that trap when the interpreter reports heap_oob; any other fault, or
    the same fault where the interpreter returned or trapped otherwise, stays
    a crash (issue 24)."""
    at_site = Outcome(Kind.CRASH, detail="read of unmapped memory at 0x0", trap_site="heap_oob")
    j = judge(everyone(trap("heap_oob"), x86_64=at_site))
    assert j.verdicts["x86_64"] is Verdict.AGREE and not j.divergent
    read = at_trap_sites(everyone(trap("heap_oob"), x86_64=at_site))["x86_64"]
    assert (read.kind, read.detail) == (Kind.TRAP, "heap_oob")
    for interp in (i64(1), trap("int_divz")):
        j = judge(everyone(interp, x86_64=at_site))
        assert j.verdicts["x86_64"] is Verdict.CRASH and j.blame == ["x86_64"]
    elsewhere = Outcome(Kind.CRASH, detail="read of unmapped memory at 0x0")
    j = judge(everyone(trap("heap_oob"), x86_64=elsewhere))
    assert j.verdicts["x86_64"] is Verdict.CRASH and j.blame == ["x86_64"]


def test_who_meets_the_stated_value_is_never_blamed_however_many_agree_otherwise() -> None:
    """Three targets returning the same wrong value outnumber the interpreter,
    which returns the file's stated value: they are blamed, not it."""
    wrong = {t: i64(5) for t in ("aarch64", "riscv64", "s390x")}
    j = judge({INTERPRETER: i64(6), **wrong}, "==", (Value("i64", 6),))
    assert j.verdicts[INTERPRETER] is Verdict.AGREE
    assert j.blame == ["aarch64", "riscv64", "s390x"]
    # without a stated value the largest group still wins
    assert judge({INTERPRETER: i64(6), **wrong}).blame == [INTERPRETER]


def test_crash_and_timeout_verdicts() -> None:
    crash = Outcome(Kind.CRASH, detail="read of unmapped memory at 0x0", pc=0x1000_0010)
    timeout = Outcome(Kind.TIMEOUT, detail="instruction budget exhausted")
    j = judge(everyone(i64(1), x86_64=crash, riscv64=timeout))
    assert j.verdicts["x86_64"] is Verdict.CRASH
    assert j.verdicts["riscv64"] is Verdict.TIMEOUT
    assert j.blame == ["x86_64", "riscv64"]


def test_fuel_and_timeout_are_the_same_opinion() -> None:
    fuel = Outcome(Kind.FUEL, detail="after 10 steps")
    timeout = Outcome(Kind.TIMEOUT, detail="budget")
    j = judge(everyone(fuel, **{t: timeout for t in TARGETS}))
    assert not j.divergent


@pytest.mark.parametrize(
    "abstention",
    [
        Outcome(Kind.NOT_EXECUTABLE, detail="emulator lacks has_zcb"),
        Outcome(Kind.UNSUPPORTED, detail="interpreter: not implemented: GetStackPointer"),
    ],
)
def test_abstentions_are_not_divergences(abstention: Outcome) -> None:
    j = judge(everyone(i64(15), x86_64=abstention, s390x=abstention), "==", (Value("i64", 15),))
    assert not j.divergent
    assert j.blame == []
    assert j.verdicts["x86_64"] in BENIGN
    assert j.verdicts["x86_64"] is not Verdict.AGREE


def test_abstaining_interpreter_lets_the_expectation_decide() -> None:
    unsupported = Outcome(Kind.UNSUPPORTED, detail="interpreter: not implemented: GetStackPointer")
    expected = (Value("i64", 1),)
    j = judge(everyone(unsupported, **{t: i64(1) for t in TARGETS}), "==", expected)
    assert not j.divergent
    assert j.verdicts[INTERPRETER] is Verdict.UNSUPPORTED
    targets = {t: i64(1) for t in TARGETS} | {"riscv64": i64(2)}
    j = judge(everyone(unsupported, **targets), "==", expected)
    assert j.verdicts["riscv64"] is Verdict.WRONG_RESULT
    assert j.blame == ["riscv64"]


def test_targets_that_disagree_without_a_reference_are_a_divergence() -> None:
    # Interpreter abstains and the command is a `print:` (no expectation): the
    # targets still cannot all be right.
    unsupported = Outcome(Kind.UNSUPPORTED, detail="interpreter: not implemented: GetStackPointer")
    targets = {t: i64(1) for t in TARGETS} | {"s390x": i64(2)}
    j = judge(everyone(unsupported, **targets))
    assert j.blame == ["s390x"]
    assert j.divergent


def test_everyone_wrong_against_the_file_is_blamed() -> None:
    j = judge(everyone(i64(16)), "==", (Value("i64", 15),))
    assert j.divergent
    assert j.blame == [INTERPRETER, *TARGETS]


def test_not_equal_expectation() -> None:
    assert not judge(everyone(i64(3)), "!=", (Value("i64", 4),)).divergent
    assert judge(everyone(i64(4)), "!=", (Value("i64", 4),)).divergent


def test_interpreter_out_of_fuel_does_not_condemn_targets_that_meet_the_file() -> None:
    # The interpreter's step limit is not the machine's: a loop of 400,000
    # iterations exhausts the interpreter's fuel while every target returns the
    # file's expected value.
    fuel = Outcome(Kind.FUEL, detail="after 1000000 steps")
    j = judge(everyone(fuel, **{t: i64(0) for t in TARGETS}), "==", (Value("i64", 0),))
    for t in TARGETS:
        assert j.verdicts[t] is Verdict.AGREE, (t, j)


@pytest.mark.parametrize("kind", [Kind.COMPILE_PANIC, Kind.COMPILE_ERROR])
def test_compile_failures_blame_their_own_target(kind: Kind) -> None:
    j = judge(everyone(i64(1), aarch64=Outcome(kind, detail="boom at src/x.rs:1:1")))
    assert j.divergent
    assert j.blame == ["aarch64"]


def test_interpreter_failure_blames_the_interpreter() -> None:
    failure = Outcome(Kind.INTERP_FAILURE, detail="panic: boom at src/x.rs:1:1")
    j = judge(everyone(failure, **{t: i64(1) for t in TARGETS}))
    assert j.divergent
    assert j.blame == [INTERPRETER]
