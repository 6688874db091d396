"""A campaign worker process: generate (or read) a case, run it through the
pipeline, and send a compact result to the campaign's writer.

Workers never touch the database. Before each case a worker writes the case's
text to its in-flight file and its start time to shared memory, so that if it
dies inside Cranelift or hangs, the parent still has the case to record.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any, TextIO

from fuzz import _cranelift
from fuzz.bridge.load import under_test
from fuzz.campaign.state import CaseResult, WorkerConfig
from fuzz.faults import hooks
from fuzz.features import lacking
from fuzz.gen.cells import Cell, module_cells
from fuzz.gen.choices import ByteSource, RandomSource, Source
from fuzz.gen.generate import generate
from fuzz.pipeline import debuginfo
from fuzz.pipeline.cabi.check import precompile
from fuzz.pipeline.filetest import BadInput, FileTest, TargetLine, parse_text
from fuzz.pipeline.link import EDGE, FAR, NEAR
from fuzz.pipeline.oracle import Verdict, is_recorded
from fuzz.pipeline.routing import ExecutorChoice, for_installed_qemu
from fuzz.pipeline.runner import (
    C_ABI_DIRECTIVE,
    C_ABI_RUN,
    NOT_FOR_RELEASE,
    Runner,
    default_lines,
    line_flags,
    release_lines,
    release_needs,
)
from fuzz.targets import TARGETS, Target
from fuzz.triage.attribution import attributed_bucket
from fuzz.triage.buckets import details
from fuzz.triage.records import FindingRecord
from fuzz.versions import Version, parse_version

TIMINGS_EVERY = 2.0  # seconds between timing reports
# The C-ABI oracle checks one generated case in this many: a C compiler run
# costs as much as a few cases, so checking each would halve the campaign's
# throughput (measured: README). A count, not a time share, so a seed's
# result is the same in every run. Checked seeds come in runs of C_ABI_SEEDS
# consecutive ones (a seed block), so a worker compiles their C sides in one
# compiler run per target.
C_ABI_EVERY = 16
C_ABI_SEEDS = 32
BATCH = 16  # results per message at most
BATCH_SECONDS = 0.05


class CaseRunner:
    """Runs one case and summarises it; keeps the runner (emulators, ISAs) warm."""

    def __init__(self, config: WorkerConfig, shared: SynchronizedArray[float] | None) -> None:
        self.config = config
        self.shared = shared
        self.runner = Runner(
            fault=hooks(config.fault),
            contract=config.contract,
            executor=ExecutorChoice(config.executor),
        )
        self.targets = [TARGETS[name] for name in config.targets]
        self.wanted = [TargetLine(t) for t in self.targets]
        self.inflight = Path(config.inflight)
        self._inflight_file: TextIO | None = None
        self.cpu_start = time.process_time()
        self.cells_seen: set[Cell] = set()
        self.c_abi_count = 0  # cases seen without a seed (atheris, hypothesis)
        self.cranelift_version = under_test().describe()

    def begin(self, text: str, index: float) -> None:
        # A seeded case is regenerated from its seed by the parent; any other
        # case is kept in the in-flight file (one open handle, overwritten).
        if index < 0:
            if self._inflight_file is None:
                self._inflight_file = self.inflight.open("w")
            self._inflight_file.seek(0)
            self._inflight_file.write(text)
            self._inflight_file.truncate()
            self._inflight_file.flush()
        if self.shared is not None:
            self.shared[0] = time.monotonic()
            self.shared[1] = index

    def end(self) -> None:
        if self.shared is not None:
            self.shared[0] = 0.0

    def run(self, text: str, origin: str, seed: int | None, index: float) -> CaseResult:
        self.begin(text, index)
        try:
            return self._summarise(text, origin, seed)
        finally:
            self.end()

    def _summarise(self, text: str, origin: str, seed: int | None) -> CaseResult:
        out = CaseResult(origin=origin, seed=seed)
        release = release_under_test()
        if origin == "corpus" and not for_release(text, release):
            # another release's reproducer: nothing to run here
            out.not_for_release = ["`; callfuzz: releases` names other releases"]
            return out
        if origin == "corpus" and (missing := lacking(text, release, isa_flags=())):
            out.not_for_release = [release_needs(missing)]  # the reader may not read it
            return out
        try:
            with self.runner.stage("parse"):
                ft = parse_text(text)
            if origin == "corpus":
                # a file written for a newer Cranelift: the target lines whose
                # code this release cannot compile are not for it (the feature
                # table decides, as it does for the generator)
                lines, skipped = release_lines(
                    ft, corpus_lines(ft, self.wanted, self.config.corpus_all_targets), release
                )
                out.not_for_release = [
                    f"{s.line}: {s.reason.removeprefix(NOT_FOR_RELEASE)}" for s in skipped
                ]
            else:
                lines = default_lines(ft, None)
            before = self.runner.executor_runs.copy()
            thrown = self.runner.throws.copy()
            debug_before = self.runner.debug_compiles
            unranged_before = self.runner.debug_without_ranges
            self.runner.c_abi = self.wants_c_abi(text, origin, seed)
            results = self.runner.run_file(ft, lines) if lines else []
            out.executor_runs = dict(self.runner.executor_runs - before)
            out.throws = dict(self.runner.throws - thrown)
            out.debug_compiles = self.runner.debug_compiles - debug_before
            out.debug_without_ranges = self.runner.debug_without_ranges - unranged_before
        except BadInput as err:
            out.error = str(err)
            return out
        executions: Counter[str] = Counter()
        verdicts: Counter[str] = Counter()
        findings: dict[str, FindingRecord] = {}
        flags_of = {line.label: line_flags(ft, line) for line in lines}
        line_of = {line.label: line for line in lines}
        for result in results:
            for label, verdict in result.judgement.verdicts.items():
                verdicts[verdict.value] += 1
                if verdict is Verdict.HARNESS_ERROR:
                    detail = result.outcomes[label].detail
                    out.harness_errors.append(f"{label}: {result.command.text}: {detail}")
                if not result.command.text.startswith(C_ABI_RUN):
                    executions[label.split()[0]] += 1
                if not is_recorded(verdict, label in result.judgement.blame):
                    continue
                bucket = attributed_bucket(self.runner, ft, line_of.get(label), label, result)
                if bucket.key in findings:
                    continue  # one finding per bucket per case: three run lines, one bug
                findings[bucket.key] = FindingRecord(
                    clif=text,
                    target=label,
                    flags=flags_of.get(label, ft.shared_flags),
                    verdict=verdict.value,
                    details=details(ft, result, label),
                    blame=result.judgement.blame,
                    bucket_key=bucket.key,
                    bucket_title=bucket.title,
                    cranelift_version=self.cranelift_version,
                    origin=origin,
                    seed=seed,
                )
        out.executions = dict(executions)
        out.verdicts = dict(verdicts)
        out.findings = list(findings.values())
        cells = module_cells(lines[0].target.name, ft.functions) if lines else set()
        out.cells = sorted(cells)
        if not cells <= self.cells_seen:
            # new to this worker, maybe to the campaign: the parent decides
            # whether it joins the corpus, and needs the text for that
            self.cells_seen |= cells
            out.clif = text
        out.lines = text.count("\n")
        return out

    def wants_c_abi(self, text: str, origin: str, seed: int | None) -> bool:
        """Whether a case gets the C-ABI check: one generated case in
        C_ABI_EVERY, and the corpus files that are C-ABI reproducers (the
        others were kept for other bugs; checking them would only find the
        C-ABI rules again under new names)."""
        if not self.config.c_abi:
            return False
        if origin == "corpus":
            return C_ABI_DIRECTIVE in text
        if seed is not None:
            return c_abi_seed(seed)
        self.c_abi_count += 1
        return self.c_abi_count % C_ABI_EVERY == 0

    def prepare_c_abi(self, texts: Sequence[str]) -> None:
        """Compile the C sides of the cases about to get the C-ABI check
        together (one compiler run per target instead of one per case)."""
        files = []
        for text in texts:
            try:
                files.append(parse_text(text).functions)
            except Exception:  # noqa: BLE001 - the case's own run reports it
                continue
        with self.runner.stage("c-abi build"):
            precompile(files, self.targets)

    def timings(self) -> dict[str, float]:
        """CPU seconds per stage (what the campaign's CPU split adds up)."""
        return dict(self.runner.cpu)


def c_abi_seed(seed: int) -> bool:
    """Whether a generated seed gets the C-ABI check: one run of C_ABI_SEEDS
    consecutive seeds in every C_ABI_EVERY * C_ABI_SEEDS."""
    return (seed // C_ABI_SEEDS) % C_ABI_EVERY == 0


def corpus_lines(
    ft: FileTest, wanted: Sequence[TargetLine], all_targets: bool = False
) -> list[TargetLine]:
    """The target lines a corpus case runs on: its own `target` lines (with
    their ISA flags) whose target the campaign runs, not the targets it does
    not name (a case written for aarch64 with `apple_aarch64` would only find
    the known x86_64 panic again). A file without target lines runs on every
    campaign target; `all_targets`: so does every file (with its own flags
    where it names the target)."""
    if all_targets or not ft.targets:
        return default_lines(ft, wanted)
    names = {want.target.name for want in wanted}
    return [line for line in ft.targets if line.target.name in names]


# `; callfuzz: releases 0.128, 0.129`: a corpus file that only reads (or only
# shows its finding) on those release lines; campaigns on others skip it
RELEASES_DIRECTIVE = re.compile(r"^; callfuzz: releases (.+)$", re.MULTILINE)


def for_release(text: str, version: Version) -> bool:
    """Whether a corpus file is meant for the release `version`."""
    found = RELEASES_DIRECTIVE.search(text)
    if found is None:
        return True
    lines = {parse_version(word.strip())[:2] for word in found.group(1).split(",")}
    return version[:2] in lines


@cache
def release_under_test() -> Version:
    """The release of the Cranelift under test: the generator uses only what it has."""
    return parse_version(_cranelift.version())


# One generated case in LAYOUT_EVERY is linked FAR, one EDGE (by seed, so
# the same in every run): callees placed apart (fuzz.pipeline.link.LAYOUTS)
LAYOUT_EVERY = 16
_LAYOUT_BY_SEED = {5: FAR, 13: EDGE}


def layout_for_seed(seed: int) -> str:
    # mixed (Fibonacci hashing), so the layouts do not follow the target,
    # which is the seed modulo the number of targets
    mixed = ((seed * 0x9E37_79B9_7F4A_7C15) & ((1 << 64) - 1)) >> 32
    return _LAYOUT_BY_SEED.get(mixed % LAYOUT_EVERY, NEAR)


def generated(seed: int, targets: Sequence[Target]) -> str:
    """The random engine's case for a seed: the same text in any process,
    with the layout its seed gives (`; callfuzz: layout far`) where not near,
    and the debug compile where its seed gets one (fuzz.pipeline.debuginfo)."""
    target = for_installed_qemu(targets[seed % len(targets)])
    text = generate(RandomSource(seed), target, version=release_under_test()).text
    layout = layout_for_seed(seed)
    text = text if layout == NEAR else f"; callfuzz: layout {layout}\n{text}"
    return debuginfo.with_directive(text, seed)


def from_bytes(data: bytes, targets: Sequence[Target]) -> str:
    """Any byte string is a case: the first byte picks the target."""
    target = targets[data[0] % len(targets)] if data else targets[0]
    text = generate(
        ByteSource(data[1:]), for_installed_qemu(target), version=release_under_test()
    ).text
    return debuginfo.with_directive(text, data)


def from_source(src: Source, targets: Sequence[Target]) -> str:
    target = for_installed_qemu(targets[src.integer(0, len(targets) - 1)])
    text = generate(src, target, version=release_under_test()).text
    return debuginfo.with_directive(text, text.encode())


# -- the process --------------------------------------------------------------


class Outbox:
    """Results go to the parent in batches (a seed block, or 50 ms of other
    engines' cases): one pipe message per batch, not per case, since the
    writer's CPU is harness time. A worker that dies loses its unsent batch:
    those seeds are still unreported, so the parent runs them again."""

    def __init__(self, conn: Connection, cases: CaseRunner) -> None:
        self.conn = conn
        self.cases = cases
        self.batch: list[CaseResult] = []
        self.sent = self.timed = time.monotonic()

    def cpu(self) -> tuple[dict[str, float], float]:
        return self.cases.timings(), time.process_time() - self.cases.cpu_start

    def add(self, result: CaseResult) -> None:
        self.batch.append(result)
        if len(self.batch) >= BATCH or time.monotonic() - self.sent > BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        now = time.monotonic()
        if self.batch:
            self.conn.send(("cases", self.batch))
            self.batch = []
        self.sent = now
        if now - self.timed > TIMINGS_EVERY:
            self.timed = now
            self.conn.send(("timings", *self.cpu()))


def worker_main(config: WorkerConfig, conn: Connection, shared: SynchronizedArray[float]) -> None:
    # Ctrl-C reaches the whole process group: the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cases = CaseRunner(config, shared)
    outbox = Outbox(conn, cases)
    engines: dict[str, Callable[[], None]] = {
        "atheris": lambda: _atheris(conn, cases, outbox),
        "hypothesis": lambda: _hypothesis(conn, cases, outbox, config.hypothesis_db),
    }
    conn.send(("ready", os.getpid()))
    # Every engine starts by serving the parent's work (the corpus replay,
    # and for `random` every seed); the others then run on their own.
    if _serve(conn, cases, outbox) == "engine":
        engines[config.engine]()
    _leave(conn, outbox)


def _serve(conn: Connection, cases: CaseRunner, outbox: Outbox) -> str:
    """Work handed out by the parent (seed blocks, corpus files) until it says
    "stop" or "engine" (run the engine on your own)."""
    while True:
        message = conn.recv()
        if message[0] in ("stop", "engine"):
            return str(message[0])
        if message[0] == "files":
            for path in message[1]:
                try:
                    text = Path(path).read_text()
                except (OSError, UnicodeDecodeError) as err:
                    outbox.add(CaseResult(origin="corpus", error=f"{path}: {err}", path=path))
                    continue
                result = cases.run(text, "corpus", None, -1)
                result.path = path
                outbox.add(result)
        elif message[0] == "seeds":
            with cases.runner.stage("generate"):
                texts = [(seed, generated(seed, cases.targets)) for seed in message[1]]
            if cases.config.c_abi:
                cases.prepare_c_abi([text for seed, text in texts if c_abi_seed(seed)])
            for seed, text in texts:
                outbox.add(cases.run(text, "generated", seed, seed))
        outbox.flush()
        conn.send(("idle",))


def _stop_requested(conn: Connection) -> bool:
    return conn.poll() and conn.recv()[0] == "stop"


def _instrument_generator(atheris: Any) -> None:
    """Coverage over the generator only: its functions are already imported,
    so their code objects are patched in place."""
    import inspect

    import fuzz.gen.choices
    import fuzz.gen.generate

    for module in (fuzz.gen.generate, fuzz.gen.choices):
        for _name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                atheris.instrument_func(obj)
            elif inspect.isclass(obj):
                for member in vars(obj).values():
                    if inspect.isfunction(member):
                        atheris.instrument_func(member)


def _leave(conn: Connection, outbox: Outbox) -> None:
    """The engines below never return on their own: report and exit."""
    outbox.flush()
    conn.send(("bye", *outbox.cpu()))
    conn.close()
    os._exit(0)


def _atheris(conn: Connection, cases: CaseRunner, outbox: Outbox) -> None:
    """libFuzzer (through atheris) mutates the byte strings the generator decodes;
    coverage comes from the instrumented Python generator and, in a worker
    started on the instrumented bridge (`fuzz --coverage`), from Cranelift's
    own edges: their counters are recorded after each input, and libFuzzer's
    corpus is kept in the campaign's directory (and replayed on resume)."""
    import sys

    import atheris

    from fuzz.coverage import live

    _instrument_generator(atheris)
    workdir = Path(cases.config.inflight).parent
    recorder = live.recorder(workdir)
    args = [sys.argv[0], "-max_len=4096", "-rss_limit_mb=0"]
    if recorder is not None:
        args += live.libfuzzer_args(workdir)
        live.log_to_file(workdir)

    def one_input(data: bytes) -> None:
        if _stop_requested(conn):
            if recorder is not None:
                recorder.save()
            _leave(conn, outbox)
        outbox.add(cases.run(from_bytes(data, cases.targets), "atheris", None, -1))
        if recorder is not None:
            recorder.take()

    atheris.Setup(args, one_input)
    atheris.Fuzz()


def _hypothesis(
    conn: Connection,
    cases: CaseRunner,
    outbox: Outbox,
    db_path: str | None,
) -> None:
    """Hypothesis's strategies drive the generator; its example database keeps
    the draws that led to findings, so a later campaign replays them first."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.database import DirectoryBasedExampleDatabase

    from fuzz.gen.choices import HypothesisSource

    @settings(
        database=DirectoryBasedExampleDatabase(db_path) if db_path else None,
        max_examples=10_000,
        deadline=None,
        phases=[Phase.reuse, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(st.data())
    def explore(data: st.DataObject) -> None:
        if _stop_requested(conn):
            _leave(conn, outbox)
        result = cases.run(
            from_source(HypothesisSource(data), cases.targets), "hypothesis", None, -1
        )
        outbox.add(result)
        # a finding fails the example, so Hypothesis stores it in its database
        assert not result.findings, result.findings[0].bucket_title

    while True:
        with contextlib.suppress(AssertionError):  # recorded already; keep exploring
            explore()
