"""The triage store: `open_db`, class TriageDB (campaigns, findings, buckets)
and the recording of a campaign's batches.

One bug is one bucket: findings with the same bucket key (see
`fuzz.triage.buckets`) land in it, and the bucket keeps the smallest
reproducer. Queries return detached, fully loaded rows of `fuzz.triage.schema`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, case, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from fuzz.triage.engine import WRITE, DatabaseError, display_url, one_line, open_engine, sqlite_file
from fuzz.triage.records import FindingFields, FindingRecord, Progress, Summary
from fuzz.triage.schema import (
    Base,
    Bucket,
    BucketStatus,
    Campaign,
    CampaignStatus,
    Case,
    Finding,
    Meta,
)

WRITE_RETRIES = 5  # deadlocks and lock time-outs between concurrent writers

T = TypeVar("T")


def open_db(url: str | None = None, *, create: bool = True) -> TriageDB:
    """Open (creating or upgrading as needed) the triage database at `url`:
    an SQLAlchemy URL, a bare SQLite file path, or None for `DEFAULT_URL`
    (see `fuzz.triage.engine.open_engine`)."""
    return TriageDB(open_engine(url, create=create))


def case_hash(clif: str) -> str:
    return hashlib.sha256(clif.encode()).hexdigest()


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _line_count(clif: str) -> int:
    return len(clif.splitlines())


def _now() -> datetime:
    return datetime.now(UTC)


class TriageDB:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = display_url(engine.url)
        # rows stay loaded after the commit: callers read them detached
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def workdir(self) -> Path:
        """Where a campaign keeps in-flight files: beside an SQLite file, else crashes/."""
        path = sqlite_file(self.engine.url)
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
            raise DatabaseError(f"database read failed: {one_line(err)}") from None

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one write transaction, retrying lock time-outs and
        deadlocks between concurrent writers (the transaction rolled back)."""
        for attempt in range(WRITE_RETRIES):
            try:
                with self._sessions() as session, session.begin():
                    session.connection(execution_options={WRITE: True})
                    return work(session)
            except (sa_exc.OperationalError, sa_exc.IntegrityError) as err:
                if attempt == WRITE_RETRIES - 1:
                    raise DatabaseError(f"database write failed: {one_line(err)}") from None
                time.sleep(0.05 * 2**attempt)
            except sa_exc.SQLAlchemyError as err:
                raise DatabaseError(f"database write failed: {one_line(err)}") from None
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
                next_seed=seed,
            )
            s.add(campaign)
            s.flush()
            return campaign.id

        return self._write(work)

    def latest_campaign(self) -> Campaign | None:
        with self._read() as s:
            return s.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(1)).first()

    def get_campaign(self, campaign_id: int) -> Campaign | None:
        with self._read() as s:
            return s.get(Campaign, campaign_id)

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

    def bucket_keys(self, bucket_ids: Sequence[int]) -> dict[int, str]:
        """The keys of these buckets, by id."""
        query = select(Bucket.id, Bucket.key).where(Bucket.id.in_(list(bucket_ids)))
        with self._read() as s:
            return {bucket_id: key for bucket_id, key in s.execute(query)}

    def buckets_with_keys(self, keys: Iterable[str]) -> list[Bucket]:
        """The buckets with these keys (those that exist), by id."""
        digests = [_key_hash(k) for k in keys]
        query = select(Bucket).where(Bucket.key_sha256.in_(digests)).order_by(Bucket.id)
        with self._read() as s:
            return list(s.scalars(query))

    # -- triage ----------------------------------------------------------------------

    def list_buckets(
        self,
        *,
        status: str | None = None,
        target: str | None = None,
        verdict: str | None = None,
        limit: int | None = None,
        hide: Sequence[str] = (),
    ) -> list[Bucket]:
        """Buckets with status `new` first, then the others; newest `last_seen`
        first within each. `hide`: statuses left out."""
        query = _filtered(select(Bucket), status, target, verdict, hide)
        unreviewed = case((Bucket.status == BucketStatus.NEW.value, 0), else_=1)
        query = query.order_by(unreviewed, Bucket.last_seen.desc(), Bucket.id.desc()).limit(limit)
        with self._read() as s:
            return list(s.scalars(query))

    def count_buckets(
        self, *, status: str | None = None, target: str | None = None, verdict: str | None = None
    ) -> int:
        query = _filtered(select(func.count()).select_from(Bucket), status, target, verdict, ())
        with self._read() as s:
            return int(s.scalar(query) or 0)

    def get_bucket(self, bucket_id: int) -> Bucket | None:
        with self._read() as s:
            return s.get(Bucket, bucket_id)

    def case_text(self, case_id: int) -> str | None:
        with self._read() as s:
            return s.scalar(select(Case.clif).where(Case.id == case_id))

    def bucket_findings(self, bucket_id: int, limit: int | None = None) -> list[Finding]:
        """The bucket's findings, those of its best reproducer first, then newest."""
        bucket_best = select(Bucket.best_case_id).where(Bucket.id == bucket_id).scalar_subquery()
        query = (
            select(Finding)
            .where(Finding.bucket_id == bucket_id)
            .order_by((Finding.case_id == bucket_best).desc(), Finding.id.desc())
            .limit(limit)
        )
        with self._read() as s:
            return list(s.scalars(query))

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

    def mark_bucket(self, bucket_id: int, status: str, note: str | None = None) -> Bucket:
        """Set a bucket's status; a note is appended with a timestamp."""
        if status not in set(BucketStatus):
            raise ValueError(
                f"unknown status {status!r} (one of: {', '.join(m.value for m in BucketStatus)})"
            )

        def work(s: Session) -> Bucket:
            bucket = s.get(Bucket, bucket_id, with_for_update=True)
            if bucket is None:
                raise KeyError(bucket_id)
            bucket.status = status
            if note:
                entry = _note(_now(), status, note)
                bucket.notes = f"{bucket.notes}\n{entry}" if bucket.notes else entry
            s.flush()
            s.refresh(bucket)  # the flush expired best_lines; load it before detaching
            return bucket

        return self._write(work)

    def set_reduced_case(self, bucket_id: int, clif: str, verified_on: str | None = None) -> int:
        """Store a bucket's reduced reproducer and the Cranelift version it was
        verified on (None: not verified); returns its case id."""

        def work(s: Session) -> int:
            bucket = s.get(Bucket, bucket_id, with_for_update=True)
            if bucket is None:
                raise KeyError(bucket_id)
            case_id = _case_id(s, clif, case_hash(clif))
            bucket.reduced_case_id = case_id
            bucket.reduced_verified_on = verified_on
            return case_id

        return self._write(work)

    def summary(self) -> Summary:
        with self._read() as s:

            def count_by(column: Any) -> dict[str, int]:
                rows = s.execute(select(column, func.count()).group_by(column))
                return {str(k): int(n) for k, n in sorted(rows, key=lambda r: str(r[0]))}

            findings = s.scalar(select(func.count()).select_from(Finding)) or 0
            cases = s.scalar(select(func.count()).select_from(Case)) or 0
            campaigns = tuple(s.scalars(select(Campaign).order_by(Campaign.id)))
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


