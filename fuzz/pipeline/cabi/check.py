"""Runs the C-ABI oracle on one target: builds the image holding the CLIF
and C recorders and callers of a file's signatures, runs the four pairings
of each signature and compares every recorded value with the graffiti laid
out for it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from fuzz import _cranelift
from fuzz.pipeline.cabi import clif, csource, layout
from fuzz.pipeline.cabi.build import (
    CBuildError,
    CompilerMissing,
    require_compiler,
    signature_functions,
)
from fuzz.pipeline.cabi.declare import CSignature, NoCounterpart, c_signature
from fuzz.pipeline.cabi.mismatch import (
    C_CALLS_C,
    C_CALLS_CRANELIFT,
    CRANELIFT_CALLS_C,
    CRANELIFT_CALLS_CRANELIFT,
    Mismatch,
)
from fuzz.pipeline.emulate import FILL_BYTES, RawOutcome
from fuzz.pipeline.link import CompiledFunction, Image, link
from fuzz.targets import Target

# at most this many distinct signatures of one file are checked
MAX_SIGNATURES = 8
# the setting C compatibility needs (i128 on x86_64, f16/f128 cases)
C_FLAGS = ("enable_llvm_abi_extensions=true",)

# (image, entry, callee, area) -> what the machine did
RunRaw = Callable[[Image, int, int, bytes], RawOutcome]


class GlueError(Exception):
    """The oracle's own glue failed (C calling C went wrong), or the executor
    did: a harness error."""


@dataclass(frozen=True)
class Checked:
    """One signature's check: what was found (empty: C and Cranelift
    agree), or why it abstained."""

    signature: CSignature
    mismatches: tuple[Mismatch, ...] = ()
    abstained: str = ""


def signatures_of(
    functions: Mapping[str, _cranelift.FunctionInfo], target: Target
) -> tuple[list[tuple[str, str, CSignature]], list[str]]:
    """(key, function, C signature) of each distinct signature with a C
    counterpart, and the reasons the others have none."""
    found: list[tuple[str, str, CSignature]] = []
    reasons: list[str] = []
    seen: set[str] = set()
    for name, info in functions.items():
        text = info["signature"]["text"]
        if text in seen or len(found) >= MAX_SIGNATURES:
            continue
        seen.add(text)
        try:
            found.append((str(len(found)), name, c_signature(info["signature"], target)))
        except NoCounterpart as err:
            reasons.append(f"{name}: {err}")
    return found, reasons


@dataclass(frozen=True)
class Built:
    """The image of a file's signatures, and those left out (key -> why)."""

    image: Image
    unsupported: dict[str, str]  # Cranelift does not compile them
    missing: dict[str, str]  # their C compiler is not installed


def build_image(
    signatures: Sequence[tuple[str, CSignature]],
    target: Target,
    isa: _cranelift.Isa,
    default_cc: str,
    c_callee_attribute: str | None = None,
) -> Built:
    """Compile both sides and link them into one image. Raises CBuildError
    when the C side does not build."""
    # c_callee_attribute: a planted fault, C callees of another convention
    missing: dict[str, str] = {}
    built: list[tuple[str, CSignature]] = []
    for cc in dict.fromkeys(sig.cc for _key, sig in signatures):
        mine = [(key, sig) for key, sig in signatures if sig.cc == cc]
        try:
            require_compiler(target, cc)
        except CompilerMissing as err:
            missing.update((key, str(err)) for key, _sig in mine)
            continue
        built += mine
    c_code = signature_functions(target, [sig for _key, sig in built], c_callee_attribute)
    functions = [
        CompiledFunction(name, code, [], [])
        for (key, _sig), (callee, caller) in zip(built, c_code, strict=True)
        for name, code in ((csource.callee_name(key), callee), (csource.caller_name(key), caller))
    ]
    unsupported: dict[str, str] = {}
    module = _cranelift.parse(clif.module_clif(built, default_cc))
    for key, _sig in built:
        try:
            functions += [
                CompiledFunction.from_bridge(f)
                for name in (clif.callee_name(key), clif.caller_name(key))
                for f in module.compile(isa, name)
            ]
        except _cranelift.Unsupported as err:
            unsupported[key] = f"Cranelift: {err}"
    return Built(link(functions, target), unsupported, missing)


def precompile(
    files: Iterable[Mapping[str, _cranelift.FunctionInfo]], targets: Iterable[Target]
) -> None:
    """Compile the C sides of several files' signatures in one compiler run
    per target, ahead of their checks (which then find them cached). A
    target without its compiler, or a C side that does not build, is left to
    each file's own check to report."""
    functions = list(files)
    for target in targets:
        sigs = [sig for f in functions for _key, _name, sig in signatures_of(f, target)[0]]
        if not sigs:
            continue
        try:
            signature_functions(target, sigs)
        except (CompilerMissing, CBuildError):
            continue


