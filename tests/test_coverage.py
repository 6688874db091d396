"""Coverage over Cranelift's own code (fuzz.coverage).

The fast tests need nothing but the normal bridge (the build's use a fake
cargo and rustc that hand it back, tests/conftest.py). The slow ones need the
instrumented bridge: they run when it is built already (`callfuzz coverage
build`) or, with CALLFUZZ_SLOW=1, build it first (minutes); otherwise they
skip, saying why."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fuzz.bridge.cache import LIBRARY, read_entry, source_hash
from fuzz.bridge.load import ENV_CHOICE, ENV_PINNED
from fuzz.bridge.spec import BridgeError
from fuzz.coverage import build, counters, elf, live, preload, report, symbols
from fuzz.coverage.counters import Bitmap, CoverageError, Recorder

ROOT = Path(__file__).resolve().parents[1]
CALLFUZZ = [sys.executable, "-m", "fuzz.commands.cli"]


def _normal_bridge() -> Path:
    from fuzz import _cranelift

    return Path(str(_cranelift.__file__)).resolve()


# -- ELF and counters -------------------------------------------------------------


def test_elf_reader_finds_sections_of_the_normal_bridge() -> None:
    found = elf.read(_normal_bridge())
    assert ".text" in found.sections and found.loads
    with pytest.raises(elf.ElfError):
        found.section(elf.COUNTERS)


def test_elf_reader_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"not an elf file at all" * 4)
    with pytest.raises(elf.ElfError):
        elf.read(path)


def test_the_normal_bridge_has_no_counters() -> None:
    with pytest.raises(CoverageError, match="not an instrumented bridge"):
        counters.Counters(_normal_bridge())


def test_the_load_base_of_a_loaded_module_is_found() -> None:
    library = _normal_bridge()
    parsed = elf.read(library)
    base = counters.load_base(library, parsed)
    text = parsed.section(".text")
    # the module's code is mapped there: reading it does not fault, and it is
    # the file's bytes
    with open(library, "rb") as f:
        f.seek(text.offset)
        expected = f.read(64)
    assert ctypes.string_at(base + text.address, 64) == expected


def test_bitmaps_round_trip_and_merge(tmp_path: Path) -> None:
    a = Bitmap("k", bytes([1, 0, 0, 1]))
    b = Bitmap("k", bytes([0, 1, 0, 1]))
    counters.write(tmp_path / "a.cov", a)
    counters.write(tmp_path / "b.cov", b)
    both = counters.merged(counters.bitmap_files(tmp_path))
    assert both is not None and both.bits == bytes([1, 1, 0, 1]) and both.reached == 3
    with pytest.raises(CoverageError, match="cannot merge"):
        a.merge(Bitmap("other", bytes(4)))
    (tmp_path / "c.cov").write_bytes(b"garbage")
    with pytest.raises(CoverageError, match="not a coverage bitmap"):
        counters.read_bitmap(tmp_path / "c.cov")


class _FakeCounters:
    """Counters in a ctypes buffer, the way libFuzzer sees a module's."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = (ctypes.c_uint8 * size)()

    def snapshot(self) -> bytes:
        return bytes(self.buffer)


def test_the_recorder_keeps_every_counter_any_input_reached(tmp_path: Path) -> None:
    fake = _FakeCounters(300)
    out = tmp_path / "w.cov"
    rec = Recorder(fake, "k", out)  # type: ignore[arg-type]
    fake.buffer[3] = 7
    rec.take()
    for i in range(300):  # libFuzzer clears them before the next input
        fake.buffer[i] = 0
    fake.buffer[299] = 1
    rec.take()
    rec.save()
    got = counters.read_bitmap(out)
    assert got.reached == 2 and got.bits[3] == 1 and got.bits[299] == 1


