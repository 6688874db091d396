"""The C-ABI oracle (fuzz.pipeline.cabi): which signatures have a C counterpart, the
glue agreeing with itself on generated signatures, and planted faults on
either side caught at the right position. Needs the targets' C compilers
(Debian's gcc and gcc-{aarch64,riscv64,s390x}-linux-gnu): skipped, saying
so, without them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from fuzz import _cranelift
from fuzz.campaign.worker import C_ABI_EVERY, C_ABI_SEEDS, c_abi_seed
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.cabi import build, check, clif
from fuzz.pipeline.cabi.build import compiler_path
from fuzz.pipeline.cabi.declare import CSignature, NoCounterpart, c_signature
from fuzz.pipeline.cabi.mismatch import (
    C_CALLS_C,
    C_CALLS_CRANELIFT,
    CRANELIFT_CALLS_C,
    CRANELIFT_CALLS_CRANELIFT,
    Mismatch,
)
from fuzz.pipeline.emulate import Emulator, RawOutcome
from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.link import CompiledFunction, Image
from fuzz.targets import TARGETS, CAbi, Target


def needs_compiler(target: Target, cc: str = "system_v") -> None:
    c = target.c_abi_for(cc)
    assert c is not None
    if compiler_path(c.compiler) is None:
        pytest.skip(f"needs {c.compiler} (Debian package {c.package})")


def signature_of(text: str, target: Target) -> CSignature:
    function = _cranelift.parse(text).functions()[0]
    return c_signature(function["signature"], target)


def fn(sig: str) -> str:
    return f"function %f{sig} {{\nblock0:\n    trap user1\n}}\n"


@pytest.mark.parametrize(
    ("target", "sig", "reason"),
    [
        ("riscv64", "(i32 uext) system_v", "sign-extends `unsigned int`"),
        ("x86_64", "(i128) windows_fastcall", "by reference"),
        ("x86_64", "() -> i64, f64 windows_fastcall", "hidden pointer"),
        ("aarch64", "() -> f64, i64 system_v", "no C struct is returned"),
        ("s390x", "() -> i64, i64 system_v", "no C struct is returned"),
        ("x86_64", "(i64) tail", "not a C convention"),
        ("riscv64", "(i32x4) system_v", "no C vector convention"),
        ("s390x", "(f16) system_v", "no C type"),
    ],
)
def test_signatures_without_a_c_counterpart_say_why(target: str, sig: str, reason: str) -> None:
    text = fn(sig).replace("block0:", "block0(" + _params(sig) + "):")
    with pytest.raises(NoCounterpart, match=reason):
        signature_of(text, TARGETS[target])


def _params(sig: str) -> str:
    inside = sig[1 : sig.index(")")]
    types = [p.split()[0] for p in inside.split(",") if p.strip()]
    return ", ".join(f"v{i}: {t}" for i, t in enumerate(types))


def test_c_types_follow_the_psabi() -> None:
    sig = signature_of(
        "function %f(i8 uext, i16 sext, i32, i64 sret, i128, f64) system_v {\n"
        "block0(v0: i8, v1: i16, v2: i32, v3: i64, v4: i128, v5: f64):\n    return\n}\n",
        TARGETS["riscv64"],
    )
    assert [p.ctype for p in sig.params] == [
        "unsigned char",
        "short",
        "int",
        "__int128",
        "double",
    ]
    assert sig.sret_index == 3 and len(sig.returns) == 4


def test_a_recorder_without_parameters_opens_its_block_without_parentheses() -> None:
    """cranelift-reader before 0.109 rejects `block0():` ("block argument
    must be a value"): the glue of a signature without parameters was a
    harness error on every 0.108 line that drew one (9 in 2,000 cases)."""
    sig = signature_of(fn("() -> i64 system_v"), TARGETS["x86_64"])
    text = clif.callee_clif(sig, "k0")
    assert text.splitlines()[1] == "block0:"
    assert _cranelift.parse(text).functions()[0]["name"] == "%cf_cl_callee_k0"


def runner(target: Target) -> check.RunRaw:
    emulator = Emulator(target)

    def run(image: Image, entry: int, callee: int, area: bytes) -> RawOutcome:
        return emulator.run(image, entry, callee, area)

    return run


def generated_signatures(target: Target, cases: int) -> Iterator[CSignature]:
    for seed in range(cases):
        ft = parse_text(generate(RandomSource(seed), target).text)
        found, _ = check.signatures_of(ft.functions, target)
        yield from (sig for _key, _name, sig in found)


@pytest.mark.parametrize("name", list(TARGETS))
def test_the_glue_agrees_with_itself_on_generated_signatures(name: str) -> None:
    """C calling C and Cranelift calling Cranelift through the same glue:
    a disagreement there is the glue's (benchmarks/c_abi_selfcheck.py runs
    the same over ten thousand signatures per target)."""
    target = TARGETS[name]
    needs_compiler(target)
    signatures = list(dict.fromkeys(generated_signatures(target, 150)))[:40]
    assert len(signatures) >= 10, "too few generated signatures have a C counterpart"
    keyed = [(str(i), sig) for i, sig in enumerate(signatures)]
    isa = _cranelift.Isa(target.triple, list(check.C_FLAGS), [])
    built = check.build_image(keyed, target, isa, "system_v")
    image, unsupported = built.image, built.unsupported | built.missing
    run = runner(target)
    checked = 0
    for key, sig in keyed:
        if key in unsupported:
            continue
        result = check.check_signature(image, key, sig, run)  # C calls C: GlueError
        if result.abstained:
            continue
        assert not [m for m in result.mismatches if m.direction == CRANELIFT_CALLS_CRANELIFT]
        checked += 1
    assert checked >= 10


SWAP_FIRST_TWO = {
    # xchg rdi, rsi
    "x86_64": bytes([0x48, 0x87, 0xFE]),
}


def test_a_callee_with_swapped_argument_registers_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A planted machine-level fault: the Cranelift callee swaps its first two
    argument registers on entry. C calls it: arguments 0 and 1 hold each
    other's bytes, and the check says so."""
    target = TARGETS["x86_64"]
    needs_compiler(target)
    sig = signature_of(
        "function %f(i64, i64, i64) system_v {\nblock0(v0: i64, v1: i64, v2: i64):\n"
        "    return\n}\n",
        target,
    )
    real_link = check.link

    def planted(functions: list[CompiledFunction], target: Target) -> Image:
        callee = check.clif.callee_name("0")
        patched = [
            CompiledFunction(f.name, SWAP_FIRST_TWO["x86_64"] + f.code, f.relocs, f.traps)
            if f.name == callee
            else f
            for f in functions
        ]
        return real_link(patched, target)

    monkeypatch.setattr(check, "link", planted)
    isa = _cranelift.Isa(target.triple, [], [])
    image = check.build_image([("0", sig)], target, isa, "system_v").image
    result = check.check_signature(image, "0", sig, runner(target))
    seen = {(m.direction, m.position, m.index, m.source) for m in result.mismatches}
    assert (CRANELIFT_CALLS_CRANELIFT, "argument", 0, "the bytes of argument 1") in seen
    assert (CRANELIFT_CALLS_CRANELIFT, "argument", 1, "the bytes of argument 0") in seen
    # the glue stops at Cranelift disagreeing with itself; C calling the same
    # callee shows the same positions
    result = check.check_signature(image, "0", sig, runner(target), {C_CALLS_CRANELIFT})
    assert [(m.position, m.index, m.source) for m in result.mismatches] == [
        ("argument", 0, "the bytes of argument 1"),
        ("argument", 1, "the bytes of argument 0"),
    ]


