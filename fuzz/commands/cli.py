"""The `callfuzz` command line: one click group holding every command
(click for parsing, rich for tables). Each command lives in its own module."""

from __future__ import annotations

import click

from fuzz import _cranelift
from fuzz.commands.bench import bench
from fuzz.commands.common import fail
from fuzz.commands.fuzz import fuzz
from fuzz.commands.gen import gen
from fuzz.commands.reduce import reduce
from fuzz.commands.run import run
from fuzz.commands.triage import triage
from fuzz.pipeline.filetest import BadInput


@click.group()
@click.version_option(
    message=f"callfuzz %(version)s (cranelift {_cranelift.version()})", package_name="callfuzz"
)
def cli() -> None:
    """Differential fuzzing of Cranelift's call lowering on four emulated backends."""


for command in (run, gen, bench, fuzz, reduce, triage):
    cli.add_command(command)


def main() -> None:
    """Entry point: bad input anywhere is one line on stderr and exit 2."""
    try:
        cli()
    except BadInput as err:
        fail(str(err))


if __name__ == "__main__":
    main()
