"""Scratch directories in the temporary directory, private to one process
(`mkdtemp`: mode 0700) and named after it (`callfuzz-KIND-PID-XXXXXXXX`),
so whatever a killed process leaves there is found and removed: by the next
process that makes one, and by a campaign when its workers are gone
(workers leave through `os._exit`, and hung ones are SIGKILLed: neither
runs exit handlers)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

_PREFIX = "callfuzz-"


def make_dir(kind: str) -> Path:
    """A new private directory of this process (the caller removes it)."""
    _remove_stale_once()
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{kind}-{os.getpid()}-"))


def process_dir(kind: str) -> Path:
    """This process's private directory of `kind`, removed at its normal
    exit; made again if something removed it meanwhile."""
    path = _process_dir(kind)
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@cache
def _process_dir(kind: str) -> Path:
    path = make_dir(kind)
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked child that inherited the handler
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


@cache
def _remove_stale_once() -> None:
    remove_stale()


def remove_stale() -> int:
    """Remove the scratch directories of this user's processes that are
    gone; how many were removed."""
    tmp = tempfile.gettempdir()
    uid = os.getuid()
    removed = 0
    with contextlib.suppress(OSError), os.scandir(tmp) as entries:
        for entry in entries:
            pid = _owner(entry.name)
            if pid is None or entry.is_symlink() or not entry.is_dir():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid and not _alive(pid):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
    return removed


def _owner(name: str) -> int | None:
    """The pid in `callfuzz-KIND-PID-XXXXXXXX`, None for any other name."""
    if not name.startswith(_PREFIX):
        return None
    parts = name[len(_PREFIX) :].split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return None
    return int(parts[-2])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
