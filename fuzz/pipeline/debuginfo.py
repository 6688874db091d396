"""The debug-compile oracle: debug info must not change code.

A case that asks for it (`; callfuzz: debug-compile`; campaigns give one
generated case in DEBUG_COMPILE_EVERY that line) has every function compiled
a second time with every SSA value given a debug value label and with VCode
disassembly on, as a frontend emitting DWARF would (the bridge's
`compile(debug_info=True)`). The machine code, relocations, traps and call
sites must be those of the plain compile, and the VCode text must be there.
Whether value-label ranges come back (the labels were applied) is counted
per campaign, not judged per case: a small or constant-folded case can
legitimately give none. This also makes
Cranelift run the code only debug info reaches: `compute_value_labels_ranges`
(and through it `get_spillslot_offset`, `slot_base_to_caller_sp_offset`) and
VCode printing (`pretty_print_try_call`).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fuzz import _cranelift
from fuzz.pipeline.link import CompiledFunction
from fuzz.pipeline.oracle import Kind, Outcome

if TYPE_CHECKING:
    from fuzz._cranelift import DebugCompiledInfo

# One generated case in this many gets the debug compile (by its seed, so the
# same in every run and in `coverage replay`): it costs about one more compile
# of the case on each target.
DEBUG_COMPILE_EVERY = 16
# the line a case asks for the debug compile with (kept by its reproducers)
DEBUG_COMPILE_DIRECTIVE = "; callfuzz: debug-compile"
_DIRECTIVE = re.compile(rf"^{re.escape(DEBUG_COMPILE_DIRECTIVE)}$", re.MULTILINE)
# the name of the decision's own random stream: the generator's draws never
# see it, so choosing a case does not change what is generated
_STREAM = "callfuzz-debug-compile"

# (target name, a function's debug compile) -> what the pipeline checks: the
# one place a planted fault (fuzz.faults) reaches the debug compile
DebugHook = Callable[[str, "DebugCompiled"], "DebugCompiled"]


def chosen(key: int | bytes) -> bool:
    """Whether the case of `key` (a seed, or the bytes an engine decoded it
    from) gets the debug compile: one in DEBUG_COMPILE_EVERY."""
    if isinstance(key, bytes):
        key = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    return random.Random(f"{_STREAM}:{key}").randrange(DEBUG_COMPILE_EVERY) == 0


def with_directive(text: str, key: int | bytes) -> str:
    """`text`, asking for the debug compile when `key` is chosen."""
    return f"{DEBUG_COMPILE_DIRECTIVE}\n{text}" if chosen(key) else text


def wanted(text: str) -> bool:
    """Whether a case's text asks for the debug compile."""
    return _DIRECTIVE.search(text) is not None


@dataclass(frozen=True)
class DebugCompiled:
    """A function compiled with debug info (the bridge's DebugCompiledInfo)."""

    compiled: CompiledFunction
    vcode: str
    labels: int  # values given a label
    value_label_ranges: int  # location ranges Cranelift gave back for them

    @classmethod
    def from_bridge(cls, d: DebugCompiledInfo) -> DebugCompiled:
        return cls(
            CompiledFunction.from_bridge(d), d["vcode"], d["labels"], d["value_label_ranges"]
        )


def differences(plain: CompiledFunction, debug: CompiledFunction) -> list[str]:
    """What the debug compile changed, each as `what differs: how`."""
    out = []
    if plain.code != debug.code:
        at = next(
            (i for i, (a, b) in enumerate(zip(plain.code, debug.code, strict=False)) if a != b),
            min(len(plain.code), len(debug.code)),
        )
        out.append(
            f"code differs: {plain.name} from byte {at:#x} "
            f"({len(plain.code)} bytes plain, {len(debug.code)} with debug info)"
        )
    if plain.relocs != debug.relocs:
        out.append(f"relocations differ: {plain.name}")
    if plain.traps != debug.traps:
        out.append(f"traps differ: {plain.name}")
    if plain.call_returns != debug.call_returns or plain.try_sites != debug.try_sites:
        out.append(f"call sites differ: {plain.name}")
    return out


def judge_debug(
    plain: Sequence[CompiledFunction],
    debug: Sequence[DebugCompiled],
    exempt: Collection[str] = (),
) -> Outcome | None:
    """The oracle's opinion of a target line's debug compile (None: nothing
    wrong). `exempt`: functions whose code debug info may change on purpose
    (`debug_exempt`), not compared."""
    by_name = {d.compiled.name: d for d in debug}
    found = []
    for f in plain:
        other = by_name.get(f.name)
        if other is None:
            found.append(f"functions differ: {f.name} missing with debug info")
        elif f.name not in exempt:
            found += differences(f, other.compiled)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        return Outcome(Kind.DEBUG_INFO, detail=found[0] + more)
    empty = [d.compiled.name for d in debug if not d.vcode.strip()]
    if empty:
        return Outcome(Kind.HARNESS, detail=f"debug compile: no VCode text for {empty[0]}")
    return None


def ranges_missing(debug: Sequence[DebugCompiled], shared: dict[str, str]) -> bool:
    """Whether a target line's labelled values gave no location range back
    where they should (`ranges_expected`): a sign the labels were not
    applied, which campaigns count (a case whose values are all folded to
    constants, or a few-line file, can give none: 40 of 1,104 target lines
    of the upstream runtests, none of 3,000 generated cases)."""
    labels = sum(d.labels for d in debug)
    return ranges_expected(shared) and labels > 0 and not any(d.value_label_ranges for d in debug)


def debug_failure(err: _cranelift.CraneliftError) -> Outcome:
    """The debug compile failed where the plain compile did not."""
    if isinstance(err, _cranelift.CraneliftPanic):
        message, location = err.args
        return Outcome(Kind.COMPILE_PANIC, detail=f"debug compile: {message} at {location}")
    return Outcome(Kind.DEBUG_INFO, detail=f"the debug compile fails: {err}")


def ranges_expected(shared: dict[str, str]) -> bool:
    """Whether a compile with these shared flags gives value-label ranges
    back: regalloc2's single-pass allocator records a label's location only
    where one allocation holds the value over the label's whole range, which
    for a label per value (live to the function's end) is seldom: measured,
    4 of 1,511 single-pass cases got none at all."""
    return shared.get("regalloc_algorithm") != "single_pass"


def debug_exempt(signatures: dict[str, list[tuple[str, str, str]]]) -> frozenset[str]:
    """The functions (by name, from their parameters) whose code debug info
    changes on purpose: with value labels Cranelift keeps a used `vmctx`
    parameter alive to the function's end (machinst/lower.rs, `gen_dummy_use`
    in `gen_return`), which can change register allocation."""
    return frozenset(
        name for name, params in signatures.items() if any(p[2] == "vmctx" for p in params)
    )
