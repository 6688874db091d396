"""The second executor: qemu-user runs the same linked image, from the same
initial machine state, where unicorn cannot (ISA extensions it lacks) and
referees every divergence unicorn reports.

One server per target and CPU configuration: qemu-user started once on a
tiny static program callfuzz writes itself and driven through its gdbstub
(fuzz.pipeline.gdbremote). The program is three stops:

- FILL: loads the float/vector canaries from memory, then `readv`s the
  stack top and the slot area from its stdin, a pipe the harness fills;
- SYSCALL: one system call (mprotect and read to load code, sigaction);
- HANDLER: the SIGSEGV/SIGBUS handler, which stops with the siginfo.

By job: `elf` writes the program, `process` starts qemu-user (and makes
sure nothing outlives it), `server` loads images and runs them, `libcall`
computes libcalls at their stubs, `signals` says what a stop means.
"""

from fuzz.pipeline.qemu.executor import QemuExecutor
from fuzz.pipeline.qemu.process import (
    QemuUnavailable,
    binary_version,
    installed_facts,
    missing_reason,
    qemu_installed,
    qemu_version,
)
from fuzz.pipeline.qemu.server import (
    QemuServer,
    ServerFailure,
    alarm_seconds,
    cpu_option,
)

__all__ = [
    "QemuExecutor",
    "QemuServer",
    "QemuUnavailable",
    "ServerFailure",
    "binary_version",
    "alarm_seconds",
    "cpu_option",
    "installed_facts",
    "missing_reason",
    "qemu_installed",
    "qemu_version",
]
