"""In a campaign worker started with the coverage environment
(`fuzz.coverage.preload`): the recorder of the instrumented bridge's
counters, the libFuzzer corpus directory and options. Bitmaps go to
`WORKDIR/coverage/`, libFuzzer's corpus to `WORKDIR/libfuzzer/` (replayed by
libFuzzer when a resumed campaign's workers start), its messages to
`WORKDIR/libfuzzer-logs/`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fuzz.bridge.cache import LIBRARY
from fuzz.coverage.counters import Counters, CoverageError, Recorder, worker_file
from fuzz.coverage.preload import ENV_COVERAGE, RUNTIME

BITMAPS = "coverage"
CORPUS = "libfuzzer"
MODULE = "fuzz._cranelift"


def entry_path() -> Path | None:
    """The instrumented entry this process was started to load, if any."""
    value = os.environ.get(ENV_COVERAGE, "").strip()
    return Path(value) if value else None


def loaded_library() -> Path:
    module = sys.modules.get(MODULE)
    file = getattr(module, "__file__", None)
    if not file:
        raise CoverageError("fuzz._cranelift is not loaded")
    return Path(file).resolve()


def check_loaded(entry: Path) -> Path:
    """The instrumented library, after checking it is the one loaded."""
    library = (entry / LIBRARY).resolve()
    loaded = loaded_library()
    if loaded != library:
        raise CoverageError(f"the worker loaded {loaded}, not the instrumented bridge {library}")
    return library


def recorder(workdir: Path) -> Recorder | None:
    """The recorder of this worker (None without coverage). It takes the
    counters as they are at once: what the corpus replay reached."""
    entry = entry_path()
    if entry is None:
        return None
    library = check_loaded(entry)
    # processes this worker starts from now on (qemu-user) need no libFuzzer
    kept = [p for p in os.environ.get("LD_PRELOAD", "").split() if not p.endswith(RUNTIME)]
    os.environ["LD_PRELOAD"] = " ".join(kept)
    found = Recorder(Counters(library), entry.name, worker_file(workdir / BITMAPS))
    found.take()
    found.save()
    return found


def log_to_file(workdir: Path) -> Path:
    """libFuzzer reports every new edge on stderr, too often for the
    campaign's terminal with Cranelift's edges: this worker's stderr goes to
    `WORKDIR/libfuzzer-logs/worker-PID.log` (crash reports included)."""
    logs = workdir / "libfuzzer-logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"worker-{os.getpid()}.log"
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return path


def libfuzzer_args(workdir: Path) -> list[str]:
    """Where libFuzzer keeps its corpus (read at start: a resumed campaign
    replays it) and writes crash artifacts (not the current directory), and
    `-len_control=0`: inputs may be long from the start (past its end the
    generator makes every choice the smallest, so libFuzzer's usual slow
    growth of input lengths keeps cases tiny; measured: 13.0k Cranelift edges
    in 2 minutes with it, 11.4k without, where one minute had reached).
    Signals are left alone (`-handle_*=0`): by default libFuzzer turns a
    worker's abort or segfault into exit 77 and a crash file, where the
    campaign records the signal like any engine's, and it makes Ctrl-C kill
    a worker, which is to finish its case and stop when the parent says so.
    `CALLFUZZ_LIBFUZZER_FLAGS` adds flags of one's own (they win)."""
    corpus = workdir / CORPUS
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts = workdir / "libfuzzer-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    extra = os.environ.get("CALLFUZZ_LIBFUZZER_FLAGS", "").split()
    signals = [f"-handle_{name}=0" for name in ("segv", "bus", "abrt", "ill", "fpe", "int", "term")]
    return ["-len_control=0", *signals, *extra, f"-artifact_prefix={artifacts}/", str(corpus)]
