"""A reduced case as a Cranelift filetest for an upstream report, written so
upstream's own `clif-util test FILE` reproduces the finding: `test compile`
for a finding made while compiling (it reproduces on any host), `test run` on
the finding's target otherwise, `test interpret` for an interpreter finding
or when the interpreter finishes and passes every run line; only the finding's target
lines, each after the `set` lines that applied to it in the case; the
functions, `; run:` lines whose expected values are the interpreter's (the
compiled targets' for the interpreter's own finding), and a short text saying
what to expect."""

from __future__ import annotations

import re

from fuzz import _cranelift
from fuzz.gen.expect import restated
from fuzz.pipeline import debuginfo
from fuzz.pipeline.cabi.check import C_FLAGS
from fuzz.pipeline.filetest import FileTest, RunCommand, flag_on, parse_text, settings
from fuzz.pipeline.link import NEAR
from fuzz.pipeline.oracle import (
    INTERPRETER,
    Kind,
    Outcome,
    Verdict,
    matches_expectation,
    same_outcome,
)
from fuzz.pipeline.runner import C_ABI_DIRECTIVE, DEFAULT_CC, Runner, default_lines, layout_of
from fuzz.targets import UnknownTarget, lookup
from fuzz.values import NanPolicy, Value, clif_literal

# findings made while compiling: `test compile` reproduces them on any host
_COMPILE_TIME = frozenset({Verdict.COMPILE_PANIC.value, Verdict.COMPILE_ERROR.value})
# seen by compiling twice, once with debug info: no upstream filetest does that
_DEBUG_INFO = Verdict.DEBUG_INFO_CHANGES_CODE.value


def filetest(clif: str, title: str, key: str, version: str) -> str:
    """The filetest for the bucket `key` (`target|verdict|...`) made from `clif`."""
    target, _, rest = key.partition("|")
    verdict = rest.partition("|")[0]
    # the interpreter's finding states what the compiled targets return: its
    # own values are the wrong ones
    interpreted = target == INTERPRETER
    body = _with_expectations(clif, interpreted)
    lines = [line for line in body.splitlines() if not _is_plain_comment(line)]
    start = next((i for i, line in enumerate(lines) if line.startswith("function")), len(lines))
    header = [line.strip() for line in lines[:start] if line.strip()]
    c_abi = verdict == Verdict.C_ABI_MISMATCH.value
    tests = _tests(target, verdict, interpreted or _interpreter_states_all(body))
    whose = "the compiled targets'" if interpreted else "the interpreter's"
    configs = _configs(header, target)
    if c_abi:
        # the settings the oracle compiles with (i128 on x86_64 needs them)
        configs = [f"set {flag}" for flag in C_FLAGS if f"set {flag}" not in configs] + configs
    notes = _LIBCALL_NOTE if "test run" in tests and _outline_probestack(configs) else []
    head = [
        f"; {title}",
        f"; callfuzz bucket key: {key}",
        f"; Cranelift {version}; reduced by callfuzz. Expected values are {whose}.",
        *(f"; {line}" for line in [*expectation(target, verdict), *notes]),
    ]
    if c_abi:
        head.append(C_ABI_DIRECTIVE)
    if debuginfo.wanted(clif):
        head.append(debuginfo.DEBUG_COMPILE_DIRECTIVE)
    layout = layout_of(clif)
    if layout != NEAR:
        # callfuzz replays the placement; upstream's JIT places functions itself
        head.insert(3, f"; callfuzz linked its functions apart ({layout} layout, not upstream's):")
        head.append(f"; callfuzz: layout {layout}")
    features = [line for line in header if line.startswith("feature")]
    body_lines = lines[start:]
    if tests == ["test compile"] and any(line.startswith("test run") for line in header):
        # the reader gives a function without a convention the target's
        # default in `test run`, `fast` in `test compile`: keep the one found
        body_lines = [_with_convention(line) for line in body_lines]
    return "\n".join([*head, *tests, *configs, *features, "", *body_lines]) + "\n"


# a function header or a signature declaration, and what ends its signature
_SIGNATURE_LINE = re.compile(r"^(\s*(?:function %\S+|sig\d+ = ))(\(.*\)(?:\s*->[^{]*)?)(\s*\{?)$")