# -- symbols and the report ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/"
            "cranelift-codegen-0.135.8/src/isa/x64/abi.rs",
            "cranelift-codegen/src/isa/x64/abi.rs",
        ),
        (
            "/c/coverage/target/x86_64-unknown-linux-gnu/release/build/"
            "cranelift-codegen-3df486e33032eade/out/isle_aarch64.rs",
            "cranelift-codegen/OUT_DIR/isle_aarch64.rs",
        ),
        (
            "/w/wasmtime/cranelift/codegen/src/machinst/abi.rs",
            "cranelift-codegen/src/machinst/abi.rs",
        ),
        ("/rustc/0123abcd/library/core/src/slice/mod.rs", "core/src/slice/mod.rs"),
        ("??", "?"),
    ],
)
def test_source_paths_name_their_crate(path: str, expected: str) -> None:
    assert symbols.source_path(path) == expected


@pytest.mark.parametrize(
    ("name", "short"),
    [
        (
            "<cranelift_codegen::isa::x64::lower::isle::IsleContext<"
            "cranelift_codegen::machinst::lower::Lower<cranelift_codegen::isa::x64::inst::MInst>>"
            " as cranelift_codegen::isa::x64::lower::isle::generated_code::Context>::gen_call_info",
            "gen_call_info",
        ),
        (
            "cranelift_codegen::isa::aarch64::lower::isle::generated_code::"
            "constructor_lower_return::<cranelift_codegen::isa::aarch64::lower::isle::IsleContext>",
            "lower_return",
        ),
        ("cranelift_codegen::ir::dfg::DataFlowGraph::new", "new"),
    ],
)
def test_short_names(name: str, short: str) -> None:
    assert report.short_name(name) == short


def test_backends_and_call_lowering_are_told_apart() -> None:
    def fn(name: str, file: str) -> report.Function:
        return report.Function(name, file, 10, 0)

    generic = (
        "<cranelift_codegen::machinst::abi::Callee<"
        "cranelift_codegen::isa::riscv64::abi::Riscv64MachineDeps>>::new"
    )
    assert report.backend_of(generic, "cranelift-codegen/src/machinst/abi.rs") == "riscv64"
    assert report.backend_of("x", "cranelift-codegen/src/machinst/abi.rs") is None
    assert report.backend_of("x", "cranelift-codegen/OUT_DIR/isle_s390x.rs") == "s390x"
    assert report.is_call_lowering(fn("a::b", "cranelift-codegen/src/isa/x64/abi.rs"), "x64")
    isle = "cranelift-codegen/OUT_DIR/isle_x64.rs"
    assert report.is_call_lowering(fn("g::constructor_gen_return_call_info", isle), "x64")
    assert report.is_call_lowering(fn("g::constructor_lower_return", isle), "x64")
    assert not report.is_call_lowering(fn("g::constructor_x64_add", isle), "x64")
    assert not report.is_call_lowering(fn("g::constructor_retype", isle), "x64")


def test_analyse_counts_functions_and_edges() -> None:
    table: symbols.FunctionTable = {
        "counters": 10,
        "functions": [
            (0, 4, "a::constructor_gen_call_info", "cranelift-codegen/OUT_DIR/isle_x64.rs"),
            (4, 3, "b::emit", "cranelift-codegen/src/isa/x64/inst/emit.rs"),
            (7, 2, "c::verify", "cranelift-codegen/src/verifier/mod.rs"),
            (9, 1, "d::main", "callfuzz-native/src/lib.rs"),
        ],
    }
    bits = bytes([1, 1, 0, 0, 0, 0, 0, 1, 0, 1])
    got = report.analyse(table, Bitmap("k", bits))
    assert vars(got.backends["x64"]) == {
        "functions": 2,
        "functions_reached": 1,
        "edges": 7,
        "edges_reached": 2,
    }
    assert got.call_lowering["x64"].functions == 1
    assert got.cranelift.edges == 9 and got.cranelift.edges_reached == 3
    assert [f.short for f in report.least_covered(got, "x64", 5)] == ["gen_call_info"]
    assert "x64" in "\n".join(report.summary_lines(got))
    with pytest.raises(CoverageError, match="not the same bridge"):
        report.analyse(table, Bitmap("k", bytes(3)))


