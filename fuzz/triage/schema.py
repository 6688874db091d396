"""The triage database's tables (SQLAlchemy ORM), its schema version and upgrades.

The mapped classes are dataclasses: queries hand them out detached, fully
loaded, as the records callers read.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    column_property,
    mapped_column,
)

SCHEMA_VERSION = 3


class BucketStatus(enum.StrEnum):
    NEW = "new"
    CONFIRMED = "confirmed"
    REPORTED = "reported"
    FIXED = "fixed"
    INVALID = "invalid"
    # matches an entry of the registry of known findings (corpus/known.toml)
    KNOWN = "known"


class CampaignStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


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


# Rows compare by identity, as ORM objects usually do. Each table is
# `kw_only=True` (stated per class, where type checkers see it): its columns
# keep their table order whatever their defaults.
class Base(MappedAsDataclass, DeclarativeBase, eq=False):
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        dict[str, int]: JSON(),
    }


class Meta(Base, kw_only=True):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Campaign(Base, kw_only=True):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, init=False)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
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
    executions: Mapped[dict[str, int]] = mapped_column(default_factory=dict)  # per target
    verdicts: Mapped[dict[str, int]] = mapped_column(default_factory=dict)
    cases_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(
        _choice(CampaignStatus, "campaign_status"), default=CampaignStatus.RUNNING.value
    )


class Case(Base, kw_only=True):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, init=False)
    clif: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    lines: Mapped[int]
    created_at: Mapped[datetime]


class Bucket(Base, kw_only=True):
    __tablename__ = "buckets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, init=False)
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
    reduced_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), default=None)
    status: Mapped[str] = mapped_column(
        _choice(BucketStatus, "bucket_status"), index=True, default=BucketStatus.NEW.value
    )
    notes: Mapped[str] = mapped_column(Text, default="")
    # the registry entry (corpus/known.toml) the bucket's findings match; set
    # when the bucket opens as `known` (schema version 2)
    known_ref: Mapped[str | None] = mapped_column(Text, default=None)
    # the Cranelift version on which the reduced reproducer, run afresh from
    # its text alone, reproduced the bucket; None: not verified (version 3)
    reduced_verified_on: Mapped[str | None] = mapped_column(String(64), default=None)
    # loaded with the row, not stored: the best reproducer's line count
    best_lines: Mapped[int] = column_property(
        select(Case.lines).where(Case.id == best_case_id).correlate_except(Case).scalar_subquery()
    )


class Finding(Base, kw_only=True):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, init=False)
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
    # loaded with the row, not stored: the case's text
    clif: Mapped[str] = column_property(
        select(Case.clif).where(Case.id == case_id).correlate_except(Case).scalar_subquery(),
        repr=False,
    )


# --- upgrades ----------------------------------------------------------------------
# UPGRADES[v] takes a database at version v to v + 1, inside the transaction
# that then stamps the new version (fuzz.triage.engine). A step states the
# layout of its own version in full: it must not read the current classes
# above, which later versions change again.

# version 2's bucket statuses: version 1's and `known`
_V2_BUCKET_STATUSES = ("new", "confirmed", "reported", "fixed", "invalid", "known")
_V1_BUCKET_CHECK = re.compile(r"CONSTRAINT bucket_status CHECK \(status IN \(([^)]*)\)\)")


def _v1_to_v2(conn: Connection) -> None:
    """Version 2: bucket status `known` (the CHECK constraint widened) and the
    nullable column `buckets.known_ref` (the registry entry matched)."""
    statuses = ", ".join(f"'{s}'" for s in _V2_BUCKET_STATUSES)
    check = f"CONSTRAINT bucket_status CHECK (status IN ({statuses}))"
    if conn.dialect.name == "sqlite":
        _sqlite_rebuild_buckets(conn, check)
    else:
        conn.execute(text("ALTER TABLE buckets DROP CONSTRAINT bucket_status"))
        conn.execute(text(f"ALTER TABLE buckets ADD {check}"))
    conn.execute(text("ALTER TABLE buckets ADD COLUMN known_ref TEXT"))


def _sqlite_rebuild_buckets(conn: Connection, check: str) -> None:
    """SQLite cannot alter a CHECK constraint: the table is rebuilt from its own
    definition with the new constraint, its rows and indexes kept.

    This runs inside the upgrade's transaction, where foreign keys cannot be
    switched off, so their checks are deferred to the commit instead: dropping
    the old table leaves every finding's `bucket_id` dangling for a moment
    (SQLite counts the violations), and putting the same rows into the new
    `buckets` resolves each again (the count is back to zero). Had a row been
    lost, the commit would fail and roll the whole upgrade back."""

    def sql_of(kind: str, name: str) -> list[str]:
        rows = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = :kind AND tbl_name = :name"),
            {"kind": kind, "name": name},
        )
        return [row[0] for row in rows if row[0]]

    [table] = sql_of("table", "buckets")
    widened, found = _V1_BUCKET_CHECK.subn(check, table)
    if found != 1:
        raise ValueError("the buckets table has no version-1 status constraint")
    indexes = sql_of("index", "buckets")
    copy = "callfuzz_v1_buckets"
    conn.execute(text("PRAGMA defer_foreign_keys = ON"))  # until the commit
    conn.execute(text(table.replace("CREATE TABLE buckets", f"CREATE TABLE {copy}", 1)))
    conn.execute(text(f"INSERT INTO {copy} SELECT * FROM buckets"))
    conn.execute(text("DROP TABLE buckets"))
    conn.execute(text(widened))
    conn.execute(text(f"INSERT INTO buckets SELECT * FROM {copy}"))
    conn.execute(text(f"DROP TABLE {copy}"))
    for index in indexes:
        conn.execute(text(index))


def _v2_to_v3(conn: Connection) -> None:
    """Version 3: the nullable column `buckets.reduced_verified_on`."""
    conn.execute(text("ALTER TABLE buckets ADD COLUMN reduced_verified_on VARCHAR(64)"))


UPGRADES: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}