def _with_convention(line: str) -> str:
    """`line` with the default convention written out where its signature
    names none (the last word of a signature is a type, an extension or a
    purpose otherwise)."""
    m = _SIGNATURE_LINE.match(line)
    if m is None:
        return line
    signature = m.group(2).rstrip()
    last = signature.rsplit(None, 1)[-1].rstrip(")")
    if signature.endswith(")") or last in _NOT_A_CONVENTION or _TYPE_WORD.fullmatch(last):
        brace = " {" if m.group(3).strip() else ""
        return f"{m.group(1)}{signature} {DEFAULT_CC}{brace}"
    return line


_NOT_A_CONVENTION = frozenset({"uext", "sext", "sret"})
_TYPE_WORD = re.compile(r"[if]\d+(x\d+)?")


def target_configs(clif: str, target: str) -> list[str]:
    """The `set` and `target` lines a filetest of `target`'s finding keeps."""
    lines = clif.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("function")), len(lines))
    header = [line.strip() for line in lines[:start] if line.strip() and not line.startswith(";")]
    return _configs(header, target)


def expectation(target: str, verdict: str) -> list[str]:
    """What `clif-util test FILE` does with the export, in a few lines."""
    if verdict in _COMPILE_TIME:
        what = "panics" if verdict == Verdict.COMPILE_PANIC.value else "fails with an error"
        return [f"Expect: `clif-util test FILE` {what} compiling for {target}, on any host."]
    if verdict == _DEBUG_INFO:
        return [
            "Expect: `clif-util test FILE` passes: no filetest compiles with value labels.",
            "`callfuzz run FILE` compiles it again with every value labelled and VCode",
            f"printed (`Context::set_disasm`) and shows the {target} code that changes.",
        ]
    if target == INTERPRETER:
        return [
            "Expect: `clif-util test FILE` fails in `test interpret`, on any host:",
            "the interpreter's result differs from the run line's (or it panics on",
            "a trap the run line does not expect).",
        ]
    if verdict == Verdict.C_ABI_MISMATCH.value:
        return [
            "Expect: `clif-util test FILE` passes: upstream does not compare Cranelift with C.",
            "`callfuzz run FILE` reports the mismatch; the `.c` and `.cabi.clif` files next to",
            "it hold both sides, with the commands that show where each puts every value on",
            f"{target}.",
        ]
    if verdict == Verdict.ABI_VIOLATION.value:
        return [
            "Expect: `clif-util test FILE` passes: upstream's `test run` does not check the",
            f"call contract; `clif-util compile -D FILE` shows the {target} code breaking it.",
        ]
    where = (
        "on an x86_64 host"
        if target == "x86_64"
        else f"run on {target} (real hardware, or QEMU user emulation); an x86_64 host skips it"
    )
    if verdict in (Verdict.HARD_CRASH.value, Verdict.HANG.value):
        return [f"Expect: `clif-util test FILE` dies or hangs, as callfuzz's worker did, {where}."]
    return [f"Expect: `clif-util test FILE` fails a run line ({verdict}) {where}."]


# upstream's `test run` links only the libcalls its function_runner.rs names
_LIBCALL_NOTE = [
    "Note: upstream's `test run` has no `__cranelift_probestack` to link: a function",
    "whose frame needs a probe panics there with `unknown libcall`; with",
    "`probestack_strategy=inline` it runs, if the finding does not need the outline probe.",
]


def _outline_probestack(configs: list[str]) -> bool:
    """Whether the `set` lines enable stack probes called out of line (the
    default strategy), read as upstream reads them."""
    words = [word for line in configs if line.startswith("set") for word in line.split()[1:]]
    return (
        flag_on(words, "enable_probestack")
        and settings(words).get("probestack_strategy", "outline") == "outline"
    )


def _tests(target: str, verdict: str, interpret: bool) -> list[str]:
    # (a C-ABI finding stays a `test run` file: the reader gives a function
    # without a convention the target's default there, `fast` elsewhere)
    if verdict in _COMPILE_TIME or verdict == _DEBUG_INFO:
        return ["test compile"]
    if target == INTERPRETER:
        return ["test interpret"]
    return ["test interpret", "test run"] if interpret else ["test run"]


