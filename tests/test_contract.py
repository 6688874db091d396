"""The call contract checks (fuzz/pipeline/contract.py): planted machine-level
faults are detected on every target with the right kind, register class,
convention and blame; correct code raises no alarm, also when a callee keeps
values in every callee-saved register its convention has, when a `tail`
callee pops stack arguments, and across self-recursive tail calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import unicorn as uc
from conftest import PREBUILT_RELEASES, findings_on_release, release_bridge_current

from fuzz.faults import JUNK, MACHINE_FAULTS, hooks
from fuzz.pipeline.contract import (
    ALIGNMENT,
    CALLEE_SAVED,
    CALLER_FRAME,
    EXTENSION,
    STACK_POINTER,
    CallHook,
    Frame,
    Function,
    Violation,
    layout,
    pop_bound,
    sp_violation,
)
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.link import CompiledFunction, Reloc
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import DEFAULT_CC, FaultHooks, Runner, RunResult, return_offsets
from fuzz.targets import TARGETS, Target
from fuzz.triage.buckets import bucket_for
from fuzz.triage.known import KnownFinding, load


def _case(target: str, cc: str, param: str = "i64") -> str:
    ty = param.split()[0]
    widen = "v2 = uextend.i64 v0" if ty != "i64" else "v2 = iadd v0, v0"
    return f"""test interpret
test run
target {target}

function %victim({param}) -> i64 {cc} {{
block0(v0: {ty}):
    {widen}
    v3 = iconst.i64 3
    v4 = iadd v2, v3
    return v4
}}

