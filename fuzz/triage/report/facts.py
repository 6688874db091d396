"""What a draft and a bucket page say about one bucket, read from the triage
database: the export, how to reproduce it, expected against actual."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fuzz.pipeline.oracle import INTERPRETER, Verdict
from fuzz.targets import UnknownTarget, lookup
from fuzz.triage.export import expectation
from fuzz.triage.records import CAbiRecord, Difference, PanicRecord, ViolationRecord
from fuzz.triage.report.exported import export_name, export_text
from fuzz.triage.schema import Bucket, Finding
from fuzz.triage.store import TriageDB

_COMPILE_TIME = frozenset({Verdict.COMPILE_PANIC.value, Verdict.COMPILE_ERROR.value})
# verdicts whose upstream `test run` runs on the finding's own target
_RUN_TIME_ON_TARGET = frozenset(
    {
        Verdict.WRONG_RESULT.value,
        Verdict.CRASH.value,
        Verdict.UNEXPECTED_TRAP.value,
        Verdict.MISSING_TRAP.value,
        Verdict.TIMEOUT.value,
        Verdict.HARD_CRASH.value,
        Verdict.HANG.value,
    }
)


@dataclass(frozen=True)
class OutcomeRow:
    """One executor's outcome in the best reproducer's run."""

    label: str
    verdict: str
    outcome: str
    blamed: bool


@dataclass(frozen=True)
class BucketFacts:
    bucket: Bucket
    finding: Finding  # the best reproducer's
    reproducer: str  # the upstream filetest (`triage export`)
    export_name: str
    reduced: bool
    labels: list[str]  # target labels its findings were made on
    run: str  # the run line of the finding ("" for none)
    outcomes: list[OutcomeRow]
    differences: list[Difference]
    panic: PanicRecord | None
    violations: list[ViolationRecord]
    c_abi: list[CAbiRecord]
    others: dict[str, str]  # the details no table shows (worker, exit, pc...)
    expectation: list[str]  # what `clif-util test FILE` does with the export
    steps: list[str]  # shell commands that reproduce it upstream
    expected: str
    actual: str
    bisect: list[str]  # note lines with a bisect result
    qemu: bool  # reproduces under QEMU user emulation (a target other than x86_64)


def gather(db: TriageDB, bucket_id: int) -> BucketFacts | None:
    bucket = db.get_bucket(bucket_id)
    if bucket is None:
        return None
    [finding] = db.bucket_findings(bucket_id, limit=1)
    clif = db.case_text(bucket.reduced_case_id or bucket.best_case_id) or ""
    labels = sorted({label for label, _flags in db.bucket_configs(bucket_id)})
    return facts(bucket, finding, clif, labels)


def facts(bucket: Bucket, finding: Finding, clif: str, labels: list[str]) -> BucketFacts:
    """The facts of `bucket`, whose reproducer (reduced if it was) is `clif`."""
    d = finding.details
    name = export_name(bucket)
    qemu = bucket.verdict in _RUN_TIME_ON_TARGET and bucket.target not in ("x86_64", INTERPRETER)
    shown = {"run", "outcomes", "verdicts", "differences", "panic", "blame", "violations", "c_abi"}
    return BucketFacts(
        bucket=bucket,
        finding=finding,
        reproducer=export_text(bucket, clif),
        export_name=name,
        reduced=bucket.reduced_case_id is not None,
        labels=labels,
        run=str(d.get("run", "")),
        outcomes=_outcomes(finding),
        differences=list(d.get("differences") or []),
        panic=d.get("panic"),
        violations=list(d.get("violations") or []),
        c_abi=list(d.get("c_abi") or []),
        others={k: _shown(k, v) for k, v in d.items() if k not in shown},
        expectation=expectation(bucket.target, bucket.verdict),
        steps=steps(bucket.target, name, qemu),
        expected=_expected(bucket, finding),
        actual=_actual(bucket, finding),
        bisect=[line for line in bucket.notes.splitlines() if "bisect" in line.lower()],
        qemu=qemu,
    )


def steps(target: str, file: str, qemu: bool) -> list[str]:
    """Commands, in a wasmtime checkout, that run upstream's clif-util on the
    export: natively, or built for `target` and run under qemu-user."""
    if not qemu:
        return [f"cargo run -p cranelift-tools --bin clif-util -- test {file}"]
    try:
        found = lookup(target)
    except UnknownTarget:
        return [f"cargo run -p cranelift-tools --bin clif-util -- test {file}"]
    triple = found.triple
    arch = triple.split("-")[0].removesuffix("gc")  # riscv64gc -> riscv64
    qemu_binary = found.qemu.binary if found.qemu else f"qemu-{arch}"
    env = triple.upper().replace("-", "_")
    return [
        f"rustup target add {triple}",
        f"CARGO_TARGET_{env}_LINKER={arch}-linux-gnu-gcc \\",
        f"  cargo build -p cranelift-tools --bin clif-util --target {triple}",
        f"{qemu_binary} -L /usr/{arch}-linux-gnu target/{triple}/debug/clif-util test {file}",
    ]


def _outcomes(finding: Finding) -> list[OutcomeRow]:
    d = finding.details
    verdicts: dict[str, str] = d.get("verdicts", {})
    blamed = set(finding.blame)
    rows = []
    for label, outcome in d.get("outcomes", {}).items():
        rows.append(
            OutcomeRow(label, verdicts.get(label, ""), _outcome_text(outcome), label in blamed)
        )
    return rows


def _outcome_text(outcome: Any) -> str:
    if isinstance(outcome, dict):
        return str(outcome.get("text", outcome))
    return str(outcome)


def _shown(key: str, value: Any) -> str:
    return f"{value:#x}" if key == "pc" and isinstance(value, int) else str(value)


def _outcome_of(finding: Finding, *labels: str) -> str | None:
    """The outcome of the first of `labels` the finding recorded one for."""
    outcomes = finding.details.get("outcomes", {})
    for name in labels:
        if name in outcomes:
            return _outcome_text(outcomes[name])
    return None


def _expected(bucket: Bucket, finding: Finding) -> str:
    target, verdict = bucket.target, bucket.verdict
    if verdict in _COMPILE_TIME:
        return f"Cranelift compiles the test case for {target} (or rejects it without panicking)."
    if verdict == Verdict.ABI_VIOLATION.value:
        return (
            f"The code compiled for {target} keeps the call contract of its calling "
            "convention (callee-saved registers, stack pointer and alignment, the "
            "caller's frame, argument extensions)."
        )
    if verdict == Verdict.C_ABI_MISMATCH.value:
        return f"Cranelift places every argument and return value where {target}'s C compiler does."
    if target == INTERPRETER:
        agreed = next(
            (r.outcome for r in _outcomes(finding) if r.label != INTERPRETER and not r.blamed),
            None,
        )
        return "The interpreter returns what the compiled targets return" + (
            f": {agreed}." if agreed else "."
        )
    interpreted = _outcome_of(finding, INTERPRETER)
    run = finding.details.get("run")
    what = f"`{run}` holds on {target}" if run else f"{target} behaves as the interpreter"
    return f"{what}" + (f" (the interpreter: {interpreted})." if interpreted else ".")


def _actual(bucket: Bucket, finding: Finding) -> str:
    d = finding.details
    target, verdict = bucket.target, bucket.verdict
    if panic := d.get("panic"):
        return (
            f"Cranelift panics compiling for {target}: `{panic.get('message')}` "
            f"at `{panic.get('location')}`."
        )
    if verdict == Verdict.ABI_VIOLATION.value:
        count = len(d.get("violations") or [])
        return f"The compiled code breaks the call contract ({count} violations below)."
    if verdict == Verdict.C_ABI_MISMATCH.value:
        count = len(d.get("c_abi") or [])
        return f"{count} values are placed elsewhere than the C compiler places them (below)."
    if "exit" in d:
        return f"The worker compiling or running the case died: {d['exit']}."
    own = _outcome_of(finding, finding.target, target)
    return f"{verdict} on {finding.target}" + (f": {own}." if own else ".")
