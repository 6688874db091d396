"""`callfuzz cranelift list | build SPEC... | remove SPEC...`: the bridge cache.

A SPEC is a release (`0.131`: its newest published version; `0.128.4`) or a
wasmtime checkout's path. Any command runs on one of them with the global
option `--cranelift SPEC` (or `CALLFUZZ_CRANELIFT=SPEC`), which builds the
bridge on first use; `build` builds ahead of time."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import click
from rich.table import Table

import fuzz
from fuzz.bridge import cache
from fuzz.bridge.load import ENV_CHOICE, choice_from_env
from fuzz.bridge.spec import BridgeError
from fuzz.commands.common import console, fail
from fuzz.versions import SUPPORTED, looks_like_version


@click.group(
    help="The Cranelift under test: build, list and remove cached bridges "
    f"(releases {SUPPORTED}, or wasmtime checkouts)."
)
def cranelift() -> None:
    pass


def installed_library() -> Path | None:
    """The bridge pip installed: the `_cranelift` extension module in the fuzz
    package this process runs (an editable install builds it there), found
    as Python's path finder finds it, past the bridge cache's finder."""
    import importlib.machinery

    found = importlib.machinery.PathFinder.find_spec("fuzz._cranelift", list(fuzz.__path__))
    if found is None or found.origin is None:
        return None
    return Path(found.origin)


# Loads an extension module by its path and prints the version it reports.
_VERSION_OF = """
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.ExtensionFileLoader("_cranelift", sys.argv[1])
spec = importlib.util.spec_from_file_location("_cranelift", sys.argv[1], loader=loader)
bridge = importlib.util.module_from_spec(spec)
loader.exec_module(bridge)
print(bridge.version())
"""


def installed_version() -> str:
    """The Cranelift version the bridge pip installed reports, or why there
    is none. Loaded by its path in an isolated child process (a process loads
    one bridge, and this one may have another chosen), so neither the current
    directory nor the environment can put another `fuzz` in its place."""
    library = installed_library()
    if library is None:
        where = ", ".join(str(p) for p in fuzz.__path__)
        return f"not built (no _cranelift extension module in {where}: pip install -e .)"
    done = subprocess.run(
        [sys.executable, "-I", "-c", _VERSION_OF, str(library)],
        capture_output=True,
        text=True,
        check=False,
    )
    version = done.stdout.strip()
    if done.returncode == 0 and version:
        return version
    reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return f"unusable ({library}: {reason})"


def _when(entry: cache.Entry) -> str:
    text = str(entry.record.get("built_at", ""))
    try:
        return datetime.datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return text or "?"


@cranelift.command("list")
def list_bridges() -> None:
    """The cached bridges, and the one pip installed."""
    source = cache.source_hash()
    console.print(f"bridge cache: {cache.bridges_dir()}")
    console.print(f"pip-installed bridge: Cranelift {installed_version()}", highlight=False)
    chosen = choice_from_env()
    if chosen:
        console.print(f"chosen now: {chosen} (${ENV_CHOICE} or --cranelift)")
    found = cache.entries()
    if not found:
        console.print("no bridge built yet: callfuzz cranelift build 0.131 (or a checkout's path)")
        return
    table = Table(box=None)
    for column in ("key", "cranelift", "from", "built", "build time", "size", "state"):
        table.add_column(column)
    for entry in found:
        record = entry.record
        if entry.kind == "checkout":
            origin = f"{record.get('path')} at {str(record.get('commit'))[:12]}"
            if record.get("dirty"):
                origin += f" + changes {str(record.get('diff_hash'))[:12]}"
        else:
            origin = "crates.io"
        table.add_row(
            entry.key,
            entry.version,
            origin,
            _when(entry),
            f"{record.get('build_seconds', '?')} s",
            f"{cache.size(entry) / 2**20:.0f} MiB",
            "current" if entry.current(source) else "stale: rebuilt on next use",
        )
    console.print(table)


@cranelift.command("build")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--force", is_flag=True, help="Build again even when a current bridge is cached.")
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build into this cache directory instead of the default one "
    "(the test command prebuilds the tests' old-release bridges into tests/prebuilt).",
)
def build_bridges(specs: tuple[str, ...], force: bool, cache_dir: Path | None) -> None:
    """Build (or find cached) the bridge for each SPEC: a release such as
    0.131 (its newest version) or 0.128.4, or a wasmtime checkout's path."""
    from fuzz.bridge import build, spec

    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            fail(f"cannot use {cache_dir} as the bridge cache: {err.strerror or err}")
        os.environ[cache.ENV_CACHE] = str(cache_dir.resolve())
    for text in specs:
        try:
            choice = spec.resolve(text)
            entry = build.ensure(choice, force=force)
        except BridgeError as err:
            fail(str(err))
        click.echo(f"{text}: Cranelift {entry.describe()} in {entry.path}")


def _matching(text: str) -> list[cache.Entry]:
    """Cached entries a SPEC names, without resolving it: a release line its
    versions, a version itself, a path every commit of that checkout."""
    found = cache.entries()
    if looks_like_version(text):
        parts = text.strip().removesuffix(".x").split(".")
        return [
            e for e in found if e.kind == "release" and e.version.split(".")[: len(parts)] == parts
        ]
    path = str(Path(text).expanduser().resolve())
    if Path(path).name == "cranelift":
        path = str(Path(path).parent)
    return [e for e in found if e.kind == "checkout" and e.record.get("path") == path]


@cranelift.command("remove")
@click.argument("specs", nargs=-1, metavar="SPEC...")
@click.option(
    "--all",
    "remove_all",
    is_flag=True,
    help="Remove every cached bridge and the build directory they share.",
)
def remove_bridges(specs: tuple[str, ...], remove_all: bool) -> None:
    """Remove cached bridges: a release line's (0.131), a version's (0.128.4),
    or every commit of a checkout's (PATH)."""
    if not specs and not remove_all:
        fail("name the bridges to remove (a version, a release line or a path) or --all")
    doomed: list[cache.Entry] = cache.entries() if remove_all else []
    for text in specs:
        matched = _matching(text)
        if not matched:
            fail(f"no cached bridge for {text} (see: callfuzz cranelift list)")
        doomed += [e for e in matched if e not in doomed]
    for entry in doomed:
        cache.remove(entry)
        click.echo(f"removed {entry.key}: Cranelift {entry.describe()}")
    if remove_all:
        from fuzz.bridge.build import clean_target

        freed = clean_target()
        click.echo(f"removed the shared build directory ({freed / 2**20:.0f} MiB)")
