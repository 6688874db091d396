"""Where callfuzz runs, for a report's "Versions and Environment"."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Environment:
    host: str  # "x86_64 Linux 6.1.0 (glibc 2.36)"
    callfuzz: str
    unicorn: str
    qemu: str | None  # qemu-user's version; None when not installed


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@cache
def environment() -> Environment:
    # imported here: finding qemu-user runs its programs, only when asked
    from fuzz.pipeline.qemu.process import qemu_version

    libc, libc_version = platform.libc_ver()
    host = f"{platform.machine()} {platform.system()} {platform.release()}"
    if libc:
        host += f" ({libc} {libc_version})"
    return Environment(
        host=host,
        callfuzz=_version("callfuzz"),
        unicorn=_version("unicorn"),
        qemu=qemu_version(),
    )
