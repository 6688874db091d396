"""What a bitmap of reached counters says about Cranelift: edges and
functions reached per crate, per backend (`cranelift-codegen/src/isa/X/`,
its generated ISLE code, and the instances of generic `machinst` code for
X's types), and for call lowering in particular: each target's `abi.rs`,
`machinst/abi.rs` instantiated for the target, and the target's functions
that lower calls, returns and tail calls (ISLE constructors and helpers
named for calls, returns, arguments, `sret`, tail calls or libcalls)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from fuzz.coverage.counters import Bitmap, CoverageError
from fuzz.coverage.symbols import FunctionTable

BACKENDS = ("x64", "aarch64", "riscv64", "s390x")
CRANELIFT = "cranelift-"
_CALL_WORD = re.compile(
    r"(?:^|_)(?:call|calls|callee|caller|return|returns|ret|rets|tail|sret|abi|"
    r"libcall|stack_switch|epilogue|prologue|clobber|clobbers)(?:_|$|\d)"
)
# named like call lowering, but not: flag-producing helpers "returning" a value
_NOT_CALLS = re.compile(r"consumes_flags|produces_flags")


@dataclass(frozen=True)
class Function:
    name: str
    file: str
    edges: int
    reached: int  # edges reached

    @property
    def short(self) -> str:
        return short_name(self.name)


@dataclass
class Area:
    """Functions and edges of one part of the code, and how many were reached."""

    functions: int = 0
    functions_reached: int = 0
    edges: int = 0
    edges_reached: int = 0

    def add(self, fn: Function) -> None:
        self.functions += 1
        self.functions_reached += fn.reached > 0
        self.edges += fn.edges
        self.edges_reached += fn.reached


@dataclass
class Report:
    bridge: str
    counters: int
    reached: int
    crates: dict[str, Area] = field(default_factory=dict)
    backends: dict[str, Area] = field(default_factory=dict)
    call_lowering: dict[str, Area] = field(default_factory=dict)
    call_functions: dict[str, list[Function]] = field(default_factory=dict)

    @property
    def cranelift(self) -> Area:
        """Every `cranelift-*` crate together."""
        total = Area()
        for name, area in self.crates.items():
            if name.startswith(CRANELIFT):
                total.functions += area.functions
                total.functions_reached += area.functions_reached
                total.edges += area.edges
                total.edges_reached += area.edges_reached
        return total


def short_name(name: str) -> str:
    """`<...IsleContext<...> as ...Context>::gen_call_info` -> `gen_call_info`;
    `...::constructor_lower_return::<C>` -> `lower_return`."""
    depth, cut, out = 0, 0, []
    for i, ch in enumerate(name):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0 and name.startswith("::", i):
            out.append(name[cut:i])
            cut = i + 2
    out.append(name[cut:])
    words = [w for w in out if w and not w.startswith("<")] or out
    last = words[-1].split("[")[0]
    for prefix in ("constructor_", "{closure#"):
        if last.startswith(prefix):
            last = words[-2] if prefix == "{closure#" and len(words) > 1 else last[len(prefix) :]
    return last


def backend_of(fn_name: str, file: str) -> str | None:
    """The backend a function belongs to, or None for shared code."""
    for isa in BACKENDS:
        if f"/isa/{isa}/" in file or file.endswith(f"/OUT_DIR/isle_{isa}.rs"):
            return isa
    if file.startswith("cranelift-codegen/src/machinst/"):
        for isa in BACKENDS:
            if f"::isa::{isa}::" in fn_name:
                return isa
    return None


def is_call_lowering(fn: Function, backend: str) -> bool:
    if fn.file.endswith(f"/isa/{backend}/abi.rs") or fn.file.endswith("/machinst/abi.rs"):
        return True
    short = fn.short
    return _CALL_WORD.search(short) is not None and _NOT_CALLS.search(short) is None


def functions(table: FunctionTable, bitmap: Bitmap) -> Iterable[Function]:
    bits = bitmap.bits
    if len(bits) != table["counters"]:
        raise CoverageError(
            f"the bitmap has {len(bits)} counters, the bridge's function table "
            f"{table['counters']}: not the same bridge"
        )
    for start, count, name, file in table["functions"]:
        reached = count - bits.count(0, start, start + count)
        yield Function(name, file, count, reached)


def analyse(table: FunctionTable, bitmap: Bitmap) -> Report:
    report = Report(bitmap.bridge, len(bitmap.bits), bitmap.reached)
    for isa in BACKENDS:
        report.backends[isa] = Area()
        report.call_lowering[isa] = Area()
        report.call_functions[isa] = []
    for fn in functions(table, bitmap):
        crate = fn.file.split("/", 1)[0]
        report.crates.setdefault(crate, Area()).add(fn)
        backend = backend_of(fn.name, fn.file)
        if backend is None:
            continue
        report.backends[backend].add(fn)
        if is_call_lowering(fn, backend):
            report.call_lowering[backend].add(fn)
            report.call_functions[backend].append(fn)
    return report


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _ratio(part: int, whole: int) -> str:
    return f"{part:,}/{whole:,} ({_pct(part, whole)})"


def summary_lines(report: Report) -> list[str]:
    """A few lines for a campaign's summary."""
    cl = report.cranelift
    lines = [
        f"coverage of Cranelift (bridge {report.bridge}): {cl.edges_reached:,} of "
        f"{cl.edges:,} edges in cranelift-* crates ({_pct(cl.edges_reached, cl.edges)}), "
        f"{report.reached:,} of {report.counters:,} in the whole bridge",
        f"  {'backend':<9} {'functions':>22} {'edges':>24} {'call lowering fns':>22}",
    ]
    for isa in BACKENDS:
        area, call = report.backends[isa], report.call_lowering[isa]
        lines.append(
            f"  {isa:<9} {_ratio(area.functions_reached, area.functions):>22} "
            f"{_ratio(area.edges_reached, area.edges):>24} "
            f"{_ratio(call.functions_reached, call.functions):>22}"
        )
    return lines


def unreached(report: Report, backend: str) -> list[Function]:
    """Call-lowering functions of `backend` no case entered, largest first."""
    fns = report.call_functions.get(backend, [])
    return sorted((f for f in fns if not f.reached), key=lambda f: -f.edges)


def least_covered(report: Report, backend: str, count: int) -> list[Function]:
    """Call-lowering functions of `backend` that were entered, the smallest
    share of their edges reached first."""
    fns = [f for f in report.call_functions.get(backend, []) if f.reached]
    return sorted(fns, key=lambda f: (f.reached / max(f.edges, 1), -f.edges))[:count]
