"""Whether every struct argument a case passes points at bytes it owns.

A call copies each `sarg(N)` argument's N bytes from the pointer it is given
(x86_64: the `Memcpy` libcall), while the interpreter passes the pointer as
it is and reads only what the callee reads. So a reducer edit that makes
that pointer a zero or a parameter gives compiled code that copies from a
wild address, a crash the interpreter never sees: not the case's bug but
undefined behaviour of the candidate (a 0.105.4 memcpy crash reduced to
`call fn0(v0)` with `v0 = iconst.i64 0`). A candidate keeps each struct
argument the address of one of its function's explicit stack slots, with at
least N bytes from that address, when the input did.
"""

from __future__ import annotations

import re

from reducers.clif import Func, Module, Sig
from reducers.edits import call_parts

_SLOT = re.compile(r"^(ss\d+) = explicit_slot (\d+)")
_STACK_ADDR = re.compile(r"^stack_addr\.\w+ (ss\d+)(?:\+(\d+))?$")
_SARG = re.compile(r"\bsarg\((\d+)\)")


def struct_arguments_addressed(module: Module) -> bool:
    """Every `sarg(N)` argument of every call is a `stack_addr` of an
    explicit slot of the calling function with N bytes from it."""
    return all(_addressed_in(f) for f in module.funcs)


def _addressed_in(f: Func) -> bool:
    slots = {m[1]: int(m[2]) for d in f.decls if (m := _SLOT.match(d))}
    room: dict[str, int] = {}  # value -> bytes of its slot from that address on
    for _block, _index, inst in f.all_insts():
        m = _STACK_ADDR.match(inst.rhs) if inst.results else None
        if m and m[1] in slots:
            room[inst.results[0]] = slots[m[1]] - int(m[2] or 0)
    sigs = f.sig_decls()
    fns = f.fn_decls()
    for _block, _index, inst in f.all_insts():
        parts = call_parts(inst)
        if parts is None:
            continue
        _op, callee, _value, args = parts
        sig: Sig | None = sigs.get(fns[callee][1]) if callee in fns else sigs.get(callee)
        if sig is None:
            continue
        for param, arg in zip(sig.params, args, strict=False):
            m = _SARG.search(param)
            if m and room.get(arg, -1) < int(m[1]):
                return False
    return True
