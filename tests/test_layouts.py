"""Far layouts (fuzz.pipeline.link LAYOUTS): a case that asks for one
(`; callfuzz: layout far|edge`) gets its callees placed apart from their
callers, in chunks unicorn maps page by page, and runs as it does near:
non-colocated calls across 4 GiB and beyond every pc-relative reach
(aarch64's +-128 MiB BL), colocated calls at the exact edge of their
relocation's range. A call a relocation cannot reach is a clear link error,
never a patched field that jumps elsewhere."""

from __future__ import annotations

import pytest

from fuzz.campaign.worker import LAYOUT_EVERY, generated, layout_for_seed
from fuzz.pipeline.emulate import Emulator
from fuzz.pipeline.filetest import TargetLine, parse_text
from fuzz.pipeline.link import (
    CODE_BASE,
    EDGE,
    FAR,
    FUNCTION_ALIGN,
    HARNESS_MEMORY,
    NEAR,
    CompiledFunction,
    Image,
    link,
)
from fuzz.pipeline.oracle import Verdict
from fuzz.pipeline.runner import Config, Runner, layout_of
from fuzz.relocations import RelocationOutOfRange
from fuzz.targets import TARGET_NAMES, TARGETS

# each target's relocation of a colocated direct call
CALL_RELOC = {
    "x86_64": "X86CallPCRel4",
    "aarch64": "Arm64Call",
    "riscv64": "RiscvCallPlt",
    "s390x": "S390xPLTRel32Dbl",
}
GIB = 1 << 30


def _case(target: str, layout: str, colocated: bool) -> str:
    where = "colocated " if colocated else ""
    return f"""; callfuzz: layout {layout}
test run
target {target}

function %callee(i64, i32) -> i64 {{
block0(v0: i64, v1: i32):
    v2 = sextend.i64 v1
    v3 = imul v0, v2
    return v3
}}
function %caller(i64, i32) -> i64 {{
    sig0 = (i64, i32) -> i64
    fn0 = {where}%callee sig0
block0(v0: i64, v1: i32):
    v2 = call fn0(v0, v1)
    v4 = iconst.i64 5
    v3 = iadd v2, v4
    return v3
}}

; run: %caller(3, -2) == -1
; run: %caller(0x100000000, 7) == 0x700000005
"""


def _prepared(target: str, layout: str, colocated: bool) -> tuple[Runner, Config]:
    ft = parse_text(_case(target, layout, colocated))
    runner = Runner()
    (config,) = runner.prepare_file(ft, [TargetLine(TARGETS[target])])
    assert config.failure is None, config.failure
    return runner, config


def _run_agrees(target: str, layout: str, colocated: bool) -> None:
    ft = parse_text(_case(target, layout, colocated))
    results = Runner().run_file(ft, [TargetLine(TARGETS[target])])
    assert len(results) == 2
    for result in results:
        assert result.judgement.verdicts[target] is Verdict.AGREE, result.outcomes


def _call_site(image: Image, target: str, compiled: list[CompiledFunction]) -> int:
    (caller,) = (f for f in compiled if f.name == "%caller")
    (reloc,) = (r for r in caller.relocs if r.kind == CALL_RELOC[target])
    return image.symbols["%caller"] + reloc.offset - reloc.addend


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_a_far_layout_places_non_colocated_callees_beyond_every_reach(target: str) -> None:
    _runner, config = _prepared(target, FAR, colocated=False)
    image = config.image
    assert image is not None and config.layout == FAR
    caller, callee = image.symbols["%caller"], image.symbols["%callee"]
    # across 4 GiB (x86_64's question), and past every pc-relative reach
    # (aarch64's +-128 MiB): the caller is placed apart, its callee stays
    assert callee < 4 * GIB <= caller and caller - callee > 4 * GIB
    assert caller in image.far and len(image.far[caller]) == image.sizes["%caller"]
    # qemu-user loads one image: a layout placed apart is not refereed
    assert not config.route.referee
    _run_agrees(target, FAR, colocated=False)


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_a_far_layout_keeps_colocated_calls_together(target: str) -> None:
    """What a pc-relative relocation ties together stays in one chunk
    (only the trampoline, called through a register, goes apart)."""
    _runner, config = _prepared(target, FAR, colocated=True)
    image = config.image
    assert image is not None and config.layout == FAR
    caller, callee = image.symbols["%caller"], image.symbols["%callee"]
    assert abs(caller - callee) < 4096 and callee == image.base
    assert [name for name, at in image.symbols.items() if at in image.far] == [
        "%callfuzz_trampoline0"
    ]
    _run_agrees(target, FAR, colocated=True)


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_an_edge_layout_puts_a_colocated_callee_at_the_edge_of_its_reach(target: str) -> None:
    _runner, config = _prepared(target, EDGE, colocated=True)
    image = config.image
    assert image is not None and config.layout == EDGE
    kind = TARGETS[target].relocations[CALL_RELOC[target]]
    assert kind.reach is not None
    distance = image.symbols["%callee"] - _call_site(image, target, config.functions)
    # as far as the call reaches, to the function alignment
    assert kind.reach - FUNCTION_ALIGN < distance <= kind.reach
    for start, data in image.chunks():
        end = start + len(data)
        assert end <= HARNESS_MEMORY[0] or start >= HARNESS_MEMORY[1], hex(start)
    _run_agrees(target, EDGE, colocated=True)


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_a_colocated_call_past_its_reach_is_a_link_error(target: str) -> None:
    """One step beyond the edge the linker refuses, naming the relocation;
    at the edge itself it links (and the run above agrees there)."""
    _runner, config = _prepared(target, NEAR, colocated=True)
    image = config.image
    assert image is not None
    kind = TARGETS[target].relocations[CALL_RELOC[target]]
    assert kind.reach is not None
    # placed apart, %callee leaves %caller first in the image, at its base
    (caller,) = (f for f in config.functions if f.name == "%caller")
    (reloc,) = (r for r in caller.relocs if r.kind == CALL_RELOC[target])
    site = CODE_BASE + reloc.offset - reloc.addend
    edge = (site + kind.reach) // FUNCTION_ALIGN * FUNCTION_ALIGN
    beyond = edge + FUNCTION_ALIGN
    assert beyond - site > kind.reach
    linked = link(config.functions, TARGETS[target], place={"%callee": edge})
    assert linked.symbols == {**linked.symbols, "%caller": CODE_BASE, "%callee": edge}
    with pytest.raises(RelocationOutOfRange, match=CALL_RELOC[target]):
        link(config.functions, TARGETS[target], place={"%callee": beyond})


