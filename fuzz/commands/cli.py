"""The `callfuzz` command line: one click group holding every command
(click for parsing, rich for tables). Each command lives in its own module,
imported when it is run: the global `--cranelift` option chooses the bridge
before any command's module loads `fuzz._cranelift`."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import click

from fuzz.bridge.load import activate
from fuzz.bridge.spec import BridgeError
from fuzz.commands.common import fail

# command name -> module defining it (the attribute has the command's name)
COMMANDS = {
    "run": "fuzz.commands.run",
    "gen": "fuzz.commands.gen",
    "bench": "fuzz.commands.bench",
    "fuzz": "fuzz.commands.fuzz",
    "reduce": "fuzz.commands.reduce",
    "triage": "fuzz.commands.triage",
    "cranelift": "fuzz.commands.cranelift",
    "coverage": "fuzz.commands.coverage",
    "bisect": "fuzz.commands.bisect",
}


class Commands(click.Group):
    """A group whose commands are imported when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command = getattr(importlib.import_module(COMMANDS[cmd_name]), cmd_name)
        assert isinstance(command, click.Command)
        return command


def _choose_cranelift(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if ctx.resilient_parsing:
        return
    try:
        activate(value)
    except BridgeError as err:
        fail(str(err))


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from fuzz.bridge.load import under_test

    click.echo(
        f"callfuzz {importlib.metadata.version('callfuzz')} (cranelift {under_test().describe()})"
    )
    ctx.exit()


@click.group(cls=Commands)
@click.option(
    "--cranelift",
    metavar="VERSION|PATH",
    is_eager=True,
    expose_value=False,
    callback=_choose_cranelift,
    help="The Cranelift under test: a release (0.131: its newest; 0.128.4) or a "
    "wasmtime checkout, built once into the bridge cache. Default: "
    "$CALLFUZZ_CRANELIFT, else the bridge pip installed.",
)
@click.option(
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_print_version,
    help="Show the version (and the Cranelift under test) and exit.",
)
def cli() -> None:
    """Differential fuzzing of Cranelift's call lowering on four emulated backends."""


def main() -> None:
    """Entry point: bad input anywhere is one line on stderr and exit 2."""
    try:
        cli()
    except Exception as err:
        # BadInput lives with the filetest reader, which loads the bridge:
        # it is only looked up once something raised (and so loaded it)
        filetest = sys.modules.get("fuzz.pipeline.filetest")
        if filetest is not None and isinstance(err, filetest.BadInput):
            fail(str(err))
        raise


if __name__ == "__main__":
    main()
