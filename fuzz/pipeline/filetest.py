"""Cranelift filetests: the header (`test`, `set`, `target` lines) read here,
the functions and `; run:` lines parsed by the real cranelift-reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fuzz import _cranelift
from fuzz.targets import Target, is_known, lookup
from fuzz.values import Value

if TYPE_CHECKING:
    from fuzz._cranelift import AbiParam, FunctionInfo, Module, Pair


class BadInput(Exception):
    """Input the user must fix: malformed CLIF, a verifier error, an unknown
    target or flag, a call-site/callee signature mismatch."""


@dataclass(frozen=True)
class TargetLine:
    """One `target` line: which of our targets, plus its ISA flag words."""

    target: Target
    isa_flags: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return " ".join((self.target.name, *self.isa_flags))


@dataclass(frozen=True)
class RunCommand:
    func: str  # the function the run line belongs to
    text: str
    args: tuple[Value, ...]
    compare: str | None  # "==", "!=" or None for `print:`
    expected: tuple[Value, ...] | None


@dataclass
class FileTest:
    text: str
    shared_flags: list[str]
    targets: list[TargetLine]
    skipped_targets: list[str]  # target lines for backends we cannot emulate (pulley)
    module: Module
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    runs: list[RunCommand] = field(default_factory=list)

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


def _parse_header(text: str) -> tuple[list[str], list[TargetLine], list[str]]:
    shared: list[str] = []
    targets: list[TargetLine] = []
    skipped: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word == "set":
            shared += rest.split()
        elif word == "target":
            words = rest.split()
            if not words:
                raise BadInput(f"line {number}: `target` needs a triple")
            if is_known(words[0]):
                targets.append(TargetLine(lookup(words[0]), tuple(words[1:])))
            else:
                skipped.append(rest.strip())
        elif word in ("test", "feature"):
            continue
        else:
            break
    return shared, targets, skipped


def _typed(pairs: list[Pair], params: list[AbiParam]) -> tuple[Value, ...]:
    """Values labelled with the signature's types (vectors cross the bridge as i8x16)."""
    if len(pairs) != len(params):
        return tuple(Value.from_bridge(p) for p in pairs)
    return tuple(
        Value.from_bridge(p, ty) for p, (ty, _ext, _purpose) in zip(pairs, params, strict=True)
    )


def parse_text(text: str) -> FileTest:
    shared, targets, skipped = _parse_header(text)
    try:
        module = _cranelift.parse(text)
        functions = {f["name"]: f for f in module.functions()}
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
    return FileTest(text, shared, targets, skipped, module, functions, runs)


def parse_file(path: str) -> FileTest:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read {path}: {err}") from None
    try:
        return parse_text(text)
    except BadInput as err:
        raise BadInput(f"{path}: {err}") from None
