"""The qemu-user servers of one process (fuzz.pipeline.qemu): the run loop
(fuzz.pipeline.qemu.loop) where a target has it, else the gdbstub server
(fuzz.pipeline.qemu.server); CALLFUZZ_QEMU_GDBSTUB=1 always uses the
gdbstub."""

from __future__ import annotations

import os
from collections.abc import Mapping

from fuzz.pipeline.qemu.loop import LoopServer, available
from fuzz.pipeline.qemu.process import installed_facts
from fuzz.pipeline.qemu.server import QemuServer, cpu_option
from fuzz.targets import Target

Server = QemuServer | LoopServer


def use_loop(target: Target) -> bool:
    return available(target) and os.environ.get("CALLFUZZ_QEMU_GDBSTUB", "") != "1"


class QemuExecutor:
    """The servers of one process, by (target, -cpu); the least recently
    used stops when more than MAX_SERVERS run (each is a qemu process)."""

    MAX_SERVERS = 8

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str], Server] = {}

    def server(self, target: Target, flags_on: frozenset[str]) -> Server:
        assert target.qemu is not None
        cpu = cpu_option(installed_facts(target.qemu), flags_on)
        key = (target.name, cpu)
        server = self._servers.pop(key, None) or (
            LoopServer(target, cpu, flags_on)
            if use_loop(target)
            else QemuServer(target, cpu, flags_on)
        )
        self._servers[key] = server  # the most recently used last
        while len(self._servers) > self.MAX_SERVERS:
            oldest = next(iter(self._servers))
            self._servers.pop(oldest).stop()
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    @property
    def servers(self) -> Mapping[tuple[str, str], Server]:
        return self._servers