_EMULATOR = "emulator disagreement"  # fuzz.pipeline.oracle.Verdict.EMULATOR_DISAGREEMENT
_REFUTED = "unicorn's divergence; qemu-user agrees with the reference: not Cranelift's"


def _opening_note(record: FindingRecord, now: datetime) -> str:
    """What a bucket opens with: the registry's note of a known finding, or
    of the known bug a regression repeats; why an emulator's divergence is
    not Cranelift's."""
    if record.known_note:
        return _note(now, BucketStatus.KNOWN, record.known_note)
    if record.regression_note:
        return _note(now, BucketStatus.NEW, record.regression_note)
    return _note(now, BucketStatus.INVALID, _REFUTED) if record.verdict == _EMULATOR else ""


def _opening_status(record: FindingRecord) -> BucketStatus:
    if record.known_ref:
        return BucketStatus.KNOWN
    return BucketStatus.INVALID if record.verdict == _EMULATOR else BucketStatus.NEW


def _note(now: datetime, status: str, note: str) -> str:
    """One line of a bucket's notes: when, the status it came with, the note."""
    return f"[{now.strftime('%Y-%m-%d %H:%M:%SZ')}] ({status}) {note.strip()}"


def _filtered(
    query: Select[Any],
    status: str | None,
    target: str | None,
    verdict: str | None,
    hide: Sequence[str],
) -> Select[Any]:
    if status is not None:
        query = query.where(Bucket.status == status)
    if hide:
        query = query.where(Bucket.status.not_in(list(hide)))
    if target is not None:
        query = query.where(Bucket.target == target)
    if verdict is not None:
        query = query.where(Bucket.verdict == verdict)
    return query


def _campaign(s: Session, campaign_id: int) -> Campaign:
    c = s.get(Campaign, campaign_id)
    if c is None:
        raise DatabaseError(f"no campaign {campaign_id}")
    return c


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
        # a finding of the registry of known findings opens its bucket as
        # known; unicorn's divergence that qemu-user refuted, as invalid (not
        # Cranelift's), kept for reference
        "status": _opening_status(record).value,
        "notes": _opening_note(record, now),
        "known_ref": record.known_ref,
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
    for field in dataclasses.fields(Progress):  # each a column of the campaign
        setattr(campaign, field.name, getattr(progress, field.name))
    # in the writer's order, each once
    return [
        buckets[key].id for key in dict.fromkeys(r.bucket_key for r in records) if key in created
    ]


def _second(item: tuple[str, str]) -> str:
    return item[1]


def _finding(
    record: FindingRecord, campaign_id: int, case_id: int, bucket_id: int, now: datetime
) -> Finding:
    taken = {f.name: getattr(record, f.name) for f in dataclasses.fields(FindingFields)}
    return Finding(
        **taken, campaign_id=campaign_id, case_id=case_id, bucket_id=bucket_id, created_at=now
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
