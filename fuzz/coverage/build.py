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

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fuzz.bridge import cache
from fuzz.bridge.build import (
    BuildLock,
    Checked,
    Job,
    Progress,
    build_entry,
    check_in_child,
    native_source,
    stderr_progress,
)
from fuzz.bridge.cargo import Cargo
from fuzz.bridge.load import choice_from_env
from fuzz.bridge.spec import BridgeError, Choice, resolve
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
        return f"{self.choice.key if self.choice is not None else 'default'}-{self.variant}"

    @property
    def variant(self) -> str:
        return "cmp" if self.trace_compares else "edges"

    def describe(self) -> str:
        what = self.choice.describe() if self.choice else "the Cranelift native/ pins"
        return f"{what}, {'edges and comparisons' if self.trace_compares else 'edge counters'}"

    def rustflags(self) -> list[str]:
        return [*SANCOV, *([TRACE_COMPARES] if self.trace_compares else [])]


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


def build(want: Wanted, progress: Progress = stderr_progress, force: bool = False) -> cache.Entry:
    native = native_source("cannot build the instrumented bridge")
    preload.runtime()  # the check needs it: fail before building for minutes
    return build_entry(_job(want), native, progress, force)


def _job(want: Wanted) -> Job:
    """The bridge's build, with SanitizerCoverage's flags (the user's RUSTFLAGS
    last), line tables and symbols, for the host target named explicitly."""
    env = {
        "RUSTFLAGS": " ".join([*want.rustflags(), os.environ.get("RUSTFLAGS", "")]).strip(),
        "CARGO_PROFILE_RELEASE_DEBUG": "line-tables-only",
        "CARGO_PROFILE_RELEASE_STRIP": "none",
    }
    if want.choice is not None:
        env["CALLFUZZ_CRANELIFT_VERSION"] = want.choice.version
    # one per variant: their RUSTFLAGS differ, so they would rebuild each other
    target_dir = coverage_root() / f"target-{want.variant}"
    return Job(
        key=want.key,
        choice=want.choice,
        noun="instrumented bridge",
        describe=want.describe(),
        failure="building the instrumented bridge failed",
        entries=coverage_root(),
        logs=logs_dir(),
        lock=BuildLock(coverage_root() / ".build.lock", "instrumented"),
        cargo=Cargo(target_dir, env, logged=("RUSTFLAGS",), host_target=True, heartbeat=HEARTBEAT),
        cached=lambda: entry_for(want),
        check=partial(_checked, want),
    )


def _checked(
    want: Wanted, staged: Path, log_path: Path, seconds: float, progress: Progress
) -> Checked:
    """Probe the staged module and symbolize its functions into `FUNCTIONS`."""
    progress(f"compiled in {seconds:.0f} s; checking it and reading its PC table")
    probe = _probe(staged, want.key, log_path)
    progress(f"symbolizing {probe['functions']} functions ({probe['counters']} counters)")
    table = symbols.symbolize(staged / cache.LIBRARY, staged / symbols.PCS_FILE)
    (staged / FUNCTIONS).write_text(json.dumps(table))
    coverage = {
        "rustflags": want.rustflags(),
        "trace_compares": want.trace_compares,
        "counters": probe["counters"],
        "functions": probe["functions"],
        "reached_by_check": probe["reached"],
    }
    final = coverage_root() / want.key
    done = f"built: {final} ({probe['counters']:,} counters)"
    return Checked(probe["version"], {"coverage": coverage}, done)


def _probe(staged: Path, key: str, log_path: Path) -> dict[str, Any]:
    """Load the staged module in a fresh interpreter with libFuzzer preloaded
    (`fuzz.coverage.probe`): it must compile for every target and its
    counters must move; it writes the PC table next to the module."""
    env = {**os.environ, "LD_PRELOAD": str(preload.runtime())}
    args = ["-m", "fuzz.coverage.probe", str(staged / cache.LIBRARY), key]
    out = check_in_child(args, log_path, "the instrumented bridge", env)
    try:
        result: dict[str, Any] = json.loads(out.splitlines()[-1])
    except (ValueError, IndexError):
        raise BridgeError(
            f"the instrumented bridge's check said nothing; log: {log_path}"
        ) from None
    return result
