"""Compiles the C side with the target's real compiler and hands back each
function's bytes.

One compiler run per batch: the C sides of all the signatures not yet seen
(a file's, or a batch of cases' as a campaign worker hands them over) are
compiled together, and each signature's functions are cached by their
source in memory, so a reduction or a repeated signature costs nothing.
Functions are read from the object file's own sections
(`-ffunction-sections`); the code must need no relocation (the C side takes
every address from its arguments or as a constant), and one that does is
the harness's error, named."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from fuzz import scratch
from fuzz.pipeline.cabi import csource
from fuzz.pipeline.cabi.declare import CSignature
from fuzz.targets import CAbi, Target

# freestanding code that touches nothing but its arguments and the areas
CFLAGS = (
    "-O1",  # the ABI is the same at any level; -O1 compiles a quarter faster than -O2
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
_CACHED_SIGNATURES = 4096


class CompilerMissing(Exception):
    """The target's C compiler is not installed: the reason, naming its package."""


class CBuildError(Exception):
    """The C side did not build as the oracle needs: a harness error."""


@cache
def compiler_path(compiler: str) -> str | None:
    return shutil.which(compiler)


def require_compiler(target: Target, cc: str) -> CAbi:
    """The C compiler of `cc` on `target`; CompilerMissing when it has none
    or it is not installed."""
    c = target.c_abi_for(cc)
    if c is None:
        raise CompilerMissing(f"no C compiler is set up for {cc} on {target.name}")
    if compiler_path(c.compiler) is None:
        raise CompilerMissing(
            f"{c.compiler} is not installed (Debian package {c.package}): "
            f"the C-ABI check of {cc} on {target.name} abstains"
        )
    return c


def command(c: CAbi) -> list[str]:
    """The compiler command line (reading C from stdin; `-o FILE` is added)."""
    return [c.compiler, *CFLAGS, *c.cflags, "-x", "c", "-c", "-"]


# (compiler command, the signature's C source) -> (callee code, caller code)
_signatures: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()


def signature_functions(
    target: Target, signatures: Sequence[CSignature], callee_attribute: str | None = None
) -> list[tuple[bytes, bytes]]:
    """The (callee, caller) machine code of each signature's C side; those
    not cached are compiled together, in one compiler run per compiler.
    Their code takes every address from its arguments, so it is the same
    under any name. CompilerMissing when a signature's compiler is."""
    compilers = {sig.cc: require_compiler(target, sig.cc) for sig in signatures}
    for c in {id(c): c for c in compilers.values()}.values():
        mine = [sig for sig in signatures if compilers[sig.cc] is c]
        _compile_missing(c, mine, callee_attribute)
    found = []
    for sig in signatures:
        key = _cache_key(compilers[sig.cc], sig, callee_attribute)
        _signatures.move_to_end(key)
        found.append(_signatures[key])
    while len(_signatures) > max(_CACHED_SIGNATURES, len(signatures)):
        _signatures.popitem(last=False)
    return found


def _cache_key(c: CAbi, sig: CSignature, callee_attribute: str | None) -> str:
    source = csource.function_source(sig, "K", callee_attribute)
    return hashlib.sha256("\0".join([*command(c), *source]).encode()).hexdigest()


def _compile_missing(
    c: CAbi, signatures: Sequence[CSignature], callee_attribute: str | None
) -> None:
    missing: dict[str, CSignature] = {}
    for sig in signatures:
        key = _cache_key(c, sig, callee_attribute)
        if key not in _signatures:
            missing[key] = sig
    if missing:
        unit = [(str(i), sig) for i, sig in enumerate(missing.values())]
        code = compile_unit(c, csource.unit_source(unit, callee_attribute))
        for (i, _sig), key in zip(unit, missing, strict=True):
            _signatures[key] = (code[csource.callee_name(i)], code[csource.caller_name(i)])


def compile_unit(c: CAbi, source: str) -> dict[str, bytes]:
    """Function name -> machine code of every function `source` defines."""
    argv = command(c)
    # the compiler's own temporary files go there too: nothing is left
    # behind by a worker killed mid-compile (fuzz.scratch)
    directory = scratch.process_dir("cabi")
    obj = directory / "unit.o"
    done = subprocess.run(
        [*argv, "-o", str(obj)],
        input=source.encode(),
        capture_output=True,
        check=False,
        env={**os.environ, "TMPDIR": str(directory)},
    )
    if done.returncode != 0:
        errors = [
            line for line in done.stderr.decode(errors="replace").splitlines() if "error" in line
        ]
        raise CBuildError(f"{argv[0]} failed: {errors[0] if errors else done.returncode}")
    try:
        return functions_of(obj.read_bytes())
    finally:
        obj.unlink(missing_ok=True)


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
