"""The server program qemu-user runs: a tiny static ELF callfuzz writes
itself, three stops in one page (see fuzz.pipeline.qemu), and zero-filled
segments at the addresses unicorn uses for code, slots and stack."""

from __future__ import annotations

import struct

from fuzz.pipeline.emulate import SLOTS_BASE, SLOTS_SIZE, STACK_BASE, STACK_SIZE
from fuzz.pipeline.link import CODE_BASE
from fuzz.targets import Target

CODE_SPACE = 64 << 20  # the most code an image may hold
STUB_BASE = 0x4000_0000  # the ELF headers' page
FILL_AT = STUB_BASE + 0x1000
SYSCALL_AT = STUB_BASE + 0x1800
HANDLER_AT = STUB_BASE + 0x1C00
DATA_AT = STUB_BASE + 0x2000  # iovecs, sigaction, the float canary blocks
DATA_SIZE = 0x2000  # (its second page: the run loop's, fuzz.pipeline.qemu.guest)
ALT_STACK = STUB_BASE + 0x10000  # the signal handler's stack
ALT_STACK_SIZE = 0x10000
IOV_AT = DATA_AT
SIGACTION_AT = DATA_AT + 0x100
STACK_T_AT = DATA_AT + 0x200
FP_BLOCKS_AT = DATA_AT + 0x400  # one 0x400-byte block per variant


def server_elf(target: Target) -> bytes:
    """A static ELF for `target`: the stub page, its data, the alternate
    signal stack, and (as zero-filled segments) the code space, the slot
    area and the stack at the addresses unicorn uses."""
    setup = target.qemu
    assert setup is not None
    page = bytearray(0x1000)
    fill = setup.fp_restore + setup.syscall_insn
    page[0 : len(fill)] = fill
    page[len(fill) : len(fill) + len(setup.loop_insn)] = setup.loop_insn
    at = SYSCALL_AT - FILL_AT
    page[at : at + len(setup.syscall_insn)] = setup.syscall_insn
    at += len(setup.syscall_insn)
    page[at : at + len(setup.loop_insn)] = setup.loop_insn
    at = HANDLER_AT - FILL_AT
    page[at : at + len(setup.loop_insn)] = setup.loop_insn
    return _elf(target, bytes(page), SYSCALL_AT + len(setup.syscall_insn))  # SYSCALL's loop


def loop_elf(target: Target, code: bytes) -> bytes:
    """The run loop's program (fuzz.pipeline.qemu.guest): `code` at FILL_AT,
    entered there, with the same segments as the server program's."""
    assert len(code) <= 0x1000
    return _elf(target, code + bytes(0x1000 - len(code)), FILL_AT)


def _elf(target: Target, page: bytes, entry: int) -> bytes:
    setup = target.qemu
    assert setup is not None
    endian = ">" if target.big_endian else "<"
    # (vaddr, file bytes, memory size, flags) in address order; the first
    # holds the headers (qemu 7.2 wants the first segment at file offset 0)
    text = bytes(0x1000) + bytes(page)
    segments = [
        (CODE_BASE, 0, CODE_SPACE, 7),
        (STUB_BASE, len(text), len(text), 5),
        (DATA_AT, 0, DATA_SIZE, 6),
        (ALT_STACK, 0, ALT_STACK_SIZE, 6),
        (SLOTS_BASE, 0, SLOTS_SIZE, 6),
        (STACK_BASE, 0, STACK_SIZE, 6),
    ]
    headers = b"\x7fELF" + bytes([2, 2 if target.big_endian else 1, 1, 0]) + bytes(8)
    headers += struct.pack(
        endian + "HHIQQQIHHHHHH",
        2,  # ET_EXEC
        setup.elf_machine,
        1,
        entry,
        64,
        0,
        setup.elf_flags,
        64,
        56,
        len(segments),
        64,
        0,
        0,
    )
    for vaddr, filesz, memsz, flags in segments:
        offset = 0 if filesz else len(text)
        headers += struct.pack(
            endian + "IIQQQQQQ", 1, flags, offset, vaddr, vaddr, filesz, memsz, 0x1000
        )
    return headers + text[len(headers) :]
