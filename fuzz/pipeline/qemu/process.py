"""qemu-user's processes: which of its programs are installed, and one
started on a server program, tied to its parent and leaving nothing behind.

- The server program is handed over as a memfd (`/proc/self/fd/N`): no
  file another user could plant, none to leak.
- The gdbstub listens on a Unix socket in a private directory (`mkdtemp`,
  mode 0700): no TCP port to race for, no other user can connect; the
  socket and its directory are removed once the connection is made.
- qemu-user gets SIGKILL when the process that started it dies
  (PR_SET_PDEATHSIG): a worker the campaign SIGKILLs leaves no qemu behind.
- A directory left by a process killed between `mkdtemp` and the
  connection is removed later (fuzz.scratch).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from fuzz import scratch
from fuzz.targets import TARGETS, QemuFacts, QemuSetup, Target

PACKAGE = "qemu-user"  # the Debian package with every qemu-ARCH program
CONNECT_SECONDS = 10.0  # for qemu-user to start listening
_PR_SET_PDEATHSIG = 1
# resolved before any fork: the child only calls it
_prctl = ctypes.CDLL(None, use_errno=True).prctl


class QemuUnavailable(RuntimeError):
    """A qemu-user program is not installed, or did not start: not Cranelift's doing."""


@cache
def binary_path(binary: str) -> str | None:
    return shutil.which(binary)


def qemu_installed(target: Target) -> bool:
    """Whether qemu-user can run `target` here: its own program is installed
    (Debian's qemu-user has them all, but a machine may have only some)."""
    return target.qemu is not None and binary_path(target.qemu.binary) is not None


def missing_reason(target: Target) -> str:
    binary = target.qemu.binary if target.qemu is not None else "qemu-user"
    return f"needs qemu-user ({binary} is not installed; Debian package {PACKAGE})"


@cache
def binary_version(binary: str) -> str | None:
    """The version ("10.0.2") of the qemu-user program `binary` that
    `binary_path` finds; "unknown" when it does not say; None when it is
    not installed. Per program: PATH may mix releases."""
    path = binary_path(binary)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    words = out.stdout.split()
    return words[2] if len(words) > 2 and words[1] == "version" else "unknown"


def release(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a version string; None when it has none."""
    parts = (version or "").split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1])


def installed_facts(setup: QemuSetup) -> QemuFacts:
    """What the installed qemu-user program of a target runs (the table row
    of its version; the oldest row when the version is unknown)."""
    return setup.facts(release(binary_version(setup.binary)))


@cache
def qemu_version() -> str | None:
    """qemu-user's version ("7.2.22"), from the first of its programs
    installed; None when none is."""
    for target in TARGETS.values():
        if target.qemu is not None and qemu_installed(target):
            return binary_version(target.qemu.binary)
    return None


@dataclass
class _Child:
    """A running qemu-user process."""

    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def died(self) -> bool:
        """Whether qemu-user is gone (waiting a little: a killed process
        closes its connections before it can be reaped)."""
        try:
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return False
        return True


@dataclass
class QemuProcess(_Child):
    """A running qemu-user and the connection to its gdbstub."""

    sock: socket.socket

    def stop(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


def start(binary: str, cpu: str, program: bytes, extra: Sequence[str] = ()) -> QemuProcess:
    """qemu-user's `binary` on `program` with `-cpu cpu`, stopped at its
    entry, its stdin a pipe; QemuUnavailable when it is missing or does not
    start."""
    path = binary_path(binary)
    if path is None:
        raise QemuUnavailable(f"{binary} is not installed (Debian package {PACKAGE})")
    directory = scratch.make_dir("qemu")
    try:
        listen = os.path.join(directory, "gdbstub")
        memfd = os.memfd_create("callfuzz-server")
        try:
            _write_all(memfd, program)
            proc = subprocess.Popen(
                [path, *extra, "-g", listen, "-cpu", cpu, f"/proc/self/fd/{memfd}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=None if extra else subprocess.DEVNULL,
                pass_fds=(memfd,),
                preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509 - only prctl runs there
            )
        finally:
            os.close(memfd)
        sock = _connect(listen, proc)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if sock is None:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
        raise QemuUnavailable(f"{binary} -cpu {cpu} did not start (exit {proc.returncode})")
    return QemuProcess(proc, sock)


@dataclass
class LoopProcess(_Child):
    """A running qemu-user serving the run loop (fuzz.pipeline.qemu.guest):
    its stdin takes requests, the pipe `bulk` (the guest's fd `bulk_fd`)
    the data they read, its stdout gives reports."""

    bulk: int  # the write end
    bulk_fd: int  # the read end's number, in the guest too

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.bulk)
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def start_loop(binary: str, cpu: str, program: bytes, extra: Sequence[str] = ()) -> LoopProcess:
    """qemu-user's `binary` on the run loop's `program`, without a gdbstub;
    QemuUnavailable when it is missing."""
    path = binary_path(binary)
    if path is None:
        raise QemuUnavailable(f"{binary} is not installed (Debian package {PACKAGE})")
    memfd = os.memfd_create("callfuzz-loop")
    read_end, write_end = os.pipe()
    try:
        _write_all(memfd, program)
        proc = subprocess.Popen(
            [path, *extra, "-cpu", cpu, f"/proc/self/fd/{memfd}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if extra else subprocess.DEVNULL,
            pass_fds=(memfd, read_end),
            preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509 - only prctl runs there
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(memfd)
        os.close(read_end)
    return LoopProcess(proc, write_end, read_end)


def _die_with(parent: int) -> Callable[[], None]:
    def in_child() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl
            os._exit(1)

    return in_child


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _connect(path: str, proc: subprocess.Popen[bytes]) -> socket.socket | None:
    """The gdbstub's connection, once qemu-user listens at `path`; None when
    it exits first or takes longer than CONNECT_SECONDS."""
    deadline = time.monotonic() + CONNECT_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            time.sleep(0.005)  # qemu-user is still starting: poll again
    return None
