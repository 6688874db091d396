"""A bucket's reproducer as `callfuzz triage export` writes it: the upstream
filetest of its reduced case (its best one until reduced)."""

from __future__ import annotations

from fuzz.triage.export import filetest
from fuzz.triage.schema import Bucket


def export_name(bucket: Bucket) -> str:
    """The export's file name, as `triage export` names it by default."""
    return f"bucket-{bucket.id}-{bucket.target}.clif"


def export_text(bucket: Bucket, clif: str) -> str:
    """The filetest `triage export` writes for `bucket` from its case `clif`."""
    version = bucket.cranelift_versions[-1] if bucket.cranelift_versions else "?"
    text = filetest(clif, bucket.title, bucket.key, version)
    if bucket.reduced_case_id and bucket.reduced_verified_on:
        title, _, rest = text.partition("\n")
        note = (
            f"; the reduced case reproduced this bucket when run afresh from its text "
            f"(Cranelift {bucket.reduced_verified_on})"
        )
        text = f"{title}\n{note}\n{rest}"
    return text
