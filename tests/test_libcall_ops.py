"""Libcalls from generated functions (issue 24): rounding and fused
multiply-add of finite values and byte swizzles, which x86_64 without
SSE4.1 / FMA / SSSE3 lowers to calls of CeilF64, FmaF32, X86Pshufb...
(emit_vm_call); the harness computes them."""

from __future__ import annotations

import re

from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import Runner
from fuzz.targets import TARGETS

_OP = re.compile(r"= (ceil|floor|trunc|nearest|fma|swizzle) ")


def test_rounding_fma_and_swizzle_become_libcalls_on_x86_64_and_agree() -> None:
    runner = Runner()
    called: set[str] = set()
    for seed in range(3000):
        text = generate(RandomSource(seed), TARGETS["x86_64"]).text
        target_line = text.split("\ntarget ")[1].split("\n")[0]
        # without SSE4.1 rounding is a libcall, without SSSE3 a swizzle
        skip = "has_sse41" in target_line and "has_ssse3" in target_line
        if not _OP.search(text) or skip or ") preserve_all {" in text:
            continue
        ft = parse_text(text)
        [config] = runner.prepare_file(ft, ft.targets)
        if config.image is None:
            continue
        called |= set(config.image.libcalls.values())
        for result in runner.run_configs(ft, [config]):
            verdicts = set(result.judgement.verdicts.values())
            assert verdicts == {Verdict.AGREE}, result.outcomes
        if {"FmaF32", "FmaF64"} & called and "X86Pshufb" in called and len(called) > 3:
            break
    assert {"FmaF32", "FmaF64"} & called and "X86Pshufb" in called, called
    assert called & {f"{op}F{w}" for op in ("Ceil", "Floor", "Trunc", "Nearest") for w in (32, 64)}
