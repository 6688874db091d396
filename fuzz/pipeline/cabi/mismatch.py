"""What the C-ABI oracle found: a record per misplaced value (it crosses
from a worker to the triage database, so it is typed, not a dict)."""

from __future__ import annotations

from dataclasses import dataclass

C_CALLS_CRANELIFT = "C calls Cranelift"
CRANELIFT_CALLS_C = "Cranelift calls C"
# the glue's own checks: each side with itself
CRANELIFT_CALLS_CRANELIFT = "Cranelift calls Cranelift"
C_CALLS_C = "C calls C"


@dataclass(frozen=True)
class Mismatch:
    direction: str  # one of the four above
    cc: str
    position: str  # "argument", "return", "sret" (a returned struct's word) or "call"
    index: int  # among the C parameters or returns
    ctype: str
    expected: bytes
    actual: bytes
    source: str  # where the actual bytes came from, when that can be told

    @property
    def position_class(self) -> str:
        """What the bucket key holds: the rule broken, not the random index
        nor the types around it (a 20-minute campaign split one s390x rule
        into six buckets by the type before the misplaced vector). Placement
        rules are per class: integers up to 64 bits, an i128's pair, vectors."""
        return f"{self.position} {type_class(self.ctype)}".strip()

    def __str__(self) -> str:
        if self.position == "call":
            return f"{self.direction} ({self.cc}): {self.source}"
        return (
            f"{self.direction} ({self.cc}): {self.position} {self.index} ({self.ctype}) "
            f"expected {self.expected.hex(' ')}, got {self.actual.hex(' ')} ({self.source})"
        )


def type_class(ctype: str) -> str:
    """The class of a C type that placement rules are about: integers up to
    64 bits are one, vectors are one (`cf_i32x4`), the others are themselves."""
    if ctype.startswith("cf_"):
        return "vector"
    words = ctype.removeprefix("unsigned ").removeprefix("signed ")
    if words in ("char", "short", "int", "long"):
        return "integer"
    return words
