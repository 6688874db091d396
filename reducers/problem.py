"""The reduction problem: everything a reduction knows, in one object.

The interestingness test (text -> bool), its cache by text and the number of
tests it ran, the clock and time limit, the progress callback, the constraints
that run lines must keep calling functions that return something and that no
stack slot be read without being written, and the
best module so far. Passes (`reducers.passes`) ask `accepts` about every
candidate; the driver (`reducers.reduce`) keeps `best` up to date.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reducers.clif import Module, unwritten_slot_reads
from reducers.struct_args import struct_arguments_addressed

# Called with (CLIF lines of the case so far, tests run, seconds) after every
# test, so a progress line can move while candidates are being turned down.
Progress = Callable[[int, int, float], None]


def clif_lines(text: str) -> int:
    """The size the reducer minimises: CLIF lines, run lines included,
    blank lines and other comments not."""
    return sum(
        1
        for line in text.splitlines()
        if line.strip()
        and (
            not line.lstrip().startswith(";")
            or line.lstrip()[1:].strip().startswith(("run:", "print:"))
        )
    )


def runs_return(m: Module) -> bool:
    """Every function a run line calls returns something."""
    runs = m.runs()
    return bool(runs) and all((f := m.func(r.func)) is not None and f.sig.returns for r in runs)


@dataclass
class Problem:
    test: Callable[[str], bool]
    target: str = ""  # the goal's target: its `target` line stays in the header
    progress: Progress | None = None
    time_limit: float | None = None
    # set when the input's run lines all call functions that return something
    # (an export needs `; run: f() == value` lines): candidates must keep that
    runs_return: bool = False
    # the (function, slot) reads of never-written stack slots the input has:
    # a candidate may have no other (a deleted `store` would turn the bug
    # into a read of leftover stack, a divergence of its own)
    slot_reads: set[tuple[str, str]] = field(default_factory=set)
    # set when the input passes each struct argument from a stack slot of its
    # own (`reducers.struct_args`): candidates must keep that
    struct_args_addressed: bool = False
    best: Module | None = None
    size: int = 0  # CLIF lines of the newest accepted text (the case so far)
    cache: dict[str, bool] = field(default_factory=dict)
    tests: int = 0  # test runs, cache hits not counted
    # every text the test accepted, oldest first: the fallbacks should the
    # final one not reproduce when verified afresh
    accepted: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return time.monotonic() - self.start

    def out_of_time(self) -> bool:
        return self.time_limit is not None and self.seconds() > self.time_limit

    def interesting(self, text: str) -> bool:
        """The test's verdict on `text`, run at most once per text."""
        if text not in self.cache:
            self.tests += 1
            self.cache[text] = self.test(text)
            if self.cache[text]:
                self.accepted.append(text)
                self.size = clif_lines(text)
            if self.progress:
                self.progress(self.size, self.tests, self.seconds())
        return self.cache[text]

    def accepts(self, candidate: Module | None) -> bool:
        """Whether a pass may keep `candidate`: there is one (an edit can
        fail), there is time left, it keeps the run-line and struct-argument
        constraints, it reads no stack slot it never writes (unless the input
        did), and it is interesting."""
        if candidate is None or self.out_of_time():
            return False
        if self.runs_return and not runs_return(candidate):
            return False
        if self.struct_args_addressed and not struct_arguments_addressed(candidate):
            return False
        if unwritten_slot_reads(candidate) - self.slot_reads:
            return False
        return self.interesting(candidate.text())
