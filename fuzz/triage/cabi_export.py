"""The two sides of a `c abi mismatch` for an upstream report: the C file
the target's compiler builds (the recorder callee and the caller of each of
the case's signatures) and the CLIF file of Cranelift's side (the same
pair in CLIF), each headed by the commands that show where each side puts
every value. Upstream's `clif-util test` cannot run C; the disassemblies
side by side, and `callfuzz run` on the case, reproduce the finding."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fuzz.pipeline.cabi import clif, csource
from fuzz.pipeline.cabi.build import CFLAGS
from fuzz.pipeline.cabi.check import C_FLAGS, signatures_of
from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.runner import DEFAULT_CC
from fuzz.targets import Target


@dataclass(frozen=True)
class CAbiSides:
    """The files an export of a C-ABI finding writes next to its filetest."""

    c_source: str
    clif_source: str


def c_abi_sides(case: str, target: Target, configs: list[str], stem: str) -> CAbiSides | None:
    """The C and CLIF sides of `case`'s signatures on `target` (None when it
    has none with a C counterpart). `configs` are the filetest's `set` and
    `target` lines; `stem` names the files (`STEM.c`, `STEM.cabi.clif`)."""
    try:
        found, _reasons = signatures_of(parse_text(case).functions, target)
    except Exception:  # noqa: BLE001 - an unreadable case has no sides to show
        return None
    compilers = {
        c.compiler: c for _key, _name, sig in found if (c := target.c_abi_for(sig.cc)) is not None
    }
    if not found or not compilers:
        return None
    keyed = [(key, sig) for key, _name, sig in found]
    how = []
    for c in compilers.values():
        argv = [c.compiler, *CFLAGS, *c.cflags, "-S", "-o", "-"]
        how += [
            f"Where {c.compiler} puts each value ({', '.join(c.conventions)}; "
            f"Debian package {c.package}):",
            f"  {' '.join(shlex.quote(word) for word in argv)} {stem}.c",
        ]
    how += [
        "Where Cranelift puts them (the same callee and caller in CLIF):",
        f"  clif-util compile -D {stem}.cabi.clif",
        "Both sides run against each other (C calls Cranelift, Cranelift calls C):",
        f"  callfuzz run {stem}.clif",
        "Each recorder stores the values it received at a fixed address; the",
        "caller passes the values laid out at its first argument.",
    ]
    names = ", ".join(
        f"{name} -> {csource.callee_name(key)}/{clif.callee_name(key)}" for key, name, _sig in found
    )
    c_head = ["/*", *(f" * {line}" for line in [*how, f"Signatures: {names}."]), " */"]
    c_source = "\n".join(c_head) + "\n" + csource.unit_source(keyed)
    sets = [f"set {flag}" for flag in C_FLAGS if f"set {flag}" not in configs]
    clif_source = "\n".join(
        [
            *(f"; {line}" for line in how),
            "test compile",
            *sets,
            *configs,
            "",
            clif.module_clif(keyed, DEFAULT_CC),
        ]
    )
    return CAbiSides(c_source, clif_source)