def test_a_c_callee_of_another_convention_is_caught() -> None:
    """A planted fault on the C side: the C callee is compiled as ms_abi
    while everyone else uses system_v, so Cranelift's arguments land where
    it does not look (ms_abi reads rcx, rdx, r8, r9: system_v's arguments 3,
    2, 4 and 5), and the check names each position."""
    target = TARGETS["x86_64"]
    needs_compiler(target)
    sig = signature_of(
        "function %f(i64, i64, i64, i64) system_v {\n"
        "block0(v0: i64, v1: i64, v2: i64, v3: i64):\n    return\n}\n",
        target,
    )
    isa = _cranelift.Isa(target.triple, [], [])
    image = check.build_image(
        [("0", sig)], target, isa, "system_v", c_callee_attribute="__attribute__((ms_abi))"
    ).image
    # C calling that callee disagrees too: the glue's own check reports it
    with pytest.raises(check.GlueError, match="C calls C"):
        check.check_signature(image, "0", sig, runner(target))
    result = check.check_signature(image, "0", sig, runner(target), {CRANELIFT_CALLS_C})
    first = result.mismatches[0]
    assert (first.direction, first.position, first.index) == (CRANELIFT_CALLS_C, "argument", 0)
    assert first.source == "the bytes of argument 3"  # rcx holds system_v's fourth


