"""Findings on the pinned Cranelift. The registry of known findings
(corpus/known.toml) is the one list: each entry's corpus files must show
exactly its finding, as a campaign's corpus replay records it, on exactly its
targets, until Cranelift fixes it; and every finding kept in corpus/ is in
the registry."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import findings_on_release, release_bridge_current

from fuzz import _cranelift
from fuzz.campaign.state import CaseResult, WorkerConfig
from fuzz.campaign.worker import CaseRunner
from fuzz.pipeline.filetest import parse_file
from fuzz.pipeline.oracle import Verdict, is_finding
from fuzz.pipeline.qemu import qemu_version
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import TARGETS
from fuzz.triage.known import KnownFinding, load, message_of, target_of

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
REGISTRY = load(CORPUS / "known.toml")

Replay = Callable[[Path], CaseResult]


def _needs_qemu(path: Path) -> bool:
    """Whether a file's target lines ask for extensions unicorn lacks."""
    ft = parse_file(str(path))
    return any(set(line.isa_flags) & line.target.emulator_lacks for line in ft.targets)


def _replayer(inflight: Path, executor: str) -> Replay:
    # with the C-ABI oracle on, as campaigns have it: it checks the corpus's
    # C-ABI reproducers (`; callfuzz: c-abi`) and nothing else
    config = WorkerConfig(
        engine="random",
        targets=list(TARGETS),
        inflight=str(inflight),
        executor=executor,
        c_abi=True,
    )
    runner = CaseRunner(config, None)
    return lambda path: runner.run(path.read_text(), "corpus", None, -1)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    """A corpus file as a campaign on all four targets replays it. An
    emulator defect shows on unicorn alone (the default routing has
    qemu-user refute it: see the test after this one)."""
    folder = tmp_path_factory.mktemp("worker")
    default = _replayer(folder / "inflight.clif", "auto")
    unicorn = _replayer(folder / "inflight-unicorn.clif", "unicorn")
    emulator_files = {p for e in REGISTRY.entries if e.kind == "emulator defect" for p in e.corpus}
    return lambda path: (unicorn if path in emulator_files else default)(path)


@pytest.mark.skipif(qemu_version() is None, reason="needs qemu-user (Debian package qemu-user)")
@pytest.mark.parametrize(
    "entry", [e for e in REGISTRY.entries if e.kind == "emulator defect"], ids=lambda e: e.id
)
def test_an_emulator_defect_is_refuted_by_qemu_and_recorded_apart(
    entry: KnownFinding, tmp_path: Path
) -> None:
    """unicorn alone reports a divergence; with the referee nothing is blamed
    on Cranelift, and the campaign records an emulator disagreement."""
    replay = _replayer(tmp_path / "inflight.clif", "auto")
    for path in entry.corpus:
        result = replay(path)
        assert result.error is None
        assert result.findings, path.name
        for finding in result.findings:
            assert finding.verdict == Verdict.EMULATOR_DISAGREEMENT.value, finding.bucket_key
            assert not is_finding(Verdict(finding.verdict), False)
            assert "qemu-user" in finding.bucket_title
            assert REGISTRY.match(finding) is None


@pytest.mark.parametrize("entry", REGISTRY.entries, ids=lambda e: e.id)
def test_each_known_finding_reproduces_and_matches_its_entry(
    entry: KnownFinding, replay: Replay
) -> None:
    if _cranelift.version() not in entry.versions:
        pytest.skip(f"registered for {', '.join(entry.versions)}: see the test after this one")
    if qemu_version() is None and any(_needs_qemu(path) for path in entry.corpus):
        pytest.skip("needs qemu-user (Debian package qemu-user): unicorn cannot run it")
    shown_on: set[str] = set()
    for path in entry.corpus:
        text = path.read_text()
        assert "FINDING" in text, path.name
        assert entry.upstream in text, path.name  # the file's header names it too
        result = replay(path)
        assert result.error is None, (path.name, result.error)
        assert result.findings, f"{path.name} shows no finding any more"
        for finding in result.findings:
            # the same matching a campaign does: nothing else diverges
            assert REGISTRY.match(finding) is entry, (
                path.name,
                finding.bucket_key,
                message_of(finding),
            )
        shown_on |= {target_of(f) for f in result.findings}
    assert shown_on == set(entry.targets)


def _bridge_ready(version: str) -> bool:
    return release_bridge_current(version) or bool(os.environ.get("CALLFUZZ_SLOW"))


@pytest.mark.parametrize(
    "entry",
    [e for e in REGISTRY.entries if _cranelift.version() not in e.versions],
    ids=lambda e: e.id,
)
def test_a_finding_of_another_release_reproduces_there(entry: KnownFinding) -> None:
    """A finding of a release other than the installed one, on that release's
    bridge (a child process; built into the cache with CALLFUZZ_SLOW=1,
    minutes; skipped when neither)."""
    if qemu_version() is None and any(_needs_qemu(path) for path in entry.corpus):
        pytest.skip("needs qemu-user (Debian package qemu-user): unicorn cannot run it")
    ready = [v for v in entry.versions if _bridge_ready(v)]
    if not ready:
        pytest.skip(
            f"needs the bridge of Cranelift {entry.versions[0]} (CALLFUZZ_SLOW=1 builds it)"
        )
    for version in ready:
        shown_on: set[str] = set()
        for path in entry.corpus:
            for target in _targets_of(path, entry):
                assert target in entry.targets, (path.name, target)  # the entry names it
                found = findings_on_release(version, path, target, timeout=1800)
                assert any(_shows(entry, f) for f in found), (version, path.name, target, found)
                shown_on.add(target)
        assert shown_on == set(entry.targets), (version, sorted(shown_on))


def _targets_of(path: Path, entry: KnownFinding) -> list[str]:
    """The targets a corpus file names (each file reproduces the finding on
    its own targets), or all of the entry's for a file that names none."""
    named = [line.target.name for line in parse_file(str(path)).targets]
    return named or list(entry.targets)


def _shows(entry: KnownFinding, found: dict) -> bool:
    """Whether an outcome of `fuzz.commands.bisect_step` is the entry's
    finding, as far as its bucket key tells (verdict, key, panic file)."""
    key = found["key"]
    return (
        found["verdict"] == entry.verdict
        and (entry.key is None or entry.key.fullmatch(key) is not None)
        and (entry.file is None or f"|{entry.file}:" in key)
    )


def test_every_finding_in_the_corpus_is_in_the_registry() -> None:
    registered = {path for entry in REGISTRY.entries for path in entry.corpus}
    for path in sorted(CORPUS.glob("*.clif")):
        if "FINDING" in path.read_text():
            assert path in registered, f"{path.name} is not in corpus/known.toml"
    assert all(path.parent == CORPUS for path in registered)


def test_corpus_seeds_other_than_findings_agree() -> None:
    runner = Runner()
    for path in sorted(CORPUS.glob("*.clif")):
        if "FINDING" in path.read_text():
            continue
        ft = parse_file(str(path))
        results = runner.run_file(ft, default_lines(ft, None))
        assert results, path
        for r in results:
            assert not r.judgement.divergent, (path, r.command.text, r.outcomes)
