"""What every command shares: the exit codes, the one-line error, the
console, and parsing of target, duration and target-list options."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console

from fuzz.pipeline.routing import ExecutorChoice
from fuzz.targets import TARGETS, UnknownTarget, lookup

if TYPE_CHECKING:
    # the filetest reader loads the bridge: imported where it is used, so the
    # command line can choose the bridge (`--cranelift`) after importing this
    from fuzz.pipeline.filetest import TargetLine
    from fuzz.triage.schema import Bucket
    from fuzz.triage.store import TriageDB

EXIT_AGREE, EXIT_DIVERGENCE, EXIT_BAD_INPUT = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])

# Wide enough for a night's log file when stdout is not a terminal.
console = Console(width=None if sys.stdout.isatty() else 160)


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr naming the problem, exit 2."""
    click.echo(f"callfuzz: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@contextmanager
def opened_db(db_url: str | None) -> Iterator[TriageDB]:
    """An existing triage database, closed after use; any database error is
    one line and exit 2."""
    from fuzz.triage.engine import DatabaseError
    from fuzz.triage.store import open_db

    try:
        db = open_db(db_url, create=False)
        try:
            yield db
        finally:
            db.close()
    except DatabaseError as err:
        fail(str(err))


def bucket_or_fail(db: TriageDB, bucket_id: int) -> Bucket:
    """Bucket `bucket_id`, or one line and exit 2 when there is none."""
    bucket = db.get_bucket(bucket_id)
    if bucket is None:
        fail(f"no bucket {bucket_id}")
    return bucket


def parse_target_option(spec: str) -> TargetLine:
    """`--target aarch64` or `--target "riscv64 has_c"`."""
    from fuzz.pipeline.filetest import TargetLine

    words = spec.split()
    if not words:
        fail("empty --target")
    try:
        return TargetLine(lookup(words[0]), tuple(words[1:]))
    except UnknownTarget as err:
        fail(str(err))


def target_name(text: str) -> str:
    try:
        return lookup(text).name
    except UnknownTarget as err:
        fail(str(err))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`8h`, `10m`, `90s`, `1h30m`, or plain seconds."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise click.BadParameter(f"not a duration: {text!r} (try 8h, 10m, 90s)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def parse_targets(specs: tuple[str, ...]) -> list[str]:
    """`-t x86_64,aarch64 -t s390x`: target names, all four when none."""
    names: list[str] = []
    for spec in specs:
        for word in spec.replace(",", " ").split():
            try:
                name = lookup(word).name
            except UnknownTarget as err:
                raise click.BadParameter(str(err)) from None
            if name not in names:
                names.append(name)
    return names or list(TARGETS)


def executor_option(command: F) -> F:
    """`--executor auto|unicorn|qemu|both` (fuzz.pipeline.routing)."""
    return click.option(
        "--executor",
        type=click.Choice([c.value for c in ExecutorChoice]),
        default=ExecutorChoice.AUTO.value,
        show_default=True,
        help="auto: unicorn, qemu-user where unicorn cannot run a line and to referee "
        "unicorn's divergences; unicorn or qemu: that one only; both: qemu-user "
        "also reruns every unicorn run.",
    )(command)
