"""A client of GDB's remote serial protocol, as qemu-user's gdbstub speaks it:
packets, register layout from the target description, memory and stops.

Only what the qemu executor (fuzz.pipeline.qemu) needs: no threads, no
non-stop mode. qemu 7.2 answers `QStartNoAckMode` with nothing, so every
packet it sends is acknowledged.

A misbehaving stub is an error, never a hang: an empty reply (the protocol's
"unsupported") to a request that needs an answer raises `RemoteUnsupported`,
a corrupt or endless reply raises `RemoteError`, and a closed connection
raises `RemoteClosed`."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass


class RemoteClosed(ConnectionError):
    """The stub went away: qemu-user exited or was killed."""


class RemoteError(RuntimeError):
    """The stub refused a request (an `Exx` reply) or broke the protocol."""


class RemoteUnsupported(RemoteError):
    """The stub does not know a request: it answered with an empty packet."""


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
_INCLUDE = re.compile(rb'xi:include href="([^"]+)"')
_ERROR = re.compile(rb"E[0-9A-Fa-f]{2}|E\..*", re.DOTALL)
_ESCAPED = re.compile(rb"\}(.)", re.DOTALL)

# Bounds that turn a misbehaving stub into an error rather than a hang or
# unbounded memory: qemu's largest packet (a `g` reply) is a few KiB.
_MAX_PACKET = 1 << 20
_MAX_DOCUMENT = 1 << 24
_MAX_RETRIES = 3
_XFER_CHUNK = 0x800
# qemu's packet buffer holds 0x1000 bytes: 0x7F0 bytes are 0xFE0 hex digits
_MEMORY_CHUNK = 0x7F0


class Remote:
    def __init__(self, sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # one small request at a time: Nagle would only delay each
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buffer = b""
        self._last = b""  # the last packet sent, again if the stub refuses it (`-`)
        self._refused = 0
        self._ack = True  # acknowledge every packet until the stub agrees not to
        self._ack = self.request(b"QStartNoAckMode") != b"OK"

    def close(self) -> None:
        self._sock.close()

    # --- packets ----------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        self._last = b"$%s#%s" % (payload, _checksum(payload))
        self._refused = 0
        self._write(self._last)

    def receive(self) -> bytes:
        """The next packet's payload; in ack mode a corrupt packet is refused
        (`-`) so that the stub sends it again."""
        read = 0
        corrupt = 0
        while True:
            packet = self._take_packet()
            if packet is None:
                read += self._fill()
                if read > _MAX_PACKET:
                    raise RemoteError(f"no whole packet in {read} bytes from the stub")
                continue
            payload, checksum = packet
            if checksum.lower() == _checksum(payload):
                if self._ack:
                    self._write(b"+")
                return payload
            corrupt += 1
            if not self._ack or corrupt > _MAX_RETRIES:
                raise RemoteError(
                    f"packet {payload[:40]!r} has checksum {checksum!r}, not {_checksum(payload)!r}"
                )
            self._write(b"-")

    def request(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.receive()

    def checked(self, payload: bytes) -> bytes:
        """The reply to a request that needs one: `Exx`, `E.text` and the
        empty reply (unsupported) raise."""
        reply = self.request(payload)
        if not reply:
            raise RemoteUnsupported(f"{_show(payload)}: unsupported (an empty reply)")
        if _ERROR.fullmatch(reply):
            raise RemoteError(f"{_show(payload)}: {reply.decode(errors='replace')}")
        return reply

    def _expect_ok(self, payload: bytes) -> None:
        reply = self.checked(payload)
        if reply != b"OK":
            raise RemoteError(f"{_show(payload)}: {reply[:40]!r} instead of OK")

    def _take_packet(self) -> tuple[bytes, bytes] | None:
        """Cut the first whole `$payload#cs` out of the buffer, dropping what
        comes before it: acks, noise, and a `-` asking for our last packet."""
        start = self._buffer.find(b"$")
        noise = self._buffer if start < 0 else self._buffer[:start]
        self._buffer = self._buffer[start:] if start >= 0 else b""
        if self._ack and b"-" in noise:
            self._resend()
        end = self._buffer.find(b"#")
        if end < 0 or len(self._buffer) < end + 3:
            return None
        payload, checksum = self._buffer[1:end], self._buffer[end + 1 : end + 3]
        self._buffer = self._buffer[end + 3 :]
        return payload, checksum

    def _resend(self) -> None:
        self._refused += 1
        if self._refused > _MAX_RETRIES:
            raise RemoteError(f"the stub refused {_show(self._last)} {self._refused} times")
        self._write(self._last)

    def _fill(self) -> int:
        try:
            data = self._sock.recv(1 << 16)
        except OSError as err:  # a timeout too: qemu-user stopped answering
            raise RemoteClosed(str(err)) from None
        if not data:
            raise RemoteClosed("the gdbstub closed the connection")
        self._buffer += data
        return len(data)

    def _write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as err:
            raise RemoteClosed(str(err)) from None

    # --- target description -------------------------------------------------------

    def _xfer(self, annex: bytes) -> bytes:
        """A target description document, read in `m` chunks up to the `l` one."""
        data = b""
        while len(data) <= _MAX_DOCUMENT:
            reply = self.checked(b"qXfer:features:read:%s:%x,%x" % (annex, len(data), _XFER_CHUNK))
            kind, chunk = reply[:1], _ESCAPED.sub(_unescape, reply[1:])
            if kind == b"l":
                return data + chunk
            if kind != b"m":
                raise RemoteError(f"qXfer {annex!r}: unexpected reply {reply[:40]!r}")
            if not chunk:  # asking again at the same offset would never end
                raise RemoteError(f"qXfer {annex!r}: an empty chunk at offset {len(data)}")
            data += chunk
        raise RemoteError(f"qXfer {annex!r}: longer than {_MAX_DOCUMENT} bytes")

    def _descriptions(self) -> list[bytes]:
        target = self._xfer(b"target.xml")
        return [target] + [self._xfer(name) for name in _INCLUDE.findall(target)]

    def registers(
        self, wanted: Iterable[str], phantoms: frozenset[str] = frozenset()
    ) -> dict[str, RegisterInfo]:
        """Every register the stub describes, by name, with where the `g`
        packet holds the `wanted` ones: found by writing a distinct value to
        each and looking for it (qemu's `g` leaves out some registers its
        target description lists, so their offsets cannot be summed)."""
        names = list(wanted)
        found = _parse_registers(self._descriptions(), phantoms)
        missing = [name for name in names if name not in found]
        if missing:  # before any register is written
            raise RemoteError(
                f"the stub describes no register {', '.join(missing)};"
                f" it describes: {', '.join(found) or 'none'}"
            )
        regs = {name: RegisterInfo(name, num, bits, None) for name, (num, bits) in found.items()}
        original = self.read_registers()
        for index, name in enumerate(names):
            num, bits = found[name]
            regs[name] = RegisterInfo(name, num, bits, self._offset_in_g(num, index))
        self.write_registers(original)
        return regs

    def _offset_in_g(self, number: int, index: int) -> int | None:
        old = self.read_register(number)
        magic = (0x5A17_0000_0000_0000 | (index << 16) | 0xBEEF).to_bytes(8, "little")
        self.write_register(number, magic + old[8:])
        at = self.read_registers().find(magic)
        self.write_register(number, old)
        return at if at >= 0 else None

    # --- state ------------------------------------------------------------------

    def read_registers(self) -> bytes:
        return _from_hex(self.checked(b"g"), b"g")

    def write_registers(self, raw: bytes) -> None:
        self._expect_ok(b"G" + raw.hex().encode())

    def read_register(self, number: int) -> bytes:
        request = b"p%x" % number
        return _from_hex(self.checked(request), request)

    def write_register(self, number: int, raw: bytes) -> None:
        self._expect_ok(b"P%x=%s" % (number, raw.hex().encode()))

    def read_memory(self, address: int, size: int) -> bytes:
        out = b""
        while len(out) < size:
            chunk = min(size - len(out), _MEMORY_CHUNK)
            request = b"m%x,%x" % (address + len(out), chunk)
            # (a shorter reply is allowed: the next request asks for the rest)
            out += _from_hex(self.checked(request), request)[:chunk]
        return out

    def write_memory(self, address: int, data: bytes) -> None:
        for at in range(0, len(data), _MEMORY_CHUNK):
            piece = data[at : at + _MEMORY_CHUNK]
            self._expect_ok(b"M%x,%x:%s" % (address + at, len(piece), piece.hex().encode()))

    def set_breakpoint(self, address: int, size: int) -> None:
        self._expect_ok(b"Z0,%x,%x" % (address, size))

    def clear_breakpoint(self, address: int, size: int) -> None:
        self._expect_ok(b"z0,%x,%x" % (address, size))

    def resume(self, signal: int = 0) -> Stop:
        """Continue (delivering `signal`, 0: none) until the next stop."""
        reply = self.request(b"C%02x" % signal if signal else b"c")
        return parse_stop(reply)


def parse_stop(reply: bytes) -> Stop:
    kind, number = reply[:1], reply[1:3]
    if kind in (b"T", b"S", b"W", b"X") and re.fullmatch(rb"[0-9A-Fa-f]{2}", number):
        return Stop(int(number, 16), exited=kind in (b"W", b"X"))
    raise RemoteError(f"unexpected stop reply {reply[:40]!r}")


def _parse_registers(parts: list[bytes], phantoms: frozenset[str]) -> dict[str, tuple[int, int]]:
    """Each described register's (number, bits) by name; a register without
    a `regnum` follows the one before it."""
    found: dict[str, tuple[int, int]] = {}
    number = 0
    for part in parts:
        for match in _REG.finditer(part):
            attrs = dict(_ATTR.findall(match.group(1)))
            try:
                name = attrs[b"name"].decode()
                if name in phantoms:
                    continue
                number = int(attrs.get(b"regnum", number))
                found[name] = (number, int(attrs[b"bitsize"]))
            except (KeyError, ValueError) as err:
                raise RemoteError(f"malformed register {match.group(0)[:80]!r}") from err
            number += 1
    return found


def _checksum(payload: bytes) -> bytes:
    return b"%02x" % (sum(payload) & 0xFF)


def _unescape(match: re.Match[bytes]) -> bytes:
    # binary data escapes `#$}*` as `}` and the byte xor 0x20
    return bytes([match.group(1)[0] ^ 0x20])


def _from_hex(reply: bytes, request: bytes) -> bytes:
    try:
        return bytes.fromhex(reply.decode("ascii"))
    except ValueError:  # (UnicodeDecodeError is one)
        raise RemoteError(f"{_show(request)}: malformed hex reply {reply[:40]!r}") from None


def _show(payload: bytes) -> str:
    return repr(payload[:24])