function %main(i64) -> i64 {{
    fn0 = %victim({param}) -> i64 {cc}
block0(v0: i64):
    v1 = ireduce.{ty} v0
    v5 = call fn0(v1)
    v6 = iadd v5, v0
    return v6
}}
; print: %main(1)
""".replace("v1 = ireduce.i64 v0", "v1 = iadd v0, v0")


# (fault, target) -> (callee convention, parameter, violation kind, register class)
CLOBBER = {
    "x86_64": {"int": "system_v", "vector": "windows_fastcall"},
    "aarch64": {"int": "system_v", "vector": "system_v"},
    "riscv64": {"int": "system_v", "float": "system_v"},
    "s390x": {"int": "system_v", "float": "system_v"},
}
EXTENDING = {
    "x86_64": "system_v",
    "aarch64": "apple_aarch64",
    "riscv64": "system_v",
    "s390x": "system_v",
}

# the platform's reserved registers (Target.reserved_regs): the conventions
# that keep them, one each
RESERVED = {"aarch64": ("apple_aarch64", "windows_fastcall"), "riscv64": ("system_v",)}

PLANTED = [
    *(
        (f"{t}-clobber-{cls}", t, cc, "i64", CALLEE_SAVED, cls)
        for t, classes in CLOBBER.items()
        for cls, cc in classes.items()
    ),
    # aarch64 windows_fastcall keeps AAPCS64's v8-v15 (low halves)
    ("aarch64-clobber-vector", "aarch64", "windows_fastcall", "i64", CALLEE_SAVED, "vector"),
    *(
        (f"{t}-clobber-reserved", t, cc, "i64", CALLEE_SAVED, "int")
        for t, ccs in RESERVED.items()
        for cc in ccs
    ),
    *((f"{t}-store-past-args", t, "system_v", "i64", CALLER_FRAME, "stack") for t in TARGETS),
    *((f"{t}-sp-off-by-16", t, "system_v", "i64", STACK_POINTER, "sp") for t in TARGETS),
    # a tail callee that pops 16 bytes too many: within any bound, but not
    # what Cranelift sized its stack arguments to (none here)
    *((f"{t}-tail-pop-off-by-16", t, "tail", "i64", STACK_POINTER, "sp") for t in TARGETS),
    *((f"{t}-unextended-arg", t, EXTENDING[t], "i8 uext", EXTENSION, "int") for t in TARGETS),
]


def _run(text: str, target: str, fault: str | None = None) -> RunResult:
    return _run_hooked(text, target, hooks(fault))


def _run_hooked(text: str, target: str, fault: FaultHooks | None) -> RunResult:
    runner = Runner(fault=fault)
    (result,) = runner.run_file(parse_text(text), [TargetLine(TARGETS[target])])
    return result


@pytest.mark.parametrize(
    ("fault", "target", "cc", "param", "kind", "cls"),
    PLANTED,
    ids=[f"{p[0]}-{p[2]}" for p in PLANTED],
)
def test_a_planted_fault_is_a_violation_of_its_kind(
    fault: str, target: str, cc: str, param: str, kind: str, cls: str
) -> None:
    text = _case(target, cc, param)
    clean = _run(text, target)
    assert clean.judgement.verdicts[target] is Verdict.AGREE, clean.outcomes[target]
    result = _run(text, target, fault)
    outcome = result.outcomes[target]
    assert result.judgement.verdicts[target] is Verdict.ABI_VIOLATION, outcome
    assert result.judgement.blame == [target]
    first = outcome.violations[0]
    # the caller frame is the harness's call's, into the trampoline
    broken = DEFAULT_CC if kind == CALLER_FRAME else cc
    assert (first.kind, first.reg_class, first.cc) == (kind, cls, broken), str(first)
    key = bucket_for(parse_text(text), target, result).key
    assert key == f"{target}|abi violation|{broken}|{kind}|{cls}"


def test_abi_violation_buckets_split_by_the_callees_convention() -> None:
    """One kind of violation in two conventions is two bugs: two buckets."""
    keys = {
        cc: bucket_for(
            parse_text(_case("aarch64", cc)),
            "aarch64",
            _run(_case("aarch64", cc), "aarch64", "aarch64-clobber-int"),
        ).key
        for cc in ("system_v", "tail")
    }
    assert keys == {
        "system_v": "aarch64|abi violation|system_v|callee-saved register|int",
        "tail": "aarch64|abi violation|tail|callee-saved register|int",
    }


@pytest.mark.parametrize("target", list(RESERVED), ids=str)
def test_a_reserved_register_is_checked_where_the_convention_keeps_it(target: str) -> None:
    """aarch64 x18 in apple_aarch64 and windows_fastcall only (a temporary
    under Linux's AAPCS64), riscv64 gp and tp in every convention."""
    t = TARGETS[target]
    for cc in (cc for tt, cc in RETURNING if tt == target):
        result = _run(_case(target, cc), target, f"{target}-clobber-reserved")
        found = {v.where for v in result.outcomes[target].violations}
        kept = {reg.name for reg, _ in t.preserved(cc)} & set(t.reserved_regs)
        assert found == kept, (cc, [str(v) for v in result.outcomes[target].violations])
        assert bool(kept) == (cc in RESERVED[target] or target == "riscv64"), cc


def test_every_machine_fault_is_planted_above_or_has_nothing_to_clobber() -> None:
    planted = {p[0] for p in PLANTED}
    for name, fault in MACHINE_FAULTS.items():
        if name in planted:
            continue
        cls = name.rpartition("clobber-")[2]
        preserved = {
            reg.cls
            for cc in ("system_v", "windows_fastcall")
            for reg, _ in TARGETS[fault.target].preserved(cc)
        }
        assert "clobber-" in name and cls not in preserved, name


# every convention callfuzz generates calls in, on every target
CONVENTIONS = [(t.name, cc) for t in TARGETS.values() for cc in t.call_convs]
# those whose functions may return a value (preserve_all's may not)
RETURNING = [(t, cc) for t, cc in CONVENTIONS if cc not in TARGETS[t].no_return_convs]


def test_the_tests_below_cover_every_convention_and_target() -> None:
    assert {t for t, _cc in CONVENTIONS} == set(TARGETS)
    for t in TARGETS:
        assert {(t, cc) for cc in ("system_v", "fast", "tail", "preserve_all")} <= set(CONVENTIONS)
    assert {("x86_64", "windows_fastcall"), ("x86_64", "winch")} <= set(CONVENTIONS)
    assert {("aarch64", "apple_aarch64"), ("aarch64", "winch")} <= set(CONVENTIONS)


@pytest.mark.parametrize(("target", "cc"), RETURNING, ids=[f"{t}-{cc}" for t, cc in RETURNING])
def test_correct_code_breaks_no_contract(target: str, cc: str) -> None:
    for param in ("i64", "i8 uext", "i16 sext"):
        result = _run(_case(target, cc, param), target)
        outcome = result.outcomes[target]
        assert not outcome.violations, [str(v) for v in outcome.violations]
        assert result.judgement.verdicts[target] is Verdict.AGREE


def test_a_misaligned_stack_at_entry_is_a_violation() -> None:
    """The harness enters the trampoline with RSP+8 16-byte aligned; entered
    8 bytes off, every entry breaks the alignment rule."""
    text = _case("x86_64", "system_v")
    x86 = TARGETS["x86_64"]
    original = x86.stack_bias
    object.__setattr__(x86, "stack_bias", original + 8)  # a frozen dataclass, for this test only
    try:
        result = _run(text, "x86_64")
    finally:
        object.__setattr__(x86, "stack_bias", original)
    kinds = {v.kind for v in result.outcomes["x86_64"].violations}
    assert ALIGNMENT in kinds, result.outcomes["x86_64"]
    assert result.judgement.verdicts["x86_64"] is Verdict.ABI_VIOLATION


# --- callee-saved registers under pressure --------------------------------------

PRESSURE = 40  # values of each class live at once: more than any register file has


def _pressure_case(target: Target, cc: str, n: int = PRESSURE) -> str:
    """%main -> %victim (convention `cc`) -> %leaf. The victim makes `n`
    integers, `n` doubles and, where the target has vectors without extra
    ISA flags, `n` i64x2 vectors from its input, all live at once; folds them
    into a checksum, calls %leaf with all of them still live and folds them
    again. More values of a class than its caller-saved registers make the
    allocator take the callee-saved ones too, which the victim must give
    back. It returns nothing (a preserve_all function may not): %main passes
    it where to store the checksum."""
    vectors = "i64x2" in target.abi_types.get("*", ())
    leaf_cc = "system_v" if cc in target.no_return_convs else cc
    lines: list[str] = []
    count = 2  # v0: where to store, v1: the input

    def emit(text: str) -> str:
        nonlocal count
        lines.append(f"    v{count} = {text}")
        count += 1
        return f"v{count - 1}"

    ints, floats, vecs = [], [], []
    for k in range(n):
        rotated = emit(f"rotl v1, {emit(f'iconst.i64 {k + 1}')}")
        salt = emit(f"iconst.i64 {(k * 0x9E37_79B9_7F4A_7C15) % (1 << 63)}")
        ints.append(emit(f"bxor {rotated}, {salt}"))
    for k in range(n):
        word = emit(f"iadd {ints[k]}, {ints[(k + 1) % n]}")
        floats.append(emit(f"bitcast.f64 {word}"))
        if vectors:
            vecs.append(emit(f"splat.i64x2 {emit(f'bxor {word}, {ints[(k + 2) % n]}')}"))

    def fold(acc: str) -> str:
        # last made, first folded: every value is live until the fold starts
        for k in reversed(range(n)):
            rotated = emit(f"rotl {acc}, {emit(f'iconst.i64 {k % 13 + 1}')}")
            acc = emit(f"iadd {rotated}, {ints[k]}")
            acc = emit(f"bxor {acc}, {emit(f'bitcast.i64 {floats[k]}')}")
            if vectors:
                acc = emit(f"iadd {acc}, {emit(f'extractlane {vecs[k]}, 1')}")
        return acc

    after = fold(emit(f"call fn0({fold('v1')})"))
    body = "\n".join(lines)
    return f"""test interpret
test run
target {target.name}

function %leaf(i64) -> i64 {leaf_cc} {{
block0(v0: i64):
    v1 = iconst.i64 0x5DEE_CE66_D
    v2 = bxor v0, v1
    return v2
}}

function %victim(i64, i64) {cc} {{
    sig0 = (i64) -> i64 {leaf_cc}
    fn0 = %leaf sig0
block0(v0: i64, v1: i64):
{body}
    store {after}, v0
    return
}}

function %main(i64) -> i64 {{
    ss0 = explicit_slot 8
    sig0 = (i64, i64) {cc}
    fn0 = %victim sig0
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    call fn0(v1, v0)
    v2 = load.i64 v1
    return v2
}}
; print: %main(81985529216486895)
"""


@dataclass
class _Entries:
    """A call hook that plants nothing (unless given a fault): it keeps the
    CPU state at each function's first entry."""

    fault: CallHook | None = None
    states: dict[str, bytes] = field(default_factory=dict)

    def __call__(self, event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
        if event == "entry":
            self.states.setdefault(frame.callee.name, frame.state)
        if self.fault is not None:
            self.fault(event, mu, target, frame)


def _run_watched(target: Target, cc: str, fault: str | None = None) -> tuple[RunResult, _Entries]:
    entries = _Entries(MACHINE_FAULTS[fault].hooks().call if fault else None)
    result = _run_hooked(_pressure_case(target, cc), target.name, FaultHooks(call=entries))
    return result, entries


def _saved_in_use(target: Target, cc: str, entries: _Entries) -> dict[str, set[str]]:
    """Per register class, the registers convention `cc` preserves whose
    value the victim had changed when it called %leaf: it holds values there,
    so its prologue must have saved them."""
    offsets = layout(target).offsets
    before, during = entries.states["%victim"], entries.states["%leaf"]
    used: dict[str, set[str]] = {}
    for reg, bits in target.preserved(cc):
        at = offsets[reg.name]
        if before[at : at + bits // 8] != during[at : at + bits // 8]:
            used.setdefault(reg.cls, set()).add(reg.name)
    return used


def _classes(target: Target, cc: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for reg, _bits in target.preserved(cc):
        out.setdefault(reg.cls, set()).add(reg.name)
    return out


# Cranelift's own defects on these cases (corpus/known.toml), each shown as
# the registry describes it: riscv64 allocates fs1 (f9) under float pressure
# without saving it (a system_v function breaks the psABI; %main is one, so
# every convention shows it), and its preserve_all prologue saves the vector
# registers with RVV instructions, which RV64GC lacks: the victim dies
# before the contract can check anything.
REGISTRY = {e.id: e for e in load(Path(__file__).parent.parent / "corpus" / "known.toml").entries}
KNOWN = {
    ("riscv64", cc): "riscv64-fs1-not-preserved"
    for cc in TARGETS["riscv64"].call_convs
    if cc != "preserve_all"
} | {("riscv64", "preserve_all"): "riscv64-preserve-all-vector-saves"}


def _violation_text(v: Violation) -> str:
    """As the registry matches a violation (fuzz.triage.known.message_of)."""
    return f"{v.kind} {v.where} ({v.reg_class})"


def _unknown(violations: tuple[Violation, ...], known: KnownFinding | None) -> list[Violation]:
    """The violations that are not the known finding's."""
    return [
        v
        for v in violations
        if known is None or known.message is None or not known.message.search(_violation_text(v))
    ]


# where the allocator does not reach every callee-saved register: how many it
# does (s390x preserve_all: the victim's vectors take 8 of the 16 high halves
# of v0-v15)
FEWER = {("s390x", "preserve_all", "vector"): 8}


def test_the_known_defects_under_pressure_are_in_the_registry() -> None:
    for (target, _cc), known in KNOWN.items():
        entry = REGISTRY[known]
        assert target in entry.targets and entry.message is not None
        assert entry.verdict in ("abi violation", "crash")


@pytest.mark.parametrize(("target", "cc"), CONVENTIONS, ids=[f"{t}-{cc}" for t, cc in CONVENTIONS])
def test_correct_code_under_callee_saved_pressure_breaks_no_contract(target: str, cc: str) -> None:
    t = TARGETS[target]
    result, entries = _run_watched(t, cc)
    outcome = result.outcomes[target]
    verdict = result.judgement.verdicts[target]
    known = REGISTRY[KNOWN[target, cc]] if (target, cc) in KNOWN else None
    if known is not None and known.verdict == "crash":
        # the contract abstains: the code dies in the victim's prologue
        assert known.message is not None and known.message.search(outcome.detail), outcome
        assert verdict is Verdict.CRASH and "%leaf" not in entries.states
        return
    assert not _unknown(outcome.violations, known), [str(v) for v in outcome.violations]
    if known is not None:
        assert outcome.violations, f"{known.id} no longer shows: update KNOWN"
    expected = Verdict.ABI_VIOLATION if known is not None else Verdict.AGREE
    assert verdict is expected, outcome
    assert result.judgement.verdicts["interpreter"] is Verdict.AGREE
    # the victim really kept values in the convention's callee-saved
    # registers: in every one of them, of every class (the platform's
    # reserved ones aside: Cranelift never allocates them; see
    # test_a_reserved_register_is_checked_where_the_convention_keeps_it)
    used = _saved_in_use(t, cc, entries)
    for cls, regs in _classes(t, cc).items():
        regs -= set(t.reserved_regs)
        want = FEWER.get((target, cc, cls), len(regs))
        assert len(used.get(cls, ())) >= want, (cls, sorted(regs - used.get(cls, set())))


# (target, convention, register class) the pressure case reaches: clobbered, seen
CLOBBERED = [
    (t, cc, cls)
    for t, cc in CONVENTIONS
    if (t, cc) not in KNOWN or REGISTRY[KNOWN[t, cc]].verdict != "crash"
    for cls in sorted(_classes(TARGETS[t], cc))
]


@pytest.mark.parametrize(
    ("target", "cc", "cls"), CLOBBERED, ids=[f"{t}-{cc}-{cls}" for t, cc, cls in CLOBBERED]
)
def test_a_clobbered_callee_saved_register_under_pressure_is_a_violation(
    target: str, cc: str, cls: str
) -> None:
    result, _entries = _run_watched(TARGETS[target], cc, f"{target}-clobber-{cls}")
    outcome = result.outcomes[target]
    assert result.judgement.verdicts[target] is Verdict.ABI_VIOLATION, outcome
    known = REGISTRY[KNOWN[target, cc]] if (target, cc) in KNOWN else None
    found = {(v.kind, v.reg_class) for v in _unknown(outcome.violations, known)}
    assert found == {(CALLEE_SAVED, cls)}, [str(v) for v in outcome.violations]


# --- tail callees pop exactly their stack arguments -------------------------------

STACK_PARAMS = (12, 20)  # more i64 parameters than any target's argument registers


def _stack_args_case(target: Target, n: int) -> str:
    """%main calls a `tail` %victim that takes `n` i64 parameters (some on
    the stack, which the victim pops) and sums them."""
    params = ", ".join(["i64"] * n)
    block_params = ", ".join(f"v{k}: i64" for k in range(n))
    # v[n] = v0 + v1, v[n+k] = v[n+k-1] + v[k+1]: the sum ends in v[2n-2]
    sums = "\n".join(
        f"    v{n + k} = iadd {f'v{n + k - 1}' if k else 'v0'}, v{k + 1}" for k in range(n - 1)
    )
    args = ", ".join(f"v{k % 3}" for k in range(n))
    return f"""test interpret
test run
target {target.name}

function %victim({params}) -> i64 tail {{
block0({block_params}):
{sums}
    return v{2 * n - 2}
}}

function %main(i64) -> i64 {{
    fn0 = %victim({params}) -> i64 tail
block0(v0: i64):
    v1 = iconst.i64 3
    v2 = iadd v0, v1
    v3 = call fn0({args})
    return v3
}}
; print: %main(5)
"""


@pytest.mark.parametrize("target", list(TARGETS), ids=str)
def test_a_tail_callee_pops_exactly_its_stack_arguments(target: str) -> None:
    """The stack pointer after a `tail` callee returns is checked exactly:
    past the stack-argument area Cranelift sized (the bridge's
    `stack_args`), so correct code breaks nothing and a pop 16 bytes off,
    which any bound would let through, is a violation."""
    t = TARGETS[target]
    runner = Runner()
    for n in STACK_PARAMS:
        ft = parse_text(_stack_args_case(t, n))
        [config] = runner.prepare_file(ft, [TargetLine(t)])
        [victim] = [f for f in config.functions if f.name == "%victim"]
        assert victim.stack_args, "the victim takes stack arguments"
        [clean] = runner.run_configs(ft, [config])
        assert not clean.outcomes[target].violations, [
            str(v) for v in clean.outcomes[target].violations
        ]
        assert clean.judgement.verdicts[target] is Verdict.AGREE
        result = _run(_stack_args_case(t, n), target, f"{target}-tail-pop-off-by-16")
        [first, *_] = result.outcomes[target].violations
        assert (first.kind, first.edge, first.cc) == (STACK_POINTER, "%main -> %victim", "tail")
        assert first.actual - first.expected == 16, str(first)


def _tail_via_case(target: Target, first: int, then: int) -> str:
    """%main calls a `tail` %via of `first` i64 parameters, which
    tail-calls %victim of `then` (its incoming area grows or shrinks)."""
    flags = "set preserve_frame_pointers\n" if target.tail_calls_need_frame_pointers else ""
    victim = _stack_args_case(target, then).split("\nfunction %main")[0]
    via_params = ", ".join(["i64"] * first)
    victim_sig = f"({', '.join(['i64'] * then)}) -> i64 tail"
    victim = victim.replace("test run\n", f"test run\n{flags}")
    via_block = ", ".join(f"v{k}: i64" for k in range(first))
    via_args = ", ".join(f"v{k % first}" for k in range(then))
    main_args = ", ".join(["v0"] * first)
    return f"""{victim}
function %via({via_params}) -> i64 tail {{
    fn0 = %victim{victim_sig}
block0({via_block}):
    return_call fn0({via_args})
}}

function %main(i64) -> i64 {{
    fn0 = %via({via_params}) -> i64 tail
block0(v0: i64):
    v1 = call fn0({main_args})
    return v1
}}
; print: %main(5)
"""


@pytest.mark.parametrize("target", list(TARGETS), ids=str)
def test_a_tail_call_that_resizes_the_argument_area_pops_the_first_callees(target: str) -> None:
    """A `tail` callee that tail-calls one with more (or fewer) stack
    arguments grows (or shrinks) its incoming area; back in the caller, SP
    is past the first callee's arguments, and the tail call is one frame."""
    t = TARGETS[target]
    for first, then in ((1, 20), (20, 12), (12, 1)):
        result = _run(_tail_via_case(t, first, then), target)
        outcome = result.outcomes[target]
        assert not outcome.violations, (first, then, [str(v) for v in outcome.violations])
        assert result.judgement.verdicts[target] is Verdict.AGREE, outcome
        bad = _run(_tail_via_case(t, first, then), target, f"{target}-tail-pop-off-by-16")
        [violation, *_] = bad.outcomes[target].violations
        assert violation.edge == "%main -> %via (tail-called %victim)", str(violation)
        assert violation.actual - violation.expected == 16


def test_an_unknown_stack_argument_size_is_bounded() -> None:
    """Where the bridge cannot tell (a Cranelift before 0.126), what a
    callee-pops callee pops is bounded: aligned, at most `max_popped`."""
    t = TARGETS["x86_64"]
    unknown = Function("%f", "tail")
    known = Function("%f", "tail", stack_args=32)
    entry = 0x7000_0000
    back = entry + t.ra_slot
    assert sp_violation(t, unknown, "e", entry, back + 48) is None
    assert sp_violation(t, unknown, "e", entry, back + 8) is not None  # misaligned
    assert sp_violation(t, unknown, "e", entry, back + t.max_popped + 16) is not None
    assert sp_violation(t, known, "e", entry, back + 32) is None
    bad = sp_violation(t, known, "e", entry, back + 48)
    assert bad is not None and (bad.expected, bad.actual, bad.cc) == (back + 32, back + 48, "tail")
    assert sp_violation(t, Function("%f", "system_v"), "e", entry, back + 16) is not None


def test_the_bound_makes_room_for_struct_arguments() -> None:
    """A 0.108 `tail` callee with `sarg(4096)` and `sarg(24)` pops their
    4120 bytes rounded up, 4128, past a fixed 4096 (a false `abi violation
    (tail): stack pointer` bucket on 0.108 and 0.111): the bound grows with
    the signature, and still holds a pop beyond what it could fill."""
    t = TARGETS["x86_64"]
    params = (("f32x4", "", "normal"), ("i64", "", "sarg(4096)"), ("i64", "", "normal"))
    params += (("i64", "", "sarg(24)"), ("i128", "", "normal"))
    returns = (("i64x2", "", "normal"), ("f64", "", "normal"), ("i128", "", "normal"))
    callee = Function("%f3", "tail", params, returns)
    entry = 0x7000_0000
    back = entry + t.ra_slot
    assert sp_violation(t, callee, "e", entry, back + 4128) is None
    bound = pop_bound(t, callee)
    # the structs rounded up, 16 bytes for each of the other six values, and
    # an alignment's worth: never unbounded
    assert 4128 <= bound <= 4096 + 32 + 6 * 16 + 16
    assert sp_violation(t, callee, "e", entry, back + bound + 16) is not None
    assert pop_bound(t, Function("%g", "tail", params[:1])) == t.max_popped


# --- self-recursive tail calls -----------------------------------------------------

# %count counts down to 0; `alternate`: on even counts it calls itself
# normally (and adds 1), on odd ones it tail-calls itself, so tail calls are
# made from frames whose return address lies in %count itself
COUNT = """
function %count(i64, i64) -> i64 tail {
    fn0 = %count(i64, i64) -> i64 tail
block0(v0: i64, v1: i64):
    brif v0, block1, block3
block1:
    v2 = iconst.i64 1
    v3 = isub v0, v2
    v4 = iadd v1, v0
    v5 = band v0, v2
    v8 = iconst.i64 ALTERNATE
    v9 = bor v5, v8
    brif v9, block2, block4
block2:
    return_call fn0(v3, v4)
block4:
    v6 = call fn0(v3, v4)
    v7 = iadd v6, v2
    return v7
block3:
    return v1
}

function %other(i64) -> i64 {
block0(v0: i64):
    v1 = iconst.i64 7
    v2 = iadd v0, v1
    return v2
}

function %main(i64) -> i64 {
    fn0 = %count(i64, i64) -> i64 tail
    fn1 = %other(i64) -> i64
block0(v0: i64):
    v1 = iconst.i64 0
    v2 = call fn0(v0, v1)
    v3 = call fn1(v2)
    return v3
}
"""


def _count_case(target: Target, alternate: bool) -> str:
    flags = "set preserve_frame_pointers\n" if target.tail_calls_need_frame_pointers else ""
    body = COUNT.replace("ALTERNATE", "0" if alternate else "1")
    # 6+5+...+1 = 21, plus 1 per normal self-call (at 6, 4, 2), plus 7
    expected = 21 + (3 if alternate else 0) + 7
    header = f"test interpret\ntest run\n{flags}target {target.name}\n"
    return f"{header}{body}; run: %main(6) == {expected}\n"


@dataclass
class _Returns:
    """A call hook that records each checked return's call edge, and (given
    a register) flips it at the entry of %count called from %main: the
    outermost count forgets to save it."""

    clobber: str | None = None
    edges: list[str] = field(default_factory=list)

    def __call__(self, event: str, mu: uc.Uc, target: Target, frame: Frame) -> None:
        if event == "return":
            self.edges.append(frame.edge)
        elif self.clobber and frame.callee.name == "%count" and frame.caller == "%main":
            reg = next(r for r in target.registers if r.name == self.clobber)
            mu.reg_write(reg.uc, mu.reg_read(reg.uc) ^ JUNK)


@pytest.mark.parametrize("alternate", [False, True], ids=["tail-only", "alternating"])
@pytest.mark.parametrize("target", list(TARGETS), ids=str)
def test_self_recursive_tail_calls_keep_the_frames_in_step(target: str, alternate: bool) -> None:
    """A self-recursive `return_call`, also from a frame that %count's own
    normal call opened, continues the frame (no false alarm); every normal
    call's return is checked, in order; and a register the outermost %count
    does not give back to %main is found at that very call."""
    t = TARGETS[target]
    text = _count_case(t, alternate)
    watch = _Returns()
    clean = _run_hooked(text, target, FaultHooks(call=watch))
    outcome = clean.outcomes[target]
    assert not outcome.violations, [str(v) for v in outcome.violations]
    assert clean.judgement.verdicts[target] is Verdict.AGREE, outcome
    nested = ["%count -> %count"] * (3 if alternate else 0)
    assert watch.edges == [
        *nested,
        "%main -> %count",
        "%main -> %other",
        "%callfuzz_trampoline0 -> %main",
    ]
    reg = next(r.name for r, _ in t.preserved("tail") if r.cls == "int")
    planted = _Returns(clobber=reg)
    result = _run_hooked(text, target, FaultHooks(call=planted))
    violations = result.outcomes[target].violations
    assert result.judgement.verdicts[target] is Verdict.ABI_VIOLATION
    assert (violations[0].kind, violations[0].where, violations[0].edge) == (
        CALLEE_SAVED,
        reg,
        "%main -> %count",
    ), [str(v) for v in violations]


def _riscv(*words: int) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


def test_old_riscv64_call_sites_are_moved_to_where_the_calls_return() -> None:
    """Before 0.120 riscv64 recorded a direct call's (and a tail call's)
    site at the start of its auipc+jalr pair: the contract hooks where the
    call returns, and nothing for a tail call (fuzz.features
    `call-site-after-call`)."""
    code = _riscv(
        0x000280E7,  # 0: jalr ra, 0(t0): an indirect call, returns at 4
        0x00000097,  # 4: auipc ra, 0
        0x000080E7,  # 8: jalr ra, 0(ra): a direct call, returns at 12
        0x00000F97,  # 12: auipc t6, 0
        0x000F8067,  # 16: jalr x0, 0(t6): a tail call
    )
    relocs = [Reloc(4, "RiscvCallPlt", "%g", 0), Reloc(12, "RiscvCallPlt", "%h", 0)]
    f = CompiledFunction("%f", code, relocs, [], call_returns=[4, 4, 12])
    riscv64 = TARGETS["riscv64"]
    assert sorted(return_offsets(f, riscv64, (0, 119, 0))) == [4, 12]
    assert return_offsets(f, riscv64, (0, 120, 0)) == [4, 4, 12]
    assert return_offsets(f, riscv64, None) == [4, 4, 12]
    assert return_offsets(f, TARGETS["x86_64"], (0, 105, 4)) == [4, 4, 12]


# --- the contract of an old release (its bridge in a child process) -------------

OLD_RELEASE = "0.105.4"  # conftest.PREBUILT_RELEASES builds it for CI


needs_old_bridge = pytest.mark.skipif(
    not release_bridge_current(OLD_RELEASE),
    reason=f"needs Cranelift {OLD_RELEASE}'s bridge (the README's test command prebuilds it)",
)


@needs_old_bridge
@pytest.mark.parametrize("target", ["x86_64", "aarch64"])
def test_an_old_releases_tail_callees_raise_no_false_alarm(target: str, tmp_path: Path) -> None:
    """On 0.105 a `tail` callee kept nothing allocatable (its callers
    assumed so): under register pressure it uses the registers newer
    releases save, and the contract of its release does not call that a
    violation (fuzz.features `callee-saves:tail`)."""
    path = tmp_path / "pressure.clif"
    path.write_text(_pressure_case(TARGETS[target], "tail"))
    found = findings_on_release(OLD_RELEASE, path, target, timeout=600)
    assert found and all(o["verdict"] == "agree" for o in found), found


@needs_old_bridge
def test_an_old_releases_riscv64_calls_return_where_the_contract_looks() -> None:
    """0.105's riscv64 call sites sit at the start of a direct call's
    auipc+jalr (fuzz.features `call-site-after-call`): colocated calls
    still agree, with no frame left unreturned."""
    path = Path(__file__).parent.parent / "corpus" / "riscv64-colocated-call.clif"
    found = findings_on_release(OLD_RELEASE, path, "riscv64", timeout=600)
    assert found and all(o["verdict"] == "agree" for o in found), found


def test_the_old_release_is_prebuilt_for_ci() -> None:
    assert OLD_RELEASE in PREBUILT_RELEASES
