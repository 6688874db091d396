"""A reduction keeps each struct argument pointing at a stack slot of the
caller (reducers.struct_args): the call copies `sarg(N)` bytes from it, so a
zero or a parameter in its place makes the compiled code copy from a wild
address, a crash the interpreter never sees (a 0.105.4 Memcpy bucket reduced
to `call fn0(v0)` with `v0 = iconst.i64 0`)."""

from __future__ import annotations

from reducers.clif import parse_module
from reducers.problem import Problem
from reducers.reduce import reduce_problem
from reducers.struct_args import struct_arguments_addressed

CASE = """test interpret
test run
target x86_64

function %f0(i64 sarg(16)) -> i64 tail {
block0(v0: i64):
    v1 = load.i64 v0+8
    return v1
}

function %main(i64) -> i64 {
    ss0 = explicit_slot 16
    fn0 = colocated %f0(i64 sarg(16)) -> i64 tail
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store v0, v1
    store v0, v1+8
    v2 = call fn0(v1)
    return v2
}
; run: %main(7) == 7
"""


def test_a_struct_argument_keeps_pointing_at_its_slot() -> None:
    """With a test that wants only the call (as a crash in its copy would),
    the reducer takes everything else away but not the slot's address."""
    problem = Problem(lambda text: "sarg(16)) -> i64 tail" in text and "call fn0(v" in text)
    reduced = reduce_problem(problem, CASE).text
    assert "call fn0(v" in reduced and len(reduced) < len(CASE)
    assert "stack_addr.i64 ss0" in reduced, reduced
    assert struct_arguments_addressed(parse_module(reduced))


def test_what_counts_as_an_addressed_struct_argument() -> None:
    def addressed(text: str) -> bool:
        return struct_arguments_addressed(parse_module(text))

    assert addressed(CASE)
    assert not addressed(CASE.replace("stack_addr.i64 ss0", "iconst.i64 0"))
    assert not addressed(CASE.replace("call fn0(v1)", "call fn0(v0)"))  # a parameter
    assert not addressed(CASE.replace("explicit_slot 16", "explicit_slot 8"))  # too small
    assert not addressed(CASE.replace("stack_addr.i64 ss0", "stack_addr.i64 ss0+8"))
    assert addressed(CASE.replace("sarg(16)", "sarg(8)").replace("ss0\n", "ss0+8\n"))
