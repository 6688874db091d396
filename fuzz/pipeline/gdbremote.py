"""A client of GDB's remote serial protocol, as qemu-user's gdbstub speaks it:
packets, register layout from the target description, memory and stops.

Only what the qemu executor (fuzz.pipeline.qemu) needs: no threads, no
non-stop mode. qemu 7.2 answers `QStartNoAckMode` with nothing, so every
packet it sends is acknowledged."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass


class RemoteClosed(ConnectionError):
    """The stub went away: qemu-user exited or was killed."""


class RemoteError(RuntimeError):
    """The stub refused a request (an `Exx` reply)."""


@dataclass(frozen=True)
class RegisterInfo:
    name: str
    number: int
    bits: int
    # byte offset in the `g` packet's payload, None: only by `p`/`P`
    offset: int | None


@dataclass(frozen=True)
class Stop:
    """A stop reply: the signal number the guest stopped with (5: a breakpoint)."""

    signal: int
    exited: bool = False


_REG = re.compile(rb"<reg\s([^>]*)/?>")
_ATTR = re.compile(rb'(\w+)="([^"]*)"')


class Remote:
    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buffer = b""
        self._ack = True  # acknowledge every packet until the stub agrees not to
        self._ack = self.request(b"QStartNoAckMode") != b"OK"

    def close(self) -> None:
        self._sock.close()

    # --- packets ----------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        try:
            self._sock.sendall(b"$%s#%02x" % (payload, sum(payload) & 0xFF))
        except OSError as err:
            raise RemoteClosed(str(err)) from None

    def receive(self) -> bytes:
        while True:
            start = self._buffer.find(b"$")
            if start >= 0:
                end = self._buffer.find(b"#", start)
                if end >= 0 and len(self._buffer) >= end + 3:
                    payload = self._buffer[start + 1 : end]
                    self._buffer = self._buffer[end + 3 :]
                    if self._ack:
                        self._sock.sendall(b"+")
                    return payload
            try:
                data = self._sock.recv(1 << 16)
            except OSError as err:
                raise RemoteClosed(str(err)) from None
            if not data:
                raise RemoteClosed("the gdbstub closed the connection")
            self._buffer += data

    def request(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.receive()

    def checked(self, payload: bytes) -> bytes:
        reply = self.request(payload)
        if reply.startswith(b"E") and len(reply) == 3:
            raise RemoteError(f"{payload[:20]!r}: {reply.decode()}")
        return reply

    # --- target description -------------------------------------------------------

    def _xfer(self, annex: bytes) -> bytes:
        data = b""
        while True:
            reply = self.checked(b"qXfer:features:read:%s:%x,%x" % (annex, len(data), 0x800))
            data += reply[1:]
            if reply[:1] == b"l":
                return data

    def registers(
        self, wanted: Iterable[str], phantoms: frozenset[str] = frozenset()
    ) -> dict[str, RegisterInfo]:
        """Every register the stub describes, by name, with where the `g`
        packet holds the `wanted` ones: found by writing a distinct value to
        each and looking for it (qemu's `g` leaves out some registers its
        target description lists, so their offsets cannot be summed)."""
        target = self._xfer(b"target.xml")
        parts = [target] + [
            self._xfer(name) for name in re.findall(rb'xi:include href="([^"]+)"', target)
        ]
        found: dict[str, tuple[int, int]] = {}
        number = 0
        for part in parts:
            for match in _REG.finditer(part):
                attrs = dict(_ATTR.findall(match.group(1)))
                name = attrs[b"name"].decode()
                if name in phantoms:
                    continue
                number = int(attrs.get(b"regnum", number))
                found[name] = (number, int(attrs[b"bitsize"]))
                number += 1
        regs = {name: RegisterInfo(name, num, bits, None) for name, (num, bits) in found.items()}
        original = self.read_registers()
        for index, name in enumerate(wanted):
            num, bits = found[name]
            old = self.read_register(num)
            magic = (0x5A17_0000_0000_0000 | (index << 16) | 0xBEEF).to_bytes(8, "little")
            self.write_register(num, magic + old[8:])
            at = self.read_registers().find(magic)
            self.write_register(num, old)
            regs[name] = RegisterInfo(name, num, bits, at if at >= 0 else None)
        self.write_registers(original)
        return regs

    # --- state ------------------------------------------------------------------

    def read_registers(self) -> bytes:
        return bytes.fromhex(self.checked(b"g").decode())

    def write_registers(self, raw: bytes) -> None:
        self.checked(b"G" + raw.hex().encode())

    def read_register(self, number: int) -> bytes:
        return bytes.fromhex(self.checked(b"p%x" % number).decode())

    def write_register(self, number: int, raw: bytes) -> None:
        self.checked(b"P%x=%s" % (number, raw.hex().encode()))

    def read_memory(self, address: int, size: int) -> bytes:
        out = b""
        while len(out) < size:
            chunk = min(size - len(out), 0x7F0)
            out += bytes.fromhex(self.checked(b"m%x,%x" % (address + len(out), chunk)).decode())
        return out

    def write_memory(self, address: int, data: bytes) -> None:
        for at in range(0, len(data), 0x7F0):
            piece = data[at : at + 0x7F0]
            self.checked(b"M%x,%x:%s" % (address + at, len(piece), piece.hex().encode()))

    def set_breakpoint(self, address: int, size: int) -> None:
        self.checked(b"Z0,%x,%x" % (address, size))

    def clear_breakpoint(self, address: int, size: int) -> None:
        self.checked(b"z0,%x,%x" % (address, size))

    def resume(self, signal: int = 0) -> Stop:
        """Continue (delivering `signal`, 0: none) until the next stop."""
        reply = self.request(b"C%02x" % signal if signal else b"c")
        return parse_stop(reply)


def parse_stop(reply: bytes) -> Stop:
    if reply[:1] in (b"T", b"S"):
        return Stop(int(reply[1:3], 16))
    if reply[:1] in (b"W", b"X"):
        return Stop(int(reply[1:3], 16), exited=True)
    raise RemoteError(f"unexpected stop reply {reply[:40]!r}")
