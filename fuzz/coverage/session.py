"""What a command needs around a coverage-guided campaign: the instrumented
bridge, built if missing and checked to load in a process started with the
coverage environment; whether a campaign directory was run with coverage
(a resumed campaign keeps it); and the coverage a campaign's bitmaps add up
to, mapped to Cranelift's functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fuzz.bridge.build import Progress, stderr_progress
from fuzz.bridge.cache import LIBRARY, Entry, read_entry
from fuzz.coverage import build, preload, symbols
from fuzz.coverage.counters import Bitmap, CoverageError, bitmap_files, merged, read_bitmap
from fuzz.coverage.live import BITMAPS, CORPUS
from fuzz.coverage.report import Report, analyse

REPLAY = "coverage-replay"

_PREFLIGHT = (
    "import sys\n"
    "from fuzz import _cranelift\n"
    "from fuzz.coverage.live import check_loaded, entry_path\n"
    "check_loaded(entry_path())\n"
    "print(_cranelift.version())\n"
)


def instrumented(trace_compares: bool, progress: Progress = stderr_progress) -> Entry:
    """The instrumented twin of the bridge in use, built when missing, and
    checked to load as `fuzz._cranelift` under the coverage environment.
    Raises BridgeError, PreloadError or CoverageError (one line each)."""
    entry = build.ensure(build.wanted(trace_compares), progress)
    preflight(entry)
    return entry


def preflight(entry: Entry) -> str:
    """Start a Python the way a worker starts and load the bridge in it."""
    env = {**os.environ, **preload.environment(entry.path, entry.version)}
    done = subprocess.run(
        [sys.executable, "-c", _PREFLIGHT], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CoverageError(f"the instrumented bridge {entry.path} does not load: {last}")
    return done.stdout.strip()


def campaign_entry(workdir: Path) -> Entry | None:
    """The instrumented bridge a campaign directory's bitmaps were made with
    (None when it ran without coverage)."""
    files = bitmap_files(workdir / BITMAPS)
    if not files and not (workdir / CORPUS).is_dir():
        return None
    key = read_bitmap(files[-1]).bridge if files else "default-edges"
    return read_entry(build.coverage_root() / key)


def table_for(bitmap: Bitmap) -> symbols.FunctionTable:
    path = build.coverage_root() / bitmap.bridge / build.FUNCTIONS
    if not path.is_file():
        raise CoverageError(
            f"no function table for bridge {bitmap.bridge} at {path} (was it rebuilt or removed?)"
        )
    return symbols.load(path)


def report_for(directory: Path) -> Report | None:
    """The coverage a directory of bitmaps adds up to (None for no bitmaps)."""
    bitmap = merged(bitmap_files(directory))
    if bitmap is None:
        return None
    return analyse(table_for(bitmap), bitmap)


def library_of(entry: Entry) -> Path:
    return entry.path / LIBRARY


def record_summary(directory: Path, report: Report) -> None:
    """`summary.json` beside the bitmaps: the figures, for scripts."""
    data = {
        "bridge": report.bridge,
        "counters": report.counters,
        "reached": report.reached,
        "cranelift": vars(report.cranelift),
        "backends": {k: vars(v) for k, v in report.backends.items()},
        "call_lowering": {k: vars(v) for k, v in report.call_lowering.items()},
    }
    (directory / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
