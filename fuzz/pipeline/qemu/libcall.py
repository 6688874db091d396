"""Libcalls on qemu-user: a libcall stub is a breakpoint, and the call is
computed in Python (fuzz.pipeline.libcalls) as on unicorn, reading and
writing the guest's registers and memory through the gdbstub."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fuzz.pipeline import libcalls
from fuzz.pipeline.emulate import libcall_writable
from fuzz.pipeline.gdbremote import RegisterInfo, Remote, RemoteError
from fuzz.targets import Reg


class QemuMemory:
    """Guest memory as a libcall sees it: stores only into the stack and the slots."""

    def __init__(self, remote: Remote) -> None:
        self._remote = remote

    def read(self, address: int, size: int) -> bytes:
        if size == 0:
            return b""
        try:
            return self._remote.read_memory(address, size)
        except RemoteError:
            raise libcalls.LibcallFault(f"read of unmapped memory at {address:#x}") from None

    def write(self, address: int, data: bytes) -> None:
        if not data:
            return
        if not libcall_writable(address, len(data)):
            raise libcalls.LibcallFault(f"write to protected memory at {address:#x}")
        self._remote.write_memory(address, data)


GRANULE = 16  # bytes of a 128-bit chunk of an SVE register


def swap_halves(data: bytes) -> bytes:
    """`data` with the two 8-byte halves of every 16-byte granule swapped."""
    return b"".join(
        data[at + 8 : at + GRANULE] + data[at : at + 8] for at in range(0, len(data), GRANULE)
    )


def write_swaps_halves(remote: Remote, info: RegisterInfo) -> bool:
    """Whether this gdbstub's `P` on a register wider than 128 bits (an SVE
    `z` register) swaps the halves of each 128-bit granule: qemu 10.0.2's
    does (its `p` reads them right), 7.2's does not. Probed once per server
    by writing a pattern and reading it back; clobbers the register."""
    if info.bits <= GRANULE * 8:
        return False
    pattern = bytes(range(info.bits // 8))
    remote.write_register(info.number, pattern)
    back = remote.read_register(info.number)
    return back != pattern and back == swap_halves(pattern)


class QemuRegisters:
    """A libcall's registers, one `p`/`P` packet each; an SVE register that
    holds a vector register keeps its upper bits (`swapped`: written with
    its halves pre-swapped, see `write_swaps_halves`)."""

    def __init__(
        self,
        remote: Remote,
        info: Callable[[str], RegisterInfo],
        order: Literal["little", "big"],
        swapped: bool = False,
    ) -> None:
        self._remote = remote
        self._info = info
        self._order: Literal["little", "big"] = order
        self._swapped = swapped

    def get(self, reg: Reg) -> int:
        info = self._info(reg.name)
        value = int.from_bytes(self._remote.read_register(info.number), self._order)
        if info.bits > reg.bits:
            value &= (1 << reg.bits) - 1
        return value

    def set(self, reg: Reg, value: int) -> None:
        info = self._info(reg.name)
        if info.bits > reg.bits:
            old = int.from_bytes(self._remote.read_register(info.number), self._order)
            value = (old & ~((1 << reg.bits) - 1)) | value
        size = info.bits // 8
        data = (value & ((1 << info.bits) - 1)).to_bytes(size, self._order)
        if self._swapped and info.bits > GRANULE * 8:
            data = swap_halves(data)
        self._remote.write_register(info.number, data)
