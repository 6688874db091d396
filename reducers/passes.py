"""The reducer's passes: plain functions `(problem, module) -> module` that
return a smaller (or plainer) module the problem accepts, or the same one.

`PASSES` (or `KEEPING`, see `reducers.reference`) run in order, repeatedly,
until a round no longer shrinks the case; `FINISH` run once at the end.
Every candidate is a whole, valid module (see `reducers.edits`) and goes
through `Problem.accepts`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

from reducers import edits
from reducers.clif import Func, Module
from reducers.problem import Problem

T = TypeVar("T")

Pass = Callable[[Problem, Module], Module]


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


def drop_runs(problem: Problem, m: Module) -> Module:
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

    best = ddmin(runs, lambda s: problem.accepts(keep(s)))
    return keep(best) or m


def drop_functions(problem: Problem, m: Module) -> Module:
    return _drop_functions(problem, m, [f.name for f in m.funcs if not f.runs])


def drop_unreached(problem: Problem, m: Module) -> Module:
    """Drop functions no run line's call reaches (what every run returns stays)."""
    reached = edits.reached(m)
    return _drop_functions(problem, m, [f.name for f in m.funcs if f.name not in reached])


def _drop_functions(problem: Problem, m: Module, droppable: list[str]) -> Module:
    def without(keep: list[str]) -> Module | None:
        c: Module | None = m
        for name in droppable:
            if name not in keep and c is not None:
                c = edits.drop_function(c, name)
        return c

    kept = ddmin(droppable, lambda k: problem.accepts(without(k)))
    return without(kept) or m


def retarget_runs(problem: Problem, m: Module) -> Module:
    for f in m.funcs:
        if not f.runs:
            continue
        for _fn, (callee, _sig, _col) in f.fn_decls().items():
            c = edits.retarget_run(m, f.name, callee)
            if c is not None and problem.accepts(c):
                return c
    return m


def drop_calls(problem: Problem, m: Module) -> Module:
    for site in reversed(edits.call_sites(m)):
        c = edits.drop_call(m, site)
        if c is not None and problem.accepts(c):
            m = c
    return m


def drop_instructions(problem: Problem, m: Module) -> Module:
    for fi in range(len(m.funcs)):
        for bi in range(len(m.funcs[fi].blocks)):
            insts = m.funcs[fi].blocks[bi].insts
            removable = [i for i, x in enumerate(insts) if x.opcode not in edits.TERMINATORS]
            if not removable:
                continue
            kept = ddmin(removable, partial(_accepts_without, problem, m, fi, bi, removable))
            m = _without(m, fi, bi, removable, kept) or m
    return m


def forward_operands(problem: Problem, m: Module) -> Module:
    """An instruction's result gives way to one of its operands (`iadd v3,
    v4` -> v3): what a chain of arithmetic adds to the bug goes."""
    for name, value in edits.forwardable(m):
        for index in range(2):
            c = edits.forward_operand(m, name, value, index)
            if c is not None and problem.accepts(c):
                m = c
                break
    return m


def drop_params(problem: Problem, m: Module) -> Module:
    for name in [f.name for f in m.funcs]:
        m = _each_index(problem, m, name, _param_count, edits.drop_param, True)
    return m


def drop_unused_params(problem: Problem, m: Module) -> Module:
    for name in [f.name for f in m.funcs]:
        m = _each_index(problem, m, name, _param_count, edits.drop_unused_param, True)
    return m


def drop_returns(problem: Problem, m: Module) -> Module:
    for name in [f.name for f in m.funcs]:
        m = _each_index(problem, m, name, _return_count, edits.drop_return_in_group, True)
    return m


def simplify(problem: Problem, m: Module) -> Module:
    """Merge repeated pure instructions; call directly what a `func_addr`
    feeds an indirect call; drop what is left unused (what every run returns
    stays)."""
    c = m.copy()
    changed = [
        edits.common_subexpressions(f) | edits.direct_calls(f) | edits.dead_code(f) for f in c.funcs
    ]
    return c if any(changed) and problem.accepts(c) else m


