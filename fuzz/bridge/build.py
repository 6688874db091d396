"""Builds the bridge source `native/` against a chosen Cranelift into the cache.

The source is copied to a work directory under the cache, its manifest's
Cranelift dependencies pinned (`=X.Y.Z` for a release, path dependencies into
a checkout's `cranelift/` crates), built by cargo in a target directory shared
by every build (so only what differs is compiled again), checked by loading it
in a fresh interpreter and compiling a function for every target, and only
then renamed into place with its record and build log. A failed or
interrupted build leaves its log under `logs/` and nothing in `bridges/`."""

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from fuzz.bridge import cache
from fuzz.bridge.spec import CRATES, BridgeError, Checkout, Choice, Release
from fuzz.versions import NEWEST_KNOWN_MINOR, is_newer_than_known, parse_version

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(f"callfuzz: {line}", file=sys.stderr, flush=True)


def ensure(
    choice: Choice, progress: Progress = stderr_progress, force: bool = False
) -> cache.Entry:
    """The cached bridge for `choice`, built first when it is missing, built
    from another bridge source, or `force`d."""
    entry = cache.entry_for(choice.key)
    if entry is not None and entry.current(cache.source_hash()) and not force:
        return entry
    return build(choice, progress, force=force)


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


@contextlib.contextmanager
def _build_lock(progress: Progress) -> Iterator[None]:
    """One bridge build at a time per cache (they share a target directory)."""
    path = cache.cache_root() / ".build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another bridge build to finish ({path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean_target(progress: Progress = stderr_progress) -> int:
    """Remove the target directory builds share (waiting for a running build);
    the bytes freed."""
    target = cache.cache_root() / "target"
    if not target.is_dir():
        return 0
    with _build_lock(progress):
        freed = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target, ignore_errors=True)
    return freed


def build(choice: Choice, progress: Progress = stderr_progress, force: bool = False) -> cache.Entry:
    """Build the bridge for `choice` into the cache and return its entry."""
    native = cache.source_dir()
    if native is None:
        raise BridgeError(
            "cannot build a bridge: its source native/ is not next to the fuzz package "
            "(install callfuzz from a source checkout)"
        )
    if shutil.which("cargo") is None:
        raise BridgeError("cannot build a bridge: cargo is not on PATH (install Rust)")
    source = cache.source_hash(native)
    with _build_lock(progress):
        # another process may have built it while this one waited
        entry = cache.entry_for(choice.key)
        if entry is not None and entry.current(source) and not force:
            return entry
        cache.bridges_dir().mkdir(parents=True, exist_ok=True)
        cache.logs_dir().mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".build-{choice.key}-", dir=cache.bridges_dir()))
        try:
            return _build_in(choice, native, source, work, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _build_in(
    choice: Choice, native: Path, source: str | None, work: Path, progress: Progress
) -> cache.Entry:
    src, staged = work / "src", work / "entry"
    for path in cache.source_files(native):
        target = src / path.relative_to(native)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    manifest = src / "Cargo.toml"
    manifest.write_text(pin_manifest(manifest.read_text(), dependencies(choice)))
    staged.mkdir()
    log_path = cache.logs_dir() / f"{choice.key}.log"
    progress(f"building the bridge for {choice.describe()} (log: {log_path})")
    if is_newer_than_known(parse_version(choice.version)):
        progress(
            f"Cranelift {choice.version} is newer than the newest release callfuzz knows: "
            f"attempted with 0.{NEWEST_KNOWN_MINOR}'s cfg flags and feature table"
        )
    started = time.monotonic()
    library = _cargo_build(choice, src, log_path, progress)
    seconds = time.monotonic() - started
    shutil.copy2(library, staged / cache.LIBRARY)
    version = _check(staged / cache.LIBRARY, log_path)
    if isinstance(choice, Release) and version != choice.version:
        raise BridgeError(
            f"the bridge built for {choice.version} reports Cranelift {version}; log: {log_path}"
        )
    record: dict[str, Any] = {
        "format": cache.RECORD_FORMAT,
        "kind": "release" if isinstance(choice, Release) else "checkout",
        "version": version,
        "bridge_source": source,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "toolchain": _rustc_version(),
    }
    if isinstance(choice, Checkout):
        record |= {
            "path": str(choice.path),
            "commit": choice.commit,
            "dirty": choice.dirty,
            "diff_hash": choice.diff_hash,
        }
    (staged / cache.RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.copy2(log_path, staged / cache.LOG)
    final = cache.bridges_dir() / choice.key
    old = work / "replaced"
    if final.exists():
        os.rename(final, old)  # a stale entry: gone whole, replaced whole
    os.rename(staged, final)
    progress(f"built in {seconds:.0f} s: {final}")
    entry = cache.read_entry(final)
    if entry is None:  # only if something removed it in between
        raise BridgeError(f"the bridge built into {final} vanished")
    return entry


def _rustc_version() -> str:
    try:
        done = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return done.stdout.strip()


_PROGRESS = re.compile(r"\s*(Compiling|Finished|Locking|Updating|Downloaded) ")


def _cargo_build(choice: Choice, src: Path, log_path: Path, progress: Progress) -> Path:
    """Run cargo; the built cdylib's path, or BridgeError naming the log."""
    command = [
        "cargo",
        "build",
        "--release",
        "--lib",
        "--ignore-rust-version",
        "--color=never",
        "--message-format=json-render-diagnostics",
    ]
    version = choice.version
    env = {
        **os.environ,
        "CARGO_TARGET_DIR": str(cache.cache_root() / "target"),
        "CALLFUZZ_CRANELIFT_VERSION": version,
        "PYO3_PYTHON": sys.executable,
    }
    lock = threading.Lock()
    errors: list[str] = []
    with open(log_path, "w") as log:
        log.write(f"# {choice.describe()}\n# in {src}\n# {' '.join(command)}\n")
        log.write(f"# CARGO_TARGET_DIR={env['CARGO_TARGET_DIR']}\n")
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
                elif line.startswith("error") and not errors:
                    errors.append(line)

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
        reader.start()
        library = None
        try:
            for raw in proc.stdout:
                try:
                    message = json.loads(raw)
                except ValueError:
                    note(raw.rstrip("\n"))
                    continue
                target = message.get("target") or {}
                if message.get("reason") == "compiler-artifact" and "cdylib" in target.get(
                    "kind", []
                ):
                    for name in message.get("filenames", []):
                        if name.endswith((".so", ".dylib", ".pyd", ".dll")):
                            library = Path(name)
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        note(f"# cargo exited with {code}")
    if code != 0 or library is None or not library.is_file():
        first = f": {_explain(errors[0])}" if errors else ""
        raise BridgeError(
            f"building the bridge for {choice.describe()} failed{first}; log: {log_path}"
        )
    return library


# cargo's words for a pinned dependency that the registry does not have
_UNRESOLVED = re.compile(
    r"failed to select a version for the requirement `([\w-]+) = \"=([^\"]+)\"`"
)


def _explain(error: str) -> str:
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
    done = subprocess.run(
        [sys.executable, "-c", _CHECK, str(library), *triples],
        capture_output=True,
        text=True,
        check=False,
    )
    with open(log_path, "a") as log:
        log.write(f"# check: exit {done.returncode}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BridgeError(f"the built bridge does not work: {last}; log: {log_path}")
    return done.stdout.strip()
