"""Makes `from fuzz import _cranelift` load the chosen bridge.

`fuzz/__init__.py` installs a finder ahead of the normal ones. At the first
import of `fuzz._cranelift` it reads `CALLFUZZ_CRANELIFT` (a release or a
checkout's path): unset or empty, it steps aside and the bridge pip installed
is loaded as always; set, it resolves the choice, builds the bridge when the
cache lacks it, and loads the cached extension module instead. The entry it
loaded is pinned in `CALLFUZZ_BRIDGE` for child processes (campaign workers),
which load exactly that entry and never resolve or build again.

This module stays light: the cache and the builder are imported only when a
choice is made."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from fuzz.bridge.build import Progress
    from fuzz.bridge.cache import Entry

ENV_CHOICE = "CALLFUZZ_CRANELIFT"
ENV_PINNED = "CALLFUZZ_BRIDGE"
MODULE = "fuzz._cranelift"

# The cache entry this process loads (or loaded) as fuzz._cranelift.
_active: Entry | None = None


def choice_from_env() -> str | None:
    choice = os.environ.get(ENV_CHOICE, "").strip()
    return choice or None


def select(choice: str, progress: Progress | None = None) -> Entry:
    """Resolve `choice`, build its bridge if the cache lacks it, and pin the
    entry for child processes. Raises BridgeError on bad input."""
    global _active
    from fuzz.bridge import build, spec

    entry = build.ensure(spec.resolve(choice), progress or build.stderr_progress)
    os.environ[ENV_PINNED] = str(entry.path)
    _active = entry
    return entry


def _pinned() -> Entry | None:
    global _active
    from fuzz.bridge import cache

    path = os.environ.get(ENV_PINNED)
    entry = cache.read_entry(Path(path)) if path else None
    if entry is not None:
        _active = entry
    return entry


def chosen_entry() -> Entry | None:
    """The bridge `fuzz._cranelift` is to be loaded from; None for pip's."""
    if _active is not None:
        return _active
    choice = choice_from_env()
    if choice is None:
        return None
    return _pinned() or select(choice)


def activate(choice: str | None, progress: Progress | None = None) -> Entry | None:
    """Choose the Cranelift under test before anything imports the bridge
    (the command line's `--cranelift`); None keeps `CALLFUZZ_CRANELIFT`'s
    choice or, without one, pip's bridge. Builds now, so bad input is reported
    here as a BridgeError and not at some later import."""
    global _active
    if choice is not None:
        os.environ[ENV_CHOICE] = choice
        os.environ.pop(ENV_PINNED, None)
        _active = None
    if choice_from_env() is None:
        return None
    loaded = sys.modules.get(MODULE)
    entry = chosen_entry()
    if loaded is not None and entry is not None and not _loaded_from(entry):
        from fuzz.bridge.spec import BridgeError

        raise BridgeError(f"another Cranelift bridge is loaded already: {_origin(loaded)}")
    return entry


def _origin(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


class BridgeFinder:
    """Finds `fuzz._cranelift` in the bridge cache when a Cranelift is chosen
    (a meta path finder; importlib.abc is not imported for it, it is slow)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != MODULE:
            return None
        from fuzz.bridge.spec import BridgeError

        try:
            entry = chosen_entry()
        except BridgeError as err:
            # raised inside an import, deep in whatever imported the bridge: a
            # traceback would bury the one line that matters
            sys.stderr.write(f"callfuzz: {err}\n")
            raise SystemExit(2) from None
        if entry is None:
            return None
        import importlib.machinery
        import importlib.util

        library = str(entry.library.resolve())
        loader = importlib.machinery.ExtensionFileLoader(MODULE, library)
        return importlib.util.spec_from_file_location(MODULE, library, loader=loader)


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(f, BridgeFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, BridgeFinder())


@dataclass(frozen=True)
class UnderTest:
    """What Cranelift a finding was seen on."""

    kind: str  # "installed" (pip's bridge), "release" or "checkout"
    version: str
    commit: str | None = None
    dirty: bool = False
    diff_hash: str | None = None
    path: str | None = None

    def describe(self) -> str:
        """`0.135.8`, or `0.138.0 (checkout /w at 0123456789ab, uncommitted changes ...)`."""
        if self.kind != "checkout":
            return self.version
        text = f"{self.version} (checkout {self.path} at {(self.commit or '?')[:12]}"
        if self.dirty:
            text += f", uncommitted changes {(self.diff_hash or '?')[:12]}"
        return text + ")"


def under_test() -> UnderTest:
    """The Cranelift `fuzz._cranelift` is built against (loading it if needed)."""
    from fuzz import _cranelift

    entry = _active if _active is not None and _loaded_from(_active) else None
    if entry is None:
        return UnderTest("installed", _cranelift.version())
    record = entry.record
    if entry.kind != "checkout":
        return UnderTest("release", _cranelift.version())
    return UnderTest(
        "checkout",
        _cranelift.version(),
        commit=record.get("commit"),
        dirty=bool(record.get("dirty")),
        diff_hash=record.get("diff_hash"),
        path=record.get("path"),
    )


def _loaded_from(entry: Entry) -> bool:
    loaded = sys.modules.get(MODULE)
    return loaded is not None and _origin(loaded) == entry.library.resolve()
