"""The debug-compile oracle (fuzz.pipeline.debuginfo): compiled again with
every value labelled and VCode printed, a function's code must not change;
campaigns and coverage replays give the same share of generated cases that
compile, chosen by seed, and a difference is a finding of its own verdict,
bucketed, counted and reduced like any other."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import _cranelift
from fuzz.campaign.worker import from_bytes, generated
from fuzz.faults import DEBUG_FAULTS, hooks
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline import debuginfo
from fuzz.pipeline.filetest import parse_text, settings
from fuzz.pipeline.oracle import Kind, Verdict
from fuzz.pipeline.runner import FaultHooks, Runner, default_lines
from fuzz.targets import TARGET_NAMES, TARGETS
from fuzz.triage.buckets import bucket_for
from fuzz.triage.export import filetest
from reducers.clif import parse_module
from reducers.reduce import reduce_text
from reducers.same_bucket import Goal

CALLFUZZ = [sys.executable, "-m", "fuzz.commands.cli"]


def asking(seed: int, target: str) -> str:
    """The generated case of `seed` on `target`, asking for the debug compile."""
    text = generated(seed, [TARGETS[target]])
    return text if debuginfo.wanted(text) else f"{debuginfo.DEBUG_COMPILE_DIRECTIVE}\n{text}"


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_the_debug_compile_gives_the_plain_code_on_generated_cases(target: str) -> None:
    """Eight generated cases per target (both register allocators among
    them): every target line is compiled again with debug info, gives the
    same code, and its labels come back as VCode text and location ranges."""
    runner = Runner(contract=False)
    lines_run = 0
    for seed in range(8):
        ft = parse_text(asking(seed, target))
        lines = default_lines(ft, None)
        for config in runner.prepare_file(ft, lines):
            assert config.failure is None or config.failure.kind is Kind.NOT_EXECUTABLE, (
                seed,
                config.failure,
            )
        lines_run += len(lines)
        isa = runner.isa(lines[0], [*ft.shared_flags])
        debug = ft.module.compile(isa, debug_info=True)
        assert all(d["vcode"].strip() and d["labels"] for d in debug)
        if debuginfo.ranges_expected(settings(ft.shared_flags)):
            assert sum(d["value_label_ranges"] for d in debug) > 0
    assert runner.debug_compiles == lines_run


def test_a_planted_difference_is_its_own_verdict_and_bucket() -> None:
    """The planted fault flips a bit of the debug compile's code on x86_64:
    the line is blamed with `debug info changes code`, bucketed by what
    changed (not the function or the offset); other targets are untouched."""
    fault = "x86_64-debug-changes-code"
    runner = Runner(fault=hooks(fault))
    ft = parse_text(asking(4, "x86_64"))
    results = runner.run_file(ft, default_lines(ft, None))
    label = next(iter(results[0].judgement.blame))
    assert label.startswith("x86_64")
    assert results[0].judgement.verdicts[label] is Verdict.DEBUG_INFO_CHANGES_CODE
    bucket = bucket_for(ft, label, results[0])
    assert bucket.key == "x86_64|debug info changes code|code differs"
    other = parse_text(asking(5, "aarch64"))
    again = Runner(fault=hooks(fault)).run_file(other, default_lines(other, None))
    assert not any(r.judgement.divergent for r in again)
    assert set(DEBUG_FAULTS) == {f"{t}-debug-changes-code" for t in TARGET_NAMES}


def test_a_case_without_the_directive_gets_no_debug_compile() -> None:
    runner = Runner(fault=hooks("x86_64-debug-changes-code"))
    text = asking(4, "x86_64").replace(f"{debuginfo.DEBUG_COMPILE_DIRECTIVE}\n", "")
    ft = parse_text(text)
    results = runner.run_file(ft, default_lines(ft, None))
    assert runner.debug_compiles == 0
    assert not any(r.judgement.divergent for r in results)


def test_the_oracle_names_each_difference() -> None:
    ft = parse_text(asking(4, "x86_64"))
    isa = Runner().isa(default_lines(ft, None)[0], [*ft.shared_flags])
    debug = [
        debuginfo.DebugCompiled.from_bridge(d) for d in ft.module.compile(isa, debug_info=True)
    ]
    plain = [d.compiled for d in debug]
    assert debuginfo.judge_debug(plain, debug) is None
    moved = [dataclasses.replace(f, call_returns=[*f.call_returns, 0]) for f in plain]
    found = debuginfo.judge_debug(moved, debug)
    assert found is not None and found.kind is Kind.DEBUG_INFO
    assert found.detail.startswith("call sites differ: ")
    # a function whose code debug info changes on purpose is not compared
    assert debuginfo.judge_debug(moved, debug, exempt={f.name for f in plain}) is None
    blank = [dataclasses.replace(d, vcode="") for d in debug]
    lost = debuginfo.judge_debug(plain, blank)
    assert lost is not None and lost.kind is Kind.HARNESS


def test_labels_without_ranges_are_counted_where_they_should_come_back() -> None:
    ft = parse_text(asking(4, "x86_64"))
    isa = Runner().isa(default_lines(ft, None)[0], [*ft.shared_flags])
    debug = [
        debuginfo.DebugCompiled.from_bridge(d) for d in ft.module.compile(isa, debug_info=True)
    ]
    assert not debuginfo.ranges_missing(debug, {})
    unranged = [dataclasses.replace(d, value_label_ranges=0) for d in debug]
    assert debuginfo.ranges_missing(unranged, {})
    assert not debuginfo.ranges_missing(unranged, {"regalloc_algorithm": "single_pass"})
    unlabelled = [dataclasses.replace(d, labels=0) for d in unranged]
    assert not debuginfo.ranges_missing(unlabelled, {})
    # the runner counts such lines (labels that gave nothing back, planted)
    lose_ranges = FaultHooks(debug=lambda _t, d: dataclasses.replace(d, value_label_ranges=0))
    runner = Runner(fault=lose_ranges)
    seed = next(s for s in range(64) if "single_pass" not in asking(s, "x86_64"))
    ft = parse_text(asking(seed, "x86_64"))
    configs = runner.prepare_file(ft, default_lines(ft, None))
    assert runner.debug_without_ranges == len(configs) > 0


def test_vmctx_functions_are_exempt() -> None:
    params = {"%a": [("i64", "", "vmctx"), ("i32", "", "normal")], "%b": [("i64", "", "normal")]}
    assert debuginfo.debug_exempt(params) == {"%a"}


def test_the_debug_compile_failing_alone_is_a_finding() -> None:
    panic = _cranelift.CraneliftPanic("boom", "src/x.rs:1:2")
    assert debuginfo.debug_failure(panic).kind is Kind.COMPILE_PANIC
    assert "debug compile: boom" in debuginfo.debug_failure(panic).detail
    refused = debuginfo.debug_failure(_cranelift.CompileError("%f: no"))
    assert refused.kind is Kind.DEBUG_INFO


def test_a_share_of_seeds_is_chosen_by_its_own_stream() -> None:
    """One seed in DEBUG_COMPILE_EVERY, the same every time, on every target;
    the chosen case's CLIF is exactly what the generator makes for its seed
    (the choice draws nothing from the generator's stream)."""
    seeds = range(3200)
    picked = [s for s in seeds if debuginfo.chosen(s)]
    share = len(seeds) / debuginfo.DEBUG_COMPILE_EVERY
    assert share / 2 < len(picked) < 2 * share
    assert picked == [s for s in seeds if debuginfo.chosen(s)]
    assert {s % len(TARGET_NAMES) for s in picked} == set(range(len(TARGET_NAMES)))
    targets = list(TARGETS.values())
    for seed in picked[:3]:
        text = generated(seed, targets)
        assert debuginfo.wanted(text)
        plain = generate(RandomSource(seed), targets[seed % len(targets)]).text
        assert text.endswith(plain)
    assert not debuginfo.wanted(generated(next(s for s in seeds if s not in picked), targets))
    data = next(bytes([i, 7]) for i in range(256) if debuginfo.chosen(bytes([i, 7])))
    assert debuginfo.wanted(from_bytes(data, targets))


def test_the_reducer_keeps_the_directive_and_reduces_a_difference() -> None:
    text = asking(4, "x86_64")
    assert parse_module(text).header[0] == debuginfo.DEBUG_COMPILE_DIRECTIVE
    fault = "x86_64-debug-changes-code"
    key = "x86_64|debug info changes code|code differs"
    reduced = reduce_text(text, Goal("x86_64", key, fault), time_limit=60)
    assert debuginfo.wanted(reduced.text)
    assert reduced.lines_after < reduced.lines_before


def test_a_campaign_counts_its_debug_compiles_and_buckets_a_difference(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    proc = subprocess.run(
        [*CALLFUZZ, "fuzz", "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--jobs", "1"]
        + ["--cases", "48", "--seed", "0", "--targets", "x86_64", "--no-c-abi"]
        + ["--corpus", str(tmp_path / "corpus"), "--plant-fault", "x86_64-debug-changes-code"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    chosen = [s for s in range(48) if debuginfo.chosen(s)]
    out = " ".join(proc.stdout.replace("│", " ").split())
    assert f"debug compiles {len(chosen)} target lines compiled again (0 gave no" in out
    assert f"{len(chosen)} in 1 new buckets" in out
    assert "x86_64: debug info changes code: code differs" in out


def test_the_export_keeps_the_directive_and_says_what_to_expect() -> None:
    """The upstream filetest of such a finding is a `test compile` file that
    keeps `; callfuzz: debug-compile`, so `callfuzz run` shows it again."""
    key = "x86_64|debug info changes code|code differs"
    text = filetest(asking(4, "x86_64"), "x86_64: debug info changes code", key, "0.135.8")
    assert debuginfo.wanted(text)
    assert "test compile" in text.splitlines() and "test run" not in text.splitlines()
    assert "no filetest compiles with value labels" in text
    ft = parse_text(text)
    results = Runner(fault=hooks("x86_64-debug-changes-code")).run_file(ft, default_lines(ft, None))
    found = [v for r in results for v in r.judgement.verdicts.values()]
    assert Verdict.DEBUG_INFO_CHANGES_CODE in found
