"""The unwinder stand-in: what a call of the thrower does on the executors.

Generated cases may call an external thrower from a `try_call` or
`try_call_indirect`: `%Throw_CC`, declared `(i32, i64, i64) CC` (the tag to
throw, two payloads), CC its calling convention (the name says it, because
what the exceptional edge clobbers depends on it). The linker places a stub
for it as for a libcall (fuzz.pipeline.link); the emulator hooks the stub
and, instead of returning, does what wasmtime's unwinder does for a handler
in the calling frame (crates/unwinder, wasmtime's runtime/vm/throw.rs):

- reads the tag and payloads from the convention's argument registers;
- finds the call site by the return address (the link register, or [sp]
  on x86_64) among the `try_call` sites Cranelift recorded
  (`MachBufferFinalized::call_sites`, the bridge's `try_sites`) and picks the
  first handler whose tag matches, else the `default` one;
- poisons the registers the exceptional edge clobbers (every one but SP, FP
  and the platform's reserved ones in the conventions where Cranelift says
  all are clobbered, `Target.exception_clobbers_all`; elsewhere the bits a
  normal call clobbers: an unwinder restores the callee-saved ones, which a
  thrower called directly never changed);
- sets the payload registers, SP to where the call site has it after a
  normal return (past the return address on x86_64), and resumes at the
  handler. Wasmtime resumes with SP = FP - frame_offset: where the frame
  has a frame pointer and Cranelift gave the call site a frame_offset, the
  two must agree, or the call site's metadata is wrong (a violation).

Subset: the thrower is only called directly by a `try_call` that catches
what it throws; no exception unwinds through an intermediate frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fuzz.pipeline.contract import FRAME_OFFSET, Violation
from fuzz.targets import Reg, Target

PREFIX = "%Throw_"
# the thrower's parameters: the tag, then one payload per payload register
PARAMS = ("i32", "i64", "i64")
_MASK64 = (1 << 64) - 1


def thrower(cc: str) -> str:
    """The thrower's symbol for callee convention `cc`."""
    return f"{PREFIX}{cc}"


def thrower_cc(symbol: str) -> str | None:
    """The convention of a thrower symbol (`%Throw_tail`), None for others."""
    return symbol[len(PREFIX) :] if symbol.startswith(PREFIX) else None


def throwers(target: Target) -> frozenset[str]:
    """The thrower symbols `target`'s images may call: one per convention
    with exception payloads, where the linker can place a stub."""
    if not target.payload_regs or not target.return_insn:
        return frozenset()
    return frozenset(thrower(cc) for cc, n in target.exception_payloads.items() if n)


@dataclass(frozen=True)
class TrySite:
    """One `try_call` site: its return address, Cranelift's frame_offset
    (FP - SP at the call; None where the release gives none) and its
    handlers in table order, (tag number or None for `default`, address)."""

    ret: int
    frame_offset: int | None
    handlers: tuple[tuple[int | None, int], ...]

    def handler(self, tag: int) -> int | None:
        """Where an exception with `tag` lands (None: not caught here)."""
        return next((at for t, at in self.handlers if t is None or t == tag), None)

    def moved(self, base: int) -> TrySite:
        """The site with its offsets made addresses from `base`."""
        handlers = tuple((t, base + at) for t, at in self.handlers)
        return TrySite(base + self.ret, self.frame_offset, handlers)


class Uncaught(Exception):
    """A throw no handler of the calling `try_call` catches."""


@dataclass(frozen=True)
class Landing:
    """Where and how a throw resumes."""

    pc: int
    sp: int
    writes: tuple[tuple[Reg, int], ...]  # every poisoned and payload register
    # the SP wasmtime would resume with (FP - frame_offset) when it differs
    # from the call site's SP
    fp_sp: int | None = None


def poison(index: int, bits: int) -> int:
    """A recognisable value for register number `index`, unlike any canary."""
    word = 0xDEAD_0000_0000_DEAD | (index << 16)
    return word if bits <= 64 else word | (word << 64)


def land(
    target: Target,
    cc: str,
    read: Callable[[Reg], int],
    load: Callable[[int], int],
    sites: Mapping[int, TrySite],
) -> Landing:
    """The landing of a throw by the thrower of convention `cc`, entered
    with the registers `read` gives (`load` reads a stack word); raises
    Uncaught when no handler of the calling site takes it."""
    regs = {r.name: r for r in target.registers}
    args = target.int_arg_regs_by_conv.get(cc, target.int_arg_regs)
    tag = read(regs[args[0]]) & 0xFFFF_FFFF
    payloads = [read(regs[name]) & _MASK64 for name in args[1:3]]
    sp = read(target.sp_reg_info)
    if target.link_reg is None:
        ret, sp_after = load(sp), sp + target.ra_slot
    else:
        ret, sp_after = read(target.link_reg_info), sp
    site = sites.get(ret)
    if site is None:
        raise Uncaught(f"tag {tag} thrown from a call returning to {ret:#x}, no try_call site")
    pc = site.handler(tag)
    if pc is None:
        raise Uncaught(f"tag {tag} not caught by the try_call returning to {ret:#x}")
    kept = {target.frame_pointer, *target.reserved_regs}
    preserved = {} if cc in target.exception_clobbers_all else dict(target.preserved(cc))
    writes: dict[str, tuple[Reg, int]] = {}
    for index, reg in enumerate(target.registers):
        if reg.name in kept:
            continue
        value = poison(index, reg.bits)
        if reg in preserved:
            mask = (1 << preserved[reg]) - 1
            value = (read(reg) & mask) | (value & ~mask)
        writes[reg.name] = (reg, value)
    for name, payload in zip(target.payload_regs, payloads, strict=True):
        writes[name] = (regs[name], payload)
    fp_sp = None
    if target.frame_pointer is not None and site.frame_offset is not None:
        fp_sp = (read(regs[target.frame_pointer]) - site.frame_offset) & _MASK64
        if fp_sp == sp_after:
            fp_sp = None
    return Landing(pc, sp_after, tuple(writes.values()), fp_sp)


def frame_offset_violation(
    landing: Landing, function_at: Callable[[int], tuple[str, int] | None], cc: str
) -> Violation | None:
    """The `call-site frame offset` violation of a landing whose SP is not
    FP - frame_offset (None when they agree or cannot be compared);
    `function_at` names the image's function at an address."""
    if landing.fp_sp is None:
        return None
    where = function_at(landing.pc)
    edge = f"{where[0] if where else '?'} -> {thrower(cc)}"
    return Violation(FRAME_OFFSET, edge, "sp", "sp", landing.sp, landing.fp_sp, cc)
