"""The triage database: buckets deduplicate and keep the smallest reproducer,
the schema is versioned and upgraded in place, databases it cannot use are
refused without being touched, SQLite runs in WAL mode, concurrent writers
count every hit, and the same round trip works on a real PostgreSQL server."""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from glob import glob
from itertools import count
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from fuzz.triage import schema
from fuzz.triage.engine import DatabaseError
from fuzz.triage.records import FindingRecord, Progress
from fuzz.triage.store import TriageDB, open_db

SMALL = "function %f() {\nblock0:\n    return\n}\n"
LARGE = "; a longer reproducer\n; of the same bug\n" + SMALL


def record(
    clif: str = SMALL, key: str = "x86_64|wrong result|0:i64", **kw: object
) -> FindingRecord:
    fields: dict[str, object] = {
        "clif": clif,
        "target": "x86_64 has_bmi2",
        "flags": ["opt_level=speed"],
        "verdict": "wrong result",
        "details": {"differences": [{"index": 0, "type": "i64", "expected": "1", "actual": "2"}]},
        "blame": ["x86_64 has_bmi2"],
        "bucket_key": key,
        "bucket_title": f"title of {key}",
        "cranelift_version": "0.135.8",
        "seed": 7,
    }
    fields.update(kw)
    return FindingRecord(**fields)  # type: ignore[arg-type]


def progress(cases: int = 10, next_seed: int = 11) -> Progress:
    return Progress(cases, next_seed, {"x86_64": cases}, {"agree": cases}, 12.5)


