"""The registry of known findings (fuzz/triage/known.py): what matches an
entry and what does not, the bucket a known finding goes to, and malformed
registries as one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fuzz.triage.known import RegistryError, base_key, essential_text, load
from fuzz.triage.records import FindingRecord

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
APPLE = CORPUS / "aarch64-apple-narrow-stack-args.clif"
ROOT = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cranelift-codegen-0.135.8"


def panic(
    target: str = "x86_64 has_avx",
    message: str = "not yet implemented",
    location: str = f"{ROOT}/src/isa/x64/abi.rs:1099:33",
) -> FindingRecord:
    where = location.rpartition(":")[0].split("cranelift-codegen-0.135.8/")[-1]
    return FindingRecord(
        clif="function %f() {\nblock0:\n    return\n}\n",
        target=target,
        flags=[],
        verdict="compile panic",
        details={"panic": {"message": message, "location": location}},
        blame=[target],
        bucket_key=f"{target.split()[0]}|compile panic|cranelift-codegen/{where}",
        bucket_title="a panic",
        cranelift_version="0.135.8",
    )


def wrong_result(
    clif: str, shape: str = "apple_aarch64:call", cause: str = "convention apple_aarch64"
) -> FindingRecord:
    key = f"aarch64|wrong result|{cause}"
    return FindingRecord(
        clif=clif,
        target="aarch64",
        flags=[],
        verdict="wrong result",
        details={"call_shape": shape, "differences": []},
        blame=["aarch64"],
        bucket_key=key,
        bucket_title="aarch64: wrong result",
        cranelift_version="0.136.0",
    )


REGISTRY = load(CORPUS / "known.toml")


def known_as(record: FindingRecord) -> str | None:
    entry = REGISTRY.match(record)
    return entry.id if entry else None


def test_a_compile_panic_is_known_by_file_and_message_whatever_the_line() -> None:
    assert known_as(panic()) == "x86_64-probestack-callconv"
    moved = panic(location=f"{ROOT}/src/isa/x64/abi.rs:1234:5")  # another version's line
    assert known_as(moved) == "x86_64-probestack-callconv"
    # another message, another file or another target is another finding
    assert known_as(panic(message="attempt to add with overflow")) is None
    assert known_as(panic(location=f"{ROOT}/src/isa/x64/lower.rs:1099:33")) is None
    assert known_as(panic(target="aarch64")) is None


def test_a_crash_is_known_only_with_its_call_shape() -> None:
    fault = "illegal instruction: RVV instruction although has_v is off"
    crash = FindingRecord(
        clif="",
        target="riscv64 has_zca",
        flags=[],
        verdict="crash",
        details={"outcomes": {"riscv64 has_zca": {"kind": "crash", "text": "", "detail": fault}}},
        blame=["riscv64 has_zca"],
        bucket_key=f"riscv64|crash|{fault}",
        bucket_title="",
        cranelift_version="0.135.8",
    )
    with_preserve_all = dataclasses.replace(
        crash, details={**crash.details, "call_shape": "fast:call,preserve_all:call_indirect"}
    )
    assert known_as(with_preserve_all) == "riscv64-preserve-all-vector-saves"
    assert known_as(crash) is None  # the same fault from other calls: not this bug


def test_a_wrong_result_is_known_by_what_it_depends_on() -> None:
    """A generated case of the apple_aarch64 bug is known (its attribution,
    fuzz.triage.attribution, names the convention); a wrong result keyed by
    positions only, or depending on something else, is not."""
    text = APPLE.read_text()
    assert known_as(wrong_result(text)) == "aarch64-apple-narrow-stack-args"
    other_case = text.replace("iconst.i8 -1", "iconst.i8 -2")
    assert known_as(wrong_result(other_case)) == "aarch64-apple-narrow-stack-args"
    assert known_as(wrong_result(text, cause="0:i64,1:i64")) is None
    assert known_as(wrong_result(text, cause="tail calls")) is None
    assert known_as(wrong_result(text, cause="convention windows_fastcall")) is None


def test_a_known_finding_gets_its_own_bucket_status_and_note() -> None:
    record = wrong_result(APPLE.read_text())
    known = REGISTRY.apply(record)
    assert known.bucket_key == (
        "aarch64|wrong result|convention apple_aarch64|known:aarch64-apple-narrow-stack-args"
    )
    assert known.known_ref == "aarch64-apple-narrow-stack-args"
    assert base_key(known.bucket_key, known.known_ref) == record.bucket_key
    assert known.known_note.startswith(
        "known finding aarch64-apple-narrow-stack-args in "
        f"{CORPUS / 'known.toml'}: bug; wasmtime#13973, fixed by wasmtime#14235; "
        "known on Cranelift 0.135.8 (not yet listed for 0.136.0); "
        "reproducer aarch64-apple-narrow-stack-args.clif, "
        "aarch64-apple-narrow-stack-args-generated.clif; "
    )
    unknown = wrong_result(APPLE.read_text(), cause="tail calls")
    assert REGISTRY.apply(unknown) == unknown  # untouched: a new bucket


def test_essential_text_keeps_run_lines() -> None:
    text = "; comment\n\nfunction %f() {\n  block0:\n    return\n}\n; run: %f()\n;print: %f()\n"
    assert essential_text(text) == "function %f() {\nblock0:\nreturn\n}\n; run: %f()\n;print: %f()"


GOOD = """
[[finding]]
id = "thing"
kind = "bug"
summary = "s"
versions = ["0.135.8"]
corpus = "case.clif"
targets = ["s390x"]
verdict = "compile panic"
file = "cranelift-codegen/src/x.rs"
"""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[finding]\n", "is not valid TOML: "),
        ("version = 1\n", "unknown top-level key 'version' (want [[finding]])"),
        ("finding = 3\n", "`finding` must be an array of tables ([[finding]])"),
        (GOOD.replace('kind = "bug"\n', ""), "finding 1 (thing): missing 'kind'"),
        (GOOD + "colour = 'red'\n", "finding 1 (thing): unknown field 'colour'"),
        (GOOD.replace('"bug"', '"feature"'), "unknown kind 'feature' (one of: bug, "),
        (GOOD.replace('"s390x"', '"mips"'), "unknown target 'mips' (one of: aarch64, "),
        (GOOD.replace('"compile panic"', '"agree"'), "'agree' is not a finding's verdict"),
        (GOOD.replace('"case.clif"', '"gone.clif"'), "cannot read corpus file "),
        (GOOD + 'message = "(unclosed"\n', "'message' is not a regular expression: "),
        (
            GOOD.replace('versions = ["0.135.8"]', 'versions = ["0.135.8"]\nfixed_in = "soon"'),
            "'fixed_in' must be a release",
        ),
        (GOOD.replace('versions = ["0.135.8"]', "versions = []"), "'versions' must be a non-"),
        (GOOD.replace('id = "thing"', 'id = "Thing One"'), "id 'Thing One' must be lower-case"),
        (GOOD + "reproducer = 1\n", "'reproducer' must be true or false"),
        (GOOD.replace('file = "cranelift-codegen/src/x.rs"', ""), "no fingerprint: give 'file'"),
        (
            GOOD.replace('"compile panic"', '"wrong result"'),
            "a wrong-result entry needs 'reproducer = true'",
        ),
        (GOOD + GOOD, "finding 2: duplicate id 'thing'"),
    ],
)
def test_a_malformed_registry_is_one_line_naming_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "case.clif").write_text("function %f() {\nblock0:\n    return\n}\n")
    path = tmp_path / "known.toml"
    path.write_text(text)
    with pytest.raises(RegistryError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    assert problem in message, message


def test_a_good_registry_loads(tmp_path: Path) -> None:
    (tmp_path / "case.clif").write_text("function %f() {\nblock0:\n    return\n}\n")
    (tmp_path / "known.toml").write_text(GOOD)
    [entry] = load(tmp_path / "known.toml").entries
    assert (entry.id, entry.corpus, entry.targets) == (
        "thing",
        (tmp_path / "case.clif",),
        ("s390x",),
    )
    assert entry.reference() == "no upstream issue"


def preserve_all_violation(version: str) -> FindingRecord:
    return FindingRecord(
        clif="",
        target="aarch64",
        flags=[],
        verdict="abi violation",
        details={
            "violations": [
                {
                    "kind": "callee-saved register",
                    "edge": "%main -> %f",
                    "where": "v3",
                    "class": "vector",
                    "expected": "0x1",
                    "actual": "0x2",
                }
            ]
        },
        blame=["aarch64"],
        bucket_key="aarch64|abi violation|preserve_all|callee-saved register|vector",
        bucket_title="aarch64: abi violation: callee-saved register (vector)",
        cranelift_version=version,
    )


def test_a_known_bug_after_its_fix_is_a_regression_in_a_new_bucket() -> None:
    """`fixed_in` is read: the preserve_all bug of 0.128-0.130 (fixed in
    0.131.3) seen on 0.128.4 is known; seen on 0.135.8 it is a regression,
    new, in a bucket of its own that names the entry."""
    before = REGISTRY.apply(preserve_all_violation("0.128.4"))
    assert before.known_ref == "aarch64-preserve-all-vector-low-half"
    after = REGISTRY.apply(preserve_all_violation("0.135.8"))
    assert after.known_ref is None and not after.known_note
    assert after.bucket_key.endswith("|regression:aarch64-preserve-all-vector-low-half")
    assert "fixed in 0.131.3, seen again on Cranelift 0.135.8" in after.regression_note
    checkout = REGISTRY.apply(preserve_all_violation("0.136.0-dev"))
    assert checkout.bucket_key.endswith("|regression:aarch64-preserve-all-vector-low-half")


def memcpy_finding(verdict: str, shape: str, key_tail: str) -> FindingRecord:
    fault = "in libcall Memcpy: read of unmapped memory at 0x6000"
    return FindingRecord(
        clif="",
        target="x86_64",
        flags=[],
        verdict=verdict,
        details={
            "call_shape": shape,
            "outcomes": {"x86_64": {"kind": verdict, "text": "", "detail": fault}},
        },
        blame=["x86_64"],
        bucket_key=f"x86_64|{verdict}|{key_tail}",
        bucket_title="",
        cranelift_version="0.105.4",
    )


def test_the_struct_argument_memcpy_of_a_tail_call_is_known_on_0_105() -> None:
    """0.105's Memcpy of a struct argument in a tail callee's registers: the
    crash by its fault and a tail call in the case (a fastcall case stays the
    fastcall entry's), the wrong result by its `struct arguments` attribution."""
    crash = "in libcall Memcpy: read of unmapped memory at 0x_"
    assert known_as(memcpy_finding("crash", "tail:call,tail:func_addr", crash)) == (
        "x86_64-sarg-memcpy-tail-registers"
    )
    assert known_as(memcpy_finding("crash", "tail:call,windows_fastcall:call", crash)) == (
        "x86_64-sarg-memcpy-fastcall"
    )
    assert known_as(memcpy_finding("crash", "system_v:call", crash)) is None
    wrong = memcpy_finding("wrong result", "system_v:call,tail:call", "struct arguments")
    assert known_as(wrong) == "x86_64-sarg-memcpy-tail-registers-wrong-result"
    assert known_as(dataclasses.replace(wrong, bucket_key="x86_64|wrong result|0:i64")) is None
    # on the release that changed tail's registers it is a regression, not known
    after = REGISTRY.apply(dataclasses.replace(wrong, cranelift_version="0.107.2"))
    assert after.bucket_key.endswith("|regression:x86_64-sarg-memcpy-tail-registers-wrong-result")
