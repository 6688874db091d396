"""Issue 22's leak check: a campaign whose workers are SIGKILLed N times
(20 by default) must leave no qemu-user process and no file in the
temporary directory. Runs a campaign on qemu-user (so every worker has qemu
servers), kills a random worker mid-run N times, stops the campaign with
Ctrl-C, and prints what is left.

    .venv/bin/python benchmarks/kill_workers.py [--kills 20]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(word) for word in out.stdout.split()]


def qemu_processes() -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,comm="], capture_output=True, text=True)
    return {
        int(pid)
        for pid, _, comm in (line.strip().partition(" ") for line in out.stdout.splitlines())
        if comm.strip().startswith("qemu-")
    }


def owner(name: str) -> int | None:
    """The process a `callfuzz-KIND-PID-XXXX` entry belongs to (fuzz.scratch)."""
    parts = name.split("-")
    return int(parts[-2]) if name.startswith("callfuzz-") and parts[-2].isdigit() else None


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="kill-workers-", dir=Path.cwd()) as work:
        before_tmp = set(os.listdir(tmp))
        before_qemu = qemu_processes()
        (Path(work) / "corpus").mkdir()
        campaign = subprocess.Popen(
            [
                *(sys.executable, "-m", "fuzz.commands.cli", "fuzz"),
                *("--db", f"sqlite:///{work}/triage.sqlite", "--jobs", "2"),
                *("--cases", "1000000", "--executor", "qemu", "--corpus", f"{work}/corpus"),
                *("--seed", str(args.seed)),
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        killed = 0
        deadline = time.monotonic() + 60 * args.kills
        while killed < args.kills and time.monotonic() < deadline:
            time.sleep(1.0 + rng.random())  # let the new worker start its servers
            workers = [p for p in children(campaign.pid) if children(p)]  # with qemu
            if not workers:
                continue
            os.kill(rng.choice(workers), signal.SIGKILL)
            killed += 1
        os.killpg(campaign.pid, signal.SIGINT)
        campaign.wait(timeout=120)
        time.sleep(2)  # qemu-user receives its parent-death signal asynchronously
        left_qemu = qemu_processes() - before_qemu
        new = sorted(set(os.listdir(tmp)) - before_tmp)
    # other processes may be at work meanwhile: a leak is an entry of
    # callfuzz's whose process is gone
    leaked = [n for n in new if (pid := owner(n)) is None or not alive(pid)]
    print(f"workers SIGKILLed: {killed}")
    print(f"qemu-user processes left: {len(left_qemu)} {sorted(left_qemu)}")
    print(f"entries left in {tmp} by processes that are gone: {len(leaked)} {leaked[:10]}")


if __name__ == "__main__":
    main()