def _interpreter_states_all(text: str) -> bool:
    """Whether upstream's `test interpret` passes the file, so a run-time
    finding fails in `test run` and nowhere first: the interpreter finishes
    every run line and agrees with each. It panics on a `print:` line it
    cannot finish, and a `run:` line the case stated may be one it disagrees
    with (its own finding, or a trap it raises)."""
    try:
        ft = parse_text(text)
    except Exception:  # noqa: BLE001 - no verdict on a file callfuzz cannot read
        return False
    runner = Runner()
    for run in ft.runs:
        if run.compare is None:
            return False
        outcome = runner.interpret(ft, run)
        # upstream compares bit for bit
        if matches_expectation(outcome, run.compare, run.expected, NanPolicy.EXACT) is not True:
            return False
    return True


def _with_expectations(text: str, targets: bool) -> str:
    """The case with each `print:` line whose values can be told stated as a
    `run:` line: the interpreter's values, or with `targets` the values the
    case's compiled targets all return (what the interpreter should have
    returned). A line without such values, or with values of other types than
    the function returns (the interpreter's one-lane `bitcast`), stays a
    `print:` line: upstream would not parse it."""
    try:
        ft = parse_text(text)
        runner = Runner()
        configs = runner.prepare_file(ft, default_lines(ft, None)) if targets else []
    except Exception:  # noqa: BLE001 - the case as it is: nothing to state
        return text
    stated: dict[str, str] = {}
    for run in ft.runs:
        if run.compare is not None or not run.text.startswith("print:"):
            continue
        if targets:
            value = _agreed([runner.execute(ft, config, run) for config in configs])
        else:
            outcome = runner.interpret(ft, run)
            value = outcome.values if outcome.kind is Kind.RETURN else None
        expected = _literals(ft, run, value) if value else None
        if expected is not None:
            stated[run.text] = f"run: {run.text.removeprefix('print:').strip()} == {expected}"
    return restated(text, stated)


def _literals(ft: FileTest, run: RunCommand, values: tuple[Value, ...]) -> str | None:
    """A run line's expected values for `run`'s function, or None."""
    returns = [ty for ty, _ext, _purpose in ft.functions[run.func]["signature"]["returns"]]
    if [v.ty for v in values] != returns:
        return None
    written = [_literal(v) for v in values]
    if any(w is None for w in written):
        return None
    return written[0] if len(written) == 1 else "[" + ", ".join(map(str, written)) + "]"


def _literal(v: Value) -> str | None:
    """A vector as the hexadecimal immediate upstream reads for its bits
    (lane 0 lowest), any other value as callfuzz writes it."""
    if v.info.is_vector:
        return f"0x{v.bits:0{v.info.bytes * 2}x}"
    return clif_literal(v)


def _agreed(outcomes: list[Outcome]) -> tuple[Value, ...] | None:
    """The values every target returned, bit for bit, as upstream compares."""
    if not outcomes or any(o.kind is not Kind.RETURN or not o.values for o in outcomes):
        return None
    first = outcomes[0]
    if all(same_outcome(first, o, NanPolicy.EXACT) for o in outcomes[1:]):
        return first.values
    return None


def _name(words: list[str]) -> str:
    try:
        return lookup(words[1]).name if len(words) > 1 else ""
    except UnknownTarget:
        return ""


def _configs(header: list[str], target: str) -> list[str]:
    """The case's `set` and `target` lines in their order, keeping only the
    finding's target lines (the interpreter's finding keeps them all: they
    only give flags), so each kept line still has the `set` lines that
    applied to it; `set` lines after the last kept target are dropped (upstream
    rejects a dangling `set`). Without a line for the target, one is added."""
    configs = [line for line in header if line.split()[0] in ("set", "target")]
    keep = [
        line
        for line in configs
        if line.startswith("set") or target == INTERPRETER or _name(line.split()) == target
    ]
    last = max((i for i, line in enumerate(keep) if line.startswith("target")), default=None)
    if last is not None:
        return keep[: last + 1]
    return keep if target == INTERPRETER else [*keep, f"target {target}"]


def _is_plain_comment(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(";") and not stripped[1:].strip().startswith(("run:", "print:"))


def run_lines_parsed(text: str) -> tuple[int, int]:
    """(`; run:` lines in the text, run commands cranelift-reader parsed)."""
    written = sum(1 for line in text.splitlines() if line.strip().startswith("; run:"))
    parsed = sum(
        1
        for f in _cranelift.parse(text).functions()
        for r in f["runs"]
        if r["text"].startswith("run:")
    )
    return written, parsed
