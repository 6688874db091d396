"""One cargo build of a copy of the bridge source `native/`: the command and
its environment, the build log, progress lines from cargo's stderr (and, in
long builds, a heartbeat naming the crates still compiling), and the cdylib
cargo's JSON messages name. The bridge and its instrumented twin differ only
in what their `Cargo` says (`fuzz.bridge.build`, `fuzz.coverage.build`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fuzz.bridge.spec import CRATES, BridgeError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Cargo:
    """How cargo is run for one kind of build."""

    target_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)  # set on top of os.environ
    logged: tuple[str, ...] = ()  # names in `env` the log's header shows
    # `--target HOST`: then RUSTFLAGS reach only the target's crates, not build
    # scripts and proc macros (which would not link with the coverage flags)
    host_target: bool = False
    heartbeat: float | None = None  # seconds between "still compiling" lines


def rustc(*args: str) -> str:
    try:
        done = subprocess.run(["rustc", *args], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return done.stdout.strip()


def host_triple() -> str:
    match = re.search(r"^host: (\S+)", rustc("-vV"), re.M)
    if match is None:
        raise BridgeError("cannot read the host triple from `rustc -vV`")
    return match[1]


def run(
    cargo: Cargo, src: Path, log_path: Path, describe: str, failure: str, progress: Progress
) -> Path:
    """Run cargo in `src`, logging to `log_path` (its header names `describe`);
    the built cdylib, or BridgeError: `failure`, cargo's first error, the log."""
    command = ["cargo", "build", "--release", "--lib"]
    if cargo.host_target:
        command += ["--target", host_triple()]
    command += [
        "--ignore-rust-version",
        "--color=never",
        "--message-format=json-render-diagnostics",
    ]
    env = {
        **os.environ,
        "CARGO_TARGET_DIR": str(cargo.target_dir),
        **cargo.env,
        "PYO3_PYTHON": sys.executable,
    }
    with open(log_path, "w") as log:
        header = [describe, f"in {src}", " ".join(command)]
        header += [f"{name}={env[name]}" for name in (*cargo.logged, "CARGO_TARGET_DIR")]
        log.write("".join(f"# {line}\n" for line in header))
        log.flush()
        watch = _Watch(log, progress)
        code = watch.run(command, src, env, cargo.heartbeat)
    library = watch.library
    if code != 0 or library is None or not library.is_file():
        first = f": {explain(watch.errors[0])}" if watch.errors else ""
        raise BridgeError(f"{failure}{first}; log: {log_path}")
    return library


_PROGRESS = re.compile(r"\s*(Compiling|Finished|Locking|Updating|Downloaded) ")


class _Watch:
    """What cargo says while it builds: every line logged, progress lines
    passed on, its first error kept, the crates compiling and the cdylib."""

    def __init__(self, log: IO[str], progress: Progress) -> None:
        self.log, self.progress = log, progress
        self.lock = threading.Lock()  # the log and `compiling`, across threads
        self.errors: list[str] = []
        self.compiling: dict[str, None] = {}  # crates started and not finished, in order
        self.library: Path | None = None

    def run(self, command: list[str], src: Path, env: dict[str, str], beat: float | None) -> int:
        started = time.monotonic()
        stop = threading.Event()
        proc = subprocess.Popen(
            command,
            cwd=src,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None and proc.stderr is not None
        reader = threading.Thread(target=self.read_stderr, args=(proc.stderr,), daemon=True)
        reader.start()
        if beat is not None:
            args = (beat, started, stop)
            threading.Thread(target=self.heartbeat, args=args, daemon=True).start()
        try:
            self.read_stdout(proc.stdout)
            code = proc.wait()
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        self.note(f"# cargo exited with {code}")
        return code

    def note(self, line: str) -> None:
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()

    def read_stderr(self, stream: IO[str]) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            self.note(line)
            if _PROGRESS.match(line):
                self.progress("  " + line.strip())
                words = line.split()
                if words[0] == "Compiling":
                    with self.lock:
                        self.compiling[words[1]] = None
            elif line.startswith("error") and not self.errors:
                self.errors.append(line)

    def read_stdout(self, stream: IO[str]) -> None:
        for raw in stream:
            try:
                message = json.loads(raw)
            except ValueError:
                self.note(raw.rstrip("\n"))
                continue
            if message.get("reason") != "compiler-artifact":
                continue
            kinds = (message.get("target") or {}).get("kind", [])
            if "custom-build" not in kinds:
                package = str(message.get("package_id", "")).rpartition("#")[2]
                with self.lock:
                    self.compiling.pop(package.partition("@")[0], None)
            if "cdylib" in kinds:
                for name in message.get("filenames", []):
                    if name.endswith((".so", ".dylib", ".pyd", ".dll")):
                        self.library = Path(name)

    def heartbeat(self, every: float, started: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            minutes, seconds = divmod(int(time.monotonic() - started), 60)
            with self.lock:
                busy = ", ".join(self.compiling) or "-"
            self.progress(f"  ... {minutes}m{seconds:02d}s, compiling {busy}")


# cargo's words for a pinned dependency that the registry does not have
_UNRESOLVED = re.compile(
    r"failed to select a version for the requirement `([\w-]+) = \"=([^\"]+)\"`"
)


def explain(error: str) -> str:
    """cargo's first error line, with what it means when a crate of the
    Cranelift family is not published at the release (then only a wasmtime
    checkout of that release has it)."""
    match = _UNRESOLVED.search(error)
    if match is None or match[1] not in CRATES:
        return error
    crate, version = match[1], match[2]
    though = "" if crate == "cranelift-codegen" else f", though cranelift-codegen {version} is"
    return (
        f"{crate} {version} is not published on crates.io{though} "
        f"(cargo: {error.removeprefix('error: ')}); use a wasmtime checkout of that "
        "release instead: --cranelift PATH"
    )
