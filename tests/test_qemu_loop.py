"""The run loop (fuzz.pipeline.qemu.loop, .guest): its program is its
sources assembled, and a run starts from exactly the gdbstub path's
register state. Tests that run code need qemu-user; assembling needs the
targets' binutils (the Debian packages gcc-ARCH-linux-gnu, which .ci/run
installs); without them they skip and say so."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Literal

import pytest
from elftools.elf.elffile import ELFFile

from fuzz.pipeline.emulate import SLOTS_BASE
from fuzz.pipeline.link import CompiledFunction, link
from fuzz.pipeline.qemu import QemuServer, cpu_option, installed_facts, qemu_version
from fuzz.pipeline.qemu.guest import GUESTS
from fuzz.pipeline.qemu.loop import LoopServer
from fuzz.targets import TARGETS, Target

needs_qemu = pytest.mark.skipif(
    qemu_version() is None, reason="needs qemu-user (Debian package qemu-user)"
)
ALL = [TARGETS[name] for name in GUESTS]


def _assemble(command: tuple[str, ...], text: str) -> tuple[bytes, dict[str, int]]:
    """The .text bytes and symbols of `text` assembled by `command`."""
    with tempfile.TemporaryDirectory() as work:
        source, obj = os.path.join(work, "g.s"), os.path.join(work, "g.o")
        with open(source, "w") as f:
            f.write(text)
        subprocess.run([*command, "-o", obj, source], check=True, capture_output=True)
        with open(obj, "rb") as f:
            elf = ELFFile(f)
            text_section = elf.get_section_by_name(".text")
            assert text_section is not None
            code = text_section.data()
            table = elf.get_section_by_name(".symtab")
            symbols = table.iter_symbols() if table is not None else ()  # type: ignore[attr-defined]
            names = {s.name: s["st_value"] for s in symbols}
    return code, names


@pytest.mark.parametrize("name", list(GUESTS))
def test_the_guest_program_is_its_source_assembled(name: str) -> None:
    guest = GUESTS[name]
    if shutil.which(guest.assembler[0]) is None:
        pytest.skip(f"needs {guest.assembler[0]} (binutils for {name})")
    code, symbols = _assemble(guest.assembler, guest.text)
    assert code == guest.code
    assert symbols["handler"] == guest.handler


# Every register of Target.registers stored into the slots, in order, then
# a return: what a run starts with, seen from inside.
def _store_all(target: Target) -> tuple[tuple[str, ...], str]:
    regs = target.registers
    if target.name == "x86_64":
        lines = [
            f"movdqu %{r.name}, {8 * i}(%rdi)" if r.bits == 128 else f"mov %{r.name}, {8 * i}(%rdi)"
            for i, r in enumerate(regs)
        ]
        return ("as", "--64"), "\n".join(lines + ["ret"])
    if target.name == "aarch64":
        lines = [
            f"str q{r.name[1:]}, [x0, #{16 * i}]"
            if r.bits == 128
            else f"str {r.name}, [x0, #{16 * i}]"
            for i, r in enumerate(regs)
        ]
        return ("aarch64-linux-gnu-as",), "\n".join(lines + ["ret"])
    if target.name == "riscv64":
        lines = [
            f"fsd {r.name}, {8 * i}(a0)" if r.cls == "float" else f"sd {r.name}, {8 * i}(a0)"
            for i, r in enumerate(regs)
        ]
        return ("riscv64-linux-gnu-as", "-march=rv64gc"), "\n".join(
            [".option norvc", *lines, "ret"]
        )
    lines = []
    for i, r in enumerate(regs):
        if r.cls == "int":
            lines.append(f"stg %{r.name}, {8 * i}(%r2)")
        elif r.cls == "float":
            lines.append(f"std %{r.name}, {8 * i}(%r2)")
        else:  # f<n>_hi: the vector register's second doubleword
            lines += [f"vlgvg %r1, %v{r.name[1:-3]}, 1", f"stg %r1, {8 * i}(%r2)"]
    return ("s390x-linux-gnu-as", "-march=z13"), "\n".join(lines + ["br %r14"])


@needs_qemu
@pytest.mark.parametrize("target", ALL, ids=lambda t: t.name)
def test_a_run_starts_from_the_gdbstub_paths_register_state(target: Target) -> None:
    """The loop enters a run through `rt_sigreturn` from a frame it wrote,
    the gdbstub path by setting registers: code that stores every register
    must store the same bytes on both, for both variants (a register the
    frame table put at the wrong offset would hold what the frame held)."""
    command, text = _store_all(target)
    if shutil.which(command[0]) is None:
        pytest.skip(f"needs {command[0]} (binutils for {target.name})")
    code, _symbols = _assemble(command, text)
    image = link([CompiledFunction("%t", code, [], [])], target)
    entry = image.symbols["%t"]
    assert target.qemu is not None
    cpu = cpu_option(installed_facts(target.qemu), frozenset())
    size = 16 * len(target.registers)
    seen = {}
    for kind in (QemuServer, LoopServer):
        server = kind(target, cpu)
        try:
            seen[kind] = [
                server.run(image, entry, entry, bytes(size), 1_000_000, variant)
                for variant in (0, 1)
            ]
        finally:
            server.stop()
    for gdb, loop in zip(seen[QemuServer], seen[LoopServer], strict=True):
        assert gdb.kind == loop.kind == "return", (gdb, loop)
        assert loop.slots == gdb.slots
    # and the stores ran: the slots pointer, the first argument, is there
    at = next(i for i, r in enumerate(target.registers) if r.uc == target.arg_regs[0])
    width = 16 if target.name == "aarch64" else 8
    order: Literal["little", "big"] = "big" if target.big_endian else "little"
    assert (
        int.from_bytes(seen[LoopServer][0].slots[width * at : width * at + 8], order) == SLOTS_BASE
    )
