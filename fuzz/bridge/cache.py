"""The bridge cache: one directory per built bridge,
`$CALLFUZZ_CACHE/bridges/KEY/` (default `~/.cache/callfuzz`), holding the
extension module, a record of what it was built from and its build log.
An entry only ever appears whole (the builder renames a finished directory
into place), so a directory with a record and a library is a usable bridge."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_CACHE = "CALLFUZZ_CACHE"
LIBRARY = "_cranelift.abi3.so"
RECORD = "bridge.json"
LOG = "build.log"
# Bumped when the record's fields change meaning; other records read as absent.
RECORD_FORMAT = 1


def cache_root() -> Path:
    """`$CALLFUZZ_CACHE`, else `$XDG_CACHE_HOME/callfuzz`, else `~/.cache/callfuzz`."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "callfuzz"


def bridges_dir() -> Path:
    return cache_root() / "bridges"


def logs_dir() -> Path:
    """Build logs of every build, kept also when a build fails."""
    return cache_root() / "logs"


def source_dir() -> Path | None:
    """The bridge source `native/` next to the `fuzz` package (a source
    checkout or an editable install), or None when it is not there."""
    native = Path(__file__).resolve().parents[2] / "native"
    return native if (native / "Cargo.toml").is_file() else None


def source_files(native: Path) -> list[Path]:
    """What a bridge is built from: the manifest, lock file, build script, sources."""
    files = [native / name for name in ("Cargo.toml", "Cargo.lock", "build.rs")]
    files += sorted((native / "src").rglob("*.rs"))
    return [f for f in files if f.is_file()]


def source_hash(native: Path | None = None) -> str | None:
    """SHA-256 over the bridge source, so a cached bridge built from an older
    source is rebuilt; None when the source is not available."""
    native = native or source_dir()
    if native is None:
        return None
    digest = hashlib.sha256()
    for path in source_files(native):
        digest.update(path.relative_to(native).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    """A built bridge in the cache."""

    path: Path
    record: dict[str, Any]

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def library(self) -> Path:
        return self.path / LIBRARY

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def kind(self) -> str:
        return str(self.record.get("kind", "?"))

    @property
    def version(self) -> str:
        return str(self.record.get("version", "?"))

    def current(self, source: str | None) -> bool:
        """Built from this bridge source (always, when the source is unknown)."""
        return source is None or self.record.get("bridge_source") == source

    def describe(self) -> str:
        """`0.131.3`, or `0.138.0 (checkout PATH at COMMIT, uncommitted changes HASH)`."""
        if self.kind != "checkout":
            return self.version
        commit = str(self.record.get("commit", "?"))[:12]
        text = f"{self.version} (checkout {self.record.get('path')} at {commit}"
        if self.record.get("dirty"):
            text += f", uncommitted changes {str(self.record.get('diff_hash'))[:12]}"
        return text + ")"


def read_entry(path: Path) -> Entry | None:
    """The entry at `path`, or None when it is not a whole, readable entry."""
    try:
        record = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    if not (path / LIBRARY).is_file():
        return None
    return Entry(path, record)


def entry_for(key: str) -> Entry | None:
    return read_entry(bridges_dir() / key)


def entries() -> list[Entry]:
    """Every whole entry, by key (work directories of builds are skipped)."""
    root = bridges_dir()
    if not root.is_dir():
        return []
    found = (read_entry(p) for p in sorted(root.iterdir()) if not p.name.startswith("."))
    return [e for e in found if e is not None]


def remove(entry: Entry) -> None:
    """Remove an entry: renamed away first, so it disappears at once and whole."""
    doomed = entry.path.with_name(f".removed-{entry.key}-{os.getpid()}")
    os.rename(entry.path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def size(entry: Entry) -> int:
    return sum(p.stat().st_size for p in entry.path.iterdir() if p.is_file())