def test_the_glue_checks_itself_before_the_mixed_pairings() -> None:
    assert [d for d, _a, _b in check.pairings("0")] == [
        C_CALLS_C,
        CRANELIFT_CALLS_CRANELIFT,
        C_CALLS_CRANELIFT,
        CRANELIFT_CALLS_C,
    ]


def test_a_batch_of_files_compiles_its_c_in_one_compiler_run_per_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """precompile (what a campaign worker does with a seed block) runs the
    compiler once for all its files; each file's check then finds its C
    cached, also under other keys."""
    target = TARGETS["aarch64"]
    needs_compiler(target)
    files = [
        parse_text(generate(RandomSource(1000 + seed), target).text).functions for seed in range(8)
    ]
    runs: list[str] = []
    real = build.compile_unit

    def counted(c: CAbi, source: str) -> dict[str, bytes]:
        runs.append(c.compiler)
        return real(c, source)

    monkeypatch.setattr(build, "compile_unit", counted)
    monkeypatch.setattr(build, "_signatures", type(build._signatures)())
    check.precompile(files, [target])
    assert "aarch64-linux-gnu-gcc" in runs and len(runs) == len(set(runs)), runs
    compiled = list(runs)
    isa = _cranelift.Isa(target.triple, list(check.C_FLAGS), [])
    for functions in files:
        found, _ = check.signatures_of(functions, target)
        keyed = [(f"x{key}", sig) for key, _name, sig in found]
        image = check.build_image(keyed, target, isa, "system_v").image
        for key, _sig in keyed:
            assert f"cf_c_callee_{key}" in image.symbols
    assert runs == compiled, "a file's check compiled its C again"


def test_c_abi_seeds_come_in_runs_of_a_seed_block() -> None:
    chosen = [seed for seed in range(4096) if c_abi_seed(seed)]
    assert len(chosen) * C_ABI_EVERY == 4096
    runs = {seed // C_ABI_SEEDS for seed in chosen}
    assert all(sum(1 for s in chosen if s // C_ABI_SEEDS == run) == C_ABI_SEEDS for run in runs)


@pytest.mark.parametrize(
    ("ctype", "expected"),
    [
        ("unsigned int", "argument integer"),
        ("long", "argument integer"),
        ("unsigned __int128", "argument __int128"),
        ("_Float16", "argument _Float16"),
        ("cf_f64x2", "argument vector"),
    ],
)
def test_the_bucket_key_holds_type_classes(ctype: str, expected: str) -> None:
    misplaced = Mismatch(C_CALLS_CRANELIFT, "system_v", "argument", 3, ctype, b"", b"", "")
    assert misplaced.position_class == expected


APPLE_STACK = (
    "function %f(i64, i64, i64, i64, i64, i64, i64, i64, i8 sext, i16 sext) apple_aarch64 {\n"
    "block0(v0: i64, v1: i64, v2: i64, v3: i64, v4: i64, v5: i64, v6: i64, v7: i64,"
    " v8: i8, v9: i16):\n    return\n}\n"
)


def test_apples_convention_is_checked_against_clang_for_macos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Apple packs stack arguments at their own size: clang for macOS and
    Cranelift agree on it; a C side compiled with Linux's convention (a
    planted fault) puts the i16 at the next 8-byte slot, and the check
    names that argument."""
    target = TARGETS["aarch64"]
    needs_compiler(target, "apple_aarch64")
    sig = signature_of(APPLE_STACK, target)
    isa = _cranelift.Isa(target.triple, list(check.C_FLAGS), [])
    mixed = {C_CALLS_CRANELIFT, CRANELIFT_CALLS_C}
    image = check.build_image([("0", sig)], target, isa, "system_v").image
    assert check.check_signature(image, "0", sig, runner(target)).mismatches == ()
    apple = target.c_abi_for("apple_aarch64")
    assert apple is not None
    linux = dataclasses.replace(apple, cflags=("--target=aarch64-linux-gnu",))
    planted = dataclasses.replace(target, c_abis=(target.c_abis[0], linux))
    monkeypatch.setattr(build, "_signatures", type(build._signatures)())
    image = check.build_image([("0", sig)], planted, isa, "system_v").image
    found = check.check_signature(image, "0", sig, runner(target), mixed).mismatches
    assert {(m.direction, m.position, m.index) for m in found} == {
        (C_CALLS_CRANELIFT, "argument", 9),
        (CRANELIFT_CALLS_C, "argument", 9),
    }
