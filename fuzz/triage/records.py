"""Plain records: what the campaign writer hands the store (FindingRecord,
Progress) and what `TriageDB.summary` returns (Summary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from fuzz.triage.schema import Campaign


class OutcomeRecord(TypedDict, total=False):
    """One executor's outcome as a finding stores it."""

    kind: str
    text: str
    values: list[str]
    detail: str
    pc: int


class Difference(TypedDict):
    index: int
    type: str
    expected: str
    actual: str


ViolationRecord = TypedDict(
    "ViolationRecord",
    {"kind": str, "edge": str, "where": str, "class": str, "expected": str, "actual": str},
)


class PanicRecord(TypedDict):
    message: str
    location: str


class CAbiRecord(TypedDict):
    """One value the C-ABI oracle found misplaced (fuzz.pipeline.cabi.mismatch.Mismatch)."""

    direction: str
    convention: str
    position: str
    index: int
    c_type: str
    expected: str  # bytes as hex pairs
    actual: str
    source: str


class FindingDetails(TypedDict, total=False):
    """What a reviewer needs about one finding (stored as JSON): the run,
    every executor's outcome and verdict, the values that differ, the panic,
    the faulting pc; for a worker's death, which worker, how and its limit."""

    run: str
    outcomes: dict[str, OutcomeRecord]
    verdicts: dict[str, str]
    blame: list[str]
    call_shape: str
    differences: list[Difference]
    pc: int
    panic: PanicRecord
    violations: list[ViolationRecord]
    c_abi: list[CAbiRecord]
    worker: int
    exit: str
    limit_seconds: float


@dataclass(kw_only=True)
class FindingFields:
    """The fields a finding row takes as they are (columns of `findings`)."""

    target: str  # label with ISA flags: "aarch64 has_lse"
    flags: list[str]
    verdict: str
    details: FindingDetails
    blame: list[str]
    origin: str = "generated"
    seed: int | None = None
    cranelift_version: str


@dataclass(kw_only=True)
class FindingRecord(FindingFields):
    """One finding of a campaign, before it is stored."""

    clif: str
    bucket_key: str
    bucket_title: str
    # False: only count the hit (the bucket already holds enough examples of
    # this bug; a night can hit one bug millions of times)
    keep: bool = True
    # the registry entry of known findings it matches (fuzz.triage.known):
    # its bucket opens with status `known`, this reference and this note
    known_ref: str | None = None
    known_note: str = ""
    # a known bug seen after its fix (fuzz.triage.known): the new bucket's note
    regression_note: str = ""


@dataclass
class Progress:
    """Campaign counters after a batch (absolute values, not deltas); each
    field is a column of `campaigns`."""

    cases_done: int
    next_seed: int
    executions: dict[str, int]
    verdicts: dict[str, int]
    cases_per_second: float


@dataclass(frozen=True)
class Summary:
    """Counts for `callfuzz triage stats`."""

    buckets_by_status: dict[str, int]
    buckets_by_target: dict[str, int]
    buckets_by_verdict: dict[str, int]
    findings: int
    cases: int
    campaigns: tuple[Campaign, ...]
