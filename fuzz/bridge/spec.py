"""A choice of Cranelift, read: a release (`0.131` means the newest published
0.131.x, `0.128.4` exactly that one) or the path of a wasmtime checkout.

Releases are looked up in the crates.io sparse index (cached, so a resolved
choice works offline); a checkout is identified by its commit and, when it
has uncommitted changes, a hash of them, which is what its cached bridge is
keyed by."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz.bridge import cache
from fuzz.versions import SUPPORTED, is_supported, parse_release, parse_version

INDEX_URL = "https://index.crates.io/cr/an/"
# Overrides INDEX_URL, the base a crate's name is appended to (any URL urllib
# reads, `file://` included): the tests point it at a fixture directory so
# that nothing depends on what crates.io publishes.
ENV_INDEX_URL = "CALLFUZZ_INDEX_URL"
# A cached index older than this is refreshed before a release line is resolved.
INDEX_TTL = 6 * 3600
# The crates the bridge depends on, each released with cranelift-codegen,
# and where they live in a wasmtime checkout.
CRATES = {
    "cranelift-codegen": "cranelift/codegen",
    "cranelift-reader": "cranelift/reader",
    "cranelift-interpreter": "cranelift/interpreter",
    "cranelift-control": "cranelift/control",
}


# A release is usable when every crate the bridge takes at its version is
# published: an LTS line's newest patch can be cranelift-codegen's alone
# (0.111.13, 0.123.23, 0.135.11, 0.137.3 have no reader or interpreter).
INDEXED_CRATES = ("cranelift-codegen", "cranelift-reader", "cranelift-interpreter")


class BridgeError(Exception):
    """A choice that cannot be used or built: one line naming the problem."""


@dataclass(frozen=True)
class Release:
    """A published release of the Cranelift crates."""

    version: str

    @property
    def key(self) -> str:
        return f"release-{self.version}"

    def describe(self) -> str:
        return f"Cranelift {self.version}"


@dataclass(frozen=True)
class Checkout:
    """A wasmtime checkout as it is now: its commit and uncommitted changes."""

    path: Path
    version: str  # cranelift-codegen's version in the checkout
    commit: str
    dirty: bool
    diff_hash: str | None  # SHA-256 of the uncommitted changes, when dirty

    @property
    def key(self) -> str:
        key = f"checkout-{self.commit[:12]}"
        return f"{key}-dirty-{self.diff_hash[:12]}" if self.diff_hash else key

    def describe(self) -> str:
        changes = f" with uncommitted changes {self.diff_hash[:12]}" if self.diff_hash else ""
        return (
            f"Cranelift {self.version} of the checkout {self.path} at {self.commit[:12]}{changes}"
        )


Choice = Release | Checkout


def resolve(text: str) -> Choice:
    """Read a choice: a release line or version, or a checkout's path."""
    text = text.strip()
    if not text:
        raise BridgeError("empty Cranelift choice (give a release such as 0.131 or a path)")
    release = parse_release(text)
    if release is not None:
        return Release(resolve_release(*release))
    return inspect_checkout(Path(text))


# --- releases -------------------------------------------------------------


def _unsupported(text: str) -> BridgeError:
    return BridgeError(
        f"Cranelift {text} is not supported: callfuzz builds against releases "
        f"{SUPPORTED} or a wasmtime checkout"
    )


