"""The delta reducer: CLIF-aware passes, ddmin-style chunking over every list,
repeated to a fixpoint, with "the same bucket still reproduces" as the test.

Every candidate is a whole, valid module (see `reducers.edits`); the test runs
the real pipeline on it (parse, verify, compile for the bucket's target,
interpret, emulate, compare) and accepts it only when a finding with the same
bucket key comes out, so reduction cannot slip to a different bug.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from fuzz import _cranelift
from fuzz.buckets import bucket_for
from fuzz.faults import FAULTS
from fuzz.filetest import BadInput, TargetLine, parse_text
from fuzz.runner import Runner, default_lines
from fuzz.targets import TARGETS
from reducers import edits
from reducers.clif import Func, Module, Run, parse_module

T = TypeVar("T")


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


@dataclass
class Goal:
    """What must keep reproducing: a bucket on one target."""

    target: str
    key: str
    fault: str | None = None  # a planted fault (tests and benchmarks only)


class SameBucket:
    """The interestingness test, with a cache of results by text."""

    def __init__(self, goal: Goal) -> None:
        self.goal = goal
        self.runner = Runner(fault=FAULTS[goal.fault] if goal.fault else None)
        self.cache: dict[str, bool] = {}
        self.tests = 0

    def keys(self, text: str) -> list[str]:
        """Bucket keys the text produces on the goal's target."""
        ft = parse_text(text)
        lines = default_lines(ft, [TargetLine(TARGETS[self.goal.target])])
        out = []
        for result in self.runner.run_file(ft, lines):
            for label, verdict in result.judgement.verdicts.items():
                if label.split()[0] != self.goal.target:
                    continue
                if verdict.value == "agree" and label not in result.judgement.blame:
                    continue
                out.append(bucket_for(ft, label, result).key)
        return out

    def __call__(self, text: str) -> bool:
        if text in self.cache:
            return self.cache[text]
        self.tests += 1
        try:
            ok = self.goal.key in self.keys(text)
        except (BadInput, _cranelift.CraneliftError):
            ok = False
        self.cache[text] = ok
        return ok


