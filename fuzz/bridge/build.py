"""Builds the bridge source `native/` into a cache entry: the bridge for a
chosen Cranelift here, and its instrumented twin (`fuzz.coverage.build`)
through the same `build_entry`; they differ in a `Job`.

The source is copied to a work directory beside the entries, its manifest's
Cranelift dependencies pinned (`=X.Y.Z` for a release, path dependencies into
a checkout's `cranelift/` crates), built by cargo (`fuzz.bridge.cargo`) in a
target directory shared by every build of its kind (so only what differs is
compiled again), checked (the bridge: loaded in a fresh interpreter, it
compiles a function for every target), and only then renamed into place with
its record and build log. A failed or interrupted build leaves its log under
`logs/` and nothing in `bridges/`."""

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
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fuzz.bridge import cache
from fuzz.bridge.cargo import Cargo, run, rustc
from fuzz.bridge.cargo import Progress as Progress  # re-exported: callers pass one
from fuzz.bridge.spec import CRATES, BridgeError, Checkout, Choice, Release
from fuzz.versions import NEWEST_KNOWN_MINOR, is_newer_than_known, parse_version


@dataclass(frozen=True)
class BuildLock:
    """One build at a time per target directory (the builds that share it)."""

    path: Path
    kind: str  # "bridge": "waiting for another bridge build to finish"

    @contextlib.contextmanager
    def held(self, progress: Progress) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another {self.kind} build to finish ({self.path})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Checked:
    """What a staged entry's check found: the Cranelift version its module
    reports, fields of the record of its own kind, and the last progress line."""

    version: str
    record: dict[str, Any]
    done: str


# the staged entry (its module at LIBRARY), the build log, cargo's seconds
Check = Callable[[Path, Path, float, Progress], Checked]


@dataclass(frozen=True)
class Job:
    """One build of `native/` into the cache entry `entries/KEY`."""

    key: str  # the entry's directory and its log's name
    choice: Choice | None  # pins native/Cargo.toml's Cranelift (None: as it pins it)
    noun: str  # "bridge": "building the bridge for DESCRIBE (log: …)"
    describe: str  # what is built, for progress and the log's first line
    failure: str  # what a failed cargo run says first
    entries: Path
    logs: Path
    lock: BuildLock
    cargo: Cargo
    cached: Callable[[], cache.Entry | None]  # a current entry, built by another process
    check: Check  # the staged entry works (BridgeError if not)
    notes: tuple[str, ...] = ()  # progress lines before cargo starts


def native_source(cannot: str, cargo_hint: str = "") -> Path:
    """`native/`, once it and cargo are found; BridgeError saying what
    `cannot` be done otherwise."""
    native = cache.source_dir()
    if native is None:
        raise BridgeError(
            f"{cannot}: its source native/ is not next to the fuzz package "
            "(install callfuzz from a source checkout)"
        )
    if shutil.which("cargo") is None:
        raise BridgeError(f"{cannot}: cargo is not on PATH{cargo_hint}")
    return native