def resolve_release(major: int, minor: int, patch: int | None) -> str:
    """The exact version a release choice names: itself, or the newest
    published, not yanked version of the line. A line newer than the newest
    callfuzz knows is resolved like any other: it is attempted, not refused."""
    wanted = f"{major}.{minor}" + ("" if patch is None else f".{patch}")
    if not is_supported((major, minor, patch or 0)):
        raise _unsupported(wanted)
    index = Index.load()
    if patch is not None and wanted in index.published:
        return wanted  # a known exact version needs no fresh index
    if not index.fresh():
        index = index.refresh()
    line = sorted(
        (v for v in index.published if v.startswith(f"{major}.{minor}.")), key=parse_version
    )
    if patch is not None:
        if wanted in index.published:
            return wanted
        if wanted in index.yanked:
            raise BridgeError(f"cranelift-codegen {wanted} is yanked from crates.io")
        if wanted in index.partial:
            raise BridgeError(
                f"Cranelift {wanted} is cranelift-codegen's alone on crates.io (no "
                f"{' or '.join(INDEXED_CRATES[1:])} {wanted}): name an earlier patch release"
            )
    elif line:
        return line[-1]
    alone = [v for v in index.partial if v.startswith(f"{major}.{minor}.")]
    if not line and alone:
        raise BridgeError(
            f"Cranelift {wanted} is cranelift-codegen's alone on crates.io ({', '.join(alone)} "
            f"without {' or '.join(INDEXED_CRATES[1:])}): nothing to build the bridge from"
        )
    if index.published:
        have = f"{line[0]} to {line[-1]}" if line else "no release"
        raise BridgeError(
            f"cranelift-codegen {wanted} is not published on crates.io (0.{minor} has {have})"
        )
    # no index at all (offline, never fetched): a bridge built earlier still serves
    built = _built_releases(major, minor, patch)
    if built:
        return built[-1]
    raise BridgeError(
        f"cannot resolve Cranelift {wanted}: the crates.io index is unreachable "
        f"({index.error}) and no bridge for it is cached"
    )


def _built_releases(major: int, minor: int, patch: int | None) -> list[str]:
    found = []
    for entry in cache.entries():
        v = entry.version
        if entry.kind == "release" and re.fullmatch(r"\d+\.\d+\.\d+", v):
            got = parse_version(v)
            if got[:2] == (major, minor) and patch in (None, got[2]):
                found.append(v)
    return sorted(found, key=parse_version)


def fetch_index(crate: str) -> str:
    """A crate's sparse-index file: one JSON object per version."""
    import urllib.request

    url = (os.environ.get(ENV_INDEX_URL) or INDEX_URL).rstrip("/") + "/" + crate
    request = urllib.request.Request(url, headers={"User-Agent": "callfuzz"})
    with urllib.request.urlopen(request, timeout=20) as reply:
        return str(reply.read().decode())


def parse_index(text: str) -> tuple[list[str], list[str]]:
    """(published, yanked) plain x.y.z versions (pre-releases are left out)."""
    published: list[str] = []
    yanked: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        version = str(item.get("vers", ""))
        if re.fullmatch(r"\d+\.\d+\.\d+", version):
            (yanked if item.get("yanked") else published).append(version)
    return published, yanked


