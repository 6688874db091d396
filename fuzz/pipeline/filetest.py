"""Cranelift filetests: the header (`test`, `set`, `target` lines) read here,
the functions and `; run:` lines parsed by the real cranelift-reader."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fuzz import _cranelift
from fuzz.pipeline.twin import interpretable
from fuzz.targets import Target, is_known, lookup
from fuzz.values import Value

if TYPE_CHECKING:
    from fuzz._cranelift import AbiParam, FunctionInfo, Module, Pair


class BadInput(Exception):
    """Input the user must fix: malformed CLIF, a verifier error, an unknown
    target or flag, a call-site/callee signature mismatch."""


class SkippedFile(BadInput):
    """A file upstream's reader skips with a warning (a target Cranelift does
    not support): nothing in it runs, and that is not the user's error. It is
    still `BadInput` to callers that only run their own cases."""


@dataclass(frozen=True)
class TargetLine:
    """One `target` line: which of our targets, plus its ISA flag words."""

    target: Target
    isa_flags: tuple[str, ...] = ()
    # the `set` words in effect for this line: upstream applies the `set`
    # lines above a `target` line to it; None: the file's (all of them)
    flags: tuple[str, ...] | None = None
    # tells apart lines of one target and ISA flags that differ in `set` flags
    tag: str = ""

    @property
    def label(self) -> str:
        base = " ".join((self.target.name, *self.isa_flags))
        return f"{base} [{self.tag}]" if self.tag else base


@dataclass(frozen=True)
class RunCommand:
    func: str  # the function the run line belongs to
    text: str
    args: tuple[Value, ...]
    compare: str | None  # "==", "!=" or None for `print:`
    expected: tuple[Value, ...] | None


@dataclass(frozen=True)
class Skipped:
    """A configuration of the file that does not run, and why."""

    line: str  # the target line's words, or the label
    reason: str


@dataclass
class FileTest:
    text: str
    shared_flags: list[str]  # every `set` word of the header, in order
    targets: list[TargetLine]  # the file's target lines callfuzz runs
    skipped: list[Skipped]  # the file's target lines it cannot run, with the reason
    module: Module
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    runs: list[RunCommand] = field(default_factory=list)
    tests: tuple[str, ...] = ()  # the `test` commands: "run", "interpret", ...
    named_targets: bool = False  # any `target` line, run or skipped
    # what the interpreter runs when it differs from `module`: the twin
    # with calls for `try_call`s (fuzz.pipeline.twin)
    twin: Module | None = None

    @property
    def interpreter_module(self) -> Module:
        return self.twin or self.module

    @property
    def interpreted(self) -> bool:
        """Whether the interpreter is an executor: upstream asks it for `test
        interpret` only, so a `test run` file's reference is its `; run:`
        expectations; a file with neither (callfuzz's own) asks everyone."""
        return "interpret" in self.tests or "run" not in self.tests

    @property
    def compiled(self) -> bool:
        """Whether a file without `target` lines runs on every target: not a
        `test interpret`-only file, which upstream never compiles."""
        return "run" in self.tests or "interpret" not in self.tests

    def reachable(self, entry: str) -> list[str]:
        """Functions a run of `entry` can reach through call sites (direct
        calls, and indirect ones fed by a `func_addr` in the same function),
        `entry` first."""
        seen = [entry] if entry in self.functions else []
        for name in seen:
            for site in self.functions[name]["call_sites"]:
                callee = site["callee"]
                if callee in self.functions and callee not in seen:
                    seen.append(callee)
        return seen


@dataclass
class _Header:
    tests: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # the `set` words so far
    targets: list[tuple[int, TargetLine]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    named_targets: bool = False


def _why_not(triple: str) -> str:
    arch = triple.split("-", 1)[0]
    if arch.startswith("pulley"):
        return "pulley bytecode: no executor for it here (upstream runs it on its interpreter)"
    return "no emulator for this target here"


def _parse_header(text: str) -> _Header:
    """The header as upstream's reader takes it: `set` lines accumulate, and
    each `target` line gets the ones above it."""
    head = _Header()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word == "test":
            head.tests += rest.split()[:1]
        elif word == "set":
            head.flags += rest.split()
        elif word == "target":
            words = rest.split()
            if not words:
                raise BadInput(f"line {number}: `target` needs a triple")
            head.named_targets = True
            if is_known(words[0]):
                line_ = TargetLine(lookup(words[0]), tuple(words[1:]), tuple(head.flags))
                head.targets.append((number, line_))
            else:
                head.skipped.append(Skipped(" ".join(words), _why_not(words[0])))
        elif word == "feature":
            continue
        else:
            break
    return head


def settings(words: Sequence[str]) -> dict[str, str]:
    """Shared-flag words (`set` lines, `--set`) as name -> value, as
    Cranelift reads them: the last word wins, a bare `name` is `name=true`.
    The one reading of flags: everything that asks a flag's value asks here."""
    out: dict[str, str] = {}
    for word in words:
        name, _, value = word.partition("=")
        out[name] = value or "true"
    return out


def flag_on(words: Sequence[str], name: str) -> bool:
    """Whether boolean shared flag `name` is on (`true`, `on`, `yes`, `1`)."""
    return settings(words).get(name, "false").lower() in ("true", "on", "yes", "1")


def _distinct(numbered: list[tuple[int, TargetLine]]) -> tuple[list[TargetLine], list[Skipped]]:
    """Lines of one target and ISA flags that differ in `set` flags are
    different configurations: each gets a tag naming the settings that differ.
    A line that repeats another exactly runs once."""
    groups: dict[str, list[tuple[int, TargetLine, dict[str, str]]]] = {}
    skipped: list[Skipped] = []
    for number, line in numbered:
        own = settings(line.flags or ())
        group = groups.setdefault(line.label, [])
        same = next((n for n, _line, s in group if s == own), None)
        if same is None:
            group.append((number, line, own))
        else:
            skipped.append(Skipped(line.label, f"the same configuration as line {same}"))
    lines: list[tuple[int, TargetLine]] = []
    for group in groups.values():
        names = sorted({name for _n, _line, s in group for name in s})
        differing = [k for k in names if len({s.get(k, "default") for _n, _l, s in group}) > 1]
        for number, line, own in group:
            tag = " ".join(f"{k}={own.get(k, 'default')}" for k in differing)
            lines.append((number, dataclasses.replace(line, tag=tag)))
    return [line for _number, line in sorted(lines, key=lambda pair: pair[0])], skipped


def _typed(pairs: list[Pair], params: list[AbiParam]) -> tuple[Value, ...]:
    """Values labelled with the signature's types (vectors cross the bridge as i8x16)."""
    if len(pairs) != len(params):
        return tuple(Value.from_bridge(p) for p in pairs)
    return tuple(
        Value.from_bridge(p, ty) for p, (ty, _ext, _purpose) in zip(pairs, params, strict=True)
    )


def parse_text(text: str) -> FileTest:
    head = _parse_header(text)
    try:
        module = _cranelift.parse(text)
        functions = {f["name"]: f for f in module.functions()}
    except _cranelift.ParseWarning as err:
        raise SkippedFile(f"skipped as upstream does: {err.args[0]}") from None
    except _cranelift.ParseError as err:
        raise BadInput(f"malformed CLIF: {err.args[0]}") from None
    except _cranelift.CraneliftError as err:
        raise BadInput(f"malformed CLIF: {err}") from None
    runs = [
        RunCommand(
            func=name,
            text=r["text"],
            args=_typed(r["args"], f["signature"]["params"]),
            compare=r["compare"],
            expected=None
            if r["expected"] is None
            else _typed(r["expected"], f["signature"]["returns"]),
        )
        for name, f in functions.items()
        for r in f["runs"]
    ]
    targets, repeats = _distinct(head.targets)
    return FileTest(
        text,
        head.flags,
        targets,
        head.skipped + repeats,
        module,
        functions,
        runs,
        tuple(head.tests),
        head.named_targets,
        _twin(text),
    )


def _twin(text: str) -> Module | None:
    """The interpreter's twin of a module with `try_call`s; None when it
    has none, or the twin does not parse (the interpreter then says the
    original is unsupported)."""
    twin = interpretable(text)
    if twin == text:
        return None
    try:
        return _cranelift.parse(twin)
    except _cranelift.CraneliftError:
        return None


def parse_file(path: str) -> FileTest:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read {path}: {err}") from None
    try:
        return parse_text(text)
    except BadInput as err:
        raise type(err)(f"{path}: {err}") from None  # a skipped file stays skipped
