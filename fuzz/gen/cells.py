"""Coverage cells: (target, type, calling convention, call form).

A call site exercises one cell per type in its signature (an `sret` pointer
counts as the type `sret`, a signature with no values as `-`). The generator
counts the cells it makes, campaigns the cells a case's call sites reach, and
`callfuzz gen --stats` the cells a target supports, all by these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from fuzz.targets import Target

if TYPE_CHECKING:
    from fuzz._cranelift import FunctionInfo

Cell = tuple[str, str, str, str]

PLAIN_FORMS = ("call", "call_indirect")
TAIL_FORMS = ("return_call", "return_call_indirect")
TRY_FORMS = ("try_call", "try_call_indirect")  # with an exception table
CALL_FORMS = PLAIN_FORMS + TAIL_FORMS + TRY_FORMS
SRET = "sret"
SARG = "sarg"  # a struct argument, of any size
NO_VALUES = "-"


def call_cells(target: str, values: Iterable[tuple[str, str]], cc: str, form: str) -> list[Cell]:
    """The cells of one call site; `values` are its signature's (type,
    purpose) pairs, parameters and returns."""
    types = [_cell_type(ty, purpose) for ty, purpose in values] or [NO_VALUES]
    return [(target, ty, cc, form) for ty in types]


def _cell_type(ty: str, purpose: str) -> str:
    if purpose == SRET:
        return SRET
    return SARG if purpose.startswith(f"{SARG}(") else ty


def module_cells(target: str, functions: Mapping[str, FunctionInfo]) -> set[Cell]:
    """Every cell the call sites of a parsed module reach."""
    cells: set[Cell] = set()
    for function in functions.values():
        for site in function["call_sites"]:
            if site["opcode"] not in CALL_FORMS:
                continue  # a func_addr: the call it feeds is a site of its own
            sig = site["signature"]
            values = [(ty, purpose) for ty, _ext, purpose in sig["params"] + sig["returns"]]
            cells.update(call_cells(target, values, sig["call_conv"], site["opcode"]))
    return cells


def supported_cells(target: Target) -> set[Cell]:
    """The cells the generator can reach on `target` (signatures with no values aside)."""
    cells: set[Cell] = set()
    for cc in target.call_convs:
        forms: tuple[str, ...] = PLAIN_FORMS
        forms += TAIL_FORMS if cc in target.tail_call_convs else ()
        forms += TRY_FORMS if cc in target.exception_payloads else ()
        for form in forms:
            for types in (target.abi_types, target.qemu_abi_types):
                for ty in types.get(cc, types.get("*", ())):
                    cells.add((target.name, ty, cc, form))
            if cc in target.sret_convs:
                cells.add((target.name, SRET, cc, form))
            if cc in target.sarg_convs and form not in TAIL_FORMS:
                cells.add((target.name, SARG, cc, form))
    return cells
