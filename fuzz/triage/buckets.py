"""Bucket keys: one bug, one bucket.

A key is built only from what stays the same when the same bug is reached
from different random cases, and differs between bugs:

- the target *name* (not its ISA flags: one bug shows under many flag sets;
  the flags are kept with each finding),
- the verdict,
- and the bug's own fingerprint:
  - compile panic: Cranelift's panic location (file:line, column dropped);
  - compile error / interpreter failure: the message with numbers, value and
    function names masked;
  - crash: the fault (e.g. "illegal instruction: RVV instruction although
    has_v is off", "unmapped read") with addresses masked;
  - trap mismatch: expected and actual trap codes;
  - wrong result: which result positions differ and their types. Results
    carry no trace of the call that broke them, and a generated case's
    checksums differ whatever the cause, so two wrong-result bugs on one
    target can share a bucket until their reproducers are reduced; the
    conventions and call forms the case uses are kept in the details
    (`call_shape`) to tell them apart by eye. Keying on them would split one
    bug into a bucket per random case.
  - hard crash / hang of a worker: the exit signal or "hang".
  - debug info changes code: what changed (code, relocations, traps, call
    sites) or the debug compile's error, masked.

Everything random (values, addresses, value numbers, names) is masked out.

A campaign files a finding that the registry of known findings matches
(`fuzz.triage.known`) under this key plus `|known:ID`: the known part of a
bucket is split from the rest, so a known bucket never takes in a finding
that does not match its entry (a wrong result above all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fuzz.pipeline.filetest import FileTest
from fuzz.pipeline.oracle import INTERPRETER, Outcome, Verdict
from fuzz.pipeline.runner import RunResult
from fuzz.triage.records import FindingDetails, OutcomeRecord
from fuzz.values import NanPolicy, format_value

_HEX = re.compile(r"0x[0-9a-fA-F_]+")
_NUM = re.compile(r"\b\d+\b")
_NAMES = re.compile(r"\b(v|fn|sig|ss|block|inst)\d+\b|%\w+")


def mask(text: str) -> str:
    text = _HEX.sub("0x_", text)
    text = _NAMES.sub(lambda m: (m.group(1) or "%") + "_", text)
    return _NUM.sub("N", text).strip()


# `/root/.cargo/registry/src/index.crates.io-.../cranelift-codegen-0.135.8/src/x.rs`
# and `.../target/release/build/cranelift-codegen-fc31da3c/out/isle_riscv64.rs`:
# the crate's own path is what stays the same on every machine and build.
_CRATE_DIR = re.compile(r"^.*?/(cranelift-[a-z-]*[a-z])-[0-9a-f][0-9a-f.]*/")
# A wasmtime checkout's crates (path dependencies): `/anywhere/wasmtime/
# cranelift/codegen/src/x.rs`, or `cranelift/codegen/...` relative to it.
_CHECKOUT_DIR = re.compile(r"^(?:.*/)?cranelift/([a-z][a-z0-9-]*)/(?=src/)")


def panic_location(detail: str) -> str:
    """`message at /.../cranelift-codegen-0.135.8/src/x.rs:900:13` (a
    release) or `at /home/me/wasmtime/cranelift/codegen/src/x.rs:900:13` (a
    checkout) -> `cranelift-codegen/src/x.rs:900`: the same on every machine."""
    _, _, where = detail.rpartition(" at ")
    if not where:
        return mask(detail)
    where = re.sub(r":\d+$", "", where.strip())
    return _CHECKOUT_DIR.sub(r"cranelift-\1/", _CRATE_DIR.sub(r"\1/", where))


@dataclass(frozen=True)
class Bucket:
    key: str
    title: str


def call_shape(ft: FileTest) -> str:
    """The conventions and call forms a module uses, sorted: part of a
    wrong-result key, since results carry no trace of the call that broke them."""
    forms = set()
    for function in ft.functions.values():
        for site in function["call_sites"]:
            forms.add(f"{site['signature']['call_conv']}:{site['opcode']}")
    return ",".join(sorted(forms)) or "no calls"


def bucket_for(
    ft: FileTest, label: str, result: RunResult, attribution: str | None = None
) -> Bucket:
    """The bucket of a finding; `attribution` is what a wrong result depends
    on (fuzz.triage.attribution), which keys it instead of its positions."""
    verdict = result.judgement.verdicts[label]
    target = label.split()[0]
    outcome = result.outcomes[label]
    head = f"{target}|{verdict.value}"
    if verdict is Verdict.ABI_VIOLATION:
        # the callee's convention, the kind and the register class, not the
        # register or the call edge: one bug breaks the same contract from
        # many random cases, and one convention's bug is not another's
        first = outcome.violations[0]
        cc = first.cc or "?"
        what = f"{cc}|{first.kind}|{first.reg_class}"
        return Bucket(
            f"{head}|{what}",
            f"{target}: abi violation ({cc}): {first.kind} ({first.reg_class})",
        )
    if verdict is Verdict.C_ABI_MISMATCH and outcome.c_abi:
        # the convention, the direction and the kind of value misplaced: one
        # placement rule broken, whatever the random signature around it
        misplaced = outcome.c_abi[0]
        what = f"{misplaced.cc}|{misplaced.direction}|{misplaced.position_class}"
        return Bucket(
            f"{head}|{what}",
            f"{target}: c abi mismatch ({misplaced.cc}): {misplaced.direction}: "
            f"{misplaced.position_class}",
        )
    if verdict is Verdict.EMULATOR_DISAGREEMENT:
        # "unicorn: wrong result: ...; qemu-user 7.2: ...": what unicorn claimed
        claimed = outcome.detail.split(": ")[1] if outcome.detail.count(": ") > 1 else "?"
        return Bucket(
            f"{head}|unicorn {claimed}",
            f"{target}: emulator disagreement (unicorn: {claimed}, qemu-user agrees)",
        )
    if verdict is Verdict.COMPILE_PANIC:
        where = panic_location(outcome.detail)
        message = outcome.detail.rpartition(" at ")[0] or outcome.detail
        return Bucket(f"{head}|{where}", f"{target}: compile panic: {message[:80]} ({where})")
    if verdict is Verdict.DEBUG_INFO_CHANGES_CODE:
        # what changed (code, relocations, traps, call sites), or the debug
        # compile's own error masked: not the function or the byte offset
        what, _, how = outcome.detail.partition(": ")
        what = f"fails: {mask(how)}" if what == "the debug compile fails" else what
        return Bucket(
            f"{head}|{what}", f"{target}: debug info changes code: {outcome.detail[:100]}"
        )
    if verdict in (Verdict.COMPILE_ERROR, Verdict.INTERP_FAILURE, Verdict.CRASH):
        what = mask(outcome.detail)
        return Bucket(f"{head}|{what}", f"{target}: {verdict.value}: {outcome.detail[:100]}")
    if verdict in (Verdict.UNEXPECTED_TRAP, Verdict.MISSING_TRAP):
        ref = result.outcomes.get(INTERPRETER)
        expected = ref.detail if ref is not None else "?"
        what = f"expected {expected or 'return'}, got {outcome.detail or 'return'}"
        return Bucket(f"{head}|{what}", f"{target}: {verdict.value}: {what}")
    if verdict is Verdict.WRONG_RESULT and attribution:
        return Bucket(f"{head}|{attribution}", f"{target}: wrong result from its {attribution}")
    if verdict is Verdict.WRONG_RESULT:
        positions = differing_positions(result, label)
        where = ",".join(f"{i}:{ty}" for i, ty in positions) or "arity"
        return Bucket(f"{head}|{where}", f"{target}: wrong result at {where}")
    return Bucket(f"{head}|{mask(outcome.detail)}", f"{target}: {verdict.value}")


def worker_death_bucket(target: str, kind: str, how: str) -> Bucket:
    """A worker that died (`hard crash`, with its signal or exit code) or hung."""
    return Bucket(f"{target}|{kind}|{how}", f"{target}: {kind} of the worker ({how})")


def differing_positions(result: RunResult, label: str) -> list[tuple[int, str]]:
    ref = result.outcomes.get(INTERPRETER)
    got = result.outcomes[label]
    if ref is None or len(ref.values) != len(got.values):
        return []
    return [
        (i, a.ty)
        for i, (a, b) in enumerate(zip(ref.values, got.values, strict=True))
        if not a.same_as(b, NanPolicy.ANY)
    ]


def details(ft: FileTest, result: RunResult, label: str) -> FindingDetails:
    """What a reviewer needs: the run, every executor's outcome, the values
    that differ (expected and actual), trap codes, panic, faulting pc."""
    ref = result.outcomes.get(INTERPRETER)
    got = result.outcomes[label]
    out: FindingDetails = {
        "run": result.command.text,
        "outcomes": {name: _outcome_json(o) for name, o in result.outcomes.items()},
        "verdicts": {name: v.value for name, v in result.judgement.verdicts.items()},
        "blame": result.judgement.blame,
        "call_shape": call_shape(ft),
    }
    if ref is not None and got.values and len(ref.values) == len(got.values):
        out["differences"] = [
            {
                "index": i,
                "type": ty,
                "expected": format_value(ref.values[i]),
                "actual": format_value(got.values[i]),
            }
            for i, ty in differing_positions(result, label)
        ]
    if got.pc is not None:
        out["pc"] = got.pc
    if got.c_abi:
        out["c_abi"] = [
            {
                "direction": m.direction,
                "convention": m.cc,
                "position": m.position,
                "index": m.index,
                "c_type": m.ctype,
                "expected": m.expected.hex(" "),
                "actual": m.actual.hex(" "),
                "source": m.source,
            }
            for m in got.c_abi
        ]
    if got.violations:
        out["violations"] = [
            {
                "kind": v.kind,
                "edge": v.edge,
                "where": v.where,
                "class": v.reg_class,
                "expected": f"{v.expected:#x}",
                "actual": f"{v.actual:#x}",
            }
            for v in got.violations
        ]
    if result.judgement.verdicts[label] is Verdict.COMPILE_PANIC:
        message, _, where = got.detail.rpartition(" at ")
        out["panic"] = {"message": message, "location": where}
    return out


def _outcome_json(o: Outcome) -> OutcomeRecord:
    data: OutcomeRecord = {"kind": o.kind.value, "text": str(o)}
    if o.values:
        data["values"] = [format_value(v) for v in o.values]
    if o.detail:
        data["detail"] = o.detail
    if o.pc is not None:
        data["pc"] = o.pc
    return data
