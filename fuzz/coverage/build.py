"""Builds the instrumented bridge: the same source (`native/`), against the
same Cranelift as the bridge in use (what `native/Cargo.toml` and its lock
file pin, or the release or checkout `--cranelift`/`CALLFUZZ_CRANELIFT`
chooses), compiled with LLVM SanitizerCoverage (8-bit edge counters and a PC
table; `trace_compares` adds comparison tracing for libFuzzer), line tables
and v0 symbol names (which name each generic function's instance, so
`Callee<X64ABIMachineSpec>` counts for x64), into
`CACHE/coverage/KEY-edges/` or `KEY-cmp/` (CACHE: `fuzz.bridge.cache`).

The entry is built in a work directory and renamed into place only once
the module loaded (with libFuzzer preloaded), compiled a function for every
target, showed its counters move, and its functions were symbolized; the
build log is kept under `CACHE/coverage/logs/` whatever happens. The entry
is also a whole bridge cache entry (record and library), which is how
campaign workers load it (`fuzz.coverage.preload`)."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fuzz.bridge import cache
from fuzz.bridge.build import Progress, dependencies, pin_manifest, stderr_progress
from fuzz.bridge.load import choice_from_env
from fuzz.bridge.spec import BridgeError, Checkout, Choice, Release, resolve
from fuzz.coverage import preload, symbols

SANCOV = [
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=3",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Csymbol-mangling-version=v0",
]
TRACE_COMPARES = "-Cllvm-args=-sanitizer-coverage-trace-compares"
FUNCTIONS = "functions.json"
HEARTBEAT = 30.0  # seconds between "still compiling" lines


def coverage_root() -> Path:
    return cache.cache_root() / "coverage"


def logs_dir() -> Path:
    return coverage_root() / "logs"


@dataclass(frozen=True)
class Wanted:
    """Which instrumented bridge: the Cranelift (None: as `native/` pins it)
    and whether comparisons are traced."""

    choice: Choice | None
    trace_compares: bool = False

    @property
    def key(self) -> str:
        base = self.choice.key if self.choice is not None else "default"
        return f"{base}-{'cmp' if self.trace_compares else 'edges'}"

    def describe(self) -> str:
        what = self.choice.describe() if self.choice else "the Cranelift native/ pins"
        return f"{what}, {'edges and comparisons' if self.trace_compares else 'edge counters'}"


def wanted(trace_compares: bool = False) -> Wanted:
    """The instrumented twin of the bridge in use (`CALLFUZZ_CRANELIFT`'s choice, if any)."""
    text = choice_from_env()
    return Wanted(resolve(text) if text else None, trace_compares)


def entry_for(want: Wanted) -> cache.Entry | None:
    """The built entry, if it is there and built from the current source."""
    entry = cache.read_entry(coverage_root() / want.key)
    if entry is None or not (entry.path / FUNCTIONS).is_file():
        return None
    return entry if entry.current(cache.source_hash()) else None


def ensure(want: Wanted, progress: Progress = stderr_progress) -> cache.Entry:
    return entry_for(want) or build(want, progress)


@contextlib.contextmanager
def _lock(progress: Progress) -> Iterator[None]:
    path = coverage_root() / ".build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another instrumented build to finish ({path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(want: Wanted, progress: Progress = stderr_progress, force: bool = False) -> cache.Entry:
    native = cache.source_dir()
    if native is None:
        raise BridgeError(
            "cannot build the instrumented bridge: its source native/ is not next to the "
            "fuzz package (install callfuzz from a source checkout)"
        )
    if shutil.which("cargo") is None:
        raise BridgeError("cannot build the instrumented bridge: cargo is not on PATH")
    preload.runtime()  # the check needs it: fail before building for minutes
    with _lock(progress):
        entry = entry_for(want)
        if entry is not None and not force:
            return entry
        logs_dir().mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".build-{want.key}-", dir=coverage_root()))
        try:
            return _build_in(want, native, work, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _build_in(want: Wanted, native: Path, work: Path, progress: Progress) -> cache.Entry:
    src, staged = work / "src", work / "entry"
    for path in cache.source_files(native):
        target = src / path.relative_to(native)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    if want.choice is not None:
        manifest = src / "Cargo.toml"
        manifest.write_text(pin_manifest(manifest.read_text(), dependencies(want.choice)))
    staged.mkdir()
    log_path = logs_dir() / f"{want.key}.log"
    progress(f"building the instrumented bridge for {want.describe()} (log: {log_path})")
    started = time.monotonic()
    flags = [*SANCOV, *([TRACE_COMPARES] if want.trace_compares else [])]
    library = _cargo(want, src, flags, log_path, progress)
    seconds = time.monotonic() - started
    shutil.copy2(library, staged / cache.LIBRARY)
    progress(f"compiled in {seconds:.0f} s; checking it and reading its PC table")
    probe = _probe(staged, want.key, log_path)
    progress(f"symbolizing {probe['functions']} functions ({probe['counters']} counters)")
    table = symbols.symbolize(staged / cache.LIBRARY, staged / symbols.PCS_FILE)
    (staged / FUNCTIONS).write_text(json.dumps(table))
    record: dict[str, Any] = {
        "format": cache.RECORD_FORMAT,
        "kind": "release" if isinstance(want.choice, Release | None) else "checkout",
        "version": probe["version"],
        "bridge_source": cache.source_hash(native),
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "toolchain": _rustc("--version"),
        "coverage": {
            "rustflags": flags,
            "trace_compares": want.trace_compares,
            "counters": probe["counters"],
            "functions": probe["functions"],
            "reached_by_check": probe["reached"],
        },
    }
    if isinstance(want.choice, Checkout):
        choice = want.choice
        record |= {
            "path": str(choice.path),
            "commit": choice.commit,
            "dirty": choice.dirty,
            "diff_hash": choice.diff_hash,
        }
    (staged / cache.RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.copy2(log_path, staged / cache.LOG)
    final = coverage_root() / want.key
    if final.exists():
        os.rename(final, work / "replaced")  # a stale entry goes whole
    os.rename(staged, final)
    progress(f"built: {final} ({probe['counters']:,} counters)")
    entry = cache.read_entry(final)
    if entry is None:
        raise BridgeError(f"the instrumented bridge built into {final} vanished")
    return entry


def _rustc(*args: str) -> str:
    try:
        done = subprocess.run(["rustc", *args], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return done.stdout.strip()


def host_triple() -> str:
    """The target is named explicitly, so RUSTFLAGS reach only the target's
    crates, not build scripts and proc macros (which would not link)."""
    match = re.search(r"^host: (\S+)", _rustc("-vV"), re.M)
    if match is None:
        raise BridgeError("cannot read the host triple from `rustc -vV`")
    return match[1]


_PROGRESS = re.compile(r"\s*(Compiling|Finished|Locking|Updating|Downloaded) ")


def _cargo(want: Wanted, src: Path, flags: list[str], log_path: Path, progress: Progress) -> Path:
    """Run cargo; the built cdylib, or BridgeError naming the log."""
    triple = host_triple()
    command = [
        "cargo",
        "build",
        "--release",
        "--lib",
        "--target",
        triple,
        "--ignore-rust-version",
        "--color=never",
        "--message-format=json-render-diagnostics",
    ]
    rustflags = " ".join([*flags, os.environ.get("RUSTFLAGS", "")]).strip()
    env = {
        **os.environ,
        # one per variant: their RUSTFLAGS differ, so they would rebuild each other
        "CARGO_TARGET_DIR": str(coverage_root() / f"target-{want.key.rpartition('-')[2]}"),
        "RUSTFLAGS": rustflags,
        "CARGO_PROFILE_RELEASE_DEBUG": "line-tables-only",
        "CARGO_PROFILE_RELEASE_STRIP": "none",
        "PYO3_PYTHON": sys.executable,
    }
    if want.choice is not None:
        env["CALLFUZZ_CRANELIFT_VERSION"] = want.choice.version
    errors: list[str] = []
    compiling: dict[str, None] = {}  # crates started and not finished, in order
    lock = threading.Lock()
    with open(log_path, "w") as log:
        log.write(f"# {want.describe()}\n# in {src}\n# {' '.join(command)}\n")
        log.write(f"# RUSTFLAGS={rustflags}\n# CARGO_TARGET_DIR={env['CARGO_TARGET_DIR']}\n")
        log.flush()

        def note(line: str) -> None:
            with lock:
                log.write(line + "\n")
                log.flush()

        def read_stderr(stream: IO[str]) -> None:
            for raw in stream:
                line = raw.rstrip("\n")
                note(line)
                if _PROGRESS.match(line):
                    progress("  " + line.strip())
                    words = line.split()
                    if words[0] == "Compiling":
                        with lock:
                            compiling[words[1]] = None
                elif line.startswith("error") and not errors:
                    errors.append(line)

        started = time.monotonic()
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(HEARTBEAT):
                minutes, seconds = divmod(int(time.monotonic() - started), 60)
                with lock:
                    busy = ", ".join(compiling) or "-"
                progress(f"  ... {minutes}m{seconds:02d}s, compiling {busy}")

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
        reader = threading.Thread(target=read_stderr, args=(proc.stderr,), daemon=True)
        ticker = threading.Thread(target=heartbeat, daemon=True)
        reader.start()
        ticker.start()
        library = None
        try:
            for raw in proc.stdout:
                try:
                    message = json.loads(raw)
                except ValueError:
                    note(raw.rstrip("\n"))
                    continue
                target = message.get("target") or {}
                kinds = target.get("kind", [])
                if message.get("reason") == "compiler-artifact" and "custom-build" not in kinds:
                    package = str(message.get("package_id", "")).rpartition("#")[2]
                    with lock:
                        compiling.pop(package.partition("@")[0], None)
                if message.get("reason") == "compiler-artifact" and "cdylib" in kinds:
                    for name in message.get("filenames", []):
                        if name.endswith(".so"):
                            library = Path(name)
            code = proc.wait()
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        note(f"# cargo exited with {code}")
    if code != 0 or library is None or not library.is_file():
        first = f": {errors[0]}" if errors else ""
        raise BridgeError(f"building the instrumented bridge failed{first}; log: {log_path}")
    return library


def _probe(staged: Path, key: str, log_path: Path) -> dict[str, Any]:
    """Load the staged module in a fresh interpreter with libFuzzer preloaded
    (`fuzz.coverage.probe`): it must compile for every target and its
    counters must move; it writes the PC table next to the module."""
    env = {**os.environ, "LD_PRELOAD": str(preload.runtime())}
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.coverage.probe", str(staged / cache.LIBRARY), key],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    with open(log_path, "a") as log:
        log.write(f"# check: exit {done.returncode}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BridgeError(f"the instrumented bridge does not work: {last}; log: {log_path}")
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BridgeError(
            f"the instrumented bridge's check said nothing; log: {log_path}"
        ) from None
    return result
