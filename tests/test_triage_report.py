"""`callfuzz triage draft` (an upstream bug report in wasmtime's template)
and `callfuzz triage report` (static HTML pages, also as headless Chromium
reads them), through the real command group on a temporary SQLite
database; and the campaign summary naming the report command."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fuzz import _cranelift
from fuzz.commands.cli import cli
from fuzz.triage.records import FindingRecord, Progress
from fuzz.triage.store import open_db

CORPUS = Path(__file__).parents[1] / "corpus" / "call-indirect-func-addr.clif"
SMALL = "function %small_panics(i64) -> i64 {\nblock0(v0: i64):\n    return v0\n}\n"
RUN = "run: %via_pointer(-1, 0x1.0p0, 65535, 0x1.0p1) == 0x1.0001p16"
PANIC = "assertion failed: `(left == right)` in <Vec<u8> as Drop>: left: 16, right: 8"
SECTIONS = [
    "`.clif` Test Case",
    "Steps to Reproduce",
    "Expected Results",
    "Actual Results",
    "Versions and Environment",
    "Extra Info",
]
# anything a browser would fetch: a link or source off the page, a style import
# (an SVG's `url(#clip)` and namespace names are not fetched)
EXTERNAL = re.compile(
    r"""(?:href|src|action)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)"""
    r"""|url\(\s*["']?\s*(?!#)|@import|<link\b|<script\b[^>]*\bsrc""",
    re.IGNORECASE,
)


def test_the_external_check_sees_what_a_browser_would_fetch() -> None:
    for fetched in (
        '<a href="https://example.org/x">',
        "<img src=//cdn.example/x.png>",
        "<script src='x.js' defer></script>",
        "body { background: url( 'http://x/y.png') }",
        '<link rel="stylesheet" href="x.css">',
    ):
        assert EXTERNAL.search(fetched), fetched
    for kept in ('<a href="bucket-1.html">', '<path clip-path="url(#p1)"/>'):
        assert EXTERNAL.search(kept) is None, kept


def triage(*args: str) -> Result:
    return CliRunner().invoke(cli, ["triage", *args])


def wrong_result(target: str = "x86_64", version: str = "0.135.8") -> FindingRecord:
    return FindingRecord(
        clif=CORPUS.read_text(),
        target=target,
        flags=[],
        verdict="wrong result",
        details={
            "run": RUN,
            "outcomes": {
                "interpreter": {"kind": "return", "text": "0x1.0001p16"},
                target: {"kind": "return", "text": "0x1.0000fp16"},
            },
            "verdicts": {"interpreter": "agree", target: "wrong result"},
            "differences": [
                {"index": 0, "type": "f64", "expected": "0x1.0001p16", "actual": "0x1.0000fp16"}
            ],
            "call_shape": "system_v:call_indirect",
        },
        blame=[target],
        bucket_key=f"{target}|wrong result|0:f64",
        bucket_title=f"{target}: wrong result at 0:f64",
        cranelift_version=version,
        seed=4242,
    )


def compile_panic() -> FindingRecord:
    return FindingRecord(
        clif="test run\ntarget aarch64\n\n" + SMALL + "; run: %small_panics(1) == 1\n",
        target="aarch64",
        flags=[],
        verdict="compile panic",
        details={"panic": {"message": PANIC, "location": "abi.rs:900:13"}},
        blame=["aarch64"],
        bucket_key="aarch64|compile panic|abi.rs:900",
        bucket_title="aarch64: compile panic at abi.rs:900",
        cranelift_version="0.135.8",
        seed=77,
    )


def make_db(tmp: Path) -> tuple[str, dict[str, int]]:
    """Campaign 1: a wrong result on x86_64 and a compile panic on aarch64
    (bisected); campaign 2: a wrong result on riscv64. Bucket ids by target."""
    url = f"sqlite:///{tmp / 'triage.sqlite'}"
    db = open_db(url)

    def start(version: str, targets: list[str], seed: int) -> int:
        return db.start_campaign(
            host="nightly-box",
            cranelift_version=version,
            targets=targets,
            flags={},
            engine="random",
            seed=seed,
            jobs=2,
        )

    first = start("0.135.8", ["x86_64", "aarch64"], 1000)
    ids = db.record_batch(
        first, [wrong_result(), compile_panic()], Progress(10_000, 11_000, {}, {}, 321.5)
    )
    db.finish_campaign(first)
    second = start("0.136.0", ["riscv64"], 50_000)
    ids += db.record_batch(
        second, [wrong_result("riscv64", "0.136.0")], Progress(99, 50_099, {}, {}, 12.0)
    )
    db.finish_campaign(second)
    buckets = {b.target: b.id for b in db.list_buckets()}
    assert sorted(buckets.values()) == sorted(ids)
    db.mark_bucket(buckets["aarch64"], "confirmed", "bisect on aarch64: first bad 0.131.0")
    db.close()
    return url, buckets


@pytest.fixture
def made(tmp_path: Path) -> tuple[str, dict[str, int]]:
    return make_db(tmp_path)


def text_of(page: str) -> str:
    """A page's text as a reader sees it: tags dropped, entities read."""

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(page)
    return html.unescape("".join(parser.parts))


# --- draft ------------------------------------------------------------------------


def test_draft_of_a_compile_panic_has_the_template_sections_and_a_compile_test(
    tmp_path: Path, made: tuple[str, dict[str, int]]
) -> None:
    url, buckets = made
    out = tmp_path / "draft.md"
    result = triage("draft", str(buckets["aarch64"]), "--db", url, "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    headings = re.findall(r"^### (.*)$", text, re.M)
    assert headings == SECTIONS
    [clif] = re.findall(r"^```clif\n(.*?)^```$", text, re.M | re.S)
    _cranelift.parse(clif)  # upstream's reader takes it
    lines = clif.splitlines()
    assert "test compile" in lines and "test run" not in lines
    assert "%small_panics" in clif
    sections = dict(zip(SECTIONS, re.split(r"^### .*$", text, flags=re.M)[1:], strict=True))
    steps = sections["Steps to Reproduce"]
    assert f"clif-util -- test bucket-{buckets['aarch64']}-aarch64.clif" in steps
    assert "panics compiling for aarch64, on any host" in steps
    assert "qemu" not in steps  # a compile-time finding reproduces on any host
    assert PANIC in sections["Actual Results"] and "abi.rs:900:13" in sections["Actual Results"]
    assert "0.135.8" in sections["Versions and Environment"]
    assert "bisect on aarch64: first bad 0.131.0" in sections["Extra Info"]


def test_draft_of_a_run_time_finding_elsewhere_than_x86_64_runs_under_qemu(
    made: tuple[str, dict[str, int]],
) -> None:
    url, buckets = made
    result = triage("draft", str(buckets["riscv64"]), "--db", url)
    assert result.exit_code == 0, result.output
    text = result.stdout
    [clif] = re.findall(r"^```clif\n(.*?)^```$", text, re.M | re.S)
    assert "test run" in clif.splitlines() and "target riscv64" in clif.splitlines()
    assert "--target riscv64gc-unknown-linux-gnu" in text
    assert "qemu-riscv64 -L /usr/riscv64-linux-gnu" in text
    assert "QEMU user emulation" in text  # the export's own "Expect:" line
    assert "| 0 | f64 | 0x1.0001p16 | 0x1.0000fp16 |" in text
    assert "Not bisected." in text and "0.136.0" in text


def test_draft_of_a_missing_bucket_is_an_error(made: tuple[str, dict[str, int]]) -> None:
    url, _ = made
    result = triage("draft", "99", "--db", url)
    assert result.exit_code == 2
    assert result.stderr.strip() == "callfuzz: error: no bucket 99"


# --- report -----------------------------------------------------------------------


def test_report_pages_hold_each_buckets_reproducer_and_values_and_fetch_nothing(
    tmp_path: Path, made: tuple[str, dict[str, int]]
) -> None:
    url, buckets = made
    out = tmp_path / "report"
    result = triage("report", "--db", url, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "3 bucket pages" in result.stdout
    pages = sorted(out.glob("*.html"))
    assert {p.name for p in pages} == {
        "index.html",
        *(f"bucket-{i}.html" for i in buckets.values()),
    }
    for path in pages:
        assert EXTERNAL.search(path.read_text()) is None, path
    index = out.joinpath("index.html").read_text()
    shown = text_of(index)
    for target, bucket_id in buckets.items():
        assert f'href="bucket-{bucket_id}.html"' in index
        assert f"{target}: " in shown
    assert "10,000" in shown and "321.5" in shown and "random" in shown  # campaign figures
    assert "<svg" in index  # findings over time, drawn inline
    assert "1 confirmed" in " ".join(shown.split())

    x86 = buckets["x86_64"]
    page = out.joinpath(f"bucket-{x86}.html").read_text()
    export = out / f"bucket-{x86}-x86_64.clif"
    assert f'href="{export.name}"' in page and export.exists()
    assert out.joinpath(f"bucket-{x86}.md").exists()
    words = " ".join(text_of(page).split())
    for line in export.read_text().splitlines():
        if line.strip():
            assert " ".join(line.split()) in words  # the reproducer, highlighted
    assert "%via_pointer" in words and "x86_64: wrong result at 0:f64" in words
    assert "0x1.0001p16" in words and "0x1.0000fp16" in words  # expected and actual
    assert "(the interpreter: 0x1.0001p16)" in words
    assert "Disassembly" in words and "%mix @ 0x" in words  # recompiled for x86_64

    panic = text_of(out.joinpath(f"bucket-{buckets['aarch64']}.html").read_text())
    assert PANIC in panic and "bisect on aarch64: first bad 0.131.0" in panic
    assert "test compile" in panic


def test_report_of_one_campaign_leaves_the_others_out(
    tmp_path: Path, made: tuple[str, dict[str, int]]
) -> None:
    url, buckets = made
    out = tmp_path / "only-2"
    result = triage("report", "--campaign", "2", "--db", url, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.glob("*.html")} == {
        "index.html",
        f"bucket-{buckets['riscv64']}.html",
    }
    shown = text_of(out.joinpath("index.html").read_text())
    assert "0.136.0" in shown and "0.135.8" not in shown
    missing = triage("report", "--campaign", "9", "--db", url, "-o", str(out))
    assert missing.exit_code == 2 and "no campaign 9" in missing.stderr


def test_report_shows_a_replays_coverage_only_when_there_is_one(
    tmp_path: Path, made: tuple[str, dict[str, int]]
) -> None:
    url, _ = made
    assert triage("report", "--db", url, "-o", str(tmp_path / "a")).exit_code == 0
    assert "Coverage" not in (tmp_path / "a" / "index.html").read_text()
    replay = tmp_path / "campaign-1" / "coverage-replay"
    replay.mkdir(parents=True)
    area = {"functions": 400, "functions_reached": 100, "edges": 9000, "edges_reached": 2345}
    summary = {"backends": {"aarch64": area}, "call_lowering": {"aarch64": area}}
    (replay / "summary.json").write_text(json.dumps(summary))
    assert triage("report", "--db", url, "-o", str(tmp_path / "b")).exit_code == 0
    shown = text_of((tmp_path / "b" / "index.html").read_text())
    assert "Coverage of Cranelift, campaign 1 (replay)" in shown
    assert "2,345/9,000 (26.1%)" in shown


# --- the campaign's summary -------------------------------------------------------


def test_a_campaign_summary_ends_naming_the_report_command(tmp_path: Path) -> None:
    db = tmp_path / "triage.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.commands.cli", "fuzz", "--db", f"sqlite:///{db}"]
        + ["--jobs", "1", "--cases", "2", "--seed", "7", "--reduce-time", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"review: callfuzz triage report --campaign 1 --db sqlite:///{db.resolve()}"


# --- in a browser -------------------------------------------------------------------
# The pages as headless Chromium reads them from disk: they parse into the
# page the templates meant (an unescaped `<` in a panic message would not),
# every link leads to a file the report wrote, the chart is an SVG element.
# Skipped where Chromium is not installed (.ci/run installs Debian's).

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs chromium (Debian package `chromium`) for a headless browser"
)


def dom(page: Path, profile: Path) -> str:
    """The page's DOM after Chromium loaded and parsed it from disk."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        + [f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Elements(HTMLParser):
    """Tags (with their attributes) in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


@needs_chromium
def test_chromium_reads_the_report_from_disk(tmp_path: Path) -> None:
    url, buckets = make_db(tmp_path)
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["triage", "report", "--db", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    profile = tmp_path / "chromium-profile"

    index = dom(out / "index.html", profile)
    tags = elements(index)
    assert any(tag == "svg" for tag, _ in tags)  # the chart, inline
    links = [str(a["href"]) for tag, a in tags if tag == "a" and a.get("href")]
    assert sorted(links) == sorted([f"bucket-{i}.html" for i in buckets.values()] * 2)

    panic = dom(out / f"bucket-{buckets['aarch64']}.html", profile)
    assert PANIC in text_of(panic)  # escaped: still text, not tags
    assert not any(tag in ("vec", "u8") for tag, _ in elements(panic))
    for tag, attrs in elements(panic):
        if tag == "a" and attrs.get("href"):
            assert (out / str(attrs["href"])).is_file(), attrs["href"]


# Where CI keeps the screenshots (crashes/ is the project's artifact folder).
SCREENSHOTS = Path(__file__).resolve().parents[1] / "crashes" / "report-screenshots"


def shot(page: Path, profile: Path, png: Path) -> str:
    """Chromium's console log while it renders `page` into `png`."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        + [f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
        + ["--window-size=1280,1600", f"--screenshot={png}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


@needs_chromium
def test_the_report_renders_without_console_errors_and_screenshots_are_kept(
    tmp_path: Path,
) -> None:
    url, buckets = make_db(tmp_path)
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["triage", "report", "--db", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {"index": out / "index.html", "bucket": out / f"bucket-{buckets['aarch64']}.html"}
    for name, page in pages.items():
        png = SCREENSHOTS / f"{name}.png"
        png.unlink(missing_ok=True)
        log = shot(page, tmp_path / f"profile-{name}", png)
        console = [line for line in log.splitlines() if "CONSOLE" in line]
        assert not console, console
        assert png.stat().st_size > 10_000  # a rendered page, not a blank one
