"""The environment an instrumented bridge needs: libFuzzer's runtime
preloaded (the module's `__sanitizer_cov_*` symbols resolve against it, and
libFuzzer then reads the module's counters) and the bridge loader pointed at
the instrumented cache entry.

`LD_PRELOAD` is read by the dynamic loader when a program starts, so it is
set in the environment a worker process is *started* with: campaign workers
are spawned (a fresh exec of Python that inherits `os.environ`), so setting
it in this process just before they start is enough, and `applied` puts the
environment back afterwards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from fuzz.bridge.load import ENV_CHOICE, ENV_PINNED

# Set in a worker's environment when it runs on an instrumented bridge: the
# cache entry's directory (the worker checks it loaded that one).
ENV_COVERAGE = "CALLFUZZ_COVERAGE"
RUNTIME = "ubsan_with_fuzzer.so"


class PreloadError(Exception):
    """libFuzzer's runtime cannot be found: one line."""


def runtime() -> Path:
    """atheris's libFuzzer (with UBSan's runtime), the library to preload."""
    try:
        import atheris
    except ImportError as err:
        raise PreloadError(f"atheris is not installed ({err}); pip install atheris") from None
    path = Path(atheris.path()) / RUNTIME
    if not path.is_file():
        raise PreloadError(f"atheris has no {RUNTIME} at {path} (atheris 2.3 or newer has it)")
    return path


def environment(entry_path: Path, version: str) -> dict[str, str]:
    """What a process needs in its environment to load the instrumented
    bridge at `entry_path` as `fuzz._cranelift`. The bridge loader only
    follows its pin when a Cranelift is chosen, so the choice is kept when
    there is one and otherwise set to the entry's version (it is not
    resolved again: the pin wins)."""
    preload = str(runtime())
    others = [p for p in os.environ.get("LD_PRELOAD", "").split() if p != preload]
    return {
        "LD_PRELOAD": " ".join([preload, *others]),
        ENV_PINNED: str(entry_path),
        ENV_CHOICE: os.environ.get(ENV_CHOICE, "").strip() or version,
        ENV_COVERAGE: str(entry_path),
    }


@contextlib.contextmanager
def applied(env: Mapping[str, str]) -> Iterator[None]:
    """`env` in `os.environ` for the duration (processes started meanwhile
    inherit it), the old values restored after."""
    old = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def runtime_loaded() -> bool:
    """libFuzzer's runtime is mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return RUNTIME in maps
