"""The records a campaign's processes share: the options a campaign runs
with, its running counters, a worker's configuration and the result of one
case a worker sends to the parent (pickled across the process boundary)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.gen.cells import Cell
from fuzz.triage.known import Registry
from fuzz.triage.records import FindingRecord

# Runner stages that run inside Cranelift (the rest is the harness).
CRANELIFT_STAGES = ("parse", "verify", "compile", "interpret")


@dataclass
class Options:
    targets: list[str]
    jobs: int
    seed: int
    engine: str = "random"
    duration: float | None = None  # seconds
    cases: int | None = None
    corpus: Path | None = None
    # a corpus case runs on the campaign targets its own `target` lines name;
    # True: on every campaign target, named or not
    corpus_all_targets: bool = False
    # known findings: a bucket that matches opens as `known`
    known: Registry = field(default_factory=lambda: Registry(None))
    hang_limit: float = 60.0  # wall-clock seconds for one case
    fault: str | None = None  # planted test-only fault (fuzz.faults)
    # the call contract checks (fuzz.pipeline.contract); off only to measure them
    contract: bool = True
    # the C-ABI oracle (fuzz.pipeline.cabi), within a share of each worker's CPU time
    c_abi: bool = True
    executor: str = "auto"  # fuzz.pipeline.routing.ExecutorChoice
    status_every: float = 30.0  # seconds between status lines off a terminal
    live: bool = False  # rich live display (a terminal)
    workdir: Path = Path("crashes")  # in-flight files and Hypothesis's database
    # atheris on the instrumented bridge (fuzz.coverage): its cache entry directory
    coverage: Path | None = None


@dataclass
class Stats:
    cases: int = 0
    executions: Counter[str] = field(default_factory=Counter)
    executor_runs: Counter[str] = field(default_factory=Counter)
    throws: Counter[str] = field(default_factory=Counter)  # landed in a handler, per target
    verdicts: Counter[str] = field(default_factory=Counter)
    debug_compiles: int = 0  # target lines compiled again with debug info
    debug_without_ranges: int = 0  # of them: no value-label range came back
    findings: int = 0
    buckets_hit: int = 0  # distinct buckets this run's findings went to
    new_buckets: int = 0  # of them: opened by this run, not known
    known_buckets: int = 0  # of them: known (corpus/known.toml)
    # unicorn's divergences that qemu-user refuted: recorded, never findings
    emulator_disagreements: int = 0
    emulator_buckets: int = 0  # buckets hit, not counted in buckets_hit
    hard_crashes: int = 0
    hangs: int = 0
    corpus_added: int = 0
    errors: int = 0  # corpus files unreadable or invalid
    # corpus files (or some of their target lines) written for another
    # release: skipped, never findings; reason -> files
    not_for_release: Counter[str] = field(default_factory=Counter)
    # generated cases Cranelift rejects: the generator's defects, by reason
    # (masked: one line per distinct reason, not per case)
    generator_defects: Counter[str] = field(default_factory=Counter)
    # per worker: (timings by stage, worker CPU seconds), latest report
    timings: dict[int, tuple[dict[str, float], float]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=time.process_time)
    cases_before: int = 0  # done in earlier runs of a resumed campaign

    def older_buckets(self) -> int:
        """Buckets hit that neither opened in this run nor are known."""
        return self.buckets_hit - self.new_buckets - self.known_buckets

    def rate(self) -> float:
        return self.cases / max(time.monotonic() - self.started, 1e-9)

    def stage_seconds(self, stage: str) -> float:
        return sum(
            seconds
            for timings, _cpu in self.timings.values()
            for name, seconds in timings.items()
            if name.split()[0] == stage
        )

    def split(self) -> tuple[float, float, float]:
        """Seconds inside Cranelift, total worker CPU, and the writer's CPU."""
        cranelift = sum(
            seconds
            for timings, _cpu in self.timings.values()
            for stage, seconds in timings.items()
            if stage.split()[0] in CRANELIFT_STAGES
        )
        workers = sum(cpu for _t, cpu in self.timings.values())
        return cranelift, workers, time.process_time() - self.cpu_started


@dataclass(frozen=True)
class WorkerConfig:
    engine: str
    targets: list[str]
    inflight: str  # file holding the case being run
    fault: str | None = None  # planted test-only fault (fuzz.faults)
    hypothesis_db: str | None = None
    corpus_all_targets: bool = False  # see Options
    contract: bool = True  # see Options
    c_abi: bool = False  # see Options (campaigns turn it on; replays in tests need not)
    executor: str = "auto"  # fuzz.pipeline.routing.ExecutorChoice


@dataclass
class CaseResult:
    """One case's result, from a worker to the parent."""

    origin: str  # generated, corpus, atheris, hypothesis
    seed: int | None = None
    error: str | None = None  # the case was unreadable or bad input
    # a corpus case's target lines (or the whole file) skipped as written
    # for another release, each with the reason (fuzz.features)
    not_for_release: list[str] = field(default_factory=list)
    path: str | None = None  # a corpus file's path
    executions: dict[str, int] = field(default_factory=dict)  # per target
    # target runs per executor (fuzz.pipeline.routing: unicorn, qemu-user),
    # referee runs included
    executor_runs: dict[str, int] = field(default_factory=dict)
    # per target: throws the unwinder stand-in landed in a handler
    throws: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    # target lines compiled again with debug info (fuzz.pipeline.debuginfo),
    # and of them those whose labels gave no value-label range back
    debug_compiles: int = 0
    debug_without_ranges: int = 0
    # callfuzz's own failures (harness errors): "target: detail", kept for
    # diagnosis in the campaign directory, never findings
    harness_errors: list[str] = field(default_factory=list)
    findings: list[FindingRecord] = field(default_factory=list)  # one per bucket
    cells: list[Cell] = field(default_factory=list)
    # the case's text when its cells are new to the worker (the parent may add
    # it to the corpus); findings carry their own text
    clif: str | None = None
    lines: int = 0
