"""A campaign: worker processes run cases, this process hands out work,
watches the workers, records results in the triage database and shows progress.

Nothing is lost but the cases in flight: results reach the database in small
transactions (at least once a second), the random engine's resume cursor only
moves past seeds whose results are stored, and a worker that dies or hangs is
replaced after its case is recorded as a finding of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import multiprocessing as mp
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from types import FrameType
from typing import Any

from fuzz import scratch
from fuzz.bridge.load import under_test
from fuzz.campaign.progress import Display
from fuzz.campaign.state import CaseResult, Options, Stats, WorkerConfig
from fuzz.campaign.worker import C_ABI_SEEDS, c_abi_seed, generated, worker_main
from fuzz.pipeline.oracle import Verdict
from fuzz.targets import TARGETS
from fuzz.triage.buckets import mask, worker_death_bucket
from fuzz.triage.records import FindingRecord, Progress
from fuzz.triage.store import TriageDB

# Findings stored per bucket per campaign run; further hits only count (and
# a smaller reproducer is stored anyway).
KEPT_PER_BUCKET = 20
HARNESS_LOG = "harness-errors.log"
SEED_BLOCK = 8  # seeds handed out at once: small, so a dead worker loses little
FLUSH_EVERY = 1.0  # seconds between database transactions
CORPUS_CHUNK = 4


@dataclass
class Slot:
    """One worker process and what it is doing."""

    index: int
    process: BaseProcess
    conn: Connection
    shared: SynchronizedArray[float]  # [start time of the current case, its seed]
    inflight: Path
    seeds: list[int] = field(default_factory=list)  # handed out, not yet reported
    files: list[str] = field(default_factory=list)
    busy: bool = False
    ready: bool = False


class Campaign:
    def __init__(
        self, db: TriageDB, options: Options, campaign_id: int, first_seed: int, next_seed: int
    ) -> None:
        self.db = db
        self.opt = options
        self.id = campaign_id
        self.ctx = mp.get_context("spawn")  # no inherited threads, locks or emulators
        self.slots: list[Slot] = []
        self.stats = Stats()
        self.pending: list[FindingRecord] = []
        self.first_seed = first_seed  # `--cases N` counts from here
        self.next_seed = next_seed  # next seed to hand out
        self.done_seeds: set[int] = set()
        self.watermark = next_seed  # every seed below is recorded
        self.requeued: list[int] = []
        self.corpus_files: list[str] = []
        self.stopping = False
        self.stop_reason = ""
        self.cells_seen: set[tuple[str, ...]] = set()
        self.new_bucket_ids: list[int] = []  # opened by this run, not known
        self.bucket_hits: set[str] = set()  # keys of the buckets this run's findings went to
        self.known_hits: dict[str, str] = {}  # known bucket key -> registry entry id
        self.emulator_keys: set[str] = set()  # emulator disagreement buckets (not findings)
        self.kept: Counter[str] = Counter()  # findings stored per bucket key
        self.smallest: dict[str, int] = {}  # lines of the smallest stored case per key
        self.workdir = options.workdir / f"campaign-{campaign_id}"
        self.display = Display(options, self.stats)

    # -- workers --------------------------------------------------------------

    def spawn(self, index: int) -> Slot:
        parent, child = self.ctx.Pipe()
        shared = self.ctx.Array("d", 2)
        inflight = self.workdir / f"worker-{index}.clif"
        config = WorkerConfig(
            engine=self.opt.engine,
            targets=self.opt.targets,
            inflight=str(inflight),
            fault=self.opt.fault,
            hypothesis_db=str(self.workdir / "hypothesis"),
            corpus_all_targets=self.opt.corpus_all_targets,
            contract=self.opt.contract,
            c_abi=self.opt.c_abi,
            executor=self.opt.executor,
        )
        process = self.ctx.Process(
            target=worker_main, args=(config, child, shared), name=f"callfuzz-worker-{index}"
        )
        process.start()
        child.close()
        return Slot(index, process, parent, shared, inflight)

    def give_work(self, slot: Slot) -> None:
        if self.stopping or slot.busy or not slot.ready:
            return
        if self.corpus_files:
            slot.files = self.corpus_files[:CORPUS_CHUNK]
            del self.corpus_files[:CORPUS_CHUNK]
            slot.conn.send(("files", slot.files))
            slot.busy = True
            return
        if self.opt.cases == 0:
            return  # the corpus only
        if self.opt.engine != "random":
            slot.conn.send(("engine",))  # it runs on its own from now on
            slot.busy = True
            return
        seeds = self._take_seeds()
        if seeds:
            slot.seeds = seeds
            slot.conn.send(("seeds", seeds))
            slot.busy = True

    def _take_seeds(self) -> list[int]:
        if self.requeued:
            seeds, self.requeued = self.requeued[:SEED_BLOCK], self.requeued[SEED_BLOCK:]
            return seeds
        limit = self._seed_limit()
        block = SEED_BLOCK
        if self.opt.c_abi and c_abi_seed(self.next_seed):
            # a run of C-ABI seeds goes to one worker whole: its C sides are
            # compiled in one compiler run per target (a run costs ~50 ms
            # each, whatever its size)
            block = C_ABI_SEEDS - self.next_seed % C_ABI_SEEDS
        count = min(block, limit - self.next_seed) if limit is not None else block
        if count <= 0:
            return []
        seeds = list(range(self.next_seed, self.next_seed + count))
        self.next_seed += count
        return seeds

    def _seed_limit(self) -> int | None:
        if self.opt.cases is None:
            return None
        return self.first_seed + self.opt.cases

    # -- results --------------------------------------------------------------

    def on_message(self, slot: Slot, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            slot.ready = True
        elif kind == "cases":
            for result in message[1]:
                self.on_case(slot, result)
        elif kind in ("timings", "bye"):
            self.stats.timings[slot.index] = (message[1], message[2])
        elif kind == "idle":
            slot.busy = False
            slot.files = []

    def on_case(self, slot: Slot, result: CaseResult) -> None:
        seed = result.seed
        if seed is not None and seed in slot.seeds:
            slot.seeds.remove(seed)
            self._done(seed)
        if result.error is not None:
            self._count_error(result)
            return
        if result.not_for_release:
            self._count_not_for_release(result)
        self.stats.cases += 1
        self.stats.executions.update(result.executions)
        self.stats.executor_runs.update(result.executor_runs)
        self.stats.throws.update(result.throws)
        self.stats.debug_compiles += result.debug_compiles
        self.stats.debug_without_ranges += result.debug_without_ranges
        self.stats.verdicts.update(result.verdicts)
        if result.harness_errors:
            self._log_harness_errors(result)
        for finding in result.findings:
            self.pending.append(self._record(finding))
        cells = set(result.cells)
        if result.origin == "corpus":
            self.cells_seen |= cells
        elif cells - self.cells_seen:
            self.cells_seen |= cells
            if not result.findings and result.clif is not None:
                self._add_to_corpus(result.clif, "cell")

    def _record(self, finding: FindingRecord) -> FindingRecord:
        """The finding, in its known bucket if the registry knows it, kept or
        only counted (a bucket keeps a few per run). An emulator disagreement
        is kept for reference and counted apart: it is never a finding."""
        if finding.verdict == Verdict.EMULATOR_DISAGREEMENT.value:
            self.stats.emulator_disagreements += 1
            if finding.bucket_key not in self.emulator_keys:
                self.emulator_keys.add(finding.bucket_key)
                self.stats.emulator_buckets += 1
        else:
            self.stats.findings += 1
            finding = self.opt.known.apply(finding)
            self._count_bucket(finding)
        key, lines = finding.bucket_key, finding.clif.count("\n")
        keep = self.kept[key] < KEPT_PER_BUCKET or lines < self.smallest.get(key, lines)
        if keep:
            self.kept[key] += 1
            self.smallest[key] = min(lines, self.smallest.get(key, lines))
        return dataclasses.replace(finding, keep=keep)

    def _count_bucket(self, finding: FindingRecord) -> None:
        key = finding.bucket_key
        if key in self.bucket_hits:
            return
        self.bucket_hits.add(key)
        self.stats.buckets_hit += 1
        if finding.known_ref is not None:
            self.known_hits[key] = finding.known_ref
            self.stats.known_buckets += 1

    def _done(self, seed: int) -> None:
        self.done_seeds.add(seed)
        while self.watermark in self.done_seeds:
            self.done_seeds.discard(self.watermark)
            self.watermark += 1

    def _add_to_corpus(self, text: str, why: str) -> None:
        if self.opt.corpus is None:
            return
        folder = self.opt.corpus / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{why}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.clif"
        (folder / name).write_text(text)
        self.stats.corpus_added += 1

    def flush(self) -> None:
        progress = Progress(
            cases_done=self.stats.cases_before + self.stats.cases,
            next_seed=self.watermark,
            executions=dict(self.stats.executions),
            verdicts=dict(self.stats.verdicts),
            cases_per_second=self.stats.rate(),
        )
        created = self.db.record_batch(self.id, self.pending, progress)
        keys = self.db.bucket_keys(created) if created else {}
        new = [
            i
            for i in created
            if keys[i] not in self.known_hits and keys[i] not in self.emulator_keys
        ]
        self.new_bucket_ids += new
        self.stats.new_buckets += len(new)
        first = {keys[i] for i in new}
        for record in self.pending:
            if record.bucket_key in first:
                first.discard(record.bucket_key)  # its first reproducer only
                if record.origin != "corpus":  # a corpus case is in the corpus already
                    self._add_to_corpus(record.clif, "bucket")
        self.pending = []

    def _count_error(self, result: CaseResult) -> None:
        """A case that could not be run: a corpus file's problem, noted
        once per file; a generated case's is the generator's defect, noted
        once per distinct reason and counted."""
        error = result.error or ""
        if result.origin == "corpus":
            self.stats.errors += 1
            self.display.note(f"skipped: {error}")
            return
        reason = mask(error.partition(": ")[2] or error)[:160]
        if reason not in self.stats.generator_defects:
            self.display.note(f"generator defect (Cranelift rejects a generated case): {reason}")
        self.stats.generator_defects[reason] += 1

    def _count_not_for_release(self, result: CaseResult) -> None:
        """A corpus file, or some of its target lines, written for another
        release: skipped and counted by reason, never a bucket."""
        reasons = set(result.not_for_release)
        self.stats.not_for_release.update(reasons)
        self.display.note(f"not for this release: {result.path}: {'; '.join(sorted(reasons))}")

    def _log_harness_errors(self, result: CaseResult) -> None:
        """callfuzz's own failures: kept with the case's seed in the campaign
        directory (never in the triage database: they are not findings)."""
        path = self.workdir / HARNESS_LOG
        first = not path.exists()
        with path.open("a") as log:
            for line in result.harness_errors:
                log.write(f"seed {result.seed} ({result.origin}): {line}\n")
        if first:
            self.display.note(
                f"harness error (callfuzz's own; all in {path}): {result.harness_errors[0][:160]}"
            )

    # -- deaths and hangs -----------------------------------------------------

    def check_slot(self, slot: Slot) -> None:
        started = slot.shared[0]
        hung = started and time.monotonic() - started > self.opt.hang_limit
        if slot.process.is_alive() and not hung:
            return
        if hung:
            slot.process.kill()
        slot.process.join(5)
        scratch.remove_stale()  # what a killed worker left in the temporary directory
        self._drain(slot)  # results it sent before it died still count
        code = slot.process.exitcode
        if code == 0 and not started:
            return  # a clean exit after "stop"
        how = "hang" if hung else _death(code)
        self.record_death(slot, Verdict.HANG if hung else Verdict.HARD_CRASH, how, bool(started))
        slot.conn.close()
        if not self.stopping:
            replacement = self.spawn(slot.index)
            self.slots[self.slots.index(slot)] = replacement

    def record_death(self, slot: Slot, kind: Verdict, how: str, mid_case: bool) -> None:
        seed = int(slot.shared[1]) if mid_case and slot.shared[1] >= 0 else None
        if seed is not None:
            text = generated(seed, [TARGETS[t] for t in self.opt.targets])
        else:
            text = _read(slot.inflight) if mid_case else ""
        if kind is Verdict.HANG:
            self.stats.hangs += 1
        else:
            self.stats.hard_crashes += 1
        if seed is not None and seed in slot.seeds:
            slot.seeds.remove(seed)
            self._done(seed)
        self.requeued += slot.seeds  # the rest of its block runs elsewhere
        self.corpus_files += slot.files[1:] if slot.files else []
        self.display.note(f"worker {slot.index}: {kind} ({how})")
        if not text:
            return
        target = _target_of(text) or "?"
        bucket = worker_death_bucket(target, kind, how)
        self.pending.append(
            self._record(
                FindingRecord(
                    clif=text,
                    target=target,
                    flags=[],
                    verdict=kind.value,
                    details={
                        "worker": slot.index,
                        "exit": how,
                        "limit_seconds": self.opt.hang_limit,
                    },
                    blame=[target],
                    bucket_key=bucket.key,
                    bucket_title=bucket.title,
                    cranelift_version=under_test().describe(),
                    origin="generated" if seed is not None else self.opt.engine,
                    seed=seed,
                )
            )
        )

    # -- the loop -------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_reason = reason

    def finished_work(self) -> bool:
        if self.opt.cases == 0:  # the corpus only
            return not self.corpus_files and not any(s.busy for s in self.slots)
        if self.opt.engine != "random":
            return self.opt.cases is not None and self.stats.cases >= self.opt.cases
        limit = self._seed_limit()
        return (
            limit is not None
            and self.watermark >= limit
            and not self.corpus_files
            and not any(s.busy for s in self.slots)
        )

    def run(self, corpus_files: list[str]) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.corpus_files = list(corpus_files)
        self.slots = [self.spawn(i) for i in range(self.opt.jobs)]
        last_flush = time.monotonic()
        with self.display:
            while True:
                if self.opt.duration and time.monotonic() - self.stats.started > self.opt.duration:
                    self.request_stop("time is up")
                if self.finished_work():
                    self.request_stop("all cases done")
                if self.stopping:
                    break
                for slot in self.slots:
                    self.give_work(slot)
                self._poll(0.2)
                for slot in list(self.slots):
                    self.check_slot(slot)
                # findings go out at once; counters and the cursor at least every second
                if self.pending or time.monotonic() - last_flush > FLUSH_EVERY:
                    self.flush()
                    last_flush = time.monotonic()
                self.display.update()
            self._shut_down()
            self.flush()
            self.display.update()
        return self.stop_reason

    def _poll(self, timeout: float) -> None:
        conns = {slot.conn: slot for slot in self.slots}
        for ready in wait(list(conns), timeout):
            self._drain(conns[ready])  # type: ignore[index]

    def _drain(self, slot: Slot) -> None:
        try:
            while slot.conn.poll():
                self.on_message(slot, slot.conn.recv())
        except (EOFError, OSError):
            pass  # died: check_slot records it

    def _shut_down(self) -> None:
        """Let each worker finish its current case, then collect what it sends."""
        for slot in self.slots:
            with contextlib.suppress(OSError):
                slot.conn.send(("stop",))
        deadline = time.monotonic() + max(5.0, min(self.opt.hang_limit, 30.0))
        while any(s.process.is_alive() for s in self.slots) and time.monotonic() < deadline:
            self._poll(0.1)
        self._poll(0)
        for slot in self.slots:
            if slot.process.is_alive():
                slot.process.kill()  # stuck: drop its in-flight case
            slot.process.join(5)
        scratch.remove_stale()  # workers leave through os._exit: no exit handlers ran


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _target_of(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("target "):
            return line.split()[1]
    return None


# -- entry point ----------------------------------------------------------------


def corpus_cases(corpus: Path | None) -> list[str]:
    if corpus is None or not corpus.is_dir():
        return []
    return sorted(str(p) for p in corpus.rglob("*.clif"))


def run_campaign(db: TriageDB, options: Options, resume: int | None) -> tuple[Campaign, str]:
    """Start (or resume) a campaign and run it to its end or to a signal."""
    if resume is not None:
        info = db.get_campaign(resume)
        assert info is not None
        db.reopen_campaign(info.id)
        campaign = Campaign(db, options, info.id, info.seed, info.next_seed)
        campaign.stats.cases_before = info.cases_done
        corpus: list[str] = []  # replayed when the campaign began
    else:
        cid = db.start_campaign(
            host=socket.gethostname(),
            cranelift_version=under_test().describe(),
            targets=options.targets,
            flags={
                "fault": options.fault,
                "hang_limit": options.hang_limit,
                "corpus_all_targets": options.corpus_all_targets,
                "known": str(options.known.path) if options.known.path else None,
            },
            engine=options.engine,
            seed=options.seed,
            jobs=options.jobs,
        )
        campaign = Campaign(db, options, cid, options.seed, options.seed)
        corpus = corpus_cases(options.corpus)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        campaign.request_stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        reason = campaign.run(corpus)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    interrupted = reason in ("SIGINT", "SIGTERM")
    db.finish_campaign(campaign.id, "interrupted" if interrupted else "finished")
    return campaign, reason
