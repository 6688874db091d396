"""The trampoline, as Cranelift's `test run` builds it: a function in the target's
default convention taking (slots pointer, callee address) that loads every
argument from a 16-byte slot, calls the function under test through
`call_indirect` with its exact signature, and stores the results back into
the slots."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fuzz.values import type_info

if TYPE_CHECKING:
    from fuzz._cranelift import SignatureInfo

SLOT_BYTES = 16
TRAMPOLINE_NAME = "%callfuzz_trampoline"


def _mem_flags(ty: str) -> str:
    # Vectors use the little-endian image on every target (s390x included).
    return " little" if type_info(ty).is_vector else ""


def slot_count(signature: SignatureInfo) -> int:
    return max(len(signature["params"]), len(signature["returns"]), 1)


def trampoline_clif(signature: SignatureInfo, name: str = TRAMPOLINE_NAME) -> str:
    """CLIF text of the trampoline for `signature` (a bridge signature dict)."""
    lines = [
        f"function {name}(i64, i64) {{",
        f"    sig0 = {signature['text']}",
        "",
        "block0(v0: i64, v1: i64):",
    ]
    next_value = 2
    args = []
    for index, (ty, _ext, _purpose) in enumerate(signature["params"]):
        lines.append(f"    v{next_value} = load.{ty}{_mem_flags(ty)} v0+{index * SLOT_BYTES}")
        args.append(f"v{next_value}")
        next_value += 1
    results = [f"v{next_value + i}" for i in range(len(signature["returns"]))]
    call = f"call_indirect sig0, v1({', '.join(args)})"
    lines.append(f"    {', '.join(results)} = {call}" if results else f"    {call}")
    for index, ((ty, _ext, _purpose), value) in enumerate(
        zip(signature["returns"], results, strict=True)
    ):
        lines.append(f"    store{_mem_flags(ty)} {value}, v0+{index * SLOT_BYTES}")
    lines += ["    return", "}", ""]
    return "\n".join(lines)