def prefer_params(problem: Problem, m: Module) -> Module:
    for name in [f.name for f in m.funcs]:
        c = m.copy()
        f = c.func(name)
        if f is not None and edits.prefer_params(f) and problem.accepts(c):
            m = c
    return m


def plain_types(problem: Problem, m: Module) -> Module:
    """Unused parameters and results become i64 (types narrow toward the
    plainest; a used value keeps its type)."""
    to_i64 = partial(edits.retype_param, ty="i64"), partial(edits.retype_return, ty="i64")
    for name in [f.name for f in m.funcs]:
        m = _each_index(problem, m, name, _param_count, to_i64[0], False)
        m = _each_index(problem, m, name, _return_count, to_i64[1], False)
    return m


def plain_call_convs(problem: Problem, m: Module) -> Module:
    for name in [f.name for f in m.funcs]:
        for cc in (None, "fast"):
            c = edits.set_call_conv(m, name, cc)
            if c is not None and problem.accepts(c):
                m = c
                break
    return m


def shrink_constants(problem: Problem, m: Module) -> Module:
    for site in reversed(edits.constants(m)):
        for value in ("0", "1"):
            c = edits.shrink_constant(m, site, value)
            if c is not None and problem.accepts(c):
                m = c
                break
    for value in ("0", "1"):
        c = edits.shrink_runs_args(m, value)
        if c is not None and problem.accepts(c):
            return c
    return m


def trim_header(problem: Problem, m: Module) -> Module:
    """Drop `set` lines and ISA flags nothing needs."""
    own = problem.target

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

    kept = ddmin(words, lambda s: problem.accepts(keep(s)))
    return keep(kept)


def rename_functions(problem: Problem, m: Module) -> Module:
    c = edits.rename_functions(m)
    return c if c is not None and problem.accepts(c) else m


def inline_signatures(problem: Problem, m: Module) -> Module:
    c = edits.inline_signatures(m)
    return c if c.text() != m.text() and problem.accepts(c) else m


# Order matters where one pass opens the way for another: results made
# i64 let a run move to a callee before unused results are dropped.
PASSES: list[Pass] = [
    drop_runs,
    drop_functions,
    drop_calls,
    drop_instructions,
    forward_operands,
    simplify,
    prefer_params,
    drop_params,
    plain_types,
    retarget_runs,
    drop_returns,
    plain_call_convs,
    shrink_constants,
    trim_header,
]

# The passes after which every run line returns what it did: for a file
# whose stated run lines are the only reference (`reducers.reference`). A
# calling convention is no part of what a function computes.
KEEPING: list[Pass] = [
    drop_runs,
    drop_unreached,
    simplify,
    drop_unused_params,
    plain_call_convs,
    trim_header,
]

# Once, after the fixpoint: names and signatures as a person would write them.
FINISH: list[Pass] = [rename_functions, inline_signatures]


def _each_index(
    problem: Problem,
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
        if c is not None and problem.accepts(c):
            m = c
    return m


def _param_count(f: Func) -> int:
    return len(f.sig.params)


def _return_count(f: Func) -> int:
    return len(f.sig.returns)


def _accepts_without(
    problem: Problem, m: Module, fi: int, bi: int, removable: list[int], keep: list[int]
) -> bool:
    return problem.accepts(_without(m, fi, bi, removable, keep))


def _without(m: Module, fi: int, bi: int, removable: list[int], keep: list[int]) -> Module | None:
    """`m` without the removable instructions of one block that `keep` omits."""
    c = m.copy()
    f = c.funcs[fi]
    for i in reversed([i for i in removable if i not in keep]):
        if not edits.remove_inst(f, bi, i):
            return None
    edits.dead_code(f)
    return c