def ddmin(items: list[T], works: Callable[[list[T]], bool]) -> list[T]:
    """The smallest sublist `works` accepts that ddmin's complement removal
    finds: chunks halve until single items, restarting after each success."""
    n = 2
    while items:
        chunk = max(1, -(-len(items) // n))
        for start in range(0, len(items), chunk):
            rest = items[:start] + items[start + chunk :]
            if works(rest):
                items = rest
                n = max(n - 1, 2)
                break
        else:
            if chunk == 1:
                break
            n = min(len(items), n * 2)
    return items


@dataclass
class Reduction:
    text: str
    lines_before: int
    lines_after: int
    tests: int
    seconds: float
    passes: list[str] = field(default_factory=list)


class Reducer:
    def __init__(
        self,
        test: Callable[[str], bool],
        progress: Callable[[int, int, float], None] | None = None,
        time_limit: float | None = None,
        target_name: str = "",
    ) -> None:
        self.test = test
        self.target_name = target_name
        self.progress = progress
        self.time_limit = time_limit
        self.start = time.monotonic()
        self.tests = 0
        self.runs_return = False

    def out_of_time(self) -> bool:
        return self.time_limit is not None and time.monotonic() - self.start > self.time_limit

    def ok(self, candidate: Module | None) -> bool:
        if candidate is None or self.out_of_time():
            return False
        if self.runs_return and not _runs_return(candidate):
            return False  # an export needs `; run: f() == value` lines
        self.tests += 1
        good = self.test(candidate.text())
        if good and self.progress:
            self.progress(clif_lines(candidate.text()), self.tests, time.monotonic() - self.start)
        return good

    # -- passes: each takes the best module and returns a better or the same one

    def p_runs(self, m: Module) -> Module:
        runs = [(f.name, i) for f in m.funcs for i in range(len(f.runs))]
        if len(runs) <= 1:
            return m

        def keep(subset: list[tuple[str, int]]) -> Module | None:
            if not subset:
                return None
            c = m.copy()
            for f in c.funcs:
                f.runs = [r for i, r in enumerate(f.runs) if (f.name, i) in subset]
            return c

        best = ddmin(runs, lambda s: self.ok(keep(s)))
        return keep(best) or m

    def p_print(self, m: Module) -> Module:
        """`; run: f(x) == y` becomes `; print: f(x)`: the interpreter is the
        reference, and a stale expectation must not hold edits back."""
        c = m.copy()
        for f in c.funcs:
            f.runs = [Run("print", r.func, r.args) for r in f.runs]
        return c if c.text() != m.text() and self.ok(c) else m

    def p_functions(self, m: Module) -> Module:
        droppable = [f.name for f in m.funcs if not f.runs]

        def without(keep: list[str]) -> Module | None:
            c: Module | None = m
            for name in droppable:
                if name not in keep and c is not None:
                    c = edits.drop_function(c, name)
            return c

        kept = ddmin(droppable, lambda k: self.ok(without(k)))
        return without(kept) or m

    def p_retarget(self, m: Module) -> Module:
        for f in m.funcs:
            if not f.runs:
                continue
            for _fn, (callee, _sig, _col) in f.fn_decls().items():
                c = edits.retarget_run(m, f.name, callee)
                if self.ok(c):
                    return c  # type: ignore[return-value]
        return m

    def p_calls(self, m: Module) -> Module:
        for site in reversed(edits.call_sites(m)):
            c = edits.drop_call(m, site)
            if self.ok(c):
                m = c  # type: ignore[assignment]
        return m

    def p_instructions(self, m: Module) -> Module:
        for fi in range(len(m.funcs)):
            for bi in range(len(m.funcs[fi].blocks)):
                insts = m.funcs[fi].blocks[bi].insts
                removable = [i for i, x in enumerate(insts) if x.opcode not in edits.TERMINATORS]
                if not removable:
                    continue
                kept = ddmin(removable, partial(self._try_without, m, fi, bi, removable))
                m = _without(m, fi, bi, removable, kept) or m
        return m

    def _try_without(
        self, m: Module, fi: int, bi: int, removable: list[int], keep: list[int]
    ) -> bool:
        return self.ok(_without(m, fi, bi, removable, keep))

    def p_dead_code(self, m: Module) -> Module:
        c = m.copy()
        changed = [edits.dead_code(f) for f in c.funcs]
        return c if any(changed) and self.ok(c) else m

    def _each_index(
        self,
        m: Module,
        name: str,
        count: Callable[[Func], int],
        edit: Callable[[Module, str, int], Module | None],
        backwards: bool,
    ) -> Module:
        """Try `edit` on each parameter or result index of one function
        (backwards when edits shift later indices), keeping what passes."""
        f = m.func(name)
        indices = range(count(f) if f else 0)
        for index in reversed(indices) if backwards else indices:
            c = edit(m, name, index)
            if c is not None and self.ok(c):
                m = c
        return m

    def p_params(self, m: Module) -> Module:
        for name in [f.name for f in m.funcs]:
            m = self._each_index(m, name, _param_count, edits.drop_param, True)
        return m

    def p_returns(self, m: Module) -> Module:
        for name in [f.name for f in m.funcs]:
            m = self._each_index(m, name, _return_count, edits.drop_return_in_group, True)
        return m

    def p_simplify(self, m: Module) -> Module:
        """Merge repeated pure instructions; call directly what a `func_addr`
        feeds an indirect call; drop what is left unused."""
        c = m.copy()
        changed = [
            edits.common_subexpressions(f) | edits.direct_calls(f) | edits.dead_code(f)
            for f in c.funcs
        ]
        if any(changed) and self.ok(c):
            m = c
        for name in [f.name for f in m.funcs]:
            c = m.copy()
            f = c.func(name)
            if f is not None and edits.prefer_params(f) and self.ok(c):
                m = c
        return m

    def p_types(self, m: Module) -> Module:
        """Unused parameters and results become i64 (types narrow toward the
        plainest; a used value keeps its type)."""
        to_i64 = partial(edits.retype_param, ty="i64"), partial(edits.retype_return, ty="i64")
        for name in [f.name for f in m.funcs]:
            m = self._each_index(m, name, _param_count, to_i64[0], False)
            m = self._each_index(m, name, _return_count, to_i64[1], False)
        return m

    def p_call_convs(self, m: Module) -> Module:
        for name in [f.name for f in m.funcs]:
            for cc in (None, "fast"):
                c = edits.set_call_conv(m, name, cc)
                if self.ok(c):
                    m = c  # type: ignore[assignment]
                    break
        return m

    def p_constants(self, m: Module) -> Module:
        for site in reversed(edits.constants(m)):
            for value in ("0", "1"):
                c = edits.shrink_constant(m, site, value)
                if self.ok(c):
                    m = c  # type: ignore[assignment]
                    break
        for value in ("0", "1"):
            c = edits.shrink_runs_args(m, value)
            if self.ok(c):
                return c  # type: ignore[return-value]
        return m

    def p_header(self, m: Module) -> Module:
        """Drop `set` lines and ISA flags nothing needs."""
        own = self.target_name

        def removable(line: str, j: int) -> bool:
            if line.startswith("set "):
                return j == 0
            if line.startswith("target "):
                # another target's whole line, or one ISA flag of ours
                return (j == 0 and line.split()[1] != own) or (j >= 2 and line.split()[1] == own)
            return False

        words = [
            (i, j)
            for i, line in enumerate(m.header)
            for j, _w in enumerate(line.split())
            if removable(line, j)
        ]

        def keep(subset: list[tuple[int, int]]) -> Module:
            c = m.copy()
            header = []
            for i, line in enumerate(m.header):
                ws = line.split()
                # (i, 0) is a whole `set` line or another target's line
                if (i, 0) in words and (i, 0) not in subset:
                    continue
                if line.startswith("target "):
                    ws = ws[:2] + [w for j, w in enumerate(ws) if j >= 2 and (i, j) in subset]
                header.append(" ".join(ws))
            c.header = header
            return c

        kept = ddmin(words, lambda s: self.ok(keep(s)))
        return keep(kept)

    def p_rename(self, m: Module) -> Module:
        c = edits.rename_functions(m)
        return c if self.ok(c) else m  # type: ignore[return-value]

    # Order matters where one pass opens the way for another: results made
    # i64 let a run move to a callee before unused results are dropped.
    PASSES: Sequence[str] = (
        "p_runs",
        "p_print",
        "p_functions",
        "p_calls",
        "p_instructions",
        "p_simplify",
        "p_params",
        "p_types",
        "p_retarget",
        "p_returns",
        "p_call_convs",
        "p_constants",
        "p_header",
    )

    def run(self, text: str) -> Reduction:
        module = parse_module(text, value_types=_value_types(text))
        self.runs_return = _runs_return(module)
        before = clif_lines(text)
        best = module
        passes_used: list[str] = []
        while not self.out_of_time():
            size = clif_lines(best.text())
            for name in self.PASSES:
                after = getattr(self, name)(best)
                if after.text() != best.text():
                    passes_used.append(name)
                best = after
            if clif_lines(best.text()) >= size:
                break
        best = self.p_rename(best)
        inlined = edits.inline_signatures(best)
        if inlined.text() != best.text() and self.ok(inlined):
            best = inlined
        final = best.text()
        # never hand back something that lost the bug, or a larger text
        if clif_lines(final) >= before or not self.test(final):
            final = text
        return Reduction(
            final,
            before,
            clif_lines(final),
            self.tests,
            time.monotonic() - self.start,
            passes_used,
        )


def _param_count(f: Func) -> int:
    return len(f.sig.params)


def _return_count(f: Func) -> int:
    return len(f.sig.returns)


def _runs_return(m: Module) -> bool:
    """Every function a run line calls returns something."""
    runs = m.runs()
    return bool(runs) and all((f := m.func(r.func)) is not None and f.sig.returns for r in runs)


def _without(m: Module, fi: int, bi: int, removable: list[int], keep: list[int]) -> Module | None:
    """`m` without the removable instructions of one block that `keep` omits."""
    c = m.copy()
    f = c.funcs[fi]
    for i in reversed([i for i in removable if i not in keep]):
        if not edits.remove_inst(f, bi, i):
            return None
    edits.dead_code(f)
    return c


def _value_types(text: str) -> dict[str, dict[str, str]]:
    module = _cranelift.parse(text)
    return {name: module.value_types(name) for name in module.names()}


def goal_for(text: str, target: str, fault: str | None = None) -> Goal | None:
    """The first divergence `text` shows on `target`, as a goal."""
    probe = SameBucket(Goal(target, "", fault))
    keys = probe.keys(text)
    return Goal(target, keys[0], fault) if keys else None


def reduce_text(
    text: str,
    goal: Goal,
    progress: Callable[[int, int, float], None] | None = None,
    time_limit: float | None = None,
) -> Reduction:
    test = SameBucket(goal)
    if not test(text):
        raise ValueError(f"the case does not reproduce {goal.key!r} on {goal.target}")
    return Reducer(test, progress, time_limit, goal.target).run(text)