def area(sig: CSignature) -> bytes:
    """The slot area a run starts from: argument and return graffiti."""
    data = bytearray(layout.AREA_BYTES)
    args, rets = _graffiti(sig)
    for base, values in ((layout.ARGS, args), (layout.RETS, rets)):
        for i, value in enumerate(values):
            at = layout.slot(base, i)
            data[at : at + len(value)] = value
    return bytes(data)


def _graffiti(sig: CSignature) -> tuple[list[bytes], list[bytes]]:
    values = layout.graffiti([p.size for p in sig.params] + [r.size for r in sig.returns])
    return values[: len(sig.params)], values[len(sig.params) :]


def pairings(key: str) -> list[tuple[str, str, str]]:
    """(direction, caller, callee) symbols; the glue's own checks first."""
    c_caller, c_callee = csource.caller_name(key), csource.callee_name(key)
    cl_caller, cl_callee = clif.caller_name(key), clif.callee_name(key)
    return [
        (C_CALLS_C, c_caller, c_callee),
        (CRANELIFT_CALLS_CRANELIFT, cl_caller, cl_callee),
        (C_CALLS_CRANELIFT, c_caller, cl_callee),
        (CRANELIFT_CALLS_C, cl_caller, c_callee),
    ]


def check_signature(
    image: Image,
    key: str,
    sig: CSignature,
    run: RunRaw,
    directions: Collection[str] | None = None,
) -> Checked:
    """The four pairings of one signature (or those of `directions`). C
    calling C must agree with itself (else GlueError); Cranelift calling
    Cranelift disagreeing with itself is reported, and then the mixed
    pairings say nothing more."""
    start = area(sig)
    found: list[Mismatch] = []
    for direction, caller, callee in pairings(key):
        if directions is not None and direction not in directions:
            continue
        raw = run(image, image.symbols[caller], image.symbols[callee], start)
        if raw.kind == "not-executable":
            return Checked(sig, abstained=f"{direction}: {raw.detail}")
        if raw.kind == "harness":
            raise GlueError(f"{direction} on {sig.text}: {raw.detail}")
        if raw.kind != "return":
            what = f"{raw.kind}: {raw.detail}".rstrip(": ")
            if raw.pc is not None:
                where = image.function_at(raw.pc)
                what += f" at {where[0]}+{where[1]:#x}" if where else f" at {raw.pc:#x}"
            if direction == C_CALLS_C:
                raise GlueError(f"C calls C on {sig.text}: {what}")
            found.append(Mismatch(direction, sig.cc, "call", 0, "", b"", b"", what))
        else:
            found += compare(sig, direction, start, raw.slots)
            if direction == C_CALLS_C and found:
                raise GlueError(f"C calls C on {sig.text}: {found[0]}")
        if direction == CRANELIFT_CALLS_CRANELIFT and found:
            break
    return Checked(sig, tuple(found))


def compare(sig: CSignature, direction: str, start: bytes, end: bytes) -> list[Mismatch]:
    args, rets = _graffiti(sig)
    known = [(f"argument {i}", v) for i, v in enumerate(args)]
    known += [(f"return {i}", v) for i, v in enumerate(rets)]
    found = []
    checks: Iterable[tuple[str, int, str, int, bytes]] = [
        ("argument", i, p.ctype, layout.SEEN_PARAMS, args[i]) for i, p in enumerate(sig.params)
    ]
    position = "sret" if sig.sret_index is not None else "return"
    checks = [
        *checks,
        *((position, i, r.ctype, layout.SEEN_RETS, rets[i]) for i, r in enumerate(sig.returns)),
    ]
    for what, index, ctype, base, expected in checks:
        at = layout.slot(base, index)
        actual = end[at : at + len(expected)]
        if actual != expected:
            found.append(
                Mismatch(
                    direction,
                    sig.cc,
                    what,
                    index,
                    ctype,
                    expected,
                    actual,
                    source(actual, known),
                )
            )
    return found


def source(actual: bytes, known: Sequence[tuple[str, bytes]]) -> str:
    """Where misplaced bytes came from: another value (whole, or byte runs of
    values), or the fill pattern of memory never written."""
    for name, value in known:
        if actual == value[: len(actual)] and len(value) >= len(actual):
            return f"the bytes of {name}"
    where = {b: (name, i) for name, value in known for i, b in enumerate(value)}
    runs: list[tuple[str, int, int]] = []  # (origin, first byte, last byte)
    for b in actual:
        if b in FILL_BYTES:
            origin, offset = "never written", -1
        elif b in where:
            origin, offset = where[b]
        else:
            origin, offset = "unknown", -1
        if runs and runs[-1][0] == origin and (offset < 0 or offset == runs[-1][2] + 1):
            runs[-1] = (origin, runs[-1][1], offset)
        else:
            runs.append((origin, offset, offset))
    parts = [
        origin if first < 0 else f"{origin} byte {first}" + (f"-{last}" if last != first else "")
        for origin, first, last in runs
    ]
    return "from " + ", ".join(parts)
