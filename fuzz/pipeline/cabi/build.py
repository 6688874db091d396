"""Compiles the C side with the target's real compiler and hands back each
function's bytes.

One compiler run per unit (all the signatures of a file, or of a batch);
units are cached by content in memory, so a reduction or a repeated
signature costs nothing. Functions are read from the object file's own
sections (`-ffunction-sections`); the code must need no relocation (the C
side takes every address from its arguments or as a constant), and one that
does is the harness's error, named."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from functools import cache
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from fuzz.targets import CAbi, Target

# freestanding code that touches nothing but its arguments and the areas
CFLAGS = (
    "-O2",
    "-ffreestanding",
    "-fno-builtin",
    "-fno-pic",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-ffunction-sections",
    "-fno-strict-aliasing",
    "-w",
)
_CACHE_UNITS = 256


class CompilerMissing(Exception):
    """The target's C compiler is not installed: the reason, naming its package."""


class CBuildError(Exception):
    """The C side did not build as the oracle needs: a harness error."""


@cache
def compiler_path(compiler: str) -> str | None:
    return shutil.which(compiler)


def require_compiler(target: Target) -> CAbi:
    c = target.c_abi
    if c is None:
        raise CompilerMissing(f"no C compiler is set up for {target.name}")
    if compiler_path(c.compiler) is None:
        raise CompilerMissing(
            f"{c.compiler} is not installed (Debian package {c.package}): "
            f"the C-ABI check of {target.name} abstains"
        )
    return c


def command(target: Target) -> list[str]:
    """The compiler command line (reading C from stdin; `-o FILE` is added)."""
    c = require_compiler(target)
    return [c.compiler, *CFLAGS, *c.cflags, "-x", "c", "-c", "-"]


_units: OrderedDict[str, dict[str, bytes]] = OrderedDict()


def compile_unit(target: Target, source: str) -> dict[str, bytes]:
    """Function name -> machine code of every function `source` defines."""
    argv = command(target)
    key = hashlib.sha256("\0".join([*argv, source]).encode()).hexdigest()
    if key in _units:
        _units.move_to_end(key)
        return _units[key]
    with tempfile.TemporaryDirectory(prefix="callfuzz-cabi-") as tmp:
        obj = Path(tmp) / "unit.o"
        done = subprocess.run(
            [*argv, "-o", str(obj)], input=source.encode(), capture_output=True, check=False
        )
        if done.returncode != 0:
            errors = [
                line
                for line in done.stderr.decode(errors="replace").splitlines()
                if "error" in line
            ]
            raise CBuildError(f"{argv[0]} failed: {errors[0] if errors else done.returncode}")
        functions = functions_of(obj.read_bytes())
    _units[key] = functions
    if len(_units) > _CACHE_UNITS:
        _units.popitem(last=False)
    return functions


def functions_of(obj: bytes) -> dict[str, bytes]:
    """The code of every function of an object built with -ffunction-sections."""
    elf = ELFFile(io.BytesIO(obj))
    out: dict[str, bytes] = {}
    for section in elf.iter_sections():
        if isinstance(section, RelocationSection) and section.num_relocations():
            target = section.name.removeprefix(".rela").removeprefix(".rel")
            if target.startswith(".text"):
                raise CBuildError(f"C code needs relocations in {target}")
        if section.name.startswith(".text.") and section["sh_type"] == "SHT_PROGBITS":
            out[section.name[len(".text.") :]] = section.data()
    return out
