"""`callfuzz triage` through the real command group: list, show (with the
reproducer and the disassembly marked at the faulting pc), mark, stats, and
bad input as one `callfuzz: error:` line with exit status 2."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path

import capstone
import pytest
from click.testing import CliRunner, Result

from fuzz import _cranelift
from fuzz.commands.cli import cli
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.runner import Runner
from fuzz.targets import lookup
from fuzz.triage.records import FindingRecord, Progress
from fuzz.triage.store import open_db

CORPUS = Path(__file__).parents[1] / "corpus" / "call-indirect-func-addr.clif"
SMALL = "function %f() {\nblock0:\n    return\n}\n"
RUN = "run: %via_pointer(-1, 0x1.0p0, 65535, 0x1.0p1) == 0x1.0001p16"


def triage(*args: str) -> Result:
    return CliRunner().invoke(cli, ["triage", *args])


def faulting_pc() -> int:
    """The third instruction of %mix, as the campaign linked the case for x86_64."""
    ft = parse_text(CORPUS.read_text())
    config = Runner().prepare(ft, TargetLine(lookup("x86_64")), ft.shared_flags)
    assert config.image is not None
    start = config.image.symbols["%mix"]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(md.disasm_lite(config.image.code_of("%mix"), start))
    return insns[2][0]


def crash_record(pc: int) -> FindingRecord:
    return FindingRecord(
        clif=CORPUS.read_text(),
        target="x86_64",
        flags=[],
        verdict="wrong result",
        details={
            "run": RUN,
            "outcomes": {
                "interpreter": {"kind": "return", "text": "0x1.0001p16"},
                "x86_64": {"kind": "return", "text": "0x1.0p16", "pc": pc},
            },
            "verdicts": {"interpreter": "agree", "x86_64": "wrong result"},
            "differences": [
                {"index": 0, "type": "f64", "expected": "0x1.0001p16", "actual": "0x1.0p16"}
            ],
            "pc": pc,
            "call_shape": "system_v:call_indirect",
        },
        blame=["x86_64"],
        bucket_key="x86_64|wrong result|0:f64",
        bucket_title="x86_64: wrong result at 0:f64",
        cranelift_version="0.135.8",
        seed=4242,
    )


def panic_record(clif: str, target: str = "aarch64 has_lse") -> FindingRecord:
    return FindingRecord(
        clif=clif,
        target=target,
        flags=["opt_level=speed"] if " " in target else [],
        verdict="compile panic",
        details={"panic": {"message": "assertion failed", "location": "abi.rs:900:13"}},
        blame=["aarch64 has_lse"],
        bucket_key="aarch64|compile panic|abi.rs:900",
        bucket_title="aarch64: compile panic at abi.rs:900: assertion [failed]",
        cranelift_version="0.135.8",
    )


@pytest.fixture(scope="module")
def pc() -> int:
    return faulting_pc()


@pytest.fixture
def db_url(tmp_path: Path, pc: int) -> str:
    """Two buckets: a wrong result on x86_64 (seen first) and a compile panic
    on aarch64 (seen twice, last seen later)."""
    url = f"sqlite:///{tmp_path / 'triage.sqlite'}"
    db = open_db(url)
    cid = db.start_campaign(
        host="nightly-box",
        cranelift_version="0.135.8",
        targets=["x86_64", "aarch64"],
        flags={},
        engine="random",
        seed=1000,
        jobs=2,
    )
    db.record_batch(cid, [crash_record(pc)], Progress(50, 1050, {}, {}, 25.0))
    db.record_batch(
        cid,
        [panic_record("; bigger\n" + SMALL, "aarch64"), panic_record(SMALL)],
        Progress(1234, 2234, {"x86_64": 1234}, {"agree": 2400}, 321.5),
    )
    db.finish_campaign(cid)
    db.close()
    # fixed times: the order does not hang on the clock
    con = sqlite3.connect(tmp_path / "triage.sqlite")
    con.execute("update buckets set last_seen = '2026-01-0' || id || ' 10:00:00'")
    con.commit()
    con.close()
    return url


def bucket_ids(url: str) -> dict[str, int]:
    db = open_db(url)
    ids = {b.verdict: b.id for b in db.list_buckets()}
    db.close()
    return ids


def assert_bad_input(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"callfuzz: error: {message}"
    assert "Traceback" not in result.output


# --- list -------------------------------------------------------------------------


def test_list_shows_buckets_newest_first(db_url: str) -> None:
    result = triage("list", "--db", db_url)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if re.match(r"\s*\d+\s", line)]
    assert len(rows) == 2
    panic, wrong = rows
    assert "compile panic at abi.rs:900: assertion [failed]" in panic  # not read as markup
    assert re.search(r"\bnew\b.*\b2\b.*aarch64.*compile panic", panic)
    assert panic.rstrip().endswith(" 4")  # the smaller reproducer's lines
    assert "x86_64: wrong result at 0:f64" in wrong and "2026-01-01 10:00" in wrong


@pytest.mark.parametrize(
    ("args", "titles"),
    [
        (["--target", "x86_64"], ["wrong result at 0:f64"]),
        (["--target", "arm64"], ["compile panic"]),  # an alias
        (["--verdict", "compile panic"], ["compile panic"]),
        (["--status", "confirmed"], []),
        (["--limit", "1"], ["compile panic"]),
    ],
)
def test_list_filters(db_url: str, args: list[str], titles: list[str]) -> None:
    result = triage("list", "--db", db_url, *args)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if re.match(r"\s*\d+\s", line)]
    assert len(rows) == len(titles)
    for row, title in zip(rows, titles, strict=True):
        assert title in row
    if not titles:
        assert result.stdout.strip() == "no buckets"


def known_bucket(url: str) -> int:
    """A third bucket, opened by a finding of the registry of known findings."""
    db = open_db(url)
    record = panic_record(SMALL, "s390x")
    known = dataclasses.replace(
        record,
        target="s390x",
        bucket_key=record.bucket_key.replace("aarch64", "s390x") + "|known:s390x-thing",
        bucket_title="s390x: compile panic",
        known_ref="s390x-thing",
        known_note="known finding s390x-thing: deliberate assert; wasmtime#1",
    )
    [bucket_id] = db.record_batch(1, [known], Progress(1, 1, {}, {}, 1.0))
    db.close()
    return bucket_id


def listed_ids(result: Result) -> list[int]:
    assert result.exit_code == 0, result.output
    return [int(m[1]) for m in re.finditer(r"^\s*(\d+)\s+│", result.stdout, re.M)]


def test_list_hides_known_buckets_unless_asked(db_url: str) -> None:
    known = known_bucket(db_url)
    plain = triage("list", "--db", db_url)
    assert known not in listed_ids(plain) and len(listed_ids(plain)) == 2
    assert "1 known bucket not shown (--all or --status known)" in plain.stdout
    assert "known as" not in plain.stdout
    everything = triage("list", "--all", "--db", db_url)
    assert listed_ids(everything)[-1] == known  # new ones first, however recent it is
    assert re.search(rf"^\s*{known}\s.*\bknown\b.*s390x-thing", everything.stdout, re.M)
    assert "not shown" not in everything.stdout
    assert listed_ids(triage("list", "--status", "known", "--db", db_url)) == [known]
    shown = triage("show", str(known), "--db", db_url).stdout
    assert "status:     known" in shown and "known as:   s390x-thing" in shown
    assert "(known) known finding s390x-thing: deliberate assert; wasmtime#1" in shown


def test_list_shows_new_buckets_before_reviewed_ones(db_url: str) -> None:
    ids = bucket_ids(db_url)
    assert listed_ids(triage("list", "--db", db_url)) == [ids["compile panic"], ids["wrong result"]]
    triage("mark", str(ids["compile panic"]), "--status", "confirmed", "--db", db_url)
    assert listed_ids(triage("list", "--db", db_url)) == [ids["wrong result"], ids["compile panic"]]


def test_list_says_so_when_every_bucket_is_known(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'triage.sqlite'}"
    db = open_db(url)
    db.start_campaign(
        host="h",
        cranelift_version="0.135.8",
        targets=["s390x"],
        flags={},
        engine="random",
        seed=1,
        jobs=1,
    )
    db.close()
    known_bucket(url)
    result = triage("list", "--db", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "no buckets besides known ones",
        "1 known bucket not shown (--all or --status known)",
    ]


# --- show -------------------------------------------------------------------------


def test_show_prints_the_reproducer_differences_and_marked_disassembly(
    db_url: str, pc: int
) -> None:
    bucket = bucket_ids(db_url)["wrong result"]
    result = triage("show", str(bucket), "--db", db_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"bucket {bucket}: x86_64: wrong result at 0:f64" in out
    assert "key:        x86_64|wrong result|0:f64" in out
    assert "seed:       4242" in out
    assert CORPUS.read_text().rstrip() in out  # the whole reproducer, verbatim
    assert RUN in out
    assert re.search(r"0\s+│\s+f64\s+│\s+0x1\.0001p16\s+│\s+0x1\.0p16", out)
    assert re.search(r"x86_64\s+wrong result\s+0x1\.0p16\s+\(blamed\)", out)
    marked = [line for line in out.splitlines() if line.startswith("=> ")]
    assert len(marked) == 1
    assert marked[0].startswith(f"=> {pc:#x}: ")
    assert re.search(r"^%mix @ 0x[0-9a-f]+ \(\d+ bytes\):$", out, re.M)
    assert re.search(r"^%via_pointer @ ", out, re.M)  # the run's function, too
    assert "callfuzz_trampoline" not in out
    assert "compiled by Cranelift" not in out  # the finding's own release


def test_show_says_when_it_disassembles_another_release_than_the_finding(
    tmp_path: Path, pc: int
) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    db = open_db(url)
    cid = db.start_campaign(
        host="h",
        cranelift_version="0.121.2",
        targets=["x86_64"],
        flags={},
        engine="random",
        seed=1,
        jobs=1,
    )
    old = dataclasses.replace(crash_record(pc), cranelift_version="0.121.2")
    db.record_batch(cid, [old], Progress(1, 1, {}, {}, 1.0))
    db.close()
    [bucket] = bucket_ids(url).values()
    out = triage("show", str(bucket), "--db", url).stdout
    # its pc is an offset into 0.121.2's code: the installed release's may differ
    assert (
        f"compiled by Cranelift {_cranelift.version()}, not 0.121.2 as the finding: the"
        " marked pc may be"
        f" another instruction (`callfuzz --cranelift 0.121.2 triage show {bucket}`)"
    ) in " ".join(out.split())


def test_show_a_compile_panic_prints_the_panic_and_the_smaller_case(db_url: str) -> None:
    bucket = bucket_ids(db_url)["compile panic"]
    result = triage("show", str(bucket), "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "panic: assertion failed at abi.rs:900:13" in result.stdout
    assert "targets:    aarch64, aarch64 has_lse" in result.stdout
    assert "flags:      (none); opt_level=speed" in result.stdout
    assert "disassembly (aarch64 has_lse)" in result.stdout  # the smaller case's line
    assert re.search(r"reproducer: case \d+, 4 lines, generated", result.stdout)
    assert "%f @ 0x" in result.stdout  # SMALL compiles fine for aarch64 has_lse


# --- mark -------------------------------------------------------------------------


def test_mark_sets_the_status_and_appends_notes(db_url: str) -> None:
    bucket = str(bucket_ids(db_url)["compile panic"])
    first = triage(
        "mark", bucket, "--status", "confirmed", "--note", "seen on hardware", "--db", db_url
    )
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"bucket {bucket}: confirmed (note added)"
    assert (
        triage(
            "mark", bucket, "--status", "reported", "--note", "issue 1234", "--db", db_url
        ).exit_code
        == 0
    )
    shown = triage("show", bucket, "--db", db_url).stdout
    assert "status:     reported" in shown
    notes = re.findall(r"^  \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\] \((\w+)\) (.*)$", shown, re.M)
    assert notes == [("confirmed", "seen on hardware"), ("reported", "issue 1234")]
    listed = triage("list", "--status", "reported", "--db", db_url).stdout
    assert "compile panic" in listed


def test_mark_rejects_an_unknown_status(db_url: str) -> None:
    bucket = str(bucket_ids(db_url)["compile panic"])
    result = triage("mark", bucket, "--status", "wontfix", "--db", db_url)
    assert_bad_input(
        result, "unknown status 'wontfix' (one of: new, confirmed, reported, fixed, invalid, known)"
    )
    assert "status:     new" in triage("show", bucket, "--db", db_url).stdout


# --- stats ------------------------------------------------------------------------


def test_stats_counts_buckets_findings_and_campaigns(db_url: str) -> None:
    result = triage("stats", "--db", db_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^\s*new\s+│\s+2\s*$", out, re.M)
    assert re.search(r"^\s*aarch64\s+│\s+1\s*$", out, re.M)
    assert re.search(r"^\s*compile panic\s+│\s+1\s*$", out, re.M)
    assert "2 buckets, 3 findings, 3 distinct cases" in out
    assert re.search(r"1\s+│\s+finished\s+│.*nightly-box.*random.*1000.*1,234\s+│\s+321\.5", out)


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "99"], "no bucket 99"),
        (["show", "first"], "not a bucket id: 'first'"),
        (["mark", "99", "--status", "fixed"], "no bucket 99"),
        (
            ["list", "--status", "open"],
            "unknown status 'open' (one of: new, confirmed, reported, fixed, invalid, known)",
        ),
        (["list", "--limit", "-3"], "--limit wants a positive number, not '-3'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db_url: str, args: list[str], message: str) -> None:
    assert_bad_input(triage(*args, "--db", db_url), message)


def test_a_text_file_as_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("remember the milk\n")
    result = triage("list", "--db", str(path))
    assert_bad_input(result, f"{path} is not an SQLite database")
    assert path.read_text() == "remember the milk\n"


def test_a_directory_or_missing_file_as_database_is_refused(tmp_path: Path) -> None:
    assert_bad_input(
        triage("stats", "--db", f"sqlite:///{tmp_path}"),
        f"{tmp_path} is a directory, not a database file",
    )
    missing = tmp_path / "nothing.sqlite"
    assert_bad_input(triage("list", "--db", str(missing)), f"no database at {missing}")
    assert not missing.exists()  # reading never creates a database


def test_disassembly_reads_a_label_tagged_with_its_set_lines() -> None:
    from fuzz.commands.triage import disassembly

    clif = (
        Path(__file__).parents[1] / "corpus" / "aarch64-apple-narrow-stack-args.clif"
    ).read_text()
    lines = disassembly(clif, "aarch64 [opt_level=none]", ["opt_level=none"], None)
    assert lines[0].startswith("%callee @ "), lines[:2]
