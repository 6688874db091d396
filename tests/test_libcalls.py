"""Issue 12 point 9: Cranelift's libcalls run on the emulated targets.

The linker places a return stub per libcall, the emulator computes the call
at the stub (fuzz.pipeline.libcalls). Every result is compared with the
interpreter, which computes the float libcalls too; the memory libcalls
(which the interpreter does not provide) against their run lines."""

from __future__ import annotations

import random
import struct
from fractions import Fraction

import pytest

from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.libcalls import F32, F64, Format, fma, provided, pshufb, round_integral
from fuzz.pipeline.link import CompiledFunction, NeedsLibcall, Reloc, link
from fuzz.pipeline.oracle import Kind, Verdict
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import TARGET_NAMES, TARGETS

# --- the semantics --------------------------------------------------------------------


def _f32(x: float) -> int:
    return int.from_bytes(struct.pack("<f", x), "little")


def _f64(x: float) -> int:
    return int.from_bytes(struct.pack("<d", x), "little")


def _float(fmt: Format, bits: int) -> float:
    code = "<f" if fmt is F32 else "<d"
    return float(struct.unpack(code, bits.to_bytes(fmt.bits // 8, "little"))[0])


@pytest.mark.parametrize(
    ("op", "x", "expected"),
    [
        ("Ceil", -0.5, -0.0),
        ("Ceil", 0.5, 1.0),
        ("Ceil", -0.0, -0.0),
        ("Floor", -0.5, -1.0),
        ("Floor", 0.5, 0.0),
        ("Trunc", -1.75, -1.0),
        ("Trunc", -0.75, -0.0),
        ("Nearest", 2.5, 2.0),
        ("Nearest", 3.5, 4.0),
        ("Nearest", -0.5, -0.0),
        ("Nearest", 0.5000001, 1.0),
        ("Ceil", 5e-324, 1.0),
        ("Floor", -5e-324, -1.0),
        ("Ceil", float("inf"), float("inf")),
        ("Floor", -float("inf"), -float("inf")),
        ("Nearest", 2.0**52 + 1, 2.0**52 + 1),
        ("Ceil", 2.0**52 - 0.5, 2.0**52),
    ],
)
def test_round_integral_f64(op: str, x: float, expected: float) -> None:
    got = round_integral(op, F64, _f64(x))
    assert got == _f64(expected), (_float(F64, got), expected)


def test_round_integral_f32_edges() -> None:
    assert round_integral("Ceil", F32, _f32(8388607.5)) == _f32(8388608.0)  # 2**23 - 0.5
    assert round_integral("Nearest", F32, _f32(8388607.5)) == _f32(8388608.0)
    assert round_integral("Floor", F32, _f32(-1e-45)) == _f32(-1.0)  # a subnormal
    assert round_integral("Trunc", F32, _f32(3.4e38)) == _f32(3.4e38)
    assert round_integral("Nearest", F32, 0x7F80_0001) == 0x7FC0_0001  # sNaN: quieted
    assert round_integral("Floor", F32, 0xFFC0_0000) == 0xFFC0_0000


def test_fma_is_rounded_once() -> None:
    """Against the exact value rounded by Python (f64) and by hand-made
    halfway cases (f32, where rounding through f64 first would be wrong)."""
    rng = random.Random(12)
    for _ in range(3000):
        a, b, c = (rng.uniform(-1e6, 1e6) * 2.0 ** rng.randint(-60, 60) for _ in range(3))
        exact = Fraction(a) * Fraction(b) + Fraction(c)
        assert fma(F64, _f64(a), _f64(b), _f64(c)) == _f64(float(exact))
    # (1 + 2**-12)**2 + 2**-60 = 1 + 2**-11 + 2**-24 + 2**-60: just above halfway
    # between two f32 neighbours; through an f64 it would be exactly halfway,
    # then rounded to even, down
    a, c = 1.0 + 2.0**-12, 2.0**-60
    via_f64 = _float(F64, fma(F64, _f64(a), _f64(a), _f64(c)))
    assert _f32(via_f64) == _f32(1.0 + 2.0**-11)
    assert fma(F32, _f32(a), _f32(a), _f32(c)) == _f32(1.0 + 2.0**-11 + 2.0**-23)


@pytest.mark.parametrize(
    ("a", "b", "c", "expected"),
    [
        (-0.0, 1.0, -0.0, -0.0),
        (-0.0, 1.0, 0.0, 0.0),
        (2.0, 3.0, -6.0, 0.0),  # an exact zero sum is +0
        (float("inf"), 2.0, -1.0, float("inf")),
        (1.0, 2.0, -float("inf"), -float("inf")),
        (1.7976931348623157e308, 2.0, -1.7976931348623157e308, 1.7976931348623157e308),
        (1.7976931348623157e308, 2.0, 0.0, float("inf")),
        (2.0**-1000, 2.0**-70, 0.0, 2.0**-1070),  # subnormal
    ],
)
def test_fma_edges(a: float, b: float, c: float, expected: float) -> None:
    assert fma(F64, _f64(a), _f64(b), _f64(c)) == _f64(expected)


def test_fma_nan() -> None:
    inf, nan = _f64(float("inf")), F64.canonical_nan
    assert fma(F64, inf, _f64(0.0), _f64(1.0)) == nan  # invalid
    assert fma(F64, inf, _f64(1.0), _f64(-float("inf"))) == nan
    assert fma(F64, _f64(1.0), 0x7FF0_0000_0000_0001, _f64(1.0)) == 0x7FF8_0000_0000_0001


def test_pshufb() -> None:
    src = bytes(range(0x10, 0x20))
    mask = bytes([15, 0, 0x80, 0x13, *range(12)])
    assert pshufb(src, mask) == bytes([0x1F, 0x10, 0, 0x13, *range(0x10, 0x1C)])


# --- the linker -------------------------------------------------------------------------


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_the_linker_places_a_return_stub(target_name: str) -> None:
    target = TARGETS[target_name]
    caller = CompiledFunction("%caller", bytes(16), [Reloc(8, "Abs8", "%FloorF64", 0)], [])
    image = link([caller], target)
    [(address, name)] = image.libcalls.items()
    assert name == "FloorF64"
    assert address >= image.base + 16 and address % 16 == 0
    at = address - image.base
    assert bytes(image.data[at : at + len(target.return_insn)]) == target.return_insn
    assert int.from_bytes(image.data[8:16], "big" if target.big_endian else "little") == address
    assert image.function_at(address) is None  # not a function of the image


@pytest.mark.parametrize("target_name", TARGET_NAMES)
def test_the_outline_stack_probe_is_provided(target_name: str) -> None:
    """The Probestack stub returns at once: the emulators map the stack
    whole, and the probe changes no register (issue 24: outline probes run)."""
    assert "%Probestack" in provided(TARGETS[target_name])
    caller = CompiledFunction("%caller", bytes(16), [Reloc(8, "Abs8", "%Probestack", 0)], [])
    image = link([caller], TARGETS[target_name])
    assert "Probestack" in image.libcalls.values()


@pytest.mark.parametrize("target_name", TARGET_NAMES)
@pytest.mark.parametrize("libcall", ["%ElfTlsGetAddr"])
def test_other_libcalls_are_still_needed(target_name: str, libcall: str) -> None:
    caller = CompiledFunction("%caller", bytes(16), [Reloc(8, "Abs8", libcall, 0)], [])
    with pytest.raises(NeedsLibcall, match=libcall[1:]):
        link([caller], TARGETS[target_name])


def test_vector_libcalls_only_where_vectors_are_passed() -> None:
    assert {t for t in TARGET_NAMES if "%X86Pshufb" in provided(TARGETS[t])} == {
        "x86_64",
        "aarch64",
    }


# --- running them: every target, against the interpreter ------------------------------

F32_EDGES = [
    "0x0.0",
    "-0x0.0",
    "0x1.0p-1",
    "-0x1.0p-1",
    "0x1.8p0",
    "0x1.4p1",
    "-0x1.4p1",
    "0x1.cp1",
    "-0x1.cp1",
    "0x1.fffffep22",
    "0x1.000002p23",
    "0x0.000002p-126",
    "-0x0.000002p-126",
    "0x1.fffffep127",
    "+Inf",
    "-Inf",
    "+NaN",
    "-NaN",
]
F64_EDGES = [
    "0x0.0",
    "-0x0.0",
    "0x1.0p-1",
    "-0x1.0p-1",
    "0x1.4p1",
    "-0x1.4p1",
    "0x1.cp1",
    "0x1.fffffffffffffp51",
    "0x0.0000000000001p-1022",
    "-0x0.0000000000001p-1022",
    "0x1.fffffffffffffp1023",
    "+Inf",
    "-Inf",
    "+NaN",
]
FMA_F64 = [
    ("0x1.8p0", "0x1.0p1", "0x1.0p-1"),
    ("-0x0.0", "0x1.0p0", "-0x0.0"),
    ("-0x0.0", "0x1.0p0", "0x0.0"),
    ("0x1.0p1", "0x1.8p1", "-0x1.8p2"),
    ("+Inf", "0x0.0", "0x1.0p0"),
    ("+Inf", "0x1.0p0", "-Inf"),
    ("0x1.fffffffffffffp1023", "0x1.0p1", "-0x1.fffffffffffffp1023"),
    ("0x1.0000000000001p0", "0x1.0000000000001p0", "-0x1.0000000000002p0"),
    ("0x1.0p-1000", "0x1.0p-70", "0x0.0"),
    ("+NaN", "0x1.0p0", "0x1.0p0"),
]
FMA_F32 = [
    ("0x1.8p0", "0x1.0p1", "0x1.0p-1"),
    ("-0x0.0", "0x1.0p0", "-0x0.0"),
    ("0x1.000002p0", "0x1.0p0", "0x1.0p-60"),
    ("0x1.000002p0", "0x1.000002p0", "-0x1.000004p0"),
    ("0x1.fffffep127", "0x1.0p1", "-0x1.fffffep127"),
    ("0x1.0p-100", "0x1.0p-40", "0x0.0"),
    ("+Inf", "0x0.0", "0x1.0p0"),
    ("0x1.0p0", "0x1.0p0", "-Inf"),
]
ROUNDINGS = ("Ceil", "Floor", "Trunc", "Nearest")
RUNS = 4 * (len(F32_EDGES) + len(F64_EDGES)) + len(FMA_F32) + len(FMA_F64)


def _declared(name: str, ty: str, arity: int) -> str:
    """A function calling libcall `name` as a declared external function."""
    params = ", ".join([ty] * arity)
    args = ", ".join(f"v{i}" for i in range(arity))
    block = ", ".join(f"v{i}: {ty}" for i in range(arity))
    return f"""
function %{name.lower()}({params}) -> {ty} {{
    fn0 = %{name}({params}) -> {ty}
block0({block}):
    v{arity} = call fn0({args})
    return v{arity}
}}
"""


def _declared_file() -> str:
    parts = ["test interpret\ntest run\n"]
    for op in ROUNDINGS:
        for ty, edges in (("f32", F32_EDGES), ("f64", F64_EDGES)):
            name = f"{op}F{ty[1:]}"
            parts.append(_declared(name, ty, 1))
            parts += [f"; print: %{name.lower()}({x})\n" for x in edges]
    for ty, triples in (("f32", FMA_F32), ("f64", FMA_F64)):
        name = f"FmaF{ty[1:]}"
        parts.append(_declared(name, ty, 3))
        parts += [f"; print: %{name.lower()}({', '.join(t)})\n" for t in triples]
    return "".join(parts)


def _agree_everywhere(text: str, lines: list[TargetLine] | None = None) -> int:
    ft = parse_text(text)
    results = Runner().run_file(ft, lines or default_lines(ft, None))
    for result in results:
        verdicts = set(result.judgement.verdicts.values())
        assert verdicts == {Verdict.AGREE}, (result.command.text, result.outcomes)
    return len(results)


def test_declared_libcalls_run_on_every_target_as_the_interpreter_computes() -> None:
    """`fn0 = %CeilF32(f32) -> f32` and friends, called on all four targets
    (s390x keeps an f32 in the high half of f0, riscv64 NaN-boxes it)."""
    assert _agree_everywhere(_declared_file()) == RUNS


def _lowered_file() -> str:
    """ceil/floor/trunc/nearest and fma as instructions: x86_64 without
    SSE4.1 (and without FMA) lowers them to libcalls."""
    parts = ["test interpret\ntest run\ntarget x86_64\n"]
    for ty, edges, triples in (("f32", F32_EDGES, FMA_F32), ("f64", F64_EDGES, FMA_F64)):
        for op in ("ceil", "floor", "trunc", "nearest"):
            parts.append(f"""
function %{op}_{ty}({ty}) -> {ty} {{
block0(v0: {ty}):
    v1 = {op} v0
    return v1
}}
""")
            parts += [f"; print: %{op}_{ty}({x})\n" for x in edges]
        parts.append(f"""
function %fma_{ty}({ty}, {ty}, {ty}) -> {ty} {{
block0(v0: {ty}, v1: {ty}, v2: {ty}):
    v3 = fma v0, v1, v2
    return v3
}}
""")
        parts += [f"; print: %fma_{ty}({', '.join(t)})\n" for t in triples]
    return "".join(parts)


def test_x86_64_without_sse41_and_fma_calls_libcalls_that_now_run() -> None:
    text = _lowered_file()
    ft = parse_text(text)
    [config] = Runner().prepare_file(ft, default_lines(ft, None))
    assert config.image is not None and config.failure is None
    assert set(config.image.libcalls.values()) == {
        f"{op}F{w}" for op in ("Ceil", "Floor", "Trunc", "Nearest", "Fma") for w in (32, 64)
    }
    assert _agree_everywhere(text) == RUNS


VECTORS = """test interpret
test run
target x86_64
target x86_64 has_sse3 has_ssse3

function %nearest_f32x4(f32x4) -> f32x4 {
block0(v0: f32x4):
    v1 = nearest v0
    return v1
}
; print: %nearest_f32x4([0x1.4p1 -0x1.4p1 0x1.cp1 -0x0.0])

function %floor_f64x2(f64x2) -> f64x2 {
block0(v0: f64x2):
    v1 = floor v0
    return v1
}
; print: %floor_f64x2([-0x1.0p-1 0x1.8p0])

function %fma_f32x4(f32x4, f32x4, f32x4) -> f32x4 {
block0(v0: f32x4, v1: f32x4, v2: f32x4):
    v3 = fma v0, v1, v2
    return v3
}
; print: %fma_f32x4([0x1.0p0 0x1.8p0 -0x0.0 +Inf], [0x1.0p1 0x1.0p1 0x1.0p0 0x0.0], \
[0x1.0p0 -0x1.0p0 -0x0.0 0x1.0p0])

function %fma_f64x2(f64x2, f64x2, f64x2) -> f64x2 {
block0(v0: f64x2, v1: f64x2, v2: f64x2):
    v3 = fma v0, v1, v2
    return v3
}
; print: %fma_f64x2([0x1.0p0 0x1.8p0], [0x1.0p1 0x1.0p1], [0x1.0p0 -0x1.0p0])

function %swizzle(i8x16, i8x16) -> i8x16 {
block0(v0: i8x16, v1: i8x16):
    v2 = swizzle v0, v1
    return v2
}
; print: %swizzle([0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15], \
[15 0 16 255 127 1 2 3 128 4 5 6 7 8 9 10])

function %shuffle(i8x16, i8x16) -> i8x16 {
block0(v0: i8x16, v1: i8x16):
    v2 = shuffle v0, v1, [0 17 2 19 4 21 6 23 8 25 10 27 12 29 14 31]
    return v2
}
; print: %shuffle([0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15], \
[16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31])
"""


def test_vector_lowerings_and_pshufb_on_x86_64() -> None:
    """Lane-by-lane libcalls for vectors, and X86Pshufb for swizzle and
    shuffle without SSSE3 (with SSSE3, the native instruction agrees)."""
    ft = parse_text(VECTORS.replace("\\\n", ""))
    configs = Runner().prepare_file(ft, default_lines(ft, None))
    assert configs[0].image is not None
    assert "X86Pshufb" in configs[0].image.libcalls.values()
    assert _agree_everywhere(VECTORS.replace("\\\n", "")) == 6


# --- the memory libcalls: against run lines -------------------------------------------

MEMORY = """test run

function %copy(i32) -> i64, i64 {
    ss0 = explicit_slot 32
    fn0 = %Memcpy(i64, i64, i64) -> i64
    fn1 = %Memset(i64, i32, i64) -> i64
    fn2 = %Memmove(i64, i64, i64) -> i64
    fn3 = %Memcmp(i64, i64, i64) -> i32
block0(v0: i32):
    v1 = stack_addr.i64 ss0
    v2 = iconst.i64 0
    store v2, v1+8
    v3 = iconst.i64 0x0303030303030303
    store v3, v1
    v4 = iconst.i64 1
    istore8 v4, v1
    v5 = iconst.i64 8
    istore8 v5, v1+7
    v6 = stack_addr.i64 ss0+8
    v7 = call fn0(v6, v1, v5)
    v8 = iconst.i64 2
    v9 = call fn1(v1, v0, v8)
    v10 = stack_addr.i64 ss0+1
    v11 = iconst.i64 7
    v12 = call fn2(v10, v1, v11)
    v13 = call fn3(v1, v6, v5)
    v14 = call fn3(v6, v1, v5)
    v15 = stack_addr.i64 ss0+3
    v16 = stack_addr.i64 ss0+11
    v17 = iconst.i64 4
    v18 = call fn3(v15, v16, v17)
    v19 = isub v7, v6
    v20 = isub v9, v1
    v21 = isub v12, v10
    v22 = sextend.i64 v13
    v36 = iconst.i64 100
    v23 = imul v22, v36
    v24 = sextend.i64 v14
    v37 = iconst.i64 10
    v25 = imul v24, v37
    v26 = sextend.i64 v18
    v27 = iadd v19, v20
    v28 = iadd v27, v21
    v29 = iadd v28, v23
    v30 = iadd v29, v25
    v31 = iadd v30, v26
    v32 = uload8.i64 v1
    v33 = uload8.i64 v1+2
    v34 = uload8.i64 v1+7
    v35 = uload8.i64 v1+15
    v38 = iconst.i64 8
    v39 = ishl v33, v38
    v40 = iconst.i64 16
    v41 = ishl v34, v40
    v42 = iconst.i64 24
    v43 = ishl v35, v42
    v44 = bor v32, v39
    v45 = bor v44, v41
    v46 = bor v45, v43
    return v46, v31
}
; run: %copy(0x1ab) == [0x0803abab, 90]
; run: %copy(0x7f00) == [0x08030000, -90]

function %bad_store() -> i64 {
    fn0 = %Memset(i64, i32, i64) -> i64
    fn1 = %bad_store() -> i64
block0:
    v0 = func_addr.i64 fn1
    v1 = iconst.i32 0
    v2 = iconst.i64 4
    v3 = call fn0(v0, v1, v2)
    return v3
}
; run: %bad_store() == 0
"""


def test_memory_libcalls_on_every_target() -> None:
    """memcpy, memset (the low byte of its i32), memmove over an overlap and
    memcmp's sign, into a stack slot; a store into code crashes."""
    ft = parse_text(MEMORY)
    results = Runner().run_file(ft, default_lines(ft, None))
    copies = [r for r in results if r.command.func == "%copy"]
    for result in copies:
        assert set(result.judgement.verdicts.values()) == {Verdict.AGREE}, result.outcomes
    [bad] = [r for r in results if r.command.func == "%bad_store"]
    for label, outcome in bad.outcomes.items():
        assert outcome.kind is Kind.CRASH, (label, outcome)
        assert "in libcall Memset: write to protected memory" in outcome.detail


def test_libcalls_in_another_convention_abstain_with_the_reason() -> None:
    """The stubs follow the target's default convention: a file that moves
    libcalls to windows_fastcall is not run on them (it would read the wrong
    registers)."""
    from fuzz.pipeline.filetest import TargetLine, parse_text
    from fuzz.pipeline.oracle import Verdict
    from fuzz.pipeline.runner import Runner
    from fuzz.targets import TARGETS

    text = (
        "test run\nset libcall_call_conv=windows_fastcall\ntarget x86_64\n\n"
        "function %f(f32) -> f32 {\nblock0(v0: f32):\n    v1 = ceil v0\n    return v1\n}\n"
        "; run: %f(0x1.8p0) == 0x1.0p1\n"
    )
    (result,) = Runner().run_file(parse_text(text), [TargetLine(TARGETS["x86_64"])])
    assert result.judgement.verdicts["x86_64"] is Verdict.NOT_EXECUTABLE
    assert "windows_fastcall" in result.outcomes["x86_64"].detail
