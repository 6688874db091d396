"""The triage database: campaigns, deduplicated cases, findings and buckets.

SQLite by default (`crashes/triage.sqlite`, WAL journal so `callfuzz triage`
can read while a campaign writes); any SQLAlchemy URL works, PostgreSQL for
campaigns shared by several machines. One bug is one bucket: findings with the
same bucket key (see `fuzz.buckets`) land in it, and the bucket keeps the
smallest reproducer.

Opening never changes a database it cannot use: everything is checked
read-only first, and only then are WAL mode, tables or schema upgrades written.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Engine,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite:///crashes/triage.sqlite"
BUSY_TIMEOUT_SECONDS = 30.0  # a campaign's writer and `triage mark` take turns
WRITE_RETRIES = 5  # deadlocks and lock time-outs between concurrent writers
_SQLITE_MAGIC = b"SQLite format 3\x00"
_WRITE = "callfuzz_write"  # execution option: this transaction will write

T = TypeVar("T")


class DatabaseError(Exception):
    """A database that cannot be used; the message is one line naming why."""


class BucketStatus(enum.StrEnum):
    NEW = "new"
    CONFIRMED = "confirmed"
    REPORTED = "reported"
    FIXED = "fixed"
    INVALID = "invalid"


class CampaignStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


def _now() -> datetime:
    return datetime.now(UTC)


# --- schema ----------------------------------------------------------------


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _choice(kind: type[enum.StrEnum], name: str) -> Enum:
    # VARCHAR plus a CHECK constraint: the same on SQLite and PostgreSQL, and
    # a new status later needs no ALTER TYPE.
    return Enum(
        *(m.value for m in kind),
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
    )


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        dict[str, int]: JSON(),
    }


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    host: Mapped[str] = mapped_column(Text)
    cranelift_version: Mapped[str] = mapped_column(String(64))
    targets: Mapped[list[str]]
    flags: Mapped[dict[str, Any]]
    engine: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(BigInteger)
    jobs: Mapped[int]
    cases_done: Mapped[int] = mapped_column(BigInteger, default=0)
    # every seed below it has its results stored: `--resume` starts here
    next_seed: Mapped[int] = mapped_column(BigInteger)
    executions: Mapped[dict[str, int]]  # per target
    verdicts: Mapped[dict[str, int]]
    cases_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(_choice(CampaignStatus, "campaign_status"))


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clif: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    lines: Mapped[int]
    created_at: Mapped[datetime]


class Bucket(Base):
    __tablename__ = "buckets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    # Uniqueness is on the key's hash: a masked compile-error message can be
    # longer than a PostgreSQL btree entry may be.
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(String(32), index=True)
    verdict: Mapped[str] = mapped_column(String(32), index=True)
    hit_count: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime] = mapped_column(index=True)
    cranelift_versions: Mapped[list[str]]
    best_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    reduced_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    status: Mapped[str] = mapped_column(_choice(BucketStatus, "bucket_status"), index=True)
    notes: Mapped[str] = mapped_column(Text, default="")


class Finding(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    target: Mapped[str] = mapped_column(Text)  # label with ISA flags: "aarch64 has_lse"
    flags: Mapped[list[str]]
    verdict: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]]
    blame: Mapped[list[str]]
    origin: Mapped[str] = mapped_column(String(32))  # generated, corpus, hard crash, hang...
    seed: Mapped[int | None] = mapped_column(BigInteger)
    cranelift_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id"), index=True)


_TABLES = ("meta", "campaigns", "cases", "buckets", "findings")

# Schema upgrades: UPGRADES[v] takes a database at version v to v + 1, inside
# the transaction that then stamps the new version. Version 1 is the first
# released layout, so there are none yet; the next schema change adds
# `UPGRADES[1]` (an ALTER TABLE or a data migration) and bumps SCHEMA_VERSION.
UPGRADES: dict[int, Callable[[Connection], None]] = {}


# --- the records the campaign writer hands over ------------------------------


@dataclass
class FindingRecord:
    clif: str
    target: str
    flags: list[str]
    verdict: str
    details: dict[str, Any]
    blame: list[str]
    bucket_key: str
    bucket_title: str
    cranelift_version: str
    origin: str = "generated"
    seed: int | None = None
    # False: only count the hit (the bucket already holds enough examples of
    # this bug; a night can hit one bug millions of times)
    keep: bool = True


@dataclass
class Progress:
    """Campaign counters after a batch (absolute values, not deltas)."""

    cases_done: int
    next_seed: int
    executions: dict[str, int]
    verdicts: dict[str, int]
    cases_per_second: float


# --- what queries return -------------------------------------------------------


@dataclass(frozen=True)
class CampaignInfo:
    id: int
    started_at: datetime
    ended_at: datetime | None
    host: str
    cranelift_version: str
    targets: tuple[str, ...]
    flags: dict[str, Any]
    engine: str
    seed: int
    jobs: int
    cases_done: int
    next_seed: int
    executions: dict[str, int]
    verdicts: dict[str, int]
    cases_per_second: float
    status: str

    @classmethod
    def of(cls, c: Campaign) -> CampaignInfo:
        return cls(
            id=c.id,
            started_at=c.started_at,
            ended_at=c.ended_at,
            host=c.host,
            cranelift_version=c.cranelift_version,
            targets=tuple(c.targets),
            flags=dict(c.flags or {}),
            engine=c.engine,
            seed=c.seed,
            jobs=c.jobs,
            cases_done=c.cases_done,
            next_seed=c.next_seed,
            executions=dict(c.executions or {}),
            verdicts=dict(c.verdicts or {}),
            cases_per_second=c.cases_per_second,
            status=c.status,
        )


@dataclass(frozen=True)
class BucketInfo:
    id: int
    key: str
    title: str
    target: str
    verdict: str
    hit_count: int
    first_seen: datetime
    last_seen: datetime
    cranelift_versions: tuple[str, ...]
    best_case_id: int
    best_lines: int
    reduced_case_id: int | None
    status: str
    notes: str

    @classmethod
    def of(cls, b: Bucket, best_lines: int) -> BucketInfo:
        return cls(
            id=b.id,
            key=b.key,
            title=b.title,
            target=b.target,
            verdict=b.verdict,
            hit_count=b.hit_count,
            first_seen=b.first_seen,
            last_seen=b.last_seen,
            cranelift_versions=tuple(b.cranelift_versions or ()),
            best_case_id=b.best_case_id,
            best_lines=best_lines,
            reduced_case_id=b.reduced_case_id,
            status=b.status,
            notes=b.notes,
        )


@dataclass(frozen=True)
class FindingInfo:
    id: int
    campaign_id: int | None
    case_id: int
    clif: str
    target: str
    flags: tuple[str, ...]
    verdict: str
    details: dict[str, Any]
    blame: tuple[str, ...]
    origin: str
    seed: int | None
    cranelift_version: str
    created_at: datetime
    bucket_id: int


@dataclass(frozen=True)
class Summary:
    """Counts for `callfuzz triage stats`."""

    buckets_by_status: dict[str, int]
    buckets_by_target: dict[str, int]
    buckets_by_verdict: dict[str, int]
    findings: int
    cases: int
    campaigns: tuple[CampaignInfo, ...]


def case_hash(clif: str) -> str:
    return hashlib.sha256(clif.encode()).hexdigest()


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _line_count(clif: str) -> int:
    return len(clif.splitlines())


# --- opening -------------------------------------------------------------------


def _parse_url(url: str) -> URL:
    """An SQLAlchemy URL, or a bare file path meaning an SQLite file."""
    if "://" not in url:
        return URL.create("sqlite", database=url)
    try:
        return make_url(url)
    except (sa_exc.ArgumentError, ValueError) as err:
        raise DatabaseError(f"not a database URL: {url!r} ({err})") from None


def _sqlite_path(url: URL) -> Path | None:
    """The file an SQLite URL names (None: in memory)."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(db)


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
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _engine_for(url: URL, create: bool) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            path = _sqlite_path(url)
            if path is not None:
                _check_sqlite_file(path, create)
            return _sqlite_engine(url, path)
        return create_engine(url, pool_pre_ping=True)
    except sa_exc.NoSuchModuleError:
        raise DatabaseError(f"unknown database kind {url.drivername!r}") from None
    except ImportError as err:
        raise DatabaseError(f"no driver for {url.drivername}: {err}") from None
    except sa_exc.ArgumentError as err:
        raise DatabaseError(f"bad database URL: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    if isinstance(err, sa_exc.StatementError) and err.orig is not None:
        err = err.orig
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


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
    if version is not None and version > SCHEMA_VERSION:
        raise DatabaseError(
            f"database schema version {version} is newer than this callfuzz "
            f"understands ({SCHEMA_VERSION}): upgrade callfuzz"
        )
    if version is not None and version < SCHEMA_VERSION:
        missing = [v for v in range(version, SCHEMA_VERSION) if v not in UPGRADES]
        if missing:
            raise DatabaseError(f"no upgrade from database schema version {missing[0]}")


def _prepare_schema(engine: Engine) -> None:
    """Check read-only first; then create or upgrade in one transaction."""
    with engine.connect() as conn:
        version = _stored_version(conn)
        conn.rollback()
    _check_version(version)
    _enable_wal(engine)  # the first write: only now do we know the file is ours
    if version == SCHEMA_VERSION:
        return
    with engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # two machines opening a fresh database at once: one creates it
            conn.execute(text("SELECT pg_advisory_xact_lock(7210001)"))
        version = _stored_version(conn)  # again, now holding the lock
        _check_version(version)
        if version is None:
            Base.metadata.create_all(conn)
            conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        for v in range(version, SCHEMA_VERSION):
            _upgrade(conn, v)


def _upgrade(conn: Connection, version: int) -> None:
    """One step, version -> version + 1; a failure rolls the whole open back."""
    try:
        UPGRADES[version](conn)
    except (sa_exc.SQLAlchemyError, DatabaseError):
        raise
    except Exception as err:
        raise DatabaseError(
            f"upgrading the database from schema version {version} failed: {err}"
        ) from err
    stamp = update(Meta).where(Meta.key == "schema_version").values(value=str(version + 1))
    conn.execute(stamp)


def _enable_wal(engine: Engine) -> None:
    if engine.dialect.name != "sqlite" or _sqlite_path(engine.url) is None:
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


def open_db(url: str | None = None, *, create: bool = True) -> TriageDB:
    """Open (creating or upgrading as needed) the triage database at `url`.

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
        raise DatabaseError(f"cannot open {_display(parsed)}: {_one_line(err)}") from None
    return TriageDB(engine)


def _display(url: URL) -> str:
    path = _sqlite_path(url) if url.get_backend_name() == "sqlite" else None
    if path is not None:
        url = url.set(database=str(path.resolve()))
    return url.render_as_string(hide_password=True)


# --- the database ----------------------------------------------------------------


class TriageDB:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = _display(engine.url)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def workdir(self) -> Path:
        """Where a campaign keeps in-flight files: beside an SQLite file, else crashes/."""
        path = _sqlite_path(self.engine.url) if self.engine.dialect.name == "sqlite" else None
        return path.parent if path is not None else Path("crashes")

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions ------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with self._sessions() as session, session.begin():
                yield session
        except sa_exc.SQLAlchemyError as err:
            raise DatabaseError(f"database read failed: {_one_line(err)}") from None

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one write transaction, retrying lock time-outs and
        deadlocks between concurrent writers (the transaction rolled back)."""
        for attempt in range(WRITE_RETRIES):
            try:
                with self._sessions() as session, session.begin():
                    session.connection(execution_options={_WRITE: True})
                    return work(session)
            except (sa_exc.OperationalError, sa_exc.IntegrityError) as err:
                if attempt == WRITE_RETRIES - 1:
                    raise DatabaseError(f"database write failed: {_one_line(err)}") from None
                time.sleep(0.05 * 2**attempt)
            except sa_exc.SQLAlchemyError as err:
                raise DatabaseError(f"database write failed: {_one_line(err)}") from None
        raise AssertionError("unreachable")

    # -- campaigns ---------------------------------------------------------------

    def start_campaign(
        self,
        *,
        host: str,
        cranelift_version: str,
        targets: list[str],
        flags: dict[str, Any],
        engine: str,
        seed: int,
        jobs: int,
    ) -> int:
        def work(s: Session) -> int:
            campaign = Campaign(
                started_at=_now(),
                host=host,
                cranelift_version=cranelift_version,
                targets=list(targets),
                flags=dict(flags),
                engine=engine,
                seed=seed,
                jobs=jobs,
                cases_done=0,
                next_seed=seed,
                executions={},
                verdicts={},
                cases_per_second=0.0,
                status=CampaignStatus.RUNNING.value,
            )
            s.add(campaign)
            s.flush()
            return campaign.id

        return self._write(work)

    def latest_campaign(self) -> CampaignInfo | None:
        with self._read() as s:
            c = s.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(1)).first()
            return CampaignInfo.of(c) if c else None

    def get_campaign(self, campaign_id: int) -> CampaignInfo | None:
        with self._read() as s:
            c = s.get(Campaign, campaign_id)
            return CampaignInfo.of(c) if c else None

    def campaigns(self) -> list[CampaignInfo]:
        with self._read() as s:
            return [CampaignInfo.of(c) for c in s.scalars(select(Campaign).order_by(Campaign.id))]

    def reopen_campaign(self, campaign_id: int) -> None:
        def work(s: Session) -> None:
            c = _campaign(s, campaign_id)
            c.status = CampaignStatus.RUNNING.value
            c.ended_at = None

        self._write(work)

    def finish_campaign(self, campaign_id: int, status: str = "finished") -> None:
        if status not in (CampaignStatus.FINISHED, CampaignStatus.INTERRUPTED):
            raise ValueError(f"a campaign ends finished or interrupted, not {status!r}")

        def work(s: Session) -> None:
            c = _campaign(s, campaign_id)
            c.status = status
            c.ended_at = _now()

        self._write(work)

    # -- findings ------------------------------------------------------------------

    def record_batch(
        self, campaign_id: int, findings: Sequence[FindingRecord], progress: Progress
    ) -> list[int]:
        """Store a batch of findings and the campaign's counters in ONE
        transaction; returns the ids of the buckets this batch created."""
        return self._write(lambda s: _record(s, campaign_id, findings, progress))

    def bucket_keys(self, bucket_ids: Sequence[int]) -> set[str]:
        with self._read() as s:
            return set(s.scalars(select(Bucket.key).where(Bucket.id.in_(list(bucket_ids)))))

    # -- triage ----------------------------------------------------------------------

    def list_buckets(
        self,
        *,
        status: str | None = None,
        target: str | None = None,
        verdict: str | None = None,
        limit: int | None = None,
    ) -> list[BucketInfo]:
        """Newest `last_seen` first."""
        query = select(Bucket, Case.lines).join(Case, Case.id == Bucket.best_case_id)
        if status is not None:
            query = query.where(Bucket.status == status)
        if target is not None:
            query = query.where(Bucket.target == target)
        if verdict is not None:
            query = query.where(Bucket.verdict == verdict)
        query = query.order_by(Bucket.last_seen.desc(), Bucket.id.desc()).limit(limit)
        with self._read() as s:
            return [BucketInfo.of(b, lines) for b, lines in s.execute(query)]

    def get_bucket(self, bucket_id: int) -> BucketInfo | None:
        query = (
            select(Bucket, Case.lines)
            .join(Case, Case.id == Bucket.best_case_id)
            .where(Bucket.id == bucket_id)
        )
        with self._read() as s:
            row = s.execute(query).first()
            return BucketInfo.of(*row) if row else None

    def case_text(self, case_id: int) -> str | None:
        with self._read() as s:
            case = s.get(Case, case_id)
            return case.clif if case else None

    def bucket_findings(self, bucket_id: int, limit: int | None = None) -> list[FindingInfo]:
        """The bucket's findings, those of its best reproducer first, then newest."""
        bucket_best = select(Bucket.best_case_id).where(Bucket.id == bucket_id).scalar_subquery()
        query = (
            select(Finding, Case.clif)
            .join(Case, Case.id == Finding.case_id)
            .where(Finding.bucket_id == bucket_id)
            .order_by((Finding.case_id == bucket_best).desc(), Finding.id.desc())
            .limit(limit)
        )
        with self._read() as s:
            return [_finding_info(f, clif) for f, clif in s.execute(query)]

    def bucket_configs(
        self, bucket_id: int, scan: int = 10_000
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Distinct (target label, shared flags) among the bucket's latest `scan` findings."""
        query = (
            select(Finding.target, Finding.flags)
            .where(Finding.bucket_id == bucket_id)
            .order_by(Finding.id.desc())
            .limit(scan)
        )
        with self._read() as s:
            seen = {(target, tuple(flags or ())) for target, flags in s.execute(query)}
        return sorted(seen)

    def mark_bucket(self, bucket_id: int, status: str, note: str | None = None) -> BucketInfo:
        """Set a bucket's status; a note is appended with a timestamp."""
        if status not in set(BucketStatus):
            raise ValueError(
                f"unknown status {status!r} (one of: {', '.join(m.value for m in BucketStatus)})"
            )

        def work(s: Session) -> BucketInfo:
            bucket = s.get(Bucket, bucket_id, with_for_update=True)
            if bucket is None:
                raise KeyError(bucket_id)
            bucket.status = status
            if note:
                stamp = _now().strftime("%Y-%m-%d %H:%M:%SZ")
                entry = f"[{stamp}] ({status}) {note.strip()}"
                bucket.notes = f"{bucket.notes}\n{entry}" if bucket.notes else entry
            best = s.get_one(Case, bucket.best_case_id)
            s.flush()
            return BucketInfo.of(bucket, best.lines)

        return self._write(work)

    def set_reduced_case(self, bucket_id: int, clif: str) -> int:
        """Store a bucket's reduced reproducer; returns its case id."""

        def work(s: Session) -> int:
            bucket = s.get(Bucket, bucket_id, with_for_update=True)
            if bucket is None:
                raise KeyError(bucket_id)
            case_id = _case_id(s, clif, case_hash(clif))
            bucket.reduced_case_id = case_id
            return case_id

        return self._write(work)

    def summary(self) -> Summary:
        with self._read() as s:

            def count_by(column: Any) -> dict[str, int]:
                rows = s.execute(select(column, func.count()).group_by(column))
                return {str(k): int(n) for k, n in sorted(rows, key=lambda r: str(r[0]))}

            findings = s.scalar(select(func.count()).select_from(Finding)) or 0
            cases = s.scalar(select(func.count()).select_from(Case)) or 0
            campaigns = tuple(
                CampaignInfo.of(c) for c in s.scalars(select(Campaign).order_by(Campaign.id))
            )
            return Summary(
                buckets_by_status=count_by(Bucket.status),
                buckets_by_target=count_by(Bucket.target),
                buckets_by_verdict=count_by(Bucket.verdict),
                findings=findings,
                cases=cases,
                campaigns=campaigns,
            )

    def schema_version(self) -> int:
        with self._read() as s:
            value = s.scalar(select(Meta.value).where(Meta.key == "schema_version"))
            return int(value or 0)


def _campaign(s: Session, campaign_id: int) -> Campaign:
    c = s.get(Campaign, campaign_id)
    if c is None:
        raise DatabaseError(f"no campaign {campaign_id}")
    return c


def _finding_info(f: Finding, clif: str) -> FindingInfo:
    return FindingInfo(
        id=f.id,
        campaign_id=f.campaign_id,
        case_id=f.case_id,
        clif=clif,
        target=f.target,
        flags=tuple(f.flags or ()),
        verdict=f.verdict,
        details=dict(f.details or {}),
        blame=tuple(f.blame or ()),
        origin=f.origin,
        seed=f.seed,
        cranelift_version=f.cranelift_version,
        created_at=f.created_at,
        bucket_id=f.bucket_id,
    )


# --- recording a batch ------------------------------------------------------------


def _insert_missing(
    s: Session, model: type[Base], values: dict[str, Any], unique: str
) -> int | None:
    """INSERT unless a row with the same `unique` column exists (a concurrent
    writer may have just added it); returns the new row's id, None if it existed."""
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        ins = sqlite.insert if dialect == "sqlite" else postgresql.insert
        stmt = (
            ins(model)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[unique])
            .returning(model.__table__.c.id)  # type: ignore[attr-defined]
        )
        return s.execute(stmt).scalar()
    try:  # other backends: a savepoint absorbs the duplicate
        with s.begin_nested():
            result = s.connection().execute(insert(model).values(**values))
            key = result.inserted_primary_key
            return int(key[0]) if key else None
    except sa_exc.IntegrityError:
        return None


