"""What each Cranelift release has: the settings, conventions, types and ISA
flags the generator uses that appeared after the oldest supported release
(fuzz.versions), each with the first release that has it. Everything not
in the table is in every supported release. The generator asks `for_version`
for a view of a target limited to what the Cranelift under test has.

A release newer than the newest callfuzz knows (fuzz.versions.NEWEST_KNOWN)
is assumed to have what the newest known has: every entry of the table."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fuzz.targets import Target
from fuzz.versions import NEWEST_KNOWN, Version, parse_version

__all__ = [
    "FEATURES",
    "Feature",
    "Version",
    "abi_for_version",
    "callee_saved",
    "for_version",
    "has",
    "known",
    "lacking",
    "parse_version",
    "used",
]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # setting, setting value, convention, type, isa flag, syntax, lowering, rule
    since: Version  # the first release that has it
    source: str  # how that was established
    # release ranges [first without it, first with it again) it was withdrawn in
    gaps: tuple[tuple[Version, Version], ...] = ()

    def in_release(self, version: Version) -> bool:
        return version >= self.since and not any(a <= version < b for a, b in self.gaps)

    def releases(self) -> str:
        """Which releases have it, as a reason says: `new in 0.115, not in
        0.120-0.123`."""
        out = f"new in {self.since[0]}.{self.since[1]}"
        for a, b in self.gaps:
            out += f", not in {a[0]}.{a[1]}-{b[0]}.{b[1] - 1}"
        return out


_MEASURED = "bridges built for 0.105.4, 0.115.1, 0.128.4, 0.131.3, 0.137.1 (issue 13)"

FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("f16", "type", (0, 110, 0), "cranelift-codegen 0.110: types::F16"),
        Feature("f128", "type", (0, 110, 0), "cranelift-codegen 0.110: types::F128"),
        Feature(
            "enable_multi_ret_implicit_sret",
            "setting",
            (0, 114, 0),
            "cranelift-codegen 0.114 settings; " + _MEASURED,
        ),
        Feature("regalloc_algorithm", "setting", (0, 115, 0), "0.115 settings; " + _MEASURED),
        # read from cranelift/codegen/meta/src/shared/settings.rs at each
        # wasmtime release tag (v28-v48); 0.121.2 measured: "invalid setting
        # value for 'regalloc_algorithm=single_pass', expected backtracking"
        Feature(
            "regalloc_algorithm=single_pass",
            "setting value",
            (0, 115, 0),
            "settings.rs of 0.115-0.119 and 0.124-0.135 list it, 0.120-0.123 do not",
            gaps=(((0, 120, 0), (0, 124, 0)),),
        ),
        Feature("preserve_all", "convention", (0, 128, 0), "0.128 CallConv; " + _MEASURED),
        Feature(
            "enable_compact_unwind_abi",
            "setting",
            (0, 133, 0),
            "cranelift-codegen-meta settings.rs of 0.133.3 has it, 0.132.3 does not",
        ),
        # Measured (absent in the first, present in the second; the releases
        # between were not built): the earliest release callfuzz knows has it.
        Feature(
            "slot_align",
            "syntax",
            (0, 115, 0),
            "`explicit_slot N, align = A`: not parsed by 0.105.4",
        ),
        Feature("winch", "convention", (0, 115, 0), "absent 0.105.4, present 0.115.1"),
        Feature(
            "s390x:tail",
            "convention",
            (0, 111, 0),
            "s390x panics on tail ('does not support the tail calling convention yet') in "
            "0.105.4-0.110.3, compiles it in 0.111.8 (each cached release run)",
        ),
        Feature("has_cmpxchg16b", "isa flag", (0, 115, 0), "absent 0.105.4, present 0.115.1"),
        Feature("has_fp16", "isa flag", (0, 115, 0), "absent 0.105.4, present 0.115.1"),
        Feature("has_zfh", "isa flag", (0, 115, 0), "absent 0.105.4, present 0.115.1"),
        Feature("has_zfhmin", "isa flag", (0, 128, 0), "absent 0.115.1, present 0.128.4"),
        Feature("has_mie3", "isa flag", (0, 128, 0), "absent 0.115.1, present 0.128.4"),
        Feature("has_zfa", "isa flag", (0, 121, 0), "absent 0.106.2, present 0.121.2"),
        Feature("has_zicond", "isa flag", (0, 121, 0), "absent 0.106.2, present 0.121.2"),
        Feature("has_zvfh", "isa flag", (0, 121, 0), "absent 0.106.2, present 0.121.2"),
        Feature("has_zvbb", "isa flag", (0, 135, 0), "absent 0.132.3, present 0.135.8"),
        # f16/f128 in signatures: the backends reject them in 0.115.1
        # ("Unexpected SSA-value type: f128"), accept them in 0.128.4
        Feature("f128:abi", "type", (0, 128, 0), "rejected 0.115.1, accepted 0.128.4"),
        Feature("f16:abi", "type", (0, 128, 0), "rejected 0.115.1, accepted 0.128.4"),
        # Exceptions (issue 24): `try_call`/`try_call_indirect` with exception
        # tables, read from cranelift-reader's parser and CallConv::
        # supports_exceptions at each cached release (0.120.2 the oldest with
        # them: 0.119.1 parses no TryCall); `exceptions:CC` is a callee convention
        Feature("try_call", "instruction", (0, 120, 0), "parser.rs of 0.120.2 parses try_call"),
        Feature("try_call_indirect", "instruction", (0, 120, 0), "parser.rs of 0.120.2 parses it"),
        Feature(
            "try_call_context",
            "syntax",
            (0, 124, 0),
            "`context vN` in exception tables: parser.rs of 0.124.3, not 0.121.2",
        ),
        Feature(
            "exceptions:winch", "rule", (0, 126, 0), "supports_exceptions: 0.126.2 not 0.124.3"
        ),
        Feature("exceptions:preserve_all", "rule", (0, 128, 0), "supports_exceptions: 0.128.4"),
        Feature(
            "exceptions:apple_aarch64",
            "rule",
            (0, 135, 0),
            "supports_exceptions: 0.135.8, not 0.132.3 (0.133-0.134 not checked)",
        ),
        Feature(
            "s390x:probestack_strategy=inline",
            "setting value",
            (0, 121, 0),
            "isa/s390x/abi.rs: unimplemented!() in 0.105.4-0.109.1, implemented in 0.121.2 "
            "(0.110-0.120 not checked)",
        ),
        Feature(
            "patchable",
            "syntax",
            (0, 128, 0),
            "`fnN = colocated patchable %f`: parser.rs of 0.128.4, not 0.127.4",
        ),
        Feature(
            "stack_switch",
            "instruction",
            (0, 121, 0),
            "x64 lower.isle lowers it in 0.121.2, not in 0.109.1 (0.110-0.120 not checked)",
        ),
        Feature(
            "stack_switch_model",
            "setting",
            (0, 121, 0),
            "with stack_switch (0.121.2 has it, 0.109.1 not; 0.110-0.120 not checked)",
        ),
        # Lowerings: an instruction (`opcode.type` where the type matters) a
        # backend cannot compile before the release; bisected on the cached
        # bridge of every release line (`callfuzz --cranelift X run FILE -t T`).
        # The generator does not use them: they gate corpus files (issue 24)
        Feature(
            "x86_64:bitcast.i32x2",
            "lowering",
            (0, 120, 0),
            "bitcast.i32x2 of an i64: compile panic 0.105.4-0.114.0, 'should be implemented "
            "in ISLE' (unsupported) 0.115.1-0.119.1, compiled 0.120.2",
        ),
        Feature(
            "s390x:ssub_overflow",
            "lowering",
            (0, 135, 0),
            "ssub_overflow.i64: compile panic 0.105.4-0.114.0, 'should be implemented in "
            "ISLE' (unsupported) 0.115.1-0.134.4, compiled 0.135.8",
        ),
        # Rules, not features: a convention in `Target.no_return_convs` is
        # one whose functions cannot return values from this release on
        # (before it, the generator gives them returns, as Cranelift accepted)
        Feature(
            "no-returns:preserve_all",
            "rule",
            (0, 129, 0),
            "0.129 rejects preserve_all functions with returns; 0.128 accepts them "
            "(issue 24: 0 of 392 sampled 0.128 preserve_all functions had returns)",
        ),
        # ABI rules: `callee-saves:CC` is that convention's callee-saved set as
        # the target table has it (fuzz.targets); before the rule began, a
        # caller treated every allocatable register as clobbered by a CC
        # callee, so only `Target.kept_when_all_clobbered` ones are preserved.
        # Read from `get_regs_clobbered_by_call` in cranelift/codegen/src/isa/
        # */abi.rs at each wasmtime release tag (vN is Cranelift 0.(N+87)).
        Feature(
            "x86_64:callee-saves:tail",
            "rule",
            (0, 107, 0),
            "x64/abi.rs v18-v19 (0.105-0.106): Tail => TAIL_CLOBBERS (every allocatable "
            "register); v20 (0.107) on: SYSV_CLOBBERS",
        ),
        Feature(
            "aarch64:callee-saves:tail",
            "rule",
            (0, 108, 0),
            "aarch64/abi.rs v18-v19: Tail => TAIL_CLOBBERS, v20 (0.107): ALL_CLOBBERS "
            "(every allocatable register); v21 (0.108) on: DEFAULT_AAPCS_CLOBBERS",
        ),
        Feature(
            "riscv64:callee-saves:tail",
            "rule",
            (0, 108, 0),
            "riscv64/abi.rs v18-v20 (0.105-0.107): Tail => TAIL_CLOBBERS (every "
            "allocatable register but fs0); v21 (0.108) on: DEFAULT_CLOBBERS",
        ),
        # what the bridge reads of compiled code (call sites) changed too
        Feature(
            "riscv64:call-site-after-call",
            "rule",
            (0, 120, 0),
            "riscv64/inst/emit.rs v18-v32 (0.105-0.119): Inst::Call adds its call site "
            "before the auipc+jalr pair; v33 (0.120) on: after it (0.105.4 measured: "
            "call_returns of a colocated call are its RiscvCallPlt relocation's offset)",
        ),
    )
}


def known(version: Version) -> Version:
    """The release whose rules the table applies to `version`: itself, or
    for a release newer than the newest known, the newest known."""
    return NEWEST_KNOWN if version[:2] > NEWEST_KNOWN[:2] else version


def has(name: str, version: Version | None, target: str = "") -> bool:
    """Whether the release `version` has `name` (None: the newest, all of
    it), on `target` too where the table names it for one target."""
    if version is None:
        return True
    version = known(version)
    return all(
        feature is None or feature.in_release(version)
        for feature in (FEATURES.get(name), FEATURES.get(f"{target}:{name}"))
    )


# What a text uses, as the table names it: words (conventions, types,
# instructions, ISA flags, settings), `setting=value` and `opcode.type`
# forms; names (`%f`), comments and numbers aside.
_WORD = re.compile(r"(?<![%\w])[A-Za-z_]\w*")
_COMPOUND = re.compile(r"(?<![%\w.=])[A-Za-z_]\w*[.=]\w+")
_TARGET_LINE = re.compile(r"^\s*target\s.*$", re.MULTILINE)


def used(text: str, target: str = "", isa_flags: Iterable[str] | None = None) -> list[Feature]:
    """The table's features (rules aside: they say what a release does, not
    what a file uses) a CLIF text uses, those of one target where the table
    names them for it (`s390x:tail`: `tail` on s390x). `isa_flags`: one
    target line's flags, read instead of the file's target lines."""
    code = re.sub(r";.*", "", text)
    if isa_flags is not None:
        code = _TARGET_LINE.sub("", code) + "\n" + " ".join(isa_flags)
    words = set(_WORD.findall(code)) | set(_COMPOUND.findall(code))
    prefix = f"{target}:" if target else None
    return [
        f
        for f in FEATURES.values()
        if f.kind != "rule"
        and (f.name in words or (prefix and f.name.removeprefix(prefix) in words))
    ]


def lacking(
    text: str, version: Version | None, target: str = "", isa_flags: Iterable[str] | None = None
) -> list[Feature]:
    """Of the features `text` uses (on `target`, see `used`), those release
    `version` does not have: a case Cranelift `version` cannot read or
    compile, not for this release."""
    prefix = f"{target}:"
    return [
        f
        for f in used(text, target, isa_flags)
        if not has(f.name.removeprefix(prefix), version, target)
    ]


def _kept(names: Iterable[str], version: Version, target: str = "") -> tuple[str, ...]:
    return tuple(n for n in names if has(n, version, target))


Types = Mapping[str, tuple[str, ...]]


def _types(table: Types, version: Version) -> dict[str, tuple[str, ...]]:
    """Signature types per convention (`f16:abi`: f16 in a signature)."""
    return {
        cc: tuple(t for t in types if has(t, version) and has(f"{t}:abi", version))
        for cc, types in table.items()
        if cc == "*" or has(cc, version)
    }


def callee_saved(target: Target, version: Version | None) -> dict[str, dict[str, int]]:
    """The callee-saved sets per convention that Cranelift `version`'s
    callers rely on: the target table's, but for a convention whose
    `callee-saves:` rule had not begun only those an all-clobbering
    convention keeps."""
    table = {cc: dict(regs) for cc, regs in target.callee_saved.items()}
    prefix = f"{target.name}:callee-saves:"
    for rule in FEATURES:
        cc = rule.removeprefix(prefix)
        if cc != rule and not has(f"callee-saves:{cc}", version, target.name):
            regs = table.get(cc, table.get("*", {}))
            table[cc] = {r: bits for r, bits in regs.items() if r in target.kept_when_all_clobbered}
    return table


def abi_for_version(target: Target, version: Version | None) -> Target:
    """`target` with the call contract (fuzz.pipeline.contract) Cranelift
    `version` promises: what a run of its code is checked against."""
    if version is None:
        return target
    return dataclasses.replace(target, callee_saved=callee_saved(target, version))


def for_version(target: Target, version: Version | None) -> Target:
    """`target` as the generator may use it on Cranelift `version`."""
    if version is None:
        return target
    name = target.name
    return dataclasses.replace(
        abi_for_version(target, version),
        call_convs=_kept(target.call_convs, version, name),
        tail_call_convs=_kept(target.tail_call_convs, version, name),
        sret_convs=_kept(target.sret_convs, version, name),
        regalloc_algorithms=tuple(
            a for a in target.regalloc_algorithms if has(f"regalloc_algorithm={a}", version)
        ),
        no_return_convs=tuple(
            cc for cc in target.no_return_convs if has(f"no-returns:{cc}", version, name)
        ),
        abi_types=_types(target.abi_types, version),
        qemu_abi_types=_types(target.qemu_abi_types, version),
        exception_payloads={
            cc: n
            for cc, n in target.exception_payloads.items()
            if has("try_call", version) and has(f"exceptions:{cc}", version)
        },
        stack_switch=target.stack_switch and has("stack_switch", version),
        probestack_strategies=tuple(
            s
            for s in target.probestack_strategies
            if has(f"probestack_strategy={s}", version, name)
        ),
        fuzz_isa_flags=_kept(target.fuzz_isa_flags, version),
        qemu_isa_flags=_kept(target.qemu_isa_flags, version),
    )
