"""What a signal that stopped a qemu-user run means: a trap Cranelift
placed, a crash (with the faulting address when the handler could tell),
or an instruction qemu-user cannot run."""

from __future__ import annotations

from collections.abc import Callable

from fuzz.pipeline.emulate import RawOutcome
from fuzz.pipeline.link import Image
from fuzz.targets import Target

SIGNALS = {4: "SIGILL", 5: "SIGTRAP", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV", 14: "SIGALRM"}
SIGTRAP, SIGSEGV, SIGALRM = 5, 11, 14
FAULTS = (7, 11)  # SIGBUS, SIGSEGV: the handler reports the address


def classify(
    target: Target,
    image: Image,
    signo: int,
    pc: int,
    fault_address: Callable[[], str],
    flags_on: frozenset[str] = frozenset(),
) -> RawOutcome:
    """The outcome of a run stopped by `signo` at `pc` (not the sentinel's
    return) on a line with ISA flags `flags_on`; `fault_address` delivers a
    fault to the handler and names it."""
    assert target.qemu is not None
    name = SIGNALS.get(signo, f"signal {signo}")
    if signo in FAULTS:
        # at a load or store Cranelift recorded as a trap site, the code it gave
        trap_site = image.trap_sites.get(pc, "")
        return RawOutcome("crash", detail=f"{name} {fault_address()}", pc=pc, trap_site=trap_site)
    if signo in (4, 5, 8):
        for delta in target.qemu.trap_site_deltas:
            if pc + delta in image.trap_sites:
                return RawOutcome("trap", detail=image.trap_sites[pc + delta], pc=pc + delta)
        if image.function_at(pc) is None:
            return RawOutcome("crash", detail=f"{name} outside any function", pc=pc)
        at = pc - image.base
        # a vector instruction is Cranelift's fault only where vectors are
        # off; with them on, it is one qemu cannot run (an extension of V)
        vectors_on = bool(flags_on & frozenset(target.vector_isa_flags))
        foreign = None if vectors_on else target.foreign_insn(bytes(image.data[at : at + 4]))
        if foreign:
            return RawOutcome("crash", detail=f"illegal instruction: {foreign}", pc=pc)
        if signo == 4:
            return RawOutcome(
                "not-executable", detail=f"qemu-user cannot run the instruction ({name})", pc=pc
            )
    return RawOutcome("crash", detail=name, pc=pc)
