"""The Cranelift side of the C-ABI oracle: per signature a recorder callee
(the signature under test; it stores every parameter it received, writes the
`sret` struct or returns the values the harness laid out) and a caller in
the target's default convention, `(area, callee)` like the trampoline, that
calls the callee with the harness's arguments and stores what came back.
Memory is accessed in the target's native byte order, as C does."""

from __future__ import annotations

from collections.abc import Sequence

from fuzz.pipeline.cabi import layout
from fuzz.pipeline.cabi.declare import SRET_BYTES, SRET_WORDS, CSignature


def callee_name(key: str) -> str:
    return f"%cf_cl_callee_{key}"


def caller_name(key: str) -> str:
    return f"%cf_cl_caller_{key}"


def callee_clif(sig: CSignature, key: str) -> str:
    params = [ty for ty, _ext, _purpose in sig.clif_params]
    values = [f"v{i}" for i in range(len(params))]
    block = ", ".join(f"{v}: {ty}" for v, ty in zip(values, params, strict=True))
    n = len(params)
    # `block0:` without parentheses when it takes nothing: cranelift-reader
    # before 0.109 rejects `block0():` ("block argument must be a value")
    header = f"block0({block}):" if block else "block0:"
    lines = [f"function {callee_name(key)}{sig.text} {{", header]
    lines.append(f"    v{n} = iconst.i64 {layout.absolute(0):#x}")
    area = f"v{n}"
    nxt = n + 1
    seen = 0
    for i, (ty, _ext, purpose) in enumerate(sig.clif_params):
        if purpose == "sret":
            continue
        lines.append(f"    store v{i}, {area}+{layout.slot(layout.SEEN_PARAMS, seen)}  ; {ty}")
        seen += 1
    results = []
    if sig.sret_index is not None:
        for w in range(SRET_WORDS):
            lines.append(f"    v{nxt} = load.i64 {area}+{layout.slot(layout.RETS, w)}")
            lines.append(f"    store v{nxt}, v{sig.sret_index}+{8 * w}")
            nxt += 1
    else:
        for i, (ty, _ext, _purpose) in enumerate(sig.clif_returns):
            lines.append(f"    v{nxt} = load.{ty} {area}+{layout.slot(layout.RETS, i)}")
            results.append(f"v{nxt}")
            nxt += 1
    lines += [f"    return {', '.join(results)}".rstrip(), "}", ""]
    return "\n".join(lines)


def caller_clif(sig: CSignature, key: str, default_cc: str) -> str:
    lines = [f"function {caller_name(key)}(i64, i64) {default_cc} {{"]
    if sig.sret_index is not None:
        lines.append(f"    ss0 = explicit_slot {SRET_BYTES}")
    lines += [f"    sig0 = {sig.text}", "", "block0(v0: i64, v1: i64):"]
    nxt = 2
    args = []
    passed = 0
    for ty, _ext, purpose in sig.clif_params:
        if purpose == "sret":
            lines.append(f"    v{nxt} = stack_addr.i64 ss0")
        else:
            lines.append(f"    v{nxt} = load.{ty} v0+{layout.slot(layout.ARGS, passed)}")
            passed += 1
        args.append(f"v{nxt}")
        nxt += 1
    results = [f"v{nxt + i}" for i in range(len(sig.clif_returns))]
    nxt += len(results)
    call = f"call_indirect sig0, v1({', '.join(args)})"
    lines.append(f"    {', '.join(results)} = {call}" if results else f"    {call}")
    for i, value in enumerate(results):
        lines.append(f"    store {value}, v0+{layout.slot(layout.SEEN_RETS, i)}")
    if sig.sret_index is not None:
        lines.append(f"    v{nxt} = stack_addr.i64 ss0")
        struct = f"v{nxt}"
        nxt += 1
        for w in range(SRET_WORDS):
            lines.append(f"    v{nxt} = load.i64 {struct}+{8 * w}")
            lines.append(f"    store v{nxt}, v0+{layout.slot(layout.SEEN_RETS, w)}")
            nxt += 1
    lines += ["    return", "}", ""]
    return "\n".join(lines)


def module_clif(signatures: Sequence[tuple[str, CSignature]], default_cc: str) -> str:
    return "".join(
        callee_clif(sig, key) + "\n" + caller_clif(sig, key, default_cc) for key, sig in signatures
    )
