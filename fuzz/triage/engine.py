"""Opening the triage database: URLs, SQLite file checks, the engine, WAL,
and creating or upgrading the schema.

SQLite by default (`crashes/triage.sqlite`, WAL journal so `callfuzz triage`
can read while a campaign writes); any SQLAlchemy URL works, PostgreSQL for
campaigns shared by several machines. Opening never changes a database it
cannot use: everything is checked read-only first, and only then are WAL
mode, tables or schema upgrades written.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, inspect, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import StaticPool

from fuzz.triage import schema
from fuzz.triage.schema import Base, Meta

DEFAULT_URL = "sqlite:///crashes/triage.sqlite"
BUSY_TIMEOUT_SECONDS = 30.0  # a campaign's writer and `triage mark` take turns
WRITE = "callfuzz_write"  # execution option: this transaction will write
_SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseError(Exception):
    """A database that cannot be used; the message is one line naming why."""


def open_engine(url: str | None, *, create: bool) -> Engine:
    """An engine on the database at `url`, its schema created or upgraded.

    `url` is any SQLAlchemy URL or a bare SQLite file path; None is
    `DEFAULT_URL`, whose `crashes/` directory is made if missing. With
    `create=False` a missing SQLite file is an error (readers use it)."""
    if url is None:
        url = DEFAULT_URL
        if create:
            Path("crashes").mkdir(exist_ok=True)
    parsed = _parse_url(url)
    engine = _engine_for(parsed, create)
    try:
        _prepare_schema(engine)
    except DatabaseError:
        engine.dispose()
        raise
    except (sa_exc.SQLAlchemyError, sqlite3.Error, OSError) as err:
        engine.dispose()
        raise DatabaseError(f"cannot open {display_url(parsed)}: {one_line(err)}") from None
    return engine


def display_url(url: URL) -> str:
    """The URL to show: no password, an SQLite file as an absolute path."""
    path = sqlite_file(url)
    if path is not None:
        url = url.set(database=str(path.resolve()))
    return url.render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The file an SQLite URL names (None: in memory, or not SQLite)."""
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:":
        return None
    if db.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(db)


def one_line(err: BaseException) -> str:
    """The first line of an error, the driver's own for a failed statement."""
    if isinstance(err, sa_exc.StatementError) and err.orig is not None:
        err = err.orig
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# --- the engine ------------------------------------------------------------------


def _parse_url(url: str) -> URL:
    """An SQLAlchemy URL, or a bare file path meaning an SQLite file."""
    if "://" not in url:
        return URL.create("sqlite", database=url)
    try:
        return make_url(url)
    except (sa_exc.ArgumentError, ValueError) as err:
        raise DatabaseError(f"not a database URL: {url!r} ({err})") from None


def _check_sqlite_file(path: Path, create: bool) -> None:
    """Refuse, without touching it, a path SQLite could not use as our database."""
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database file")
    if not path.exists():
        if not create:
            raise DatabaseError(f"no database at {path}")
        parent = path.parent
        if not parent.is_dir():
            raise DatabaseError(f"cannot create {path}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise DatabaseError(f"cannot create {path}: directory {parent} is not writable")
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as err:
        raise DatabaseError(f"cannot read {path}: {err.strerror or err}") from None
    if head and head != _SQLITE_MAGIC:  # an empty file is an empty database
        raise DatabaseError(f"{path} is not an SQLite database")
    if not os.access(path, os.W_OK):
        raise DatabaseError(f"{path} is not writable")
    # WAL keeps its -wal and -shm files beside the database
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise DatabaseError(f"directory {path.parent} is not writable (WAL needs it)")


def _sqlite_engine(url: URL, path: Path | None) -> Engine:
    if path is None:
        # one shared connection, or every session would see its own empty database
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # We issue BEGIN ourselves (below); these pragmas write nothing to the file.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that
        # reads first cannot upgrade once another writer committed (WAL).
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _engine_for(url: URL, create: bool) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            path = sqlite_file(url)
            if path is not None:
                _check_sqlite_file(path, create)
            return _sqlite_engine(url, path)
        return create_engine(url, pool_pre_ping=True)
    except sa_exc.NoSuchModuleError:
        raise DatabaseError(f"unknown database kind {url.drivername!r}") from None
    except ImportError as err:
        raise DatabaseError(f"no driver for {url.drivername}: {err}") from None
    except sa_exc.ArgumentError as err:
        raise DatabaseError(f"bad database URL: {one_line(err)}") from None


def _enable_wal(engine: Engine) -> None:
    if sqlite_file(engine.url) is None:
        return
    raw = engine.raw_connection()  # outside any transaction, as journal_mode needs
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        row = cursor.fetchone()
        mode = row[0] if row else None
        cursor.close()
    finally:
        raw.close()
    if str(mode).lower() != "wal":
        raise DatabaseError(f"cannot switch {engine.url.database} to WAL mode (got {mode})")


# --- the schema ------------------------------------------------------------------
# schema.SCHEMA_VERSION and schema.UPGRADES are looked up when used, so a test
# can pretend to be a newer version.


def _stored_version(conn: Connection) -> int | None:
    """Our schema version, None for an empty database; refuses anything else."""
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return None
    if "meta" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise DatabaseError(f"not a callfuzz triage database (it holds other tables: {shown})")
    row = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).first()
    if row is None or not row[0].isdigit():
        raise DatabaseError("not a callfuzz triage database (no schema version)")
    return int(row[0])


def _check_version(version: int | None) -> None:
    current = schema.SCHEMA_VERSION
    if version is not None and version > current:
        raise DatabaseError(
            f"database schema version {version} is newer than this callfuzz "
            f"understands ({current}): upgrade callfuzz"
        )
    if version is not None and version < current:
        missing = [v for v in range(version, current) if v not in schema.UPGRADES]
        if missing:
            raise DatabaseError(f"no upgrade from database schema version {missing[0]}")


def _prepare_schema(engine: Engine) -> None:
    """Check read-only first; then create or upgrade in one transaction."""
    with engine.connect() as conn:
        version = _stored_version(conn)
        conn.rollback()
    _check_version(version)
    _enable_wal(engine)  # the first write: only now do we know the file is ours
    if version == schema.SCHEMA_VERSION:
        return
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # two machines opening a fresh database at once: one creates it
            conn.execute(text("SELECT pg_advisory_xact_lock(7210001)"))
        version = _stored_version(conn)  # again, now holding the lock
        _check_version(version)
        if version is None:
            Base.metadata.create_all(conn)
            stamp = insert(Meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION))
            conn.execute(stamp)
            return
        for v in range(version, schema.SCHEMA_VERSION):
            _upgrade(conn, v)


def _upgrade(conn: Connection, version: int) -> None:
    """One step, version -> version + 1; a failure rolls the whole open back."""
    try:
        schema.UPGRADES[version](conn)
    except (sa_exc.SQLAlchemyError, DatabaseError):
        raise
    except Exception as err:
        raise DatabaseError(
            f"upgrading the database from schema version {version} failed: {err}"
        ) from err
    stamp = update(Meta).where(Meta.key == "schema_version").values(value=str(version + 1))
    conn.execute(stamp)
