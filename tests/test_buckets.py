"""Bucket keys keep what identifies a bug and mask what is random."""

from __future__ import annotations

from fuzz.pipeline.contract import CALLEE_SAVED, Violation
from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.oracle import INTERPRETER, Kind, Outcome, Verdict, judge
from fuzz.pipeline.runner import RunResult
from fuzz.triage.buckets import bucket_for, mask, panic_location, worker_death_bucket
from fuzz.values import Value

TEXT = """test run
target aarch64
function %main(i64) -> i64, i64 {
block0(v0: i64):
    return v0, v0
}
; run: %main(1) == [1, 1]
"""


def result(label: str, got: Outcome, ref: Outcome) -> RunResult:
    ft = parse_text(TEXT)
    outcomes = {INTERPRETER: ref, label: got}
    return RunResult(ft.runs[0], outcomes, judge(outcomes))


def ret(*bits: int) -> Outcome:
    return Outcome(Kind.RETURN, tuple(Value("i64", b) for b in bits))


def test_wrong_results_with_different_values_share_a_bucket() -> None:
    ft = parse_text(TEXT)
    a = bucket_for(ft, "aarch64 has_lse", result("aarch64 has_lse", ret(5, 1), ret(1, 1)))
    b = bucket_for(ft, "aarch64", result("aarch64", ret(99, 1), ret(7, 1)))
    assert a.key == b.key == "aarch64|wrong result|0:i64"


def test_different_positions_are_different_buckets() -> None:
    ft = parse_text(TEXT)
    a = bucket_for(ft, "aarch64", result("aarch64", ret(5, 1), ret(1, 1)))
    b = bucket_for(ft, "aarch64", result("aarch64", ret(1, 5), ret(1, 1)))
    assert a.key != b.key


def test_panics_bucket_by_location_without_column() -> None:
    ft = parse_text(TEXT)
    detail = "assertion failed: x at cranelift/codegen/src/machinst/abi.rs:900:13"
    got = Outcome(Kind.COMPILE_PANIC, detail=detail)
    bucket = bucket_for(ft, "riscv64", result("riscv64", got, ret(1, 1)))
    assert bucket.key == "riscv64|compile panic|cranelift-codegen/src/machinst/abi.rs:900"
    assert panic_location(detail) == "cranelift-codegen/src/machinst/abi.rs:900"


def test_panic_locations_do_not_depend_on_the_machine_or_build() -> None:
    registry = (
        "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/"
        "cranelift-codegen-0.135.8/src/isa/aarch64/abi.rs:748:9"
    )
    other_home = (
        "/home/dev/.cargo/registry/src/x-0/cranelift-codegen-0.135.8/src/isa/aarch64/abi.rs:748:9"
    )
    build = (
        "/tmp/ci/native/target/release/build/"
        "cranelift-codegen-fc31da3cb07b22a8/out/isle_riscv64.rs:12331:17"
    )
    assert panic_location(f"boom at {registry}") == "cranelift-codegen/src/isa/aarch64/abi.rs:748"
    assert panic_location(f"boom at {other_home}") == panic_location(f"boom at {registry}")
    assert panic_location(f"boom at {build}") == "cranelift-codegen/out/isle_riscv64.rs:12331"
    # a wasmtime checkout's path dependencies: the same key as the release's
    checkout = "/home/dev/src/wasmtime/cranelift/codegen/src/isa/aarch64/abi.rs:748:9"
    assert panic_location(f"boom at {checkout}") == panic_location(f"boom at {registry}")
    frontend = "/w/wasmtime/cranelift/frontend/src/frontend.rs:12:1"
    assert panic_location(f"x at {frontend}") == "cranelift-frontend/src/frontend.rs:12"


def test_crashes_mask_addresses_and_value_names() -> None:
    assert mask("unmapped read at 0x5000_1234 in v12, fn3") == mask(
        "unmapped read at 0xdead in v7, fn0"
    )
    ft = parse_text(TEXT)
    a = Outcome(Kind.CRASH, detail="unmapped write at 0x1000", pc=0x40)
    b = Outcome(Kind.CRASH, detail="unmapped write at 0x2ff8", pc=0x80)
    ka = bucket_for(ft, "s390x", result("s390x", a, ret(1, 1))).key
    kb = bucket_for(ft, "s390x", result("s390x", b, ret(1, 1))).key
    assert ka == kb and "crash" in ka


def test_worker_deaths_bucket_by_signal() -> None:
    assert (
        worker_death_bucket("x86_64", "hard crash", "SIGABRT").key
        != worker_death_bucket("x86_64", "hard crash", "SIGSEGV").key
    )


def test_abi_violations_bucket_by_convention_kind_and_class_only() -> None:
    """The callee's convention is part of the key (one convention's bug is
    not another's); the register, the edge and the values are not."""
    ft = parse_text(TEXT)

    def key(cc: str, where: str, edge: str, value: int) -> str:
        v = Violation(CALLEE_SAVED, edge, where, "int", 1, value, cc)
        got = Outcome(Kind.RETURN, ret(1, 1).values, violations=(v,))
        r = result("aarch64", got, ret(1, 1))
        assert r.judgement.verdicts["aarch64"] is Verdict.ABI_VIOLATION
        return bucket_for(ft, "aarch64", r).key

    a = key("apple_aarch64", "x18", "%main -> %f", 2)
    assert a == "aarch64|abi violation|apple_aarch64|callee-saved register|int"
    assert key("apple_aarch64", "x19", "%g -> %h", 7) == a
    assert key("windows_fastcall", "x18", "%main -> %f", 2) != a
