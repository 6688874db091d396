"""The GDB remote protocol client (fuzz.pipeline.gdbremote) against a fake
gdbstub on the other end of a socketpair: real `$payload#cs` packets and
acks, served from a thread. No network and no sleeping; every socket has a
timeout and the stub hangs up on a client that keeps asking, so that a
regression to a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

import pytest

from fuzz.pipeline.gdbremote import (
    Remote,
    RemoteClosed,
    RemoteError,
    RemoteUnsupported,
    Stop,
)

TIMEOUT = 5
# far more requests than any test needs: a client asking this often is looping
MAX_REQUESTS = 2000
MEMORY_BASE = 0x40_0000
MEMORY_SIZE = 0x2000


@dataclass(frozen=True)
class Raw:
    """Bytes the stub sends as they are, not framed as a packet; then it
    hangs up if asked to."""

    chunks: tuple[bytes, ...]
    hang_up: bool = False


# what the stub answers a request with; None: it hangs up instead
Reply: TypeAlias = bytes | Raw | None
# one use of the client's API, for tests parametrized over requests
Call: TypeAlias = Callable[[Remote], object]

# `g` leaves out orig_x0 (number 2), so offsets cannot be summed from the
# description; fs_base is a phantom (described, but numbered by nothing);
# the comment holds every byte qXfer must escape
FILES = {
    b"target.xml": b'<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
    b"<target><architecture>aarch64</architecture>\n"
    b"<!-- escaped in a transfer: # $ } * -->\n"
    b'<xi:include href="core.xml"/><xi:include href="fpu.xml"/></target>\n',
    b"core.xml": b'<feature name="org.gnu.gdb.aarch64.core">\n'
    b'<reg name="x0" bitsize="64"/><reg name="x1" bitsize="64"/>\n'
    b'<reg name="orig_x0" bitsize="64"/>\n'
    b'<reg name="sp" bitsize="64" type="data_ptr"/>\n'
    b'<reg name="pc" bitsize="64" type="code_ptr"/>\n'
    b'<reg name="cpsr" bitsize="32"/>\n</feature>\n',
    b"fpu.xml": b'<feature name="org.gnu.gdb.aarch64.fpu">\n'
    b'<reg name="fs_base" bitsize="64"/><reg name="v0" bitsize="128"/>\n'
    b'<reg name="fpsr" bitsize="32" regnum="40"/>\n</feature>\n',
}
SIZES = {0: 8, 1: 8, 2: 8, 3: 8, 4: 8, 5: 4, 6: 16, 40: 4}
IN_G = [0, 1, 3, 4, 5]
WANTED = ["x0", "x1", "sp", "pc", "v0"]


def frame(payload: bytes) -> bytes:
    return b"$%s#%02x" % (payload, sum(payload) & 0xFF)


def escape(data: bytes) -> bytes:
    return re.sub(rb"[#$}*]", lambda m: b"}" + bytes([m[0][0] ^ 0x20]), data)


@dataclass
class FakeTarget:
    """The machine behind the fake stub, answering as qemu's gdbstub does;
    `overrides` answers requests by prefix first."""

    no_ack_reply: bytes = b"OK"
    overrides: dict[bytes, Reply] = field(default_factory=dict)
    files: dict[bytes, bytes] = field(default_factory=lambda: dict(FILES))
    xfer_limit: int = 64  # bytes per qXfer chunk: a description takes several
    memory_limit: int = 0x1000  # bytes per `m` reply
    regs: dict[int, bytes] = field(
        default_factory=lambda: {
            n: bytes([(n * 16 + i) & 0xFF for i in range(s)]) for n, s in SIZES.items()
        }
    )
    memory: bytearray = field(default_factory=lambda: bytearray(MEMORY_SIZE))
    breakpoints: set[tuple[int, int]] = field(default_factory=set)
    stops: list[bytes] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    corrupt: set[bytes] = field(default_factory=set)  # first reply: a bad checksum
    refuse: set[bytes] = field(default_factory=set)  # first request: refused with `-`

    def handle(self, payload: bytes) -> Reply:
        for prefix, reply in self.overrides.items():
            if payload.startswith(prefix):
                return reply
        if payload == b"QStartNoAckMode":
            return self.no_ack_reply
        if payload.startswith(b"qXfer:features:read:"):
            return self._xfer(payload)
        args = payload[1:].decode()
        match payload[:1]:
            case b"g":
                return b"".join(self.regs[n] for n in IN_G).hex().encode()
            case b"G":
                return self._write_g(bytes.fromhex(args))
            case b"p":
                return self.regs[int(args, 16)].hex().encode()
            case b"P":
                number, value = args.split("=")
                return self._write_reg(int(number, 16), bytes.fromhex(value))
            case b"m":
                return self._read_memory(*(int(x, 16) for x in args.split(",")))
            case b"M":
                where, data = args.split(":")
                address, length = (int(x, 16) for x in where.split(","))
                return self._write_memory(address, length, bytes.fromhex(data))
            case b"Z" | b"z":
                kind, address, size = (int(x, 16) for x in args.split(","))
                assert kind == 0
                change = self.breakpoints.add if payload[:1] == b"Z" else self.breakpoints.discard
                change((address, size))
                return b"OK"
            case b"c" | b"C":
                self.signals.append(int(args or "0", 16))
                return self.stops.pop(0)
        return b""  # unknown: unsupported

    def _xfer(self, payload: bytes) -> bytes:
        annex, where = payload.split(b":")[3:]
        offset, length = (int(x, 16) for x in where.split(b","))
        if annex not in self.files:
            return b"E00"
        document = self.files[annex]
        chunk = document[offset : offset + min(length, self.xfer_limit)]
        kind = b"l" if offset + len(chunk) >= len(document) else b"m"
        return kind + escape(chunk)

    def _write_g(self, raw: bytes) -> bytes:
        if len(raw) != sum(SIZES[n] for n in IN_G):
            return b"E22"
        for n in IN_G:
            self.regs[n], raw = raw[: SIZES[n]], raw[SIZES[n] :]
        return b"OK"

    def _write_reg(self, number: int, value: bytes) -> bytes:
        if len(value) != SIZES[number]:
            return b"E22"
        self.regs[number] = value
        return b"OK"

    def _read_memory(self, address: int, length: int) -> bytes:
        at = address - MEMORY_BASE
        if not 0 <= at <= MEMORY_SIZE - length:
            return b"E14"
        return self.memory[at : at + min(length, self.memory_limit)].hex().encode()

    def _write_memory(self, address: int, length: int, data: bytes) -> bytes:
        at = address - MEMORY_BASE
        if not 0 <= at <= MEMORY_SIZE - length or len(data) != length:
            return b"E14"
        self.memory[at : at + length] = data
        return b"OK"


class FakeStub:
    """Serves a FakeTarget over one end of a socketpair from a thread, with
    acks until `QStartNoAckMode` is answered OK; records what it gets."""

    def __init__(self, sock: socket.socket, target: FakeTarget) -> None:
        self.sock = sock
        self.target = target
        self.requests: list[bytes] = []
        self.acks = 0
        self.naks = 0
        self.ack_mode = True
        self.error: BaseException | None = None
        self._buffer = b""
        self._last = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            while len(self.requests) < MAX_REQUESTS:
                payload = self._read_packet()
                if payload is None:
                    return
                self.requests.append(payload)
                if self.ack_mode and payload in self.target.refuse:
                    self.target.refuse.discard(payload)
                    self.sock.sendall(b"-")
                    continue
                if self.ack_mode:
                    self.sock.sendall(b"+")
                reply = self.target.handle(payload)
                if reply is None or not self._send(payload, reply):
                    return
                if payload == b"QStartNoAckMode" and reply == b"OK":
                    self.ack_mode = False
        except OSError:
            pass  # the client closed its end
        except Exception as err:  # a broken fake: the fixture reports it
            self.error = err
        finally:
            self.sock.close()

    def _read_packet(self) -> bytes | None:
        while True:
            self._take_acks()
            if self._buffer and self._buffer[:1] != b"$":
                raise AssertionError(f"the client sent {self._buffer[:20]!r}")
            match = re.match(rb"\$([^#]*)#(..)", self._buffer, re.DOTALL)
            if match:
                self._buffer = self._buffer[match.end() :]
                assert frame(match[1]) == match[0], f"bad checksum on {match[0][:20]!r}"
                return match[1]
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self._buffer += data

    def _take_acks(self) -> None:
        while self._buffer[:1] in (b"+", b"-"):
            if self._buffer[:1] == b"+":
                self.acks += 1
            else:
                self.naks += 1
                self.sock.sendall(self._last)
            self._buffer = self._buffer[1:]

    def _send(self, payload: bytes, reply: bytes | Raw) -> bool:
        """Send a reply; False: hang up now."""
        if isinstance(reply, Raw):
            for chunk in reply.chunks:
                self.sock.sendall(chunk)
            return not reply.hang_up
        self._last = frame(reply)
        if payload in self.target.corrupt:
            self.target.corrupt.discard(payload)
            self.sock.sendall(self._last[:-2] + b"%02x" % ((sum(reply) + 1) & 0xFF))
        else:
            self.sock.sendall(self._last)
        return True


class Harness:
    def __init__(self) -> None:
        self._started: list[tuple[socket.socket, FakeStub]] = []

    def serve(self, target: FakeTarget | None = None) -> tuple[socket.socket, FakeStub]:
        ours, theirs = socket.socketpair()
        for sock in (ours, theirs):
            sock.settimeout(TIMEOUT)
        stub = FakeStub(theirs, target or FakeTarget())
        self._started.append((ours, stub))
        return ours, stub

    def connect(self, target: FakeTarget | None = None) -> tuple[Remote, FakeStub]:
        sock, stub = self.serve(target)
        return Remote(sock), stub

    def finish(self) -> None:
        """Close every client and wait for its stub: the stub has then seen
        every ack the client sent."""
        for sock, stub in self._started:
            sock.close()
            stub.thread.join(TIMEOUT)
            assert not stub.thread.is_alive(), "the fake stub did not finish"
            assert stub.error is None, f"the fake stub broke: {stub.error!r}"


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    yield made
    made.finish()


# --- handshake and packets ------------------------------------------------------


def test_handshake_switches_acks_off(harness: Harness) -> None:
    remote, stub = harness.connect(FakeTarget(no_ack_reply=b"OK"))
    remote.read_registers()
    remote.read_registers()
    harness.finish()
    assert stub.requests == [b"QStartNoAckMode", b"g", b"g"]
    assert stub.acks == 1  # the OK itself, then none


def test_handshake_keeps_acks_when_unanswered(harness: Harness) -> None:
    # qemu 7.2 answers QStartNoAckMode with nothing: every reply is acked
    remote, stub = harness.connect(FakeTarget(no_ack_reply=b""))
    remote.read_registers()
    remote.read_registers()
    harness.finish()
    assert stub.acks == 3
    assert stub.ack_mode


def test_noise_before_a_packet_is_skipped(harness: Harness) -> None:
    target = FakeTarget(overrides={b"Z0": Raw((b"+\x00noise", frame(b"OK")))})
    remote, _ = harness.connect(target)
    remote.set_breakpoint(0x1000, 4)
    assert remote.read_register(0) == target.regs[0]


def test_endless_garbage_raises(harness: Harness) -> None:
    # 4 MiB without a whole packet: an error, not a wait for more
    target = FakeTarget(overrides={b"g": Raw((b"$" + b"x" * 0xFFFF,) + (b"x" * 0x10000,) * 63)})
    remote, _ = harness.connect(target)
    with pytest.raises(RemoteError, match="no whole packet"):
        remote.read_registers()


def test_corrupt_reply_is_refused_and_sent_again(harness: Harness) -> None:
    target = FakeTarget(no_ack_reply=b"", corrupt={b"g"})
    remote, stub = harness.connect(target)
    assert remote.read_registers() == b"".join(target.regs[n] for n in IN_G)
    assert stub.naks == 1


def test_corrupt_reply_without_acks_raises(harness: Harness) -> None:
    remote, _ = harness.connect(FakeTarget(corrupt={b"g"}))
    with pytest.raises(RemoteError, match="checksum"):
        remote.read_registers()


def test_refused_request_is_sent_again(harness: Harness) -> None:
    target = FakeTarget(no_ack_reply=b"", refuse={b"p6"})
    remote, stub = harness.connect(target)
    assert remote.read_register(6) == target.regs[6]
    assert stub.requests.count(b"p6") == 2


@pytest.mark.parametrize(
    "reply",
    [None, Raw((b"$4142",), hang_up=True)],
    ids=["before-the-reply", "mid-reply"],
)
def test_disconnect_mid_request_raises_closed(harness: Harness, reply: Reply) -> None:
    remote, _ = harness.connect(FakeTarget(overrides={b"g": reply}))
    with pytest.raises(RemoteClosed):
        remote.read_registers()


def test_request_after_disconnect_raises_closed(harness: Harness) -> None:
    remote, _ = harness.connect(FakeTarget(overrides={b"g": None}))
    with pytest.raises(RemoteClosed):
        remote.read_registers()
    with pytest.raises(RemoteClosed):
        remote.read_registers()


# --- errors and unsupported requests ---------------------------------------------


@pytest.mark.parametrize("reply", [b"E14", b"E.no such register"])
def test_error_reply_raises(harness: Harness, reply: bytes) -> None:
    remote, _ = harness.connect(FakeTarget(overrides={b"p": reply}))
    # the reply itself is the message, not a complaint about its hex
    with pytest.raises(RemoteError, match=f": {re.escape(reply.decode())}$") as caught:
        remote.read_register(1)
    assert not isinstance(caught.value, RemoteUnsupported)


def test_read_of_unmapped_memory_raises(harness: Harness) -> None:
    remote, _ = harness.connect()
    with pytest.raises(RemoteError, match="E14"):
        remote.read_memory(0x1000, 8)


@pytest.mark.parametrize(
    ("prefix", "call"),
    [
        (b"p", lambda r: r.read_register(1)),
        (b"g", lambda r: r.read_registers()),
        (b"m", lambda r: r.read_memory(MEMORY_BASE, 16)),
        (b"qXfer", lambda r: r.registers(WANTED)),
        (b"P", lambda r: r.write_register(1, bytes(8))),
        (b"M", lambda r: r.write_memory(MEMORY_BASE, b"abc")),
        (b"Z0", lambda r: r.set_breakpoint(0x1000, 4)),
    ],
    ids=["p", "g", "m", "qXfer", "P", "M", "Z0"],
)
def test_empty_reply_is_unsupported(harness: Harness, prefix: bytes, call: Call) -> None:
    remote, stub = harness.connect(FakeTarget(overrides={prefix: b""}))
    with pytest.raises(RemoteUnsupported, match=re.escape(repr(prefix)[:-1])):
        call(remote)
    assert len(stub.requests) < 10  # asked once, not in a loop


@pytest.mark.parametrize(
    ("reply", "message"),
    [(b"x<target/>", "unexpected reply"), (b"m", "empty chunk")],
    ids=["neither-m-nor-l", "empty-m"],
)
def test_bad_xfer_reply_raises(harness: Harness, reply: bytes, message: str) -> None:
    remote, stub = harness.connect(FakeTarget(overrides={b"qXfer": reply}))
    with pytest.raises(RemoteError, match=message):
        remote.registers(WANTED)
    assert len(stub.requests) < 10


@pytest.mark.parametrize(
    ("prefix", "call"),
    [
        (b"G", lambda r: r.write_registers(bytes(36))),
        (b"M", lambda r: r.write_memory(MEMORY_BASE, b"abc")),
        (b"Z0", lambda r: r.set_breakpoint(0x1000, 4)),
    ],
    ids=["G", "M", "Z0"],
)
def test_write_needs_ok(harness: Harness, prefix: bytes, call: Call) -> None:
    remote, _ = harness.connect(FakeTarget(overrides={prefix: b"1234"}))
    with pytest.raises(RemoteError, match="instead of OK"):
        call(remote)


@pytest.mark.parametrize("reply", [b"123", b"zz", b"\xff\xfe"])
def test_malformed_hex_raises(harness: Harness, reply: bytes) -> None:
    remote, _ = harness.connect(FakeTarget(overrides={b"g": reply}))
    with pytest.raises(RemoteError, match="malformed"):
        remote.read_registers()


# --- registers and memory --------------------------------------------------------


def test_registers_read_and_written(harness: Harness) -> None:
    target = FakeTarget()
    remote, _ = harness.connect(target)
    assert remote.read_registers() == b"".join(target.regs[n] for n in IN_G)
    raw = bytes(range(36))
    remote.write_registers(raw)
    assert target.regs[3] == raw[16:24]
    assert remote.read_register(6) == target.regs[6]
    remote.write_register(40, b"\x01\x02\x03\x04")
    assert target.regs[40] == b"\x01\x02\x03\x04"
    with pytest.raises(RemoteError, match="E22"):
        remote.write_register(40, bytes(8))


def test_memory_moves_in_chunks(harness: Harness) -> None:
    target = FakeTarget()
    remote, stub = harness.connect(target)
    data = bytes(i * 7 & 0xFF for i in range(0x1000))
    remote.write_memory(MEMORY_BASE + 3, data)
    assert target.memory[3 : 3 + len(data)] == data
    assert remote.read_memory(MEMORY_BASE + 3, len(data)) == data
    sizes = [(r[:1], int(r.split(b",")[1].split(b":")[0], 16)) for r in stub.requests[1:]]
    assert sizes == [(b"M", 0x7F0), (b"M", 0x7F0), (b"M", 0x20)] + [
        (b"m", 0x7F0),
        (b"m", 0x7F0),
        (b"m", 0x20),
    ]


def test_memory_read_continues_after_a_short_reply(harness: Harness) -> None:
    target = FakeTarget(memory_limit=0x100)
    target.memory[:] = bytes(i & 0xFF for i in range(MEMORY_SIZE))
    remote, stub = harness.connect(target)
    assert remote.read_memory(MEMORY_BASE, 0x300) == bytes(target.memory[:0x300])
    assert len(stub.requests) == 1 + 3


def test_description_read_across_chunks(harness: Harness) -> None:
    remote, stub = harness.connect()
    assert remote._xfer(b"target.xml") == FILES[b"target.xml"]
    offsets = [int(r.rsplit(b":", 1)[1].split(b",")[0], 16) for r in stub.requests[1:]]
    assert len(offsets) > 2
    assert offsets == [64 * n for n in range(len(offsets))]


def test_registers_discovers_offsets(harness: Harness) -> None:
    target = FakeTarget()
    remote, stub = harness.connect(target)
    before = dict(target.regs)
    regs = remote.registers(WANTED, frozenset({"fs_base"}))
    found = {name: (info.number, info.bits, info.offset) for name, info in regs.items()}
    assert found == {
        "x0": (0, 64, 0),
        "x1": (1, 64, 8),
        "orig_x0": (2, 64, None),  # not wanted
        "sp": (3, 64, 16),  # not 24: `g` leaves orig_x0 out
        "pc": (4, 64, 24),
        "cpsr": (5, 32, None),
        "v0": (6, 128, None),  # only by p/P
        "fpsr": (40, 32, None),
    }
    assert target.regs == before  # every probe undone
    annexes = {r.split(b":")[3] for r in stub.requests if r.startswith(b"qXfer")}
    assert annexes == {b"target.xml", b"core.xml", b"fpu.xml"}


def test_phantom_registers_take_a_number_unless_named(harness: Harness) -> None:
    remote, _ = harness.connect()
    regs = remote.registers([])
    assert (regs["fs_base"].number, regs["v0"].number, regs["fpsr"].number) == (6, 7, 40)


def test_unknown_register_is_named(harness: Harness) -> None:
    remote, stub = harness.connect()
    with pytest.raises(RemoteError, match=r"no register x99.*describes: x0, x1, orig_x0"):
        remote.registers(["x0", "x99"], frozenset({"fs_base"}))
    assert not any(r[:1] in (b"P", b"G") for r in stub.requests)  # nothing written


def test_malformed_register_description_raises(harness: Harness) -> None:
    target = FakeTarget()
    target.files[b"fpu.xml"] = b'<feature><reg name="v0" bitsize="wide"/></feature>'
    remote, _ = harness.connect(target)
    with pytest.raises(RemoteError, match="malformed register"):
        remote.registers(["x0"])


# --- breakpoints and stops -------------------------------------------------------


def test_breakpoints_set_and_cleared(harness: Harness) -> None:
    target = FakeTarget()
    remote, stub = harness.connect(target)
    remote.set_breakpoint(0x1000, 4)
    remote.set_breakpoint(0x2000, 2)
    remote.clear_breakpoint(0x1000, 4)
    assert target.breakpoints == {(0x2000, 2)}
    assert stub.requests[1:] == [b"Z0,1000,4", b"Z0,2000,2", b"z0,1000,4"]


@pytest.mark.parametrize(
    ("reply", "stop"),
    [
        (b"T05thread:01;", Stop(5)),
        (b"S0b", Stop(11)),
        (b"W00", Stop(0, exited=True)),
        (b"X09", Stop(9, exited=True)),
    ],
)
def test_resume_parses_the_stop(harness: Harness, reply: bytes, stop: Stop) -> None:
    target = FakeTarget(stops=[reply, reply])
    remote, stub = harness.connect(target)
    assert remote.resume() == stop
    assert remote.resume(11) == stop
    assert stub.requests[1:] == [b"c", b"C0b"]
    assert target.signals == [0, 11]


@pytest.mark.parametrize("reply", [b"", b"OK", b"T", b"Tzz", b"E14"])
def test_unexpected_stop_reply_raises(harness: Harness, reply: bytes) -> None:
    remote, _ = harness.connect(FakeTarget(stops=[reply]))
    with pytest.raises(RemoteError, match="unexpected stop reply"):
        remote.resume()
