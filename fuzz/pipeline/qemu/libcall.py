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


class QemuRegisters:
    """A libcall's registers, one `p`/`P` packet each; an SVE register that
    holds a vector register keeps its upper bits."""

    def __init__(
        self,
        remote: Remote,
        info: Callable[[str], RegisterInfo],
        order: Literal["little", "big"],
    ) -> None:
        self._remote = remote
        self._info = info
        self._order: Literal["little", "big"] = order

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
        self._remote.write_register(
            info.number, (value & ((1 << info.bits) - 1)).to_bytes(size, self._order)
        )
