"""The search of `callfuzz bisect`, apart from how a step is run: which
release lines to try, in what order, and what the results say.

A step either reproduces, does not, or is a skip (as `git bisect skip`: the
release could not be tried: the file does not read there, the bridge does
not build, the step crashed). A skip is never a boundary: the search tries
the releases around it and the result names the skipped ones it could not
rule out.

Both ends are tried first. Where no release tried reproduces (both ends
agree that it does not), the releases between are tried in halving order
until one does: a bug present only in the middle of the range is found.
Then every boundary between a release that reproduces and one that does
not is halved until they are neighbours (skips aside). `scan` tries every
release instead, for a finding that comes and goes."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class Kind(enum.StrEnum):
    REPRODUCES = "reproduces"
    CLEAN = "does not reproduce"
    SKIP = "skip"


@dataclass(frozen=True)
class Step:
    version: str
    kind: Kind
    got: str  # what the step gave, in a few words (a skip: why)
    seconds: float = 0.0


Judge = Callable[[str], Step]


@dataclass
class Search:
    versions: list[str]  # oldest first
    judge: Judge
    seen: dict[int, Step] = field(default_factory=dict)

    def at(self, i: int) -> Kind:
        if i not in self.seen:
            self.seen[i] = self.judge(self.versions[i])
        return self.seen[i].kind

    def kinds(self, kind: Kind) -> list[int]:
        return sorted(i for i, s in self.seen.items() if s.kind is kind)

    def probe(self) -> None:
        """Halving order over the untried releases until one reproduces."""
        gaps = deque([(0, len(self.versions) - 1)])
        while gaps:
            lo, hi = gaps.popleft()
            if hi - lo < 2:
                continue
            mid = (lo + hi) // 2
            if self.at(mid) is Kind.REPRODUCES:
                return
            gaps.extend([(lo, mid), (mid, hi)])

    def next_between(self) -> int | None:
        """An untried release halving a boundary: between neighbouring
        non-skipped results that differ (the range's outside counts as not
        reproducing), the one nearest the middle."""
        marks = [(-1, Kind.CLEAN)]
        marks += [(i, s.kind) for i, s in sorted(self.seen.items()) if s.kind is not Kind.SKIP]
        marks.append((len(self.versions), Kind.CLEAN))
        for (lo, a), (hi, b) in zip(marks, marks[1:], strict=False):
            untried = [i for i in range(lo + 1, hi) if i not in self.seen]
            if a is not b and untried:
                return min(untried, key=lambda i: (abs(2 * i - lo - hi), i))
        return None

    def refine(self) -> None:
        while (i := self.next_between()) is not None:
            self.at(i)


def search(
    judge: Judge,
    versions: list[str],
    scan: bool = False,
    early: Iterable[int] = (),
    note: Callable[[str], None] = lambda text: None,
) -> Search:
    """Try the newest, the `early` ones (in order), the oldest; then find
    where it starts and stops."""
    found = Search(versions, judge)
    for i in (len(versions) - 1, *early, 0):
        found.at(i)
    if scan:
        for i in range(len(versions)):
            found.at(i)
    elif not found.kinds(Kind.REPRODUCES):
        note("no release tried reproduces: trying those between, halving, for one that does")
        found.probe()
    elif found.at(0) is found.at(len(versions) - 1) is Kind.REPRODUCES:
        note("both ends reproduce: the releases between are taken to (--scan tries them)")
    found.refine()
    return found


# --- what the results say ------------------------------------------------------


def span(versions: list[str]) -> str:
    if len(versions) == 1:
        return versions[0]
    return f"{versions[0]} to {versions[-1]} ({len(versions)} releases)"


def _skipped(found: Search, lo: int, hi: int) -> list[str]:
    return [found.versions[i] for i in range(lo + 1, hi) if i in found.seen]


def _start(found: Search, first: int, before: int | None) -> str:
    v = found.versions
    if before is None:
        if first == 0:
            return f"reproduces on the oldest release tried, {v[0]}"
        lost = _skipped(found, -1, first)
        return f"first reproduces on {v[first]}; no older release could be tried ({span(lost)})"
    lost = _skipped(found, before, first)
    if not lost:
        return f"first reproduces on {v[first]}; last release without it: {v[before]}"
    return (
        f"first reproduces on {v[first]}, or on a skipped release before it "
        f"({span(lost)}); last release without it: {v[before]}"
    )


def _end(found: Search, last: int, after: int | None) -> str:
    v = found.versions
    if after is None:
        if last == len(v) - 1:
            return f"still reproduces on the newest, {v[last]}"
        lost = _skipped(found, last, len(v))
        return f"last reproduces on {v[last]}; no newer release could be tried ({span(lost)})"
    lost = _skipped(found, last, after)
    if not lost:
        return f"fixed in {v[after]}; last release with it: {v[last]}"
    return (
        f"fixed in {v[after]}, or in a skipped release before it ({span(lost)}); "
        f"last release with it: {v[last]}"
    )


def runs(found: Search) -> list[tuple[int, int]]:
    """(first, last) of each stretch of releases that reproduce, skips and
    untried releases inside a stretch taken as part of it."""
    out: list[tuple[int, int]] = []
    previous: Kind | None = None
    for i, step in sorted(found.seen.items()):
        if step.kind is Kind.SKIP:
            continue
        if step.kind is Kind.REPRODUCES:
            if previous is Kind.REPRODUCES:
                out[-1] = (out[-1][0], i)
            else:
                out.append((i, i))
        previous = step.kind
    return out


def describe(found: Search) -> str:
    """The result in a sentence per stretch that reproduces."""
    v = found.versions
    stretches = runs(found)
    if not stretches:
        lost = found.kinds(Kind.SKIP)
        text = f"reproduces on no release from {v[0]} to {v[-1]}"
        return text + (f" ({len(lost)} skipped)" if lost else "")
    clean = found.kinds(Kind.CLEAN)
    parts = []
    for first, last in stretches:
        before = max((i for i in clean if i < first), default=None)
        after = min((i for i in clean if i > last), default=None)
        text = f"{_start(found, first, before)}; {_end(found, last, after)}"
        untried = [i for i in range(first, last) if i not in found.seen]
        if untried and (first, last) == (0, len(v) - 1):  # both ends, nothing between
            text += f" ({len(untried)} releases between were not tried: --scan tries them)"
        parts.append(text)
    return "; then ".join(parts)