@dataclass(frozen=True)
class Index:
    """The released versions of Cranelift, as last read from crates.io:
    `published` has every crate of INDEXED_CRATES, `partial` cranelift-codegen
    alone, `yanked` is yanked."""

    published: tuple[str, ...] = ()
    yanked: tuple[str, ...] = ()
    fetched: float = 0.0
    error: str = "never fetched"
    partial: tuple[str, ...] = ()

    @staticmethod
    def path() -> Path:
        # named for what it holds since `partial` (older files read as absent)
        return cache.cache_root() / "index" / "cranelift.json"

    @classmethod
    def load(cls) -> Index:
        try:
            data: dict[str, Any] = json.loads(cls.path().read_text())
            return cls(
                tuple(data["published"]),
                tuple(data["yanked"]),
                float(data["fetched"]),
                "",
                tuple(data["partial"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def fresh(self) -> bool:
        return time.time() - self.fetched < INDEX_TTL

    def refresh(self) -> Index:
        """Read the index again; on failure keep what was cached (with the error)."""
        from http.client import HTTPException

        try:
            indexes = [parse_index(fetch_index(crate)) for crate in INDEXED_CRATES]
        except (OSError, ValueError, HTTPException) as err:
            error = str(err) or type(err).__name__
            return Index(self.published, self.yanked, self.fetched, error, self.partial)
        (codegen, yanked), *others = indexes
        complete = [v for v in codegen if all(v in published for published, _ in others)]
        partial = [v for v in codegen if v not in complete]
        index = Index(tuple(complete), tuple(yanked), time.time(), "", tuple(partial))
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(
            json.dumps(
                {
                    "fetched": index.fetched,
                    "published": complete,
                    "yanked": yanked,
                    "partial": partial,
                }
            )
        )
        os.replace(tmp, path)
        return index


# --- checkouts ------------------------------------------------------------


def _git(root: Path, *args: str) -> bytes:
    done = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        check=False,
        # never take the index lock of the user's checkout
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise BridgeError(
            f"{root} is not a usable git checkout: git {args[0]}: "
            f"{message[-1] if message else 'failed'}"
        )
    return done.stdout


def checkout_version(root: Path) -> str:
    """cranelift-codegen's version in a checkout: its own manifest's, or the
    workspace's dependency entry when the manifest inherits it."""
    try:
        package = tomllib.loads((root / CRATES["cranelift-codegen"] / "Cargo.toml").read_text())
        version = package.get("package", {}).get("version")
        if isinstance(version, str):
            return version
        workspace = tomllib.loads((root / "Cargo.toml").read_text()).get("workspace", {})
        dep = workspace.get("dependencies", {}).get("cranelift-codegen", {})
        if isinstance(dep, dict) and isinstance(dep.get("version"), str):
            return str(dep["version"]).lstrip("=^~ ")
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BridgeError(f"cannot read cranelift-codegen's version in {root}: {err}") from None
    raise BridgeError(f"cannot read cranelift-codegen's version in {root}")


def inspect_checkout(path: Path) -> Checkout:
    """A wasmtime checkout (its top, or its `cranelift/` directory) as it is now."""
    root = path.expanduser().resolve()
    if not root.is_dir():
        raise BridgeError(
            f"not a Cranelift release ({SUPPORTED}, e.g. 0.131 or 0.128.4) nor a directory: {path}"
        )
    if root.name == "cranelift" and (root / "codegen" / "Cargo.toml").is_file():
        root = root.parent
    missing = [d for d in CRATES.values() if not (root / d / "Cargo.toml").is_file()]
    if missing:
        raise BridgeError(f"not a wasmtime checkout: {root} has no {missing[0]}/Cargo.toml")
    version = checkout_version(root)
    try:
        numbers = parse_version(version)
    except ValueError:
        raise BridgeError(
            f"cranelift-codegen in {root} has an unreadable version {version!r}"
        ) from None
    if not is_supported(numbers):
        raise BridgeError(
            f"the checkout {root} has Cranelift {version}; callfuzz supports {SUPPORTED}"
        )
    commit = _git(root, "rev-parse", "--verify", "HEAD").decode().strip()
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    diff_hash = changes_hash(root, status) if status else None
    return Checkout(root, version, commit, bool(status), diff_hash)


def changes_hash(root: Path, status: bytes) -> str:
    """SHA-256 of a checkout's uncommitted changes, from `git status -z`: each
    changed or untracked path with what is there now (its bytes, a link's
    target, or that it is gone). With the commit this names the tree a bridge
    is built from, whether changes are staged or not, and reads no old blob."""
    digest = hashlib.sha256()
    paths = sorted({entry[3:] for entry in status.split(b"\0") if len(entry) > 3})
    for name in paths:
        file = root / os.fsdecode(name)
        digest.update(b"\0path\0" + name + b"\0")
        if file.is_symlink():
            digest.update(b"link\0" + os.fsencode(os.readlink(file)))
        elif file.is_file():
            digest.update(b"file\0" + file.read_bytes())
        elif file.is_dir():
            digest.update(b"directory\0")  # a submodule: its own commit is not followed
        else:
            digest.update(b"gone\0")
    return digest.hexdigest()