def campaign(db: TriageDB, seed: int = 1) -> int:
    return db.start_campaign(
        host="box",
        cranelift_version="0.135.8",
        targets=["x86_64", "aarch64"],
        flags={"fault": None},
        engine="random",
        seed=seed,
        jobs=2,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "triage.sqlite"


@pytest.fixture
def db(db_path: Path) -> Iterator[TriageDB]:
    handle = open_db(f"sqlite:///{db_path}")
    yield handle
    handle.close()


def sql(path: Path, query: str) -> list[tuple]:  # type: ignore[type-arg]
    con = sqlite3.connect(path)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


# --- buckets -------------------------------------------------------------------------


def test_the_same_key_twice_is_one_bucket_with_the_smaller_reproducer(db: TriageDB) -> None:
    cid = campaign(db)
    first = db.record_batch(cid, [record(LARGE)], progress(5, 6))
    second = db.record_batch(cid, [record(SMALL, cranelift_version="0.136.0")], progress())
    [bucket] = db.list_buckets()
    assert first == [bucket.id] and second == []  # only the batch that made it says so
    assert bucket.hit_count == 2
    assert db.case_text(bucket.best_case_id) == SMALL
    assert bucket.best_lines == 4
    assert bucket.cranelift_versions == ["0.135.8", "0.136.0"]
    assert bucket.status == "new" and bucket.target == "x86_64"
    assert bucket.last_seen > bucket.first_seen


def test_a_larger_reproducer_later_does_not_replace_the_smaller(db: TriageDB) -> None:
    cid = campaign(db)
    db.record_batch(cid, [record(SMALL), record(LARGE), record(SMALL)], progress())
    [bucket] = db.list_buckets()
    assert bucket.hit_count == 3
    assert db.case_text(bucket.best_case_id) == SMALL
    # the same text is stored once, whichever finding brought it
    assert db.summary().cases == 2 and db.summary().findings == 3


def test_a_batch_returns_each_new_bucket_once_in_the_writers_order(db: TriageDB) -> None:
    cid = campaign(db)
    keys = ["k-zebra", "k-apple", "k-zebra", "k-mango"]
    new = db.record_batch(cid, [record(key=k) for k in keys], progress())
    by_id = {b.id: b.key for b in db.list_buckets()}
    assert db.bucket_keys(new) == by_id
    assert [by_id[i] for i in new] == ["k-zebra", "k-apple", "k-mango"]
    assert db.record_batch(cid, [record(key="k-apple")], progress()) == []


def test_hit_only_records_count_without_storing_a_case(db: TriageDB) -> None:
    cid = campaign(db)
    db.record_batch(cid, [record(SMALL)], progress())
    db.record_batch(cid, [record(LARGE, keep=False), record(LARGE, keep=False)], progress())
    [bucket] = db.list_buckets()
    assert bucket.hit_count == 3
    assert db.summary().cases == 1 and db.summary().findings == 1


def test_a_hit_only_record_of_an_unknown_bucket_is_stored_after_all(db: TriageDB) -> None:
    cid = campaign(db)
    new = db.record_batch(cid, [record(LARGE, key="k-new", keep=False)], progress())
    [bucket] = db.list_buckets()
    assert new == [bucket.id] and db.case_text(bucket.best_case_id) == LARGE


def test_findings_keep_what_the_writer_gave(db: TriageDB) -> None:
    cid = campaign(db)
    [bid] = db.record_batch(cid, [record(origin="corpus", seed=None)], progress())
    [f] = db.bucket_findings(bid)
    assert (f.campaign_id, f.target, f.flags, f.verdict, f.origin, f.seed) == (
        cid,
        "x86_64 has_bmi2",
        ["opt_level=speed"],
        "wrong result",
        "corpus",
        None,
    )
    assert f.details["differences"][0]["actual"] == "2"
    assert f.blame == ["x86_64 has_bmi2"] and f.clif == SMALL


def test_campaign_counters_are_absolute_and_resume_finds_the_latest(db: TriageDB) -> None:
    first = campaign(db, seed=1)
    second = campaign(db, seed=100)
    db.record_batch(second, [], Progress(3, 104, {"aarch64": 3}, {"agree": 6}, 1.5))
    db.record_batch(second, [], Progress(8, 109, {"aarch64": 8}, {"agree": 16}, 2.5))
    db.finish_campaign(second, "interrupted")
    latest = db.latest_campaign()
    assert latest is not None and latest.id == second
    assert (latest.cases_done, latest.next_seed, latest.status) == (8, 109, "interrupted")
    assert latest.executions == {"aarch64": 8} and latest.cases_per_second == 2.5
    assert latest.ended_at is not None and latest.targets == ["x86_64", "aarch64"]
    db.reopen_campaign(second)
    again = db.get_campaign(second)
    assert again is not None and again.status == "running" and again.ended_at is None
    assert db.get_campaign(first) is not None and db.get_campaign(999) is None
    with pytest.raises(DatabaseError, match="no campaign 999"):
        db.record_batch(999, [record()], progress())
    with pytest.raises(ValueError):
        db.finish_campaign(second, "exploded")


def test_mark_sets_a_status_and_appends_timestamped_notes(db: TriageDB) -> None:
    [bid] = db.record_batch(campaign(db), [record()], progress())
    db.mark_bucket(bid, "confirmed", "reproduces on hardware")
    info = db.mark_bucket(bid, "reported", "upstream issue filed")
    assert info.status == "reported"
    lines = info.notes.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("(confirmed) reproduces on hardware") and lines[0].startswith("[20")
    with pytest.raises(ValueError, match="unknown status"):
        db.mark_bucket(bid, "wontfix")
    with pytest.raises(KeyError):
        db.mark_bucket(bid + 1, "fixed")


def test_concurrent_writers_count_every_hit(db_path: Path) -> None:
    """Four writers, each with its own connection, hit one bucket 15 times."""
    setup = open_db(f"sqlite:///{db_path}")
    cid = campaign(setup)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        handle = open_db(f"sqlite:///{db_path}")
        try:
            for i in range(15):
                clif = f"; writer {n} case {i}\n" + SMALL
                handle.record_batch(cid, [record(clif), record(key=f"own-{n}")], progress())
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            handle.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    hits = {b.key: b.hit_count for b in setup.list_buckets()}
    setup.close()
    assert hits == {"x86_64|wrong result|0:i64": 60, **{f"own-{n}": 15 for n in range(4)}}


# --- opening -------------------------------------------------------------------------


def test_the_default_database_is_crashes_triage_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    handle = open_db(None)
    handle.close()
    assert (tmp_path / "crashes" / "triage.sqlite").is_file()
    assert handle.url == f"sqlite:///{tmp_path / 'crashes' / 'triage.sqlite'}"
    assert handle.workdir == Path("crashes")


def test_sqlite_runs_in_wal_mode_with_normal_sync_and_foreign_keys(
    db: TriageDB, db_path: Path
) -> None:
    assert sql(db_path, "pragma journal_mode") == [("wal",)]
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("pragma synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("pragma foreign_keys").scalar() == 1
        assert (conn.exec_driver_sql("pragma busy_timeout").scalar() or 0) >= 1000


def test_the_schema_version_is_stored(db: TriageDB, db_path: Path) -> None:
    assert sql(db_path, "select value from meta where key = 'schema_version'") == [("3",)]
    assert db.schema_version() == schema.SCHEMA_VERSION == 3
    tables = {name for (name,) in sql(db_path, "select name from sqlite_master where type='table'")}
    assert tables == {"meta", "campaigns", "cases", "findings", "buckets"}


def test_an_older_schema_is_upgraded_in_place(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pretend this code is the next version: a database of this version (with
    data) gets the upgrade step and the new stamp, and keeps its rows."""
    old = open_db(f"sqlite:///{db_path}")
    old.record_batch(campaign(old), [record()], progress())
    old.close()

    def add_priority(conn: object) -> None:
        conn.exec_driver_sql("ALTER TABLE buckets ADD COLUMN priority INTEGER DEFAULT 3")  # type: ignore[attr-defined]

    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.UPGRADES, current, add_priority)
    upgraded = open_db(f"sqlite:///{db_path}")
    assert upgraded.schema_version() == current + 1
    assert [b.hit_count for b in upgraded.list_buckets()] == [1]
    upgraded.close()
    assert sql(db_path, "select priority from buckets") == [(3,)]


def test_a_failing_upgrade_leaves_the_old_version_and_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = open_db(f"sqlite:///{db_path}")
    old.record_batch(campaign(old), [record()], progress())
    old.close()

    def broken(conn: object) -> None:
        conn.exec_driver_sql("ALTER TABLE buckets ADD COLUMN half_done INTEGER")  # type: ignore[attr-defined]
        raise RuntimeError("step failed")

    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.UPGRADES, current, broken)
    with pytest.raises(DatabaseError, match=f"from schema version {current} failed: step failed"):
        open_db(f"sqlite:///{db_path}")
    assert sql(db_path, "select value from meta") == [(str(current),)]
    columns = {row[1] for row in sql(db_path, "pragma table_info(buckets)")}
    assert "half_done" not in columns  # the DDL rolled back with the stamp
    assert sql(db_path, "select hit_count from buckets") == [(1,)]


V1_DUMP = Path(__file__).parent / "data" / "triage-v1.sql"
TABLES = ("meta", "campaigns", "cases", "buckets", "findings")


def _layout(path: Path) -> dict[str, object]:
    """Columns (name, type, not null, default, primary key) and indexes per table."""
    return {
        table: (
            [row[1:] for row in sql(path, f"pragma table_info({table})")],
            sorted(row[1:3] for row in sql(path, f"pragma index_list({table})")),
        )
        for table in TABLES
    }


def test_a_version_1_database_is_upgraded_to_known_buckets(tmp_path: Path, db_path: Path) -> None:
    """The real step 1 -> 2 on a database version 1's code made (dumped in
    tests/data): status `known` and `buckets.known_ref`, every row kept."""
    con = sqlite3.connect(db_path)
    con.executescript(V1_DUMP.read_text())
    con.close()
    columns = {
        t: ", ".join(row[1] for row in sql(db_path, f"pragma table_info({t})")) for t in TABLES
    }

    def rows() -> dict[str, list[tuple]]:  # type: ignore[type-arg]
        return {t: sql(db_path, f"select {columns[t]} from {t} order by 1") for t in TABLES}

    before = rows()
    assert before["meta"] == [("schema_version", "1")]

    db = open_db(f"sqlite:///{db_path}")
    assert db.schema_version() == schema.SCHEMA_VERSION
    after = rows()
    for table in ("campaigns", "cases", "buckets", "findings"):
        assert after[table] == before[table], table  # version 1's columns, as they were
    assert sql(db_path, "select known_ref from buckets") == [(None,), (None,)]
    assert sql(db_path, "pragma foreign_key_check") == []
    assert sql(db_path, "pragma integrity_check") == [("ok",)]
    fresh = tmp_path / "fresh.sqlite"
    open_db(f"sqlite:///{fresh}").close()
    assert _layout(db_path) == _layout(fresh)  # what a new database gets

    # the status constraint takes `known` and still refuses the unknown
    assert db.mark_bucket(1, "known", "by hand").status == "known"
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        sql(db_path, "update buckets set status = 'bogus' where id = 1")
    # and the foreign keys still point at the (new) buckets table
    con = sqlite3.connect(db_path)
    con.execute("pragma foreign_keys = on")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        con.execute("update findings set bucket_id = 99")
    con.close()
    known = record(key="k|known:x", known_ref="x", known_note="what the registry knows")
    [bucket_id] = db.record_batch(1, [known], progress())
    bucket = db.get_bucket(bucket_id)
    assert bucket is not None and (bucket.status, bucket.known_ref) == ("known", "x")
    assert bucket.notes.endswith("(known) what the registry knows")
    db.close()


def test_a_version_1_database_it_cannot_read_is_left_as_it_was(db_path: Path) -> None:
    con = sqlite3.connect(db_path)
    con.executescript(V1_DUMP.read_text().replace("CONSTRAINT bucket_status", "CONSTRAINT other"))
    con.close()
    with pytest.raises(DatabaseError, match="no version-1 status constraint"):
        open_db(f"sqlite:///{db_path}")
    assert sql(db_path, "select value from meta") == [("1",)]
    assert "known_ref" not in {row[1] for row in sql(db_path, "pragma table_info(buckets)")}
    assert len(sql(db_path, "select * from buckets")) == 2


def _stamped(path: Path, version: int) -> bytes:
    """An SQLite file in rollback-journal mode stamped with `version`."""
    con = sqlite3.connect(path)
    con.execute("create table meta (key varchar(64) primary key, value text)")
    con.execute("insert into meta values ('schema_version', ?)", (str(version),))
    con.commit()
    con.close()
    return path.read_bytes()


def test_a_newer_schema_is_refused_and_left_alone(db_path: Path) -> None:
    newer = schema.SCHEMA_VERSION + 1
    before = _stamped(db_path, newer)
    with pytest.raises(DatabaseError, match=f"schema version {newer} is newer"):
        open_db(f"sqlite:///{db_path}")
    assert db_path.read_bytes() == before  # not even switched to WAL
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["triage.sqlite"]


def test_a_version_without_an_upgrade_path_is_refused(db_path: Path) -> None:
    before = _stamped(db_path, 0)
    with pytest.raises(DatabaseError, match="no upgrade from database schema version 0"):
        open_db(f"sqlite:///{db_path}")
    assert db_path.read_bytes() == before


def test_a_text_file_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a database\n" * 300)
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="is not an SQLite database") as err:
        open_db(str(path))
    assert "\n" not in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_another_programs_sqlite_database_is_refused_and_left_alone(db_path: Path) -> None:
    con = sqlite3.connect(db_path)
    con.execute("create table recipes (name text)")
    con.commit()
    con.close()
    before = db_path.read_bytes()
    with pytest.raises(DatabaseError, match="not a callfuzz triage database.*recipes"):
        open_db(f"sqlite:///{db_path}")
    assert db_path.read_bytes() == before


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="is a directory"):
        open_db(f"sqlite:///{tmp_path}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://user@host:notaport/db", "not a database URL"),
        ("nosuchdb://somewhere/x", "unknown database kind"),
        ("sqlite:////no/such/directory/triage.sqlite", "does not exist"),
    ],
)
def test_unusable_urls_are_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(DatabaseError, match=message) as err:
        open_db(url)
    assert "\n" not in str(err.value)


def test_readers_do_not_create_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no database at"):
        open_db(str(tmp_path / "missing.sqlite"), create=False)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_becomes_a_database(db_path: Path) -> None:
    db_path.touch()
    handle = open_db(str(db_path))  # a bare path means an SQLite file
    assert handle.schema_version() == schema.SCHEMA_VERSION
    handle.close()


# --- PostgreSQL ----------------------------------------------------------------------


def _server_bindirs() -> list[Path]:
    """Where PostgreSQL's initdb/pg_ctl may be: the `pgserver` wheel (the dev
    extra), then the system's."""
    dirs: list[Path] = []
    spec = importlib.util.find_spec("pgserver")  # found, not imported: it has side effects
    if spec is not None and spec.origin is not None:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    if found := shutil.which("pg_ctl"):
        dirs.append(Path(found).resolve().parent)
    dirs += [Path(d) for d in sorted(glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    usable = [d for d in dirs if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return list(dict.fromkeys(usable))


def _server_user() -> str | None:
    """initdb refuses to run as root: run the server as an unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("running as root and no unprivileged user for the PostgreSQL server")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on a unix socket (no TCP port), for the session."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("no PostgreSQL driver: pip install -e '.[dev]' (psycopg)")
    bindirs = _server_bindirs()
    if not bindirs:
        pytest.skip("no PostgreSQL server: pip install -e '.[dev]' (pgserver) or apt postgresql")
    user = _server_user()
    home = Path(tempfile.mkdtemp(prefix="callfuzz-pg-"))  # short: socket paths are limited
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    data, failures = home / "data", []
    for bindir in bindirs:
        started = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "callfuzz", "--auth=trust"]
            + ["-E", "UTF8", "--no-sync"],
            capture_output=True,
            text=True,
            user=user,
        )
        if started.returncode == 0:
            started = subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w"]
                + ["-t", "30", "-o", f"-F -h '' -k {home}", "start"],
                capture_output=True,
                text=True,
                user=user,
            )
            if started.returncode == 0:
                break
        failures.append(f"{bindir}: {(started.stderr or started.stdout).strip()[-200:]}")
        shutil.rmtree(data, ignore_errors=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip("PostgreSQL would not start: " + "; ".join(failures))
    try:
        yield f"postgresql+psycopg://callfuzz@/{{db}}?host={home}"
    finally:
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            user=user,
        )
        shutil.rmtree(home, ignore_errors=True)


_databases = count()


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the session's server."""
    name = f"triage_{next(_databases)}"
    admin = create_engine(pg_server.format(db="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return pg_server.format(db=name)


def test_postgresql_round_trip(pg_url: str) -> None:
    from fuzz.commands.triage import triage

    db = open_db(pg_url)
    assert db.schema_version() == schema.SCHEMA_VERSION
    cid = campaign(db, seed=1 << 33)  # seeds beyond 32 bits
    new = db.record_batch(cid, [record(LARGE), record(SMALL), record(key="other")], progress())
    assert len(new) == 2
    buckets = {b.key: b for b in db.list_buckets()}
    bucket, other = buckets["x86_64|wrong result|0:i64"], buckets["other"]
    assert (bucket.hit_count, bucket.best_lines, other.hit_count) == (2, 4, 1)
    assert db.case_text(bucket.best_case_id) == SMALL
    info = db.get_campaign(cid)
    assert info is not None and info.seed == 1 << 33 and info.cases_done == 10
    db.close()

    again = open_db(pg_url)  # reopening an existing schema
    assert again.record_batch(cid, [record(SMALL)], progress()) == []
    again.close()
    result = CliRunner().invoke(triage, ["list", "--db", pg_url])
    assert result.exit_code == 0, result.output
    # three hits after the reopen
    assert re.search(r"new\s+│\s+3\s+│\s+x86_64\s+│.*title of x86_64\|wrong", result.stdout)


def test_postgresql_version_1_is_upgraded_to_known_buckets(pg_url: str) -> None:
    db = open_db(pg_url)
    db.record_batch(campaign(db), [record()], progress())
    db.close()
    # back to the layout version 1's code made
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE buckets DROP COLUMN reduced_verified_on"))
        conn.execute(text("ALTER TABLE buckets DROP COLUMN known_ref"))
        conn.execute(text("ALTER TABLE buckets DROP CONSTRAINT bucket_status"))
        conn.execute(
            text(
                "ALTER TABLE buckets ADD CONSTRAINT bucket_status CHECK "
                "(status IN ('new', 'confirmed', 'reported', 'fixed', 'invalid'))"
            )
        )
        conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()

    upgraded = open_db(pg_url)
    assert upgraded.schema_version() == schema.SCHEMA_VERSION
    [bucket] = upgraded.list_buckets()
    assert (bucket.hit_count, bucket.known_ref) == (1, None)
    assert upgraded.mark_bucket(bucket.id, "known").status == "known"
    upgraded.close()
    engine = create_engine(pg_url)
    with pytest.raises(IntegrityError, match="bucket_status"), engine.begin() as conn:
        conn.execute(text("UPDATE buckets SET status = 'bogus'"))
    engine.dispose()


def test_postgresql_concurrent_writers_count_every_hit(pg_url: str) -> None:
    setup = open_db(pg_url)
    cid = campaign(setup)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        handle = open_db(pg_url)
        try:
            for i in range(10):
                batch = [record(f"; {n} {i}\n" + SMALL), record(key=f"k{(n + i) % 3}")]
                handle.record_batch(cid, batch, progress())
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            handle.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    hits = {b.key: b.hit_count for b in setup.list_buckets()}
    setup.close()
    assert hits["x86_64|wrong result|0:i64"] == 40
    assert sum(hits[f"k{k}"] for k in range(3)) == 40
