"""Campaigns end to end through the real CLI: results land in the database,
planted faults bucket together, dead and hung workers are replaced and their
cases recorded, and SIGKILL at any moment leaves a database that opens and
resumes."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import release_bridge_current

from fuzz.campaign.worker import corpus_lines
from fuzz.pipeline.filetest import TargetLine, parse_file, parse_text
from fuzz.pipeline.qemu import qemu_version
from fuzz.pipeline.runner import release_lines
from fuzz.targets import TARGETS
from fuzz.triage.known import load

CALLFUZZ = [sys.executable, "-m", "fuzz.commands.cli"]
CORPUS = Path(__file__).parents[1] / "corpus"
FINDING = CORPUS / "riscv64-preserve-all-vector-saves.clif"
APPLE = CORPUS / "aarch64-apple-narrow-stack-args.clif"  # `target aarch64` only


def fuzz(
    tmp: Path, *args: str, check: bool = True, release: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A campaign through the CLI; `check`: it ran to its end (exit status 0,
    nothing new, or 1, new buckets); `release`: on that release's bridge."""
    db = tmp / "triage.sqlite"
    env = dict(os.environ)
    if release is not None:
        env["CALLFUZZ_CRANELIFT"] = release
        env.pop("CALLFUZZ_BRIDGE", None)
    proc = subprocess.run(
        [*CALLFUZZ, "fuzz", "--db", f"sqlite:///{db}", "--jobs", "2", *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if check:
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc


def query(tmp: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with sqlite3.connect(tmp / "triage.sqlite") as con:
        return con.execute(sql).fetchall()


def long_campaign(tmp: Path, corpus: Path, seed: int, own_group: bool) -> subprocess.Popen[str]:
    """A campaign far from its end, printing a status line every 0.2 s."""
    return subprocess.Popen(
        [*CALLFUZZ, "fuzz", "--db", f"sqlite:///{tmp / 'triage.sqlite'}", "--jobs", "2"]
        + ["--seed", str(seed), "--cases", "100000", "--status-every", "0.2"]
        + ["--corpus", str(corpus)],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=own_group,
    )


def wait_for_cases(proc: subprocess.Popen[str], cases: int) -> None:
    """Read status lines until one reports at least `cases` cases."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[") and int(line.split()[2].replace(",", "")) >= cases:
            return


@pytest.fixture
def empty_corpus(tmp_path: Path) -> Path:
    (tmp_path / "corpus").mkdir()
    return tmp_path / "corpus"


def test_a_short_campaign_records_its_cases(tmp_path: Path, empty_corpus: Path) -> None:
    (empty_corpus / "finding.clif").write_text(FINDING.read_text())
    proc = fuzz(tmp_path, "--cases", "40", "--seed", "1", "--corpus", str(empty_corpus))
    assert proc.returncode == 1  # no registry here: the finding is new
    [(cases, status, next_seed)] = query(
        tmp_path, "select cases_done, status, next_seed from campaigns"
    )
    assert status == "finished"
    assert next_seed == 41
    assert cases == 41  # 40 generated + the corpus file
    origins = {o for (o,) in query(tmp_path, "select origin from findings")}
    assert "corpus" in origins  # the replayed finding diverges again
    assert query(tmp_path, "pragma integrity_check") == [("ok",)]
    # cases reaching type x convention x form cells the corpus lacked join it
    added = list((empty_corpus / "generated").glob("cell-*.clif"))
    assert added and all("function %main" in p.read_text() for p in added)


def test_one_planted_bug_from_many_random_cases_is_one_bucket(
    tmp_path: Path, empty_corpus: Path
) -> None:
    proc = fuzz(
        tmp_path,
        *("--cases", "240", "--seed", "0", "--targets", "aarch64"),
        *("--corpus", str(empty_corpus), "--plant-fault", "aarch64-tail-i128"),
    )
    assert proc.returncode == 1
    rows = query(
        tmp_path,
        "select b.key, b.hit_count, count(distinct f.seed) from buckets b "
        "join findings f on f.bucket_id = b.id where b.verdict = 'wrong result' group by b.id",
    )
    # (a real bug the random cases meet is a bucket of its own: a known one)
    known = [e.key for e in load(CORPUS / "known.toml").entries if e.key]
    rows = [r for r in rows if not any(k.fullmatch(r[0]) for k in known)]
    assert len(rows) == 1, rows
    _, hits, seeds = rows[0]
    assert seeds >= 3 and hits >= seeds


def test_a_worker_that_aborts_is_replaced_and_its_case_recorded(
    tmp_path: Path, empty_corpus: Path
) -> None:
    fuzz(
        tmp_path,
        *("--cases", "120", "--seed", "0", "--targets", "x86_64"),
        *("--corpus", str(empty_corpus), "--plant-fault", "x86-abort-indirect-tail"),
    )
    crashes = query(
        tmp_path,
        "select c.clif, f.seed from findings f join cases c on c.id = f.case_id "
        "where f.verdict = 'hard crash'",
    )
    assert crashes
    assert all("return_call_indirect" in clif for clif, _ in crashes)
    [(buckets,)] = query(tmp_path, "select count(*) from buckets where verdict = 'hard crash'")
    assert buckets == 1  # every abort is the same SIGABRT bucket
    [(cases, status, next_seed)] = query(
        tmp_path, "select cases_done, status, next_seed from campaigns"
    )
    assert status == "finished" and next_seed == 120  # every seed accounted for
    assert cases == 120 - len(crashes)


def test_a_hung_worker_is_replaced_and_its_case_recorded(
    tmp_path: Path, empty_corpus: Path
) -> None:
    fuzz(
        tmp_path,
        *("--cases", "4", "--seed", "0", "--targets", "s390x", "--hang-limit", "1"),
        *("--corpus", str(empty_corpus), "--plant-fault", "s390x-hang-call"),
    )
    hangs = query(tmp_path, "select seed from findings where verdict = 'hang'")
    assert hangs
    [(status,)] = query(tmp_path, "select status from campaigns")
    assert status == "finished"


def test_sigkill_leaves_a_sound_database_and_resume_continues(
    tmp_path: Path, empty_corpus: Path
) -> None:
    moment = random.Random(20261121).randint(10, 60)  # cases before the kill
    # its own process group, so the kill reaches the workers too
    proc = long_campaign(tmp_path, empty_corpus, seed=5, own_group=True)
    try:
        wait_for_cases(proc, moment)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert query(tmp_path, "pragma integrity_check") == [("ok",)]
    [(cid, done, next_seed, status)] = query(
        tmp_path, "select id, cases_done, next_seed, status from campaigns"
    )
    # Stored progress trails the screen by at most a second of cases; the
    # cursor never passes a seed whose result is not stored.
    assert status == "running" and next_seed >= 5 and done >= next_seed - 5
    stored = {s for (s,) in query(tmp_path, "select seed from findings")}
    assert all(s is not None for s in stored)

    target = next_seed - 5 + 30
    fuzz(tmp_path, "--resume", "--cases", str(target), "--corpus", str(empty_corpus))
    [(cid2, done2, next2, status2)] = query(
        tmp_path, "select id, cases_done, next_seed, status from campaigns"
    )
    assert cid2 == cid and status2 == "finished"
    assert next2 == 5 + target and done2 >= done + 30
    assert query(tmp_path, "pragma integrity_check") == [("ok",)]


@pytest.mark.parametrize("engine", ["atheris", "hypothesis"])
def test_the_other_engines_replay_the_corpus_then_run(
    tmp_path: Path, empty_corpus: Path, engine: str
) -> None:
    (empty_corpus / "finding.clif").write_text(FINDING.read_text())
    fuzz(
        tmp_path,
        *("--cases", "30", "--engine", engine, "--corpus", str(empty_corpus)),
    )
    [(cases, status, stored_engine)] = query(
        tmp_path, "select cases_done, status, engine from campaigns"
    )
    assert status == "finished" and stored_engine == engine and cases >= 30
    origins = {o for (o,) in query(tmp_path, "select origin from findings")}
    assert "corpus" in origins


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--targets", "mips"], "unknown target 'mips'"),
        (["--duration", "5x"], "not a duration"),
        (["--campaign", "3"], "--campaign goes with --resume"),
        (["--resume"], "no campaign to resume"),
    ],
)
def test_bad_campaign_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = fuzz(tmp_path, "--cases", "1", *args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    proc = subprocess.run(
        [*CALLFUZZ, "fuzz", "--cases", "1", "--db", str(notes)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "not an SQLite database" in proc.stderr
    assert notes.read_text() == "my notes\n"


def test_sigterm_stops_cleanly_with_a_summary(tmp_path: Path, empty_corpus: Path) -> None:
    proc = long_campaign(tmp_path, empty_corpus, seed=9, own_group=False)
    wait_for_cases(proc, 20)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 143
    assert "stopped (SIGTERM)" in rest
    [(status, done, next_seed)] = query(
        tmp_path, "select status, cases_done, next_seed from campaigns"
    )
    assert status == "interrupted" and done >= 20 and next_seed - 9 <= done
    assert query(tmp_path, "pragma integrity_check") == [("ok",)]


# --- corpus targets and known findings ---------------------------------------------


def buckets(tmp: Path) -> list[tuple[str, str, str | None, int]]:
    return query(tmp, "select key, status, known_ref, hit_count from buckets order by key")


def test_a_corpus_case_runs_only_on_the_targets_it_names(
    tmp_path: Path, empty_corpus: Path
) -> None:
    """A case written for aarch64 (`apple_aarch64`) is not compiled for x86_64,
    riscv64 or s390x, though the campaign runs all four, unless asked."""
    (empty_corpus / "apple.clif").write_text(APPLE.read_text())
    everywhere = ("--targets", "x86_64,aarch64,riscv64,s390x", "--corpus", str(empty_corpus))
    proc = fuzz(tmp_path, "--cases", "0", *everywhere)
    [(executions,)] = query(tmp_path, "select executions from campaigns")
    assert set(json.loads(executions)) == {"interpreter", "aarch64"}
    assert [(t, v) for t, v in query(tmp_path, "select target, verdict from findings")] == [
        ("aarch64", "wrong result")
    ]
    assert proc.returncode == 1  # no registry in this corpus: the bucket is new

    (tmp_path / "triage.sqlite").unlink()
    fuzz(tmp_path, "--cases", "0", *everywhere, "--corpus-all-targets")
    [(executions,)] = query(tmp_path, "select executions from campaigns")
    assert set(json.loads(executions)) == {"interpreter", "x86_64", "aarch64", "riscv64", "s390x"}
    targets = {t for (t,) in query(tmp_path, "select target from findings")}
    assert {"aarch64", "x86_64"} <= targets  # apple_aarch64 panics the x86_64 backend


def test_corpus_lines_are_the_files_own_lines_on_the_campaigns_targets() -> None:
    ft = parse_file(str(CORPUS / "riscv64-colocated-call.clif"))  # riscv64 twice, with has_c
    wanted = [TargetLine(TARGETS[name]) for name in ("riscv64", "s390x")]
    labels = [line.label for line in corpus_lines(ft, wanted)]
    assert labels == ["riscv64", "riscv64 has_c", "s390x"]
    assert [line.label for line in corpus_lines(ft, wanted[:1])] == ["riscv64", "riscv64 has_c"]
    apple = parse_file(str(APPLE))  # aarch64 only
    assert corpus_lines(apple, wanted) == []
    everywhere = corpus_lines(apple, wanted, all_targets=True)
    assert [line.label for line in everywhere] == ["riscv64", "s390x"]
    bare = parse_text("function %f() {\nblock0:\n    return\n}\n")  # no target lines
    assert [line.label for line in corpus_lines(bare, wanted)] == ["riscv64", "s390x"]


def test_the_project_corpus_replays_with_nothing_new(tmp_path: Path) -> None:
    """Every finding kept in corpus/ is in corpus/known.toml: replaying it opens
    known buckets only, with their registry entries, and exits 0."""
    # the project's own files only: a campaign run here may have added cases
    # under corpus/generated/, which are not the project's findings
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in [*CORPUS.glob("*.clif"), CORPUS / "known.toml"]:
        (corpus / path.name).write_text(path.read_text())
    proc = fuzz(tmp_path, "--cases", "0", "--corpus", str(corpus), "--reduce-time", "0")
    assert proc.returncode == 0, proc.stdout
    rows = buckets(tmp_path)
    # the emulator defects: refuted by qemu-user, kept apart as invalid
    refuted = [row for row in rows if "|emulator disagreement|" in row[0]]
    assert all(status == "invalid" for _key, status, _ref, _hits in refuted)
    assert len(refuted) == (2 if qemu_version() else 0)  # aarch64 and s390x
    rows = [row for row in rows if row not in refuted]
    assert rows and all(status == "known" and ref for _key, status, ref, _hits in rows), rows
    assert all(key.endswith(f"|known:{ref}") for key, _status, ref, _hits in rows)
    # nothing dropped: every known bucket keeps its findings
    [(findings,)] = query(tmp_path, "select count(*) from findings")
    assert findings >= len(rows)
    assert f"in 0 new buckets, {len(rows)} known" in proc.stdout
    assert "wasmtime#13959" in proc.stdout and "nothing new" in proc.stdout


def test_known_findings_pass_and_new_ones_fail_the_campaign(
    tmp_path: Path, empty_corpus: Path
) -> None:
    (empty_corpus / "preserve-all.clif").write_text(FINDING.read_text())
    (empty_corpus / "known.toml").write_text(
        "[[finding]]\n"
        'id = "preserve-all"\n'
        'kind = "bug"\n'
        'summary = "RVV saves without has_v"\n'
        'upstream = "wasmtime#1"\n'
        'versions = ["0.135.8"]\n'
        'corpus = "preserve-all.clif"\n'
        'targets = ["riscv64"]\n'
        'verdict = "crash"\n'
        'message = "RVV instruction although has_v is off"\n'
    )
    corpus = ("--cases", "0", "--corpus", str(empty_corpus))
    known = fuzz(tmp_path, *corpus)
    assert known.returncode == 0, known.stdout
    [(key, status, ref, hits)] = buckets(tmp_path)
    assert (status, ref, hits) == ("known", "preserve-all", 1)
    assert "in 0 new buckets, 1 known" in known.stdout and "nothing new" in known.stdout
    assert re.search(r"riscv64 crash: preserve-all \(bug; wasmtime#1\)", known.stdout)
    [(notes,)] = query(tmp_path, "select notes from buckets")
    assert "(known) known finding preserve-all in " in notes

    # a finding the registry does not name: new, exit 1
    (empty_corpus / "probestack.clif").write_text(
        (CORPUS / "x86_64-probestack-callconv.clif").read_text()
    )
    new = fuzz(tmp_path, *corpus, "--reduce-time", "0")
    assert new.returncode == 1, new.stdout
    statuses = {key.split("|")[0]: (status, ref) for key, status, ref, _ in buckets(tmp_path)}
    assert statuses == {"riscv64": ("known", "preserve-all"), "x86_64": ("new", None)}
    assert "in 1 new buckets, 1 known" in new.stdout
    # the counts close the findings; the last line names the report command
    *_, counts, review = new.stdout.rstrip().splitlines()
    assert counts.endswith("1 new buckets (1 known)") and review.startswith("review: ")

    # the same again: seen before, not new
    again = fuzz(tmp_path, *corpus)
    assert again.returncode == 0, again.stdout
    assert "in 0 new buckets, 1 known, 1 seen before" in again.stdout
    *_, counts, review = again.stdout.rstrip().splitlines()
    assert counts.endswith("nothing new (1 known buckets, 1 seen before)")
    assert review.startswith("review: ")


def test_a_malformed_registry_is_one_line_and_exit_2(tmp_path: Path, empty_corpus: Path) -> None:
    (empty_corpus / "known.toml").write_text("[[finding]]\nid = 3\n")
    proc = fuzz(tmp_path, "--cases", "1", "--corpus", str(empty_corpus), check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"callfuzz: error: {empty_corpus / 'known.toml'}: finding 1")
    missing = fuzz(tmp_path, "--cases", "1", "--known", str(tmp_path / "nope.toml"), check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert not (tmp_path / "triage.sqlite").exists()  # refused before anything ran


def test_harness_errors_are_counted_and_kept_apart_never_findings(
    tmp_path: Path, empty_corpus: Path
) -> None:
    """callfuzz's own failures (a planted one: every riscv64 run with a call
    fails in the harness) open no bucket; the summary counts them and the
    campaign directory keeps each with its seed."""
    proc = fuzz(
        tmp_path,
        *("--cases", "24", "--seed", "0", "--targets", "riscv64"),
        *("--corpus", str(empty_corpus), "--plant-fault", "riscv64-harness-call"),
    )
    assert not query(tmp_path, "select id from findings where verdict = 'harness error'")
    assert not query(tmp_path, "select id from buckets where verdict = 'harness error'")
    [log] = list(tmp_path.glob("**/harness-errors.log"))
    lines = log.read_text().splitlines()
    assert lines and all(line.startswith("seed ") and "planted" in line for line in lines)
    assert f"{len(lines):,} harness errors" in proc.stdout


def test_two_planted_miscompilations_with_the_same_return_shape_are_two_buckets(
    tmp_path: Path,
) -> None:
    """Both faults flip the first result bit (the same positions); one needs
    a tail call, the other a plain call with an i128: attribution keys them
    apart (fuzz.triage.attribution), and each is one bucket over its cases."""
    keys = {}
    for fault in ("aarch64-tail-i128", "aarch64-call-i128"):
        work = tmp_path / fault
        (work / "corpus").mkdir(parents=True)
        fuzz(
            work,
            *("--cases", "240", "--seed", "0", "--targets", "aarch64"),
            *("--corpus", str(work / "corpus"), "--plant-fault", fault),
        )
        rows = query(
            work,
            "select b.key, count(distinct f.seed) from buckets b join findings f "
            "on f.bucket_id = b.id where b.verdict = 'wrong result' "
            "and b.key not like '%apple_aarch64%' group by b.key",
        )
        assert len(rows) == 1, rows
        keys[fault] = rows[0][0]
        assert rows[0][1] >= 3  # many cases, one bucket
    assert keys["aarch64-tail-i128"] == "aarch64|wrong result|tail calls"
    assert keys["aarch64-call-i128"] != keys["aarch64-tail-i128"]


def test_generated_cases_cranelift_rejects_are_generator_defects_by_reason() -> None:
    """A generated case Cranelift rejects is the generator's defect: counted
    by distinct reason (one note each), never as an invalid corpus file."""
    from types import SimpleNamespace

    from fuzz.campaign.parent import Campaign
    from fuzz.campaign.state import CaseResult, Stats

    notes: list[str] = []
    fake: Any = SimpleNamespace(stats=Stats(), display=SimpleNamespace(note=notes.append))
    for seed in (1, 2, 3):
        error = f"case {seed}: unknown setting `regalloc_algorithm=single_pass` at line {seed}"
        Campaign._count_error(fake, CaseResult(origin="generated", seed=seed, error=error))
    corpus = CaseResult(origin="corpus", error="x.clif: malformed CLIF", path="x.clif")
    Campaign._count_error(fake, corpus)
    assert fake.stats.errors == 1  # the corpus file only
    assert sum(fake.stats.generator_defects.values()) == 3
    assert len(fake.stats.generator_defects) == 1  # one reason, numbers masked
    assert len([n for n in notes if n.startswith("generator defect")]) == 1


def test_a_corpus_file_of_another_release_is_replayed_only_there() -> None:
    """`; callfuzz: releases 0.128` (a finding whose case only reads on
    0.128) is skipped by campaigns on other releases, not counted invalid."""
    from fuzz.campaign.worker import for_release

    text = (CORPUS / "preserve-all-returns-restored-0.128.clif").read_text()
    assert for_release(text, (0, 128, 4))
    assert not for_release(text, (0, 135, 8))
    assert for_release("test run\n", (0, 135, 8))  # no directive: every release


@pytest.mark.skipif(
    not release_bridge_current("0.105.4"), reason="needs the prebuilt 0.105.4 bridge"
)
def test_a_corpus_file_for_a_newer_release_opens_no_bucket_on_an_older_one(
    tmp_path: Path, empty_corpus: Path
) -> None:
    """0.105 cannot compile s390x `tail` functions (new in 0.111) nor lower
    s390x `ssub_overflow` (new in 0.135): a campaign there replaying the
    files written on 0.135 skips those target lines as not for this release
    and counts them, never a compile-panic bucket (issue 24)."""
    for name in ("aarch64-tail-sret-panic.clif", "emulator-s390x-signed-overflow-cc.clif"):
        (empty_corpus / name).write_text((CORPUS / name).read_text())
    proc = fuzz(
        tmp_path,
        *("--cases", "0", "--targets", "s390x", "--corpus", str(empty_corpus)),
        release="0.105.4",
    )
    assert buckets(tmp_path) == []
    assert proc.returncode == 0, proc.stdout
    assert "not for this release" in proc.stdout
    assert "2 corpus files or target lines" in proc.stdout
    assert "tail (new in 0.111)" in proc.stdout and "ssub_overflow (new in 0.135)" in proc.stdout


def test_target_lines_a_release_cannot_compile_are_not_for_it() -> None:
    """The feature table decides per target line: 0.119 lowers bitcast to
    i32x2 on aarch64, not on x86_64 (new in 0.120); 0.120 has both."""
    ft = parse_file(str(CORPUS / "interpreter-bitcast-to-vector.clif"))
    kept, skipped = release_lines(ft, ft.targets, (0, 119, 1))
    assert [line.label for line in kept] == ["aarch64"]
    assert [s.line for s in skipped] == ["x86_64"]
    assert "bitcast.i32x2 (new in 0.120)" in skipped[0].reason
    kept, skipped = release_lines(ft, ft.targets, (0, 120, 2))
    assert [line.label for line in kept] == ["x86_64", "aarch64"] and skipped == []
