"""Cranelift version numbers: the one parser of them, and the releases
callfuzz knows.

The bridge source (`native/`) builds against every release from 0.OLDEST_MINOR
on. Releases newer than the newest callfuzz was measured on (NEWEST_KNOWN_MINOR:
the feature table in fuzz.features and the cfg flags of native/build.rs) are
attempted as if they were that one, and fail only if the bridge does not build.
This module imports nothing of callfuzz, so anything may import it."""

from __future__ import annotations

import re

Version = tuple[int, int, int]

# The oldest release line the bridge source builds against, and the newest
# one whose API and features were measured.
OLDEST_MINOR = 105
NEWEST_KNOWN_MINOR = 137
OLDEST: Version = (0, OLDEST_MINOR, 0)
NEWEST_KNOWN: Version = (0, NEWEST_KNOWN_MINOR, 0)
SUPPORTED = f"0.{OLDEST_MINOR} and newer"

# A release as the user names it: `0.131` (a line), `0.131.x`, `0.128.4`.
_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+|x))?")
# A version as Cranelift reports it: `0.135.8`, `0.136.0-dev`, `0.131`.
_REPORTED = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> Version:
    """`0.135.8`, `0.136.0-dev` (a checkout), `0.131` -> (0, 131, 0); a
    ValueError for anything that does not start with a version."""
    m = _REPORTED.match(text.strip())
    if m is None:
        raise ValueError(f"not a Cranelift version: {text!r}")
    return (int(m[1]), int(m[2]), int(m[3] or 0))


def parse_release(text: str) -> tuple[int, int, int | None] | None:
    """A release choice: `0.131` and `0.131.x` -> (0, 131, None) (the line),
    `0.128.4` -> (0, 128, 4); None when `text` is not one (a path)."""
    m = _RELEASE.fullmatch(text.strip())
    if m is None:
        return None
    return int(m[1]), int(m[2]), None if m[3] in (None, "x") else int(m[3])


def looks_like_version(text: str) -> bool:
    """Whether `text` names a release (and not a checkout's path)."""
    return parse_release(text) is not None


def is_supported(version: Version) -> bool:
    """Whether the bridge source is meant to build against `version`: any
    0.x release from the oldest supported on, newer than the newest known
    included."""
    return version[0] == 0 and version[1] >= OLDEST_MINOR


def is_newer_than_known(version: Version) -> bool:
    """A release line after the newest callfuzz was measured on."""
    return version[:2] > NEWEST_KNOWN[:2]
