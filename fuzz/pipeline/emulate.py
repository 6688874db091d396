"""Reusable unicorn emulators, one per target, and fault classification.

A run calls the linked trampoline with (slots pointer, callee address) and a
sentinel return address; reaching the sentinel is a normal return. Faults are
classified so that only Cranelift's own behaviour is ever blamed:

- a fault at a Cranelift trap site is that trap;
- an unmapped or protected access is a crash, with its PC and address;
- an illegal instruction inside a function that is not a trap site is an
  emulator gap ("not executable here", named by its capstone mnemonic);
- running out of the instruction budget is a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone as cs
import unicorn as uc

from fuzz.pipeline.link import Image
from fuzz.targets import Target

STACK_BASE = 0x7000_0000
STACK_SIZE = 1 << 20
SLOTS_BASE = 0x6000_0000
SLOTS_SIZE = 1 << 16
SENTINEL = 0x5000_0000
PAGE = 4096
DEFAULT_BUDGET = 50_000_000  # instructions: upstream runtests loop 100,000 times
# Wall-clock microseconds a run may take before it is re-run under the
# instruction budget (generated code has no loops and takes well under 1 ms).
QUICK_TIMEOUT_US = 200_000

_MEMORY_FAULTS = {
    uc.UC_ERR_READ_UNMAPPED: "read of unmapped memory",
    uc.UC_ERR_WRITE_UNMAPPED: "write to unmapped memory",
    uc.UC_ERR_FETCH_UNMAPPED: "jump to unmapped memory",
    uc.UC_ERR_READ_PROT: "read of protected memory",
    uc.UC_ERR_WRITE_PROT: "write to protected memory",
    uc.UC_ERR_FETCH_PROT: "jump to non-executable memory",
    uc.UC_ERR_READ_UNALIGNED: "unaligned read",
    uc.UC_ERR_WRITE_UNALIGNED: "unaligned write",
    uc.UC_ERR_FETCH_UNALIGNED: "unaligned fetch",
}


@dataclass(frozen=True)
class RawOutcome:
    """What the machine did: kind is return, trap, crash, timeout or not-executable."""

    kind: str
    slots: bytes = b""
    detail: str = ""
    pc: int | None = None


def _page_range(start: int, end: int) -> tuple[int, int]:
    lo = start // PAGE * PAGE
    hi = (end + PAGE - 1) // PAGE * PAGE
    return lo, hi


class Emulator:
    """One unicorn instance for one target, reused across runs."""

    def __init__(self, target: Target) -> None:
        self.target = target
        if target.uc_cpu is not None:
            self.mu = uc.Uc(target.uc_arch, target.uc_mode, cpu=target.uc_cpu)  # type: ignore[call-arg]
        else:
            self.mu = uc.Uc(target.uc_arch, target.uc_mode)
        self.mu.mem_map(STACK_BASE, STACK_SIZE)
        self.mu.mem_map(SLOTS_BASE, SLOTS_SIZE)
        target.setup(self.mu)
        self._fresh = self.mu.context_save()
        self._mapped: list[tuple[int, int]] = []
        self._loaded: Image | None = None
        self._fault_address: int | None = None
        self._slot_len = 0
        self.mu.hook_add(uc.UC_HOOK_MEM_INVALID, self._on_invalid)
        self.disassembler = cs.Cs(target.cs_arch, target.cs_mode)

    def _on_invalid(self, _mu, _access, address, _size, _value, _data) -> bool:  # type: ignore[no-untyped-def]
        self._fault_address = address
        return False

    def _ensure_mapped(self, start: int, end: int) -> None:
        lo, hi = _page_range(start, end)
        for mlo, mhi in self._mapped:
            if mlo <= lo and hi <= mhi:
                return
        # Map only the pages not yet mapped.
        page = lo
        while page < hi:
            if not any(mlo <= page < mhi for mlo, mhi in self._mapped):
                run_end = page
                while run_end < hi and not any(mlo <= run_end < mhi for mlo, mhi in self._mapped):
                    run_end += PAGE
                self.mu.mem_map(page, run_end - page, uc.UC_PROT_ALL)
                self._mapped.append((page, run_end))
                page = run_end
            else:
                page += PAGE

    def load(self, image: Image) -> None:
        # Holding the image (not its id) keeps a freed image's id from matching.
        if self._loaded is image:
            return
        self._ensure_mapped(image.base, image.base + len(image.data))
        self.mu.mem_write(image.base, bytes(image.data))
        # Drop translated blocks of the previous image at the same addresses.
        self.mu.ctl_remove_cache(image.base, image.base + len(image.data))
        self._loaded = image

    def run(
        self,
        image: Image,
        entry: int,
        callee: int,
        slots: bytes,
        budget: int = DEFAULT_BUDGET,
    ) -> RawOutcome:
        self.load(image)
        # A wall-clock limit first: unicorn's instruction count costs a hook
        # call per instruction (a quarter of all emulation time). Only a run
        # that hits the clock runs again, counted, so a verdict never depends
        # on the machine's speed.
        outcome = self._start(entry, callee, slots, timeout=QUICK_TIMEOUT_US)
        if outcome is None:
            # Blocks translated without the counting hook would never stop
            # on the count: translate afresh for the counted run, and again after.
            self.mu.ctl_flush_tb()  # type: ignore[attr-defined]
            outcome = self._start(entry, callee, slots, count=budget)
            self.mu.ctl_flush_tb()  # type: ignore[attr-defined]
        if outcome is None:
            pc = self.mu.reg_read(self.target.pc_reg)
            return RawOutcome("timeout", detail=f"instruction budget {budget} exhausted", pc=pc)
        return outcome

    def _start(
        self, entry: int, callee: int, slots: bytes, timeout: int = 0, count: int = 0
    ) -> RawOutcome | None:
        """One run from a fresh state; None when it stopped on its limit."""
        t = self.target
        mu = self.mu
        mu.context_restore(self._fresh)
        mu.mem_write(SLOTS_BASE, slots)
        self._slot_len = len(slots)
        sp = STACK_BASE + STACK_SIZE - 4096 - t.stack_bias
        if t.link_reg is None:
            sp -= 8
            mu.mem_write(sp, SENTINEL.to_bytes(8, "little"))
        else:
            mu.reg_write(t.link_reg, SENTINEL)
        mu.reg_write(t.sp_reg, sp)
        mu.reg_write(t.arg_regs[0], SLOTS_BASE)
        mu.reg_write(t.arg_regs[1], callee)
        self._fault_address = None
        try:
            mu.emu_start(entry, SENTINEL, timeout=timeout, count=count)
        except uc.UcError as err:
            assert self._loaded is not None
            return self._classify(self._loaded, err)
        if mu.reg_read(t.pc_reg) != SENTINEL:
            return None
        return RawOutcome("return", slots=bytes(mu.mem_read(SLOTS_BASE, len(slots))))

    def mnemonic_at(self, image: Image, pc: int) -> str:
        at = pc - image.base
        code = bytes(image.data[at : at + 16])
        for insn in self.disassembler.disasm(code, pc, 1):
            return f"{insn.mnemonic} {insn.op_str}".strip()
        return f"undecodable bytes {code[:4].hex()}"

    def _classify(self, image: Image, err: uc.UcError) -> RawOutcome:
        pc = self.mu.reg_read(self.target.pc_reg)
        if pc == SENTINEL or (
            err.errno == uc.UC_ERR_FETCH_UNMAPPED and self._fault_address == SENTINEL
        ):
            # riscv64 and s390x fetch at the return address before honouring `until`.
            return RawOutcome("return", slots=bytes(self.mu.mem_read(SLOTS_BASE, self._slot_len)))
        if err.errno in _MEMORY_FAULTS:
            where = self._fault_address
            detail = _MEMORY_FAULTS[err.errno]
            if where is not None:
                detail += f" at {where:#x}"
            return RawOutcome("crash", detail=detail, pc=pc)
        if err.errno in self.target.illegal_errnos:
            for delta in self.target.trap_site_deltas:
                if pc + delta in image.trap_sites:
                    return RawOutcome("trap", detail=image.trap_sites[pc + delta], pc=pc + delta)
            fault = pc + self.target.fault_pc_delta
            if image.function_at(fault) is None:
                return RawOutcome("crash", detail=f"{err} outside any function", pc=fault)
            at = fault - image.base
            foreign = self.target.foreign_insn(bytes(image.data[at : at + 4]))
            if foreign:
                return RawOutcome("crash", detail=f"illegal instruction: {foreign}", pc=fault)
            return RawOutcome(
                "not-executable",
                detail=f"emulator cannot run `{self.mnemonic_at(image, fault)}`",
                pc=fault,
            )
        return RawOutcome("crash", detail=str(err), pc=pc)