def _case_id(s: Session, clif: str, digest: str) -> int:
    values = {"clif": clif, "sha256": digest, "lines": _line_count(clif), "created_at": _now()}
    new = _insert_missing(s, Case, values, "sha256")
    return new if new is not None else s.scalars(select(Case.id).where(Case.sha256 == digest)).one()


def _bucket(
    s: Session, record: FindingRecord, case_id: int | None, now: datetime
) -> tuple[Bucket, bool]:
    """The record's bucket, created if new, locked against concurrent updates."""
    digest = _key_hash(record.bucket_key)
    values = {
        "key": record.bucket_key,
        "key_sha256": digest,
        "title": record.bucket_title,
        "target": record.target.split()[0] if record.target.strip() else "?",
        "verdict": record.verdict,
        "hit_count": 0,
        "first_seen": now,
        "last_seen": now,
        "cranelift_versions": [],
        "best_case_id": case_id,
        "status": BucketStatus.NEW.value,
        "notes": "",
    }
    # a hit-only record (no case of its own) always finds its bucket in place
    created = case_id is not None and _insert_missing(s, Bucket, values, "key_sha256") is not None
    query = (
        select(Bucket)
        .where(Bucket.key_sha256 == digest)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return s.scalars(query).one(), created


def _record(
    s: Session, campaign_id: int, records: Sequence[FindingRecord], progress: Progress
) -> list[int]:
    campaign = _campaign(s, campaign_id)
    now = _now()
    records = _kept_where_needed(s, records)
    # Rows are taken in hash order, so two concurrent batches lock them in the
    # same order and cannot deadlock each other on PostgreSQL.
    digests = {r.clif: case_hash(r.clif) for r in records if r.keep}
    case_ids = {clif: _case_id(s, clif, d) for clif, d in sorted(digests.items(), key=_second)}
    lines = {case_ids[clif]: _line_count(clif) for clif in digests}
    buckets: dict[str, Bucket] = {}
    created: set[str] = set()
    kept_first = sorted(records, key=lambda r: (_key_hash(r.bucket_key), not r.keep))
    for record in kept_first:
        if record.bucket_key not in buckets:
            bucket, new = _bucket(s, record, case_ids.get(record.clif), now)
            buckets[record.bucket_key] = bucket
            if new:
                created.add(record.bucket_key)
    for record in records:  # findings in the writer's order
        bucket = buckets[record.bucket_key]
        if not record.keep:
            _count_hit(bucket, record, now)
            continue
        case_id = case_ids[record.clif]
        s.add(_finding(record, campaign_id, case_id, bucket.id, now))
        _hit(s, bucket, record, case_id, lines[case_id], now)
    campaign.cases_done = progress.cases_done
    campaign.next_seed = progress.next_seed
    campaign.executions = dict(progress.executions)
    campaign.verdicts = dict(progress.verdicts)
    campaign.cases_per_second = float(progress.cases_per_second)
    # in the writer's order, each once
    return [
        buckets[key].id for key in dict.fromkeys(r.bucket_key for r in records) if key in created
    ]


def _second(item: tuple[str, str]) -> str:
    return item[1]


def _finding(
    record: FindingRecord, campaign_id: int, case_id: int, bucket_id: int, now: datetime
) -> Finding:
    return Finding(
        campaign_id=campaign_id,
        case_id=case_id,
        target=record.target,
        flags=list(record.flags),
        verdict=record.verdict,
        details=record.details,
        blame=list(record.blame),
        origin=record.origin,
        seed=record.seed,
        cranelift_version=record.cranelift_version,
        created_at=now,
        bucket_id=bucket_id,
    )


def _kept_where_needed(s: Session, records: Sequence[FindingRecord]) -> list[FindingRecord]:
    """A record that would only count a hit on a bucket that does not exist
    yet is kept after all: a bucket always has a reproducer."""
    kept_keys = {r.bucket_key for r in records if r.keep}
    out = []
    for r in records:
        if not r.keep and r.bucket_key not in kept_keys:
            exists = s.scalar(select(Bucket.id).where(Bucket.key_sha256 == _key_hash(r.bucket_key)))
            if exists is None:
                r = dataclasses.replace(r, keep=True)
                kept_keys.add(r.bucket_key)
        out.append(r)
    return out


def _count_hit(bucket: Bucket, record: FindingRecord, now: datetime) -> None:
    """One more hit: count, last seen, Cranelift version."""
    bucket.hit_count += 1
    bucket.last_seen = max(bucket.last_seen, now)
    if record.cranelift_version not in bucket.cranelift_versions:
        bucket.cranelift_versions = [*bucket.cranelift_versions, record.cranelift_version]


def _hit(
    s: Session, bucket: Bucket, record: FindingRecord, case_id: int, lines: int, now: datetime
) -> None:
    """One more hit: count, last seen, Cranelift version, smallest reproducer."""
    _count_hit(bucket, record, now)
    if case_id != bucket.best_case_id:
        best = s.get_one(Case, bucket.best_case_id)
        if lines < best.lines:
            bucket.best_case_id = case_id
