"""The reads the HTML report needs beyond `TriageDB`'s own: a campaign's
buckets, and the moments its findings were stored (read-only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fuzz.triage.schema import Bucket, Campaign, Finding
from fuzz.triage.store import TriageDB


def campaigns(db: TriageDB, campaign_id: int | None) -> list[Campaign]:
    """Every campaign, or only `campaign_id` (empty when it does not exist)."""
    query = select(Campaign).order_by(Campaign.id)
    if campaign_id is not None:
        query = query.where(Campaign.id == campaign_id)
    with Session(db.engine) as s:
        return list(s.scalars(query))


def buckets(db: TriageDB, campaign_ids: Sequence[int] | None) -> list[Bucket]:
    """The buckets with findings of these campaigns (None: every bucket), by id."""
    query = select(Bucket).order_by(Bucket.id)
    if campaign_ids is not None:
        ids = select(Finding.bucket_id).where(Finding.campaign_id.in_(list(campaign_ids)))
        query = query.where(Bucket.id.in_(ids))
    with Session(db.engine) as s:
        return list(s.scalars(query))


def finding_times(db: TriageDB, campaign_ids: Sequence[int]) -> dict[int, list[datetime]]:
    """When each campaign stored its findings, in order, by campaign."""
    query = (
        select(Finding.campaign_id, Finding.created_at)
        .where(Finding.campaign_id.in_(list(campaign_ids)))
        .order_by(Finding.created_at)
    )
    times: dict[int, list[datetime]] = {cid: [] for cid in campaign_ids}
    with Session(db.engine) as s:
        for cid, moment in s.execute(query):
            if cid is not None:  # (the query asks for campaigns by id)
                times[cid].append(moment)
    return times