def build_entry(job: Job, native: Path, progress: Progress, force: bool) -> cache.Entry:
    """Build `job` from `native` and rename it into place whole; its entry."""
    with job.lock.held(progress):
        # another process may have built it while this one waited
        entry = job.cached()
        if entry is not None and not force:
            return entry
        job.entries.mkdir(parents=True, exist_ok=True)
        job.logs.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".build-{job.key}-", dir=job.entries))
        try:
            return _build_in(job, native, work, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _build_in(job: Job, native: Path, work: Path, progress: Progress) -> cache.Entry:
    src, staged = work / "src", work / "entry"
    source = cache.source_hash(native)
    for path in cache.source_files(native):
        target = src / path.relative_to(native)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    if job.choice is not None:
        manifest = src / "Cargo.toml"
        manifest.write_text(pin_manifest(manifest.read_text(), dependencies(job.choice)))
    staged.mkdir()
    log_path = job.logs / f"{job.key}.log"
    progress(f"building the {job.noun} for {job.describe} (log: {log_path})")
    for note in job.notes:
        progress(note)
    started = time.monotonic()
    library = run(job.cargo, src, log_path, job.describe, job.failure, progress)
    seconds = time.monotonic() - started
    shutil.copy2(library, staged / cache.LIBRARY)
    checked = job.check(staged, log_path, seconds, progress)
    record: dict[str, Any] = {
        "format": cache.RECORD_FORMAT,
        "kind": "checkout" if isinstance(job.choice, Checkout) else "release",
        "version": checked.version,
        "bridge_source": source,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "toolchain": rustc("--version"),
        **checked.record,
    }
    if isinstance(job.choice, Checkout):
        choice = job.choice
        record |= {
            "path": str(choice.path),
            "commit": choice.commit,
            "dirty": choice.dirty,
            "diff_hash": choice.diff_hash,
        }
    (staged / cache.RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.copy2(log_path, staged / cache.LOG)
    final = job.entries / job.key
    if final.exists():
        os.rename(final, work / "replaced")  # a stale entry: gone whole, replaced whole
    os.rename(staged, final)
    progress(checked.done)
    entry = cache.read_entry(final)
    if entry is None:  # only if something removed it in between
        raise BridgeError(f"the {job.noun} built into {final} vanished")
    return entry


def check_in_child(
    args: list[str], log_path: Path, what: str, env: Mapping[str, str] | None = None
) -> str:
    """Run `python ARGS` (a staged module's check: a crash must not take this
    process with it), its output appended to the log; its stdout stripped, or
    BridgeError saying `what` does not work."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, check=False
    )
    with open(log_path, "a") as log:
        log.write(f"# check: exit {done.returncode}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BridgeError(f"{what} does not work: {last}; log: {log_path}")
    return done.stdout.strip()


_VERSION_KEY = re.compile(r'\bversion\s*=\s*"[^"]*"')


def pin_manifest(text: str, deps: dict[str, str]) -> str:
    """`native/Cargo.toml` with each Cranelift dependency's requirement
    replaced: `deps` maps a crate to the TOML of its new source
    (`version = "=0.131.3"` or `path = "/x/cranelift/codegen"`); other keys of
    an inline table (features) stay."""
    out, seen = [], set()
    for line in text.splitlines(keepends=True):
        match = re.match(r"(\s*)([A-Za-z0-9_-]+)(\s*=\s*)(.*?)(\s*(?:#.*)?)$", line.rstrip("\n"))
        if match and match[2] in deps:
            name, value = match[2], match[4]
            if re.fullmatch(r'"[^"]*"', value):
                value = f"{{ {deps[name]} }}"
            elif value.startswith("{") and (key := _VERSION_KEY.search(value)):
                value = value[: key.start()] + deps[name] + value[key.end() :]
            else:
                raise BridgeError(f"native/Cargo.toml: cannot pin {name} = {value}")
            line = f"{match[1]}{name}{match[3]}{value}{match[5]}\n"
            seen.add(name)
        out.append(line)
    if missing := sorted(set(deps) - seen):
        raise BridgeError(f"native/Cargo.toml has no dependency {missing[0]}")
    return "".join(out)


def dependencies(choice: Choice) -> dict[str, str]:
    if isinstance(choice, Release):
        return {crate: f'version = "={choice.version}"' for crate in CRATES}
    return {crate: f"path = {json.dumps(str(choice.path / d))}" for crate, d in CRATES.items()}


# --- the bridge ---------------------------------------------------------------


def stderr_progress(line: str) -> None:
    print(f"callfuzz: {line}", file=sys.stderr, flush=True)


def ensure(
    choice: Choice, progress: Progress = stderr_progress, force: bool = False
) -> cache.Entry:
    """The cached bridge for `choice`, built first when it is missing, built
    from another bridge source, or `force`d."""
    entry = _cached(choice)
    if entry is not None and not force:
        return entry
    return build(choice, progress, force=force)


def _cached(choice: Choice) -> cache.Entry | None:
    entry = cache.entry_for(choice.key)
    return entry if entry is not None and entry.current(cache.source_hash()) else None


def build(choice: Choice, progress: Progress = stderr_progress, force: bool = False) -> cache.Entry:
    """Build the bridge for `choice` into the cache and return its entry."""
    native = native_source("cannot build a bridge", " (install Rust)")
    notes: tuple[str, ...] = ()
    if is_newer_than_known(parse_version(choice.version)):
        notes = (
            f"Cranelift {choice.version} is newer than the newest release callfuzz knows: "
            f"attempted with 0.{NEWEST_KNOWN_MINOR}'s cfg flags and feature table",
        )
    job = Job(
        key=choice.key,
        choice=choice,
        noun="bridge",
        describe=choice.describe(),
        failure=f"building the bridge for {choice.describe()} failed",
        entries=cache.bridges_dir(),
        logs=cache.logs_dir(),
        lock=_bridge_lock(),
        cargo=Cargo(cache.cache_root() / "target", {"CALLFUZZ_CRANELIFT_VERSION": choice.version}),
        cached=lambda: _cached(choice),
        check=partial(_checked, choice),
        notes=notes,
    )
    return build_entry(job, native, progress, force)


def _checked(
    choice: Choice, staged: Path, log_path: Path, seconds: float, _progress: Progress
) -> Checked:
    version = _check(staged / cache.LIBRARY, log_path)
    if isinstance(choice, Release) and version != choice.version:
        raise BridgeError(
            f"the bridge built for {choice.version} reports Cranelift {version}; log: {log_path}"
        )
    return Checked(version, {}, f"built in {seconds:.0f} s: {cache.bridges_dir() / choice.key}")


def _bridge_lock() -> BuildLock:
    return BuildLock(cache.cache_root() / ".build.lock", "bridge")


def clean_target(progress: Progress = stderr_progress) -> int:
    """Remove the target directory bridge builds share (waiting for a running
    build); the bytes freed."""
    target = cache.cache_root() / "target"
    if not target.is_dir():
        return 0
    with _bridge_lock().held(progress):
        freed = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target, ignore_errors=True)
    return freed


# Loaded in a fresh interpreter: the built module must import, parse, verify
# and compile for every target before it is cached.
_CHECK = """
import importlib.machinery, importlib.util, sys
path = sys.argv[1]
loader = importlib.machinery.ExtensionFileLoader("_cranelift", path)
spec = importlib.util.spec_from_file_location("_cranelift", path, loader=loader)
bridge = importlib.util.module_from_spec(spec)
loader.exec_module(bridge)
module = bridge.parse("function %f(i64) -> i64 {\\nblock0(v0: i64):\\n    return v0\\n}\\n")
module.verify()
for triple in sys.argv[2:]:
    module.compile(bridge.Isa(triple, [], []))
print(bridge.version())
"""


def _check(library: Path, log_path: Path) -> str:
    """The version a freshly built bridge reports, once it has compiled a function."""
    from fuzz.targets import TARGETS

    triples = [t.triple for t in TARGETS.values()]
    return check_in_child(["-c", _CHECK, str(library), *triples], log_path, "the built bridge")
