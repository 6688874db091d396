"""Where the C-ABI oracle's values live, and the graffiti they hold.

The run's slot area (fuzz.pipeline.emulate.SLOTS_BASE, the same address on
both executors) is split into four areas of 16-byte slots: the arguments the
caller passes, the values the callee returns, and what each side records:
the callee every parameter it received, the caller every value it got back.
Callers get the area's address as their first argument; callees, which must
keep the signature under test, write it by absolute address."""

from __future__ import annotations

from fuzz.pipeline.emulate import FILL_BYTES, SLOTS_BASE

SLOT = 16
MAX_VALUES = 64  # per area: more than any signature's parameters
ARGS = 0x000  # the arguments, written by the harness, read by the caller
RETS = 0x400  # the return values, written by the harness, read by the callee
SEEN_PARAMS = 0x800  # what the callee received
SEEN_RETS = 0xC00  # what the caller got back
AREA_BYTES = 0x1000


def slot(area: int, index: int) -> int:
    """The offset of value `index` in an area."""
    return area + index * SLOT


def absolute(offset: int) -> int:
    return SLOTS_BASE + offset


def graffiti(sizes: list[int], first: int = 1) -> list[bytes]:
    """Values whose every byte differs from every other value's (for up to
    ~250 bytes in all) and from the fill patterns: a byte in the wrong place
    says which value and which byte of it it was."""
    out = []
    counter = first
    for size in sizes:
        value = bytearray()
        while len(value) < size:
            byte = counter & 0xFF
            counter += 1
            if byte in (0, *FILL_BYTES):
                continue
            value.append(byte)
        out.append(bytes(value))
    return out
