"""Vector results keep the type their signature gives them: the bridge hands
every 128-bit vector over as i8x16, which once made identical bits compare
unequal against targets (found by the capability probe)."""

from __future__ import annotations

from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import Runner
from fuzz.targets import TARGETS

SWAP = """\
test run
function %callee(i32x4, f64x2) -> f64x2, i32x4 {
block0(v0: i32x4, v1: f64x2):
    return v1, v0
}

function %caller(i32x4, f64x2) -> f64x2, i32x4 {
    fn0 = %callee(i32x4, f64x2) -> f64x2, i32x4
block0(v0: i32x4, v1: f64x2):
    v2, v3 = call fn0(v0, v1)
    return v2, v3
}
; run: %caller([1 -2 3 4], [0x1.0p0 -0x1.8p1]) == [[0x1.0p0 -0x1.8p1], [1 -2 3 4]]
"""


def test_vector_results_agree_with_their_own_types() -> None:
    ft = parse_text(SWAP)
    (run,) = ft.runs
    assert [v.ty for v in run.args] == ["i32x4", "f64x2"]
    assert [v.ty for v in run.expected or ()] == ["f64x2", "i32x4"]
    lines = [TargetLine(TARGETS[name]) for name in ("x86_64", "aarch64", "s390x")]
    (result,) = Runner().run_file(ft, lines)
    for label, outcome in result.outcomes.items():
        assert [v.ty for v in outcome.values] == ["f64x2", "i32x4"], label
        assert result.judgement.verdicts[label] is Verdict.AGREE, (label, outcome)
    assert not result.judgement.divergent


def test_x86_vex_code_is_refused_but_constants_after_the_code_are_not() -> None:
    check = TARGETS["x86_64"].unrunnable_code
    ret = bytes.fromhex("c3")
    vpaddd = bytes.fromhex("c5f1fec2")  # vpaddd xmm0, xmm1, xmm2
    assert check(vpaddd + ret, 0x1000) == "vpaddd xmm0, xmm1, xmm2"
    assert check(bytes.fromhex("660ffec2") + ret, 0x1000) is None  # paddd: SSE2
    # movdqu xmm0, [rip + 1] reaches a constant right after `ret`; the
    # constant's bytes look like VEX but are data.
    load = bytes.fromhex("f30f6f0501000000")
    assert check(load + ret + vpaddd, 0x1000) is None
    assert TARGETS["aarch64"].unrunnable_code(vpaddd, 0) is None
