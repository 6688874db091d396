"""What a wrong result depends on: the single change to its case that makes
it disappear. A wrong result's own key only says which result positions
differ (a generated case returns two checksums: every miscompilation looks
alike), so one bucket took in every bug of a target. Each candidate edit
below is applied to the case on its own and the run is judged again, on the
same target line, against a reference the interpreter recomputes for the
edited case; the first edit after which the divergence is gone names the
bucket (`aarch64|wrong result|convention apple_aarch64`). A case no edit
clears keeps the key by positions. A variant is judged by its values: one
that returns the right ones but breaks the call contract (another finding,
which campaigns catch on their own) has cleared the wrong result.

Edits, in order (each a plain function from the case's text to a variant,
or None when it does not apply):
- `convention C`: every use of a non-default calling convention C becomes
  the target's default (caller and callee change together, so only a bug in
  C's lowering goes away);
- `without FLAG`: the target line gets an ISA flag that changes how a type
  is lowered (`Target.lowering_flags`: riscv64 `has_zfhmin`, f16 in float
  registers), the text unchanged; tried before tail calls, which a lowering
  bug in their argument stores also depends on;
- `tail calls`: every `return_call`/`return_call_indirect` becomes a plain
  call followed by a return of its results;
- `struct arguments`: every `sarg(N)` parameter becomes a plain pointer (the
  callee reads the caller's bytes in place instead of a copy the call makes
  with the `Memcpy` libcall), so only a bug in that copy goes away: x86_64
  0.105-0.106 calls the libcall in a `tail` callee's convention, whose
  argument registers were not System V's. Tried last, after the edits that
  name a convention or a call form.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

from fuzz import _cranelift
from fuzz.pipeline.filetest import BadInput, FileTest, TargetLine, parse_text
from fuzz.pipeline.oracle import INTERPRETER, Verdict, is_finding, judge
from fuzz.pipeline.runner import DEFAULT_CC, Runner, RunResult
from fuzz.triage.buckets import Bucket, bucket_for

# conventions whose lowering is the target's default one: swapping them
# changes nothing a bug could depend on
_NOT_SWAPPED = frozenset({DEFAULT_CC, "fast", "cold", "probestack"})
# `return_call fn0(...)`, `return_call_indirect.i64 sig1, v5(...)`: the
# callee (or the signature) names the declaration that gives the results
_TAIL = re.compile(
    r"^(?P<indent>[ \t]*)return_call(?P<indirect>_indirect)?(?:\.\w+)?[ \t]+"
    r"(?P<callee>\w+)(?P<rest>.*)$",
    re.MULTILINE,
)
# the functions of a module, each with its own declarations (split before
# each `function` line, keeping it)
_FUNCTION = re.compile(r"(?=^function )", re.MULTILINE)
_DECL = re.compile(r"^\s*(?P<name>(?:fn|sig)\d+)\s*=\s*(?P<decl>.*)$", re.MULTILINE)
# the purpose of a struct-argument parameter: `i64 sarg(16)`
_SARG = re.compile(r"[ \t]+sarg\(\d+\)")


@dataclass(frozen=True)
class Edit:
    name: str  # what the bucket key says the wrong result depends on
    text: str  # the case with that one change
    isa_flags: tuple[str, ...] = ()  # added to the target line run


def edits(ft: FileTest, line: TargetLine | None = None) -> Iterator[Edit]:
    """The candidate single changes of a case (on target line `line`, for
    the edits of its ISA flags), in the order they are tried."""
    text = ft.text
    used = {info["signature"]["call_conv"] for info in ft.functions.values()}
    for cc in sorted(used - _NOT_SWAPPED):
        yield Edit(f"convention {cc}", re.sub(rf"(?<![%\w]){cc}\b", DEFAULT_CC, text))
    if line is not None:
        for flag in line.target.lowering_flags:
            if flag not in line.isa_flags:
                yield Edit(f"without {flag}", text, (flag,))
    plain = _plain_tail_calls(text)
    if plain is not None:
        yield Edit("tail calls", plain)
    by_pointer, count = _SARG.subn("", text)
    if count:
        yield Edit("struct arguments", by_pointer)


def _plain_tail_calls(text: str) -> str | None:
    """Every tail call as a call and a return of its results (the callee's
    declaration in the same function gives how many); None when there is
    none."""
    fresh = iter(range(90_000, 1_000_000))
    count = 0
    out = []
    for chunk in _FUNCTION.split(text):
        returns = _returns(chunk)

        def plain(m: re.Match[str], returns: dict[str, int] = returns) -> str:
            values = ", ".join(f"v{next(fresh)}" for _ in range(returns.get(m["callee"], 0)))
            opcode = "call_indirect" if m["indirect"] else "call"
            call = f"{opcode} {m['callee']}{m['rest']}"
            head = f"{m['indent']}{values} = {call}" if values else f"{m['indent']}{call}"
            return f"{head}\n{m['indent']}return {values}".rstrip()

        chunk, n = _TAIL.subn(plain, chunk)
        count += n
        out.append(chunk)
    return "".join(out) if count else None


def _returns(function: str) -> dict[str, int]:
    """fnN/sigN -> how many values its signature returns, in one function
    (`fn0 = %g sig1` takes sig1's)."""
    decls = {m["name"]: m["decl"].strip() for m in _DECL.finditer(function)}
    out = {}
    for name, decl in decls.items():
        named = decl.split()[-1] if "(" not in decl else ""
        out[name] = _return_count(decls.get(named, decl))
    return out


def _return_count(decl: str) -> int:
    """How many values a `fnN = ...`/`sigN = ...` declaration's signature returns."""
    if "->" not in decl:
        return 0
    after = decl.split("->", 1)[1]
    return len([part for part in after.split(",") if part.strip()])


def attribute(runner: Runner, ft: FileTest, line: TargetLine, run_text: str) -> str | None:
    """The first edit after which the run `run_text` no longer diverges on
    `line` (its interpreter-recomputed reference agreeing), or None."""
    for edit in edits(ft, line):
        variant = dataclasses.replace(line, isa_flags=line.isa_flags + edit.isa_flags)
        if not _still_diverges(runner, edit.text, variant, run_text):
            return edit.name
    return None


def _still_diverges(runner: Runner, text: str, line: TargetLine, run_text: str) -> bool:
    """Whether the edited case still diverges; a variant that does not
    parse, verify or compile tells nothing, so it counts as diverging."""
    try:
        ft = parse_text(text)
        results = runner.run_file(ft, [line])
    except (BadInput, _cranelift.CraneliftError):
        return True
    for result in results:
        if result.command.text != run_text:
            continue
        verdicts = result.judgement.verdicts
        if verdicts.get(INTERPRETER) not in (None, Verdict.AGREE):
            return True  # no trustworthy reference for the variant
        judgement = result.judgement
        if verdicts[line.label] is Verdict.ABI_VIOLATION:
            # a contract violation outranks the values; the variant may break
            # the contract in its own way (preserve_all made system_v exposes
            # riscv64's fs1 bug) with right values: judge those alone
            outcome = dataclasses.replace(result.outcomes[line.label], violations=())
            outcomes = {**result.outcomes, line.label: outcome}
            command = result.command
            judgement = judge(outcomes, command.compare, command.expected, runner.nan_policy)
        return is_finding(judgement.verdicts[line.label], line.label in judgement.blame)
    return True


def attributed_bucket(
    runner: Runner, ft: FileTest, line: TargetLine | None, label: str, result: RunResult
) -> Bucket:
    """The bucket of a finding, a wrong result's attributed by `attribute`."""
    verdict = result.judgement.verdicts[label]
    if verdict is not Verdict.WRONG_RESULT or line is None:
        return bucket_for(ft, label, result)
    # the variants run without the C-ABI oracle: only the run line matters
    c_abi, runner.c_abi = runner.c_abi, False
    try:
        cause = attribute(runner, ft, line, result.command.text)
    finally:
        runner.c_abi = c_abi
    return bucket_for(ft, label, result, cause)