def test_an_emulator_maps_only_the_pages_a_far_image_uses() -> None:
    """Chunks 8 GiB apart cost a page or two each, and the next image's
    pages replace them (a stray jump into the old ones faults)."""
    runner, config = _prepared("aarch64", FAR, colocated=False)
    image = config.image
    assert image is not None and image.far
    emulator: Emulator = runner.emulator(TARGETS["aarch64"])
    emulator.load(image, config.calls)
    mapped = sum(hi - lo for lo, hi in emulator._mapped)  # noqa: SLF001
    assert mapped <= 4 * 4096 * len(image.chunks())
    assert all(emulator.is_mapped(start) for start, _data in image.chunks())
    _near_runner, near = _prepared("aarch64", NEAR, colocated=False)
    assert near.image is not None
    emulator.load(near.image, near.calls)
    assert not any(emulator.is_mapped(start) for start in image.far)
    assert emulator.is_mapped(CODE_BASE)


def test_a_case_names_its_layout() -> None:
    assert layout_of("test run\n") == NEAR
    assert layout_of("; callfuzz: layout edge\ntest run\n") == EDGE


def test_campaigns_give_a_share_of_cases_on_every_target_each_layout() -> None:
    """One generated case in LAYOUT_EVERY is far, one edge, by seed; the
    target is the seed modulo the targets, and each gets both layouts."""
    seeds = range(1600)
    chosen = {seed: layout_for_seed(seed) for seed in seeds}
    for layout in (FAR, EDGE):
        picked = [seed for seed, lay in chosen.items() if lay == layout]
        assert len(seeds) / LAYOUT_EVERY / 2 < len(picked) < 2 * len(seeds) / LAYOUT_EVERY
        assert {seed % len(TARGET_NAMES) for seed in picked} == set(range(len(TARGET_NAMES)))
    text = generated(next(s for s in seeds if chosen[s] == FAR), list(TARGETS.values()))
    assert layout_of(text) == FAR
    assert (
        layout_of(generated(next(s for s in seeds if chosen[s] == NEAR), [TARGETS["s390x"]]))
        == NEAR
    )


TWO_CALLEES = """; callfuzz: layout edge
test run
target {target}

function %a(i64) -> i64 {{
block0(v0: i64):
    v1 = iconst.i64 3
    v2 = imul v0, v1
    return v2
}}

function %b(i64) -> i64 {{
block0(v0: i64):
    v1 = iconst.i64 7
    v2 = iadd v0, v1
    return v2
}}

function %caller(i64) -> i64 {{
    fn0 = colocated %a(i64) -> i64
    fn1 = colocated %b(i64) -> i64
block0(v0: i64):
    v1 = call fn0(v0)
    v2 = call fn1(v1)
    return v2
}}
; run: %caller(5) == 22
"""


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_edge_callees_sharing_a_page_both_run(target: str) -> None:
    """Two callees at the edge of the same caller's calls lie side by side
    (the second just below the first), in one page where the edge is not
    page-aligned (riscv64 here): loading one chunk keeps the other."""
    ft = parse_text(TWO_CALLEES.format(target=target))
    runner = Runner()
    (config,) = runner.prepare_file(ft, [TargetLine(TARGETS[target])])
    image = config.image
    assert image is not None and config.layout == EDGE and len(image.far) == 2
    a, b = image.symbols["%a"], image.symbols["%b"]
    assert 0 < abs(a - b) < 4096
    (result,) = runner.run_file(ft, [TargetLine(TARGETS[target])])
    assert result.judgement.verdicts[target] is Verdict.AGREE, result.outcomes


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_images_sharing_pages_load_one_after_another(target: str) -> None:
    """An emulator loads image after image: chunks that share a page, the
    same layout again, then a near image (each page mapped once, unmapped
    once)."""
    runner = Runner()
    line = [TargetLine(TARGETS[target])]
    for text in (TWO_CALLEES.format(target=target),) * 2 + (
        TWO_CALLEES.format(target=target).replace("layout edge", "layout near"),
    ):
        (result,) = runner.run_file(parse_text(text), line)
        assert result.judgement.verdicts[target] is Verdict.AGREE, result.outcomes