# -- environment and command line -----------------------------------------------------


def test_the_worker_environment_preloads_libfuzzer_and_pins_the_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_CHOICE, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/x/other.so")
    env = preload.environment(tmp_path, "0.135.8")
    assert env["LD_PRELOAD"].split() == [str(preload.runtime()), "/x/other.so"]
    assert env[ENV_PINNED] == str(tmp_path) and env[ENV_CHOICE] == "0.135.8"
    monkeypatch.setenv(ENV_CHOICE, "0.131")
    assert preload.environment(tmp_path, "0.131.3")[ENV_CHOICE] == "0.131"
    with preload.applied({"CALLFUZZ_TEST_VAR": "1", "LD_PRELOAD": "y"}):
        assert os.environ["CALLFUZZ_TEST_VAR"] == "1"
    assert "CALLFUZZ_TEST_VAR" not in os.environ and os.environ["LD_PRELOAD"] == "/x/other.so"


def test_a_worker_without_coverage_records_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(preload.ENV_COVERAGE, raising=False)
    assert live.recorder(tmp_path) is None


def test_libfuzzer_keeps_its_corpus_and_leaves_signals_to_the_campaign(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALLFUZZ_LIBFUZZER_FLAGS", "-len_control=100")
    args = live.libfuzzer_args(tmp_path)
    assert args[-1] == str(tmp_path / live.CORPUS) and (tmp_path / live.CORPUS).is_dir()
    assert "-handle_abrt=0" in args and "-handle_segv=0" in args and "-handle_int=0" in args
    # a flag of one's own comes after the default it overrides (libFuzzer: last wins)
    assert args.index("-len_control=100") > args.index("-len_control=0")


def test_instrumented_builds_are_keyed_by_choice_and_variant() -> None:
    assert build.Wanted(None).key == "default-edges"
    assert build.Wanted(None, trace_compares=True).key == "default-cmp"


# -- building the instrumented bridge (fake cargo and rustc) --------------------------

FAKE_RUSTC = """#!/bin/sh
echo "rustc 1.99.0 (fake)"
if [ "$1" = -vV ]; then echo "host: x86_64-fake-linux-gnu"; fi
"""
COMMAND = [
    "build",
    "--release",
    "--lib",
    "--target",
    "x86_64-fake-linux-gnu",
    "--ignore-rust-version",
    "--color=never",
    "--message-format=json-render-diagnostics",
]
TABLE = {"counters": 1234, "functions": [[0, 3, "f", "cranelift-codegen/src/x.rs"]]}


@dataclass
class FakeBuild:
    """What the fake cargo ran (tests/data/fake_cargo.py logs it) and what
    the faked check of the staged module was given."""

    cargo_log: Path
    probed: list[tuple[Path, str, Path]] = field(default_factory=list)

    def cargo_calls(self) -> list[dict[str, Any]]:
        runs = self.cargo_log.read_text().split("\n=====\n") if self.cargo_log.exists() else []
        return [
            json.loads(run) | {"manifest": manifest}
            for run, _, manifest in (r.partition("\n") for r in runs if r)
        ]

    def probe(self, staged: Path, key: str, log_path: Path) -> dict[str, Any]:
        self.probed.append((staged, key, log_path))
        assert (staged / LIBRARY).read_bytes() == _normal_bridge().read_bytes()
        return {"version": "0.135.8", "counters": 1234, "functions": 2, "reached": 7}


@pytest.fixture
def fake_build(tmp_path: Path, fake_cargo: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBuild:
    """An empty cache, no choice made, fake cargo and rustc, and the staged
    module's check and symbolizing faked (they need a really instrumented
    module), so a build takes a second and needs neither atheris nor binutils."""
    rustc = tmp_path / "bin" / "rustc"  # beside the fake cargo
    rustc.write_text(FAKE_RUSTC)
    rustc.chmod(0o755)
    monkeypatch.setenv("CALLFUZZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_CHOICE, raising=False)
    monkeypatch.setattr(preload, "runtime", lambda: tmp_path / preload.RUNTIME)
    fake = FakeBuild(fake_cargo)
    monkeypatch.setattr(build, "_probe", fake.probe)
    monkeypatch.setattr(symbols, "symbolize", lambda library, pcs: TABLE)
    return fake


def test_the_instrumented_bridge_is_built_for_the_host_target_with_sancov(
    tmp_path: Path, fake_build: FakeBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUSTFLAGS", "-Cdebug-assertions")  # the user's, kept last
    monkeypatch.setattr(build, "HEARTBEAT", 0.02)
    monkeypatch.setenv("FAKE_CARGO_SLEEP", "0.3")
    lines: list[str] = []
    entry = build.ensure(build.wanted(), progress=lines.append)
    root = tmp_path / "cache" / "coverage"
    log = root / "logs" / "default-edges.log"
    assert entry.path == root / "default-edges"
    (call,) = fake_build.cargo_calls()
    rustflags = " ".join([*build.SANCOV, "-Cdebug-assertions"])
    assert call["argv"] == COMMAND
    assert call["env"] == {
        "CARGO_TARGET_DIR": str(root / "target-edges"),  # one per variant
        "CALLFUZZ_CRANELIFT_VERSION": None,  # native/ pins it
        "PYO3_PYTHON": sys.executable,
        "RUSTFLAGS": rustflags,
        "CARGO_PROFILE_RELEASE_DEBUG": "line-tables-only",
        "CARGO_PROFILE_RELEASE_STRIP": "none",
    }
    assert call["manifest"] == (ROOT / "native" / "Cargo.toml").read_text()  # not pinned
    work = log.read_text().splitlines()[1].removeprefix("# in ")
    assert log.read_text().splitlines()[:5] == [
        "# the Cranelift native/ pins, edge counters",
        f"# in {work}",
        f"# cargo {' '.join(COMMAND)}",
        f"# RUSTFLAGS={rustflags}",
        f"# CARGO_TARGET_DIR={root / 'target-edges'}",
    ]
    assert "# cargo exited with 0" in log.read_text()
    assert entry.log.read_text() == log.read_text()
    assert Path(work).parent.parent == root and not Path(work).exists()
    ((staged, key, probe_log),) = fake_build.probed
    assert (staged.parent, key, probe_log) == (Path(work).parent, "default-edges", log)
    # the progress: crates compiling, a heartbeat naming them while cargo is quiet
    assert "  ... 0m00s, compiling callfuzz-native" in lines
    said = [line for line in lines if not line.startswith("  ... ")]
    assert (
        said[0] == f"building the instrumented bridge for {build.wanted().describe()} (log: {log})"
    )
    assert said[1:3] == ["  Compiling callfuzz-native v0.1.0", "  Finished `release` profile"]
    assert re.fullmatch(r"compiled in \d+ s; checking it and reading its PC table", said[3])
    assert said[4:] == [
        "symbolizing 2 functions (1234 counters)",
        f"built: {entry.path} (1,234 counters)",
    ]
    # the entry: a whole bridge cache entry, with its function table
    assert entry.library.read_bytes() == _normal_bridge().read_bytes()
    assert json.loads((entry.path / build.FUNCTIONS).read_text()) == TABLE
    record = dict(entry.record)
    assert isinstance(record.pop("built_at"), str) and record.pop("build_seconds") >= 0.3
    assert record == {
        "format": 1,
        "kind": "release",
        "version": "0.135.8",
        "bridge_source": source_hash(),
        "toolchain": "rustc 1.99.0 (fake)",
        "coverage": {
            "rustflags": build.SANCOV,
            "trace_compares": False,
            "counters": 1234,
            "functions": 2,
            "reached_by_check": 7,
        },
    }
    assert sorted(p.name for p in root.iterdir()) == [
        ".build.lock",
        "default-edges",
        "logs",
        "target-edges",
    ]
    # built once: found again until the bridge source changes or --force
    assert build.ensure(build.wanted(), progress=lines.append) == entry
    assert build.build(build.wanted(), progress=lines.append) == entry
    assert len(fake_build.cargo_calls()) == 1
    build.build(build.wanted(), progress=lines.append, force=True)
    assert len(fake_build.cargo_calls()) == 2
    assert sorted(p.name for p in root.iterdir())[1:] == ["default-edges", "logs", "target-edges"]


def test_a_chosen_cranelift_is_pinned_and_traced_compares_build_apart(
    tmp_path: Path, fake_build: FakeBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CHOICE, "0.131.3")
    entry = build.ensure(build.wanted(trace_compares=True), progress=lambda line: None)
    root = tmp_path / "cache" / "coverage"
    assert entry.path == root / "release-0.131.3-cmp"
    (call,) = fake_build.cargo_calls()
    rustflags = [*build.SANCOV, build.TRACE_COMPARES]
    assert call["argv"] == COMMAND
    assert call["env"]["CARGO_TARGET_DIR"] == str(root / "target-cmp")
    assert call["env"]["CALLFUZZ_CRANELIFT_VERSION"] == "0.131.3"
    assert call["env"]["RUSTFLAGS"] == " ".join(rustflags)
    assert 'cranelift-reader = { version = "=0.131.3" }' in call["manifest"]
    assert entry.record["coverage"]["rustflags"] == rustflags
    assert entry.record["coverage"]["trace_compares"] is True
    log = root / "logs" / "release-0.131.3-cmp.log"
    assert log.read_text().startswith("# Cranelift 0.131.3, edges and comparisons\n")


def test_a_failed_instrumented_build_caches_nothing_and_names_its_log(
    tmp_path: Path, fake_build: FakeBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CARGO_FAIL", "1")
    with pytest.raises(BridgeError) as err:
        build.ensure(build.wanted(), progress=lambda line: None)
    root = tmp_path / "cache" / "coverage"
    log = root / "logs" / "default-edges.log"
    assert str(err.value) == (
        "building the instrumented bridge failed: error[E0425]: cannot find value `F16` in "
        f"module `types`; log: {log}"
    )
    assert "# cargo exited with 101" in log.read_text()
    assert fake_build.probed == []
    assert build.entry_for(build.wanted()) is None
    assert sorted(p.name for p in root.iterdir()) == [".build.lock", "logs"]


def _callfuzz(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CALLFUZZ, *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        check=False,
    )


def test_coverage_needs_the_atheris_engine(tmp_path: Path) -> None:
    done = _callfuzz("fuzz", "--coverage", "--cases", "1", "--db", f"sqlite:///{tmp_path}/t.sqlite")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "callfuzz: error: --coverage goes with --engine atheris (`callfuzz coverage replay` "
        "measures any campaign's coverage afterwards)"
    ]
    done = _callfuzz("fuzz", "--trace-compares", "--db", f"sqlite:///{tmp_path}/t.sqlite")
    assert done.returncode == 2 and "goes with --coverage" in done.stderr


def test_a_report_without_bitmaps_is_one_line(tmp_path: Path) -> None:
    done = _callfuzz("coverage", "report", "--dir", str(tmp_path))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "no coverage bitmaps" in done.stderr


# -- slow: the instrumented bridge ----------------------------------------------------


@pytest.fixture(scope="module")
def instrumented() -> Path:
    entry = build.entry_for(build.wanted())
    if entry is None:
        if os.environ.get("CALLFUZZ_SLOW") != "1":
            pytest.skip(
                "the instrumented bridge is not built (`callfuzz coverage build`, "
                "or CALLFUZZ_SLOW=1 builds it here: minutes)"
            )
        entry = build.ensure(build.wanted())
    return entry.path


_GROW = """
import json, sys
from fuzz import _cranelift
from fuzz.coverage.counters import Counters, reached
from fuzz.coverage.live import check_loaded, entry_path
from fuzz.targets import TARGETS
counters = Counters(check_loaded(entry_path()))
seen = [reached(counters.snapshot())]
for body in ("return v0", "v1 = iadd v0, v0\\n    return v1"):
    text = "function %f(i64) -> i64 {\\nblock0(v0: i64):\\n    " + body + "\\n}\\n"
    module = _cranelift.parse(text)
    for target in TARGETS.values():
        module.compile(_cranelift.Isa(target.triple, [], []))
    seen.append(reached(counters.snapshot()))
print(json.dumps({"size": counters.size, "seen": seen}))
"""


def test_counters_load_and_grow(instrumented: Path) -> None:
    entry = read_entry(instrumented)
    assert entry is not None
    env = {**os.environ, **preload.environment(entry.path, entry.version)}
    done = subprocess.run(
        [sys.executable, "-c", _GROW], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert got["size"] > 100_000
    first, compiled, more = got["seen"]
    assert first < compiled <= more, got


def test_a_coverage_guided_campaign_records_and_resumes(instrumented: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in sorted((ROOT / "corpus").glob("*.clif"))[:3]:
        shutil.copy(path, corpus)
    db = f"sqlite:///{tmp_path}/t.sqlite"
    common = ["--jobs", "1", "--db", db, "--corpus", str(corpus), "--reduce-time", "0"]
    done = _callfuzz(
        "fuzz",
        "--engine",
        "atheris",
        "--coverage",
        "--duration",
        "30s",
        "--seed",
        "1",
        *common,
        cwd=tmp_path,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "guided by Cranelift's edges" in done.stdout
    assert "coverage of Cranelift" in done.stdout, done.stdout[-3000:]
    work = tmp_path / "campaign-1"
    first = counters.merged(counters.bitmap_files(work / live.BITMAPS))
    assert first is not None and first.reached > 1000
    kept = list((work / live.CORPUS).iterdir())
    assert kept, "libFuzzer kept no corpus"
    assert not list(tmp_path.glob("crash-*")), (
        "libFuzzer wrote artifacts into the current directory"
    )
    # resume: coverage comes back on by itself, libFuzzer reads its corpus again
    done = _callfuzz("fuzz", "--resume", "--duration", "15s", *common, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "guided by Cranelift's edges" in done.stdout
    logs = "".join(p.read_text() for p in (work / "libfuzzer-logs").iterdir())
    assert f"{len(kept)} files found in {work / live.CORPUS}" in logs, logs[-3000:]
    second = counters.merged(counters.bitmap_files(work / live.BITMAPS))
    assert second is not None and second.reached >= first.reached
    done = _callfuzz("coverage", "report", "--db", db, "--least", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "least-covered call-lowering functions" in done.stdout


def test_a_random_campaign_is_measured_by_replaying_its_seeds(
    instrumented: Path, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    db = f"sqlite:///{tmp_path}/t.sqlite"
    done = _callfuzz(
        "fuzz", "--cases", "12", "--jobs", "1", "--seed", "5", "--db", db,
        "--corpus", str(corpus), "--reduce-time", "0", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]
    done = _callfuzz("coverage", "replay", "--db", db, "--jobs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replaying 12 cases of campaign 1 (random)" in done.stdout
    replayed = counters.merged(counters.bitmap_files(tmp_path / "campaign-1" / "coverage-replay"))
    assert replayed is not None and replayed.reached > 1000
    done = _callfuzz("coverage", "report", "--db", db, "--replayed", cwd=tmp_path)
    assert done.returncode == 0 and "call lowering" in done.stdout, done.stderr
