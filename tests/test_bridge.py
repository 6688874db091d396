"""The Cranelift under test as the user's choice (`fuzz.bridge`): reading a
choice, keying checkouts, the build into the cache, and loading the chosen
bridge. No network: the crates.io index is faked, and builds use a fake
`cargo` that hands back the bridge pip installed. The one test that really
builds an older Cranelift (minutes) runs only with CALLFUZZ_SLOW=1."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import fuzz
from fuzz.bridge import build, cache, load, spec
from fuzz.bridge.spec import BridgeError, Checkout, Release

ROOT = Path(__file__).resolve().parents[1]
CHOICE_VARS = (load.ENV_CHOICE, load.ENV_PINNED)

FETCH_INDEX = spec.fetch_index  # the real reader (the fixture says which tests may use it)
INDEX = "\n".join(
    json.dumps({"name": "cranelift-codegen", "vers": v, "yanked": y})
    for v, y in [
        ("0.104.3", False),
        ("0.105.4", False),
        ("0.128.3", False),
        ("0.128.4", False),
        ("0.131.0", False),
        ("0.131.3", False),
        ("0.131.2", False),
        ("0.131.4", True),
        ("0.135.8", False),
        ("0.137.0-rc.1", False),
        ("0.137.1", False),
    ]
)


def installed_library() -> Path:
    """The bridge pip installed (not whatever a finder would choose)."""
    found = importlib.machinery.PathFinder.find_spec("fuzz._cranelift", list(fuzz.__path__))
    assert found is not None and found.origin is not None
    return Path(found.origin)


INSTALLED_VERSION = subprocess.run(
    [sys.executable, "-c", "from fuzz import _cranelift; print(_cranelift.version())"],
    capture_output=True,
    text=True,
    check=True,
    env={k: v for k, v in os.environ.items() if k not in CHOICE_VARS},
).stdout.strip()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty bridge cache, no choice made, and an index that is never fetched
    unless a test says so."""
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_CACHE, str(root))
    for var in CHOICE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(load, "_active", None)

    def offline(crate: str) -> str:
        raise OSError("network is off in tests")

    monkeypatch.setattr(spec, "fetch_index", offline)
    return root


def serve_index(monkeypatch: pytest.MonkeyPatch, text: str = INDEX) -> list[int]:
    calls: list[int] = []

    def fetch(crate: str) -> str:
        if crate == "cranelift-codegen":  # one per refresh
            calls.append(1)
        return text

    monkeypatch.setattr(spec, "fetch_index", fetch)
    return calls


# --- reading a choice ------------------------------------------------------


def test_a_release_line_is_its_newest_published_version(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = serve_index(monkeypatch)
    assert spec.resolve("0.131") == Release("0.131.3")  # 0.131.4 is yanked
    assert spec.resolve("0.131.x") == Release("0.131.3")
    assert spec.resolve(" 0.128.4 ") == Release("0.128.4")
    assert spec.resolve("0.137") == Release("0.137.1")  # not the release candidate
    assert spec.resolve("0.105") == Release("0.105.4")
    assert calls == [1]  # the answer is cached
    assert spec.Index.path().is_file()


def test_the_cached_index_serves_offline_and_is_refreshed_when_old(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_index(monkeypatch)
    spec.resolve("0.131")
    monkeypatch.setattr(spec, "fetch_index", lambda crate: (_ for _ in ()).throw(OSError("off")))
    assert spec.resolve("0.131") == Release("0.131.3")  # fresh cache, no fetch
    data = json.loads(spec.Index.path().read_text())
    data["fetched"] = time.time() - spec.INDEX_TTL - 1
    spec.Index.path().write_text(json.dumps(data))
    assert spec.resolve("0.131") == Release("0.131.3")  # stale, unreachable: kept
    calls = serve_index(monkeypatch, INDEX + "\n" + json.dumps({"vers": "0.131.5"}))
    assert spec.resolve("0.131") == Release("0.131.5")  # stale: refreshed
    assert calls == [1]


def test_a_known_exact_version_needs_no_fresh_index(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_index(monkeypatch)
    spec.resolve("0.128")
    data = json.loads(spec.Index.path().read_text())
    data["fetched"] = 0
    spec.Index.path().write_text(json.dumps(data))
    calls = serve_index(monkeypatch)
    assert spec.resolve("0.128.3") == Release("0.128.3")
    assert calls == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.50", "Cranelift 0.50 is not supported: callfuzz builds against releases 0.105 and"),
        ("9.9", "Cranelift 9.9 is not supported"),
        ("0.104", "Cranelift 0.104 is not supported"),
        ("0.150", "cranelift-codegen 0.150 is not published on crates.io (0.150 has no release)"),
        ("0.131.99", "cranelift-codegen 0.131.99 is not published on crates.io (0.131 has "),
        ("0.131.4", "cranelift-codegen 0.131.4 is yanked"),
        ("0.106", "cranelift-codegen 0.106 is not published on crates.io (0.106 has no release)"),
        ("", "empty Cranelift choice"),
        ("no/such/dir", "not a Cranelift release (0.105 and newer, e.g. 0.131"),
    ],
)
def test_bad_choices_are_one_line_errors(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    serve_index(monkeypatch)
    with pytest.raises(BridgeError) as err:
        spec.resolve(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_offline_without_an_index_a_cached_bridge_still_resolves(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BridgeError, match="index is unreachable .*network is off"):
        spec.resolve("0.128")
    fake_entry(cache_dir, "release-0.128.2", {"kind": "release", "version": "0.128.2"})
    assert spec.resolve("0.128") == Release("0.128.2")
    assert spec.resolve("0.128.2") == Release("0.128.2")


def test_every_cfg_flag_of_the_bridge_is_declared_and_used() -> None:
    """build.rs's table of version-dependent API and the sources agree."""
    import re

    native = ROOT / "native"
    declared = set(re.findall(r'"(cranelift_[a-z0-9_]+)"', (native / "build.rs").read_text()))
    used = {
        flag
        for path in (native / "src").rglob("*.rs")
        for flag in re.findall(r"cfg\((?:not\()?(cranelift_[a-z0-9_]+)", path.read_text())
    }
    assert declared and used == declared


# --- checkouts ---------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_checkout(path: Path, version: str = "0.138.0", inherit: bool = False) -> Path:
    """A git repository shaped like a wasmtime checkout (no real sources)."""
    for crate, rel in spec.CRATES.items():
        manifest = path / rel / "Cargo.toml"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        line = "version.workspace = true" if inherit else f'version = "{version}"'
        manifest.write_text(f'[package]\nname = "{crate}"\n{line}\n')
    (path / "Cargo.toml").write_text(
        '[workspace.package]\nversion = "41.0.0"\n'
        f'[workspace.dependencies]\ncranelift-codegen = {{ path = "cranelift/codegen", '
        f'version = "={version}" }}\n'
    )
    (path / "README.md").write_text("wasmtime\n")
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    git(path, "add", "-A")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return path


def test_a_checkout_is_keyed_by_commit_and_uncommitted_changes(tmp_path: Path) -> None:
    repo = make_checkout(tmp_path / "wasmtime")
    head = git(repo, "rev-parse", "HEAD")
    clean = spec.resolve(str(repo))
    assert isinstance(clean, Checkout)
    assert (clean.version, clean.commit, clean.dirty, clean.diff_hash) == (
        "0.138.0",
        head,
        False,
        None,
    )
    assert clean.key == f"checkout-{head[:12]}"
    assert spec.resolve(str(repo / "cranelift")) == clean  # its cranelift/ directory too

    (repo / "README.md").write_text("changed\n")
    edited = spec.inspect_checkout(repo)
    assert edited.dirty and edited.diff_hash and edited.commit == head
    assert edited.key == f"checkout-{head[:12]}-dirty-{edited.diff_hash[:12]}"
    assert spec.inspect_checkout(repo) == edited  # the same changes, the same key
    git(repo, "add", "README.md")
    assert spec.inspect_checkout(repo) == edited  # staged or not
    git(repo, "reset", "-q")

    (repo / "README.md").write_text("changed again\n")
    again = spec.inspect_checkout(repo)
    assert again.key != edited.key

    (repo / "new.rs").write_text("fn f() {}\n")  # untracked files count
    untracked = spec.inspect_checkout(repo)
    assert untracked.key not in (edited.key, again.key)
    (repo / "new.rs").write_text("fn g() {}\n")
    assert spec.inspect_checkout(repo).key != untracked.key

    (repo / "new.rs").unlink()
    git(repo, "checkout", "-q", "--", "README.md")
    assert spec.inspect_checkout(repo) == clean
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "b", "--allow-empty")
    assert spec.inspect_checkout(repo).key != clean.key  # a new commit, a new key


def test_a_checkout_version_can_come_from_the_workspace(tmp_path: Path) -> None:
    repo = make_checkout(tmp_path / "w", version="0.139.2", inherit=True)
    assert spec.inspect_checkout(repo).version == "0.139.2"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "not a wasmtime checkout: {p} has no cranelift/codegen/Cargo.toml"),
        ("old", "the checkout {p} has Cranelift 0.100.0; callfuzz supports 0.105 and newer"),
        ("no git", "{p} is not a usable git checkout: git rev-parse"),
    ],
)
def test_bad_checkouts_are_one_line_errors(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "w"
    if setup == "empty":
        path.mkdir()
    elif setup == "old":
        make_checkout(path, version="0.100.0")
    else:
        make_checkout(path)
        subprocess.run(["rm", "-rf", str(path / ".git")], check=True)
    with pytest.raises(BridgeError) as err:
        spec.resolve(str(path))
    assert message.format(p=path.resolve()) in str(err.value)


# --- the manifest a bridge is built from -------------------------------------


def test_the_manifest_is_pinned_to_the_choice(tmp_path: Path) -> None:
    text = (ROOT / "native" / "Cargo.toml").read_text()
    pinned = build.pin_manifest(text, build.dependencies(Release("0.131.3")))
    import tomllib

    deps = tomllib.loads(pinned)["dependencies"]
    for crate in spec.CRATES:
        version = deps[crate] if isinstance(deps[crate], str) else deps[crate]["version"]
        assert version == "=0.131.3", crate
    assert (
        deps["cranelift-codegen"]["features"]
        == tomllib.loads(text)["dependencies"]["cranelift-codegen"]["features"]
    )
    checkout = Checkout(tmp_path / "w", "0.138.0", "0" * 40, False, None)
    deps = tomllib.loads(build.pin_manifest(text, build.dependencies(checkout)))["dependencies"]
    for crate, rel in spec.CRATES.items():
        assert deps[crate]["path"] == str(tmp_path / "w" / rel)
        assert "version" not in deps[crate]
    with pytest.raises(BridgeError, match="no dependency cranelift-reader"):
        build.pin_manifest(
            text.replace("cranelift-reader", "x-reader"), build.dependencies(checkout)
        )


# --- building into the cache (with a fake cargo: tests/conftest.py) -----------


def cargo_calls(log: Path) -> list[str]:
    return [c for c in log.read_text().split("\n=====\n") if c] if log.exists() else []


def cargo_run(call: str) -> dict[str, Any]:
    """How the fake cargo was run: argv and the environment the builder set."""
    run: dict[str, Any] = json.loads(call.partition("\n")[0])
    return run


def quiet(_line: str) -> None:
    pass


def fake_entry(root: Path, key: str, record: Mapping[str, object]) -> Path:
    path = root / "bridges" / key
    path.mkdir(parents=True)
    (path / cache.LIBRARY).write_bytes(b"")
    (path / cache.RECORD).write_text(json.dumps({"format": cache.RECORD_FORMAT, **record}))
    return path


def no_leftovers(root: Path) -> list[str]:
    return [p.name for p in (root / "bridges").iterdir() if p.name.startswith(".")]


def test_a_build_lands_whole_in_the_cache(cache_dir: Path, fake_cargo: Path) -> None:
    lines: list[str] = []
    entry = build.ensure(Release(INSTALLED_VERSION), progress=lines.append)
    assert entry.path == cache_dir / "bridges" / f"release-{INSTALLED_VERSION}"
    assert entry.library.read_bytes() == installed_library().read_bytes()
    assert entry.record["version"] == INSTALLED_VERSION and entry.record["kind"] == "release"
    assert entry.record["bridge_source"] == cache.source_hash()
    assert entry.log.read_text().startswith(f"# Cranelift {INSTALLED_VERSION}")
    assert any("Compiling callfuzz-native" in line for line in lines)
    assert lines[-1].startswith("built in ")
    (manifest,) = cargo_calls(fake_cargo)
    assert f'cranelift-reader = {{ version = "={INSTALLED_VERSION}" }}' in manifest
    assert no_leftovers(cache_dir) == []
    # cached: no second build, until the bridge source changes or --force
    assert build.ensure(Release(INSTALLED_VERSION), progress=quiet) == entry
    assert len(cargo_calls(fake_cargo)) == 1
    record = json.loads((entry.path / cache.RECORD).read_text())
    (entry.path / cache.RECORD).write_text(json.dumps(record | {"bridge_source": "old"}))
    build.ensure(Release(INSTALLED_VERSION), progress=quiet)
    build.ensure(Release(INSTALLED_VERSION), progress=quiet, force=True)
    assert len(cargo_calls(fake_cargo)) == 3
    assert [e.key for e in cache.entries()] == [entry.key]


def test_cargo_is_run_for_the_release_into_the_shared_target_directory(
    cache_dir: Path, fake_cargo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUSTFLAGS", "-Cdebug-assertions")  # the user's, passed on untouched
    entry = build.ensure(Release(INSTALLED_VERSION), progress=quiet)
    (call,) = cargo_calls(fake_cargo)
    command = [
        "build",
        "--release",
        "--lib",
        "--ignore-rust-version",
        "--color=never",
        "--message-format=json-render-diagnostics",
    ]
    assert cargo_run(call) == {
        "argv": command,
        "env": {
            "CARGO_TARGET_DIR": str(cache_dir / "target"),
            "CALLFUZZ_CRANELIFT_VERSION": INSTALLED_VERSION,
            "PYO3_PYTHON": sys.executable,
            "RUSTFLAGS": "-Cdebug-assertions",
            "CARGO_PROFILE_RELEASE_DEBUG": None,
            "CARGO_PROFILE_RELEASE_STRIP": None,
        },
    }
    work = entry.log.read_text().splitlines()[1].removeprefix("# in ")
    assert entry.log.read_text().splitlines()[:4] == [
        f"# Cranelift {INSTALLED_VERSION}",
        f"# in {work}",
        f"# cargo {' '.join(command)}",
        f"# CARGO_TARGET_DIR={cache_dir / 'target'}",
    ]
    assert Path(work).parent.parent == cache_dir / "bridges"  # a work directory, now gone
    assert not Path(work).exists()
    assert (cache_dir / "logs" / f"{entry.key}.log").read_text() == entry.log.read_text()


def test_a_failed_build_caches_nothing_and_names_its_log(
    cache_dir: Path, fake_cargo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CARGO_FAIL", "1")
    with pytest.raises(BridgeError) as err:
        build.ensure(Release("0.109.1"), progress=quiet)
    log = cache_dir / "logs" / "release-0.109.1.log"
    assert str(err.value) == (
        "building the bridge for Cranelift 0.109.1 failed: error[E0425]: cannot find value "
        f"`F16` in module `types`; log: {log}"
    )
    assert "cargo exited with 101" in log.read_text()
    assert cache.entries() == [] and no_leftovers(cache_dir) == []


def test_a_bridge_reporting_another_version_is_not_cached(
    cache_dir: Path, fake_cargo: Path
) -> None:
    with pytest.raises(
        BridgeError, match=f"built for 0.131.3 reports Cranelift {INSTALLED_VERSION}"
    ):
        build.ensure(Release("0.131.3"), progress=quiet)
    assert cache.entries() == [] and no_leftovers(cache_dir) == []


def test_a_checkout_bridge_records_what_it_was_built_from(
    cache_dir: Path, fake_cargo: Path, tmp_path: Path
) -> None:
    repo = make_checkout(tmp_path / "wasmtime")
    (repo / "README.md").write_text("local change\n")
    choice = spec.inspect_checkout(repo)
    entry = build.ensure(choice, progress=quiet)
    assert entry.key == choice.key and entry.kind == "checkout"
    assert (entry.record["commit"], entry.record["dirty"], entry.record["diff_hash"]) == (
        choice.commit,
        True,
        choice.diff_hash,
    )
    (manifest,) = cargo_calls(fake_cargo)
    assert f'cranelift-codegen = {{ path = "{repo}/cranelift/codegen", default-features' in manifest
    # another change: another bridge; the first stays cached
    (repo / "README.md").write_text("another change\n")
    other = build.ensure(spec.inspect_checkout(repo), progress=quiet)
    assert other.key != entry.key and len(cache.entries()) == 2


# --- loading the chosen bridge ----------------------------------------------


def python(code: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


LOADED = """
    import os
    from fuzz import _cranelift
    from fuzz.bridge.load import under_test
    print(_cranelift.__file__)
    print(under_test())
    print(os.environ.get("CALLFUZZ_BRIDGE"))
"""


def test_the_chosen_bridge_is_what_fuzz_cranelift_loads(cache_dir: Path, fake_cargo: Path) -> None:
    entry = build.ensure(Release(INSTALLED_VERSION), progress=quiet)
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    default = python(LOADED, env)
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines() == [
        str(installed_library()),
        f"UnderTest(kind='installed', version='{INSTALLED_VERSION}', commit=None, "
        "dirty=False, diff_hash=None, path=None)",
        "None",
    ]
    line = INSTALLED_VERSION.rpartition(".")[0]  # the release line, resolved offline
    chosen = python(LOADED, env | {load.ENV_CHOICE: line})
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.splitlines() == [
        str(entry.library.resolve()),
        f"UnderTest(kind='release', version='{INSTALLED_VERSION}', commit=None, "
        "dirty=False, diff_hash=None, path=None)",
        str(entry.path),  # pinned for child processes
    ]
    # a child given the pinned entry loads it without resolving anything
    pinned = python(LOADED, env | {load.ENV_CHOICE: "0.999", load.ENV_PINNED: str(entry.path)})
    assert pinned.stdout.splitlines()[0] == str(entry.library.resolve()), pinned.stderr


def test_the_live_index_is_never_read_by_tests() -> None:
    # every test and child process reads the fixture index (tests/conftest.py)
    assert os.environ[spec.ENV_INDEX_URL].startswith("file://")
    published, _ = spec.parse_index(spec.fetch_index("cranelift-codegen"))
    assert "0.135.8" in published


def test_a_bad_choice_inside_the_import_hook_is_one_line_and_exit_2(cache_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    done = python(LOADED, env | {load.ENV_CHOICE: "0.104"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "callfuzz: Cranelift 0.104 is not supported: callfuzz builds against releases "
        f"{spec.SUPPORTED} or a wasmtime checkout"
    ]


def test_a_checkout_under_test_names_its_commit(
    cache_dir: Path, fake_cargo: Path, tmp_path: Path
) -> None:
    repo = make_checkout(tmp_path / "wasmtime")
    (repo / "README.md").write_text("local change\n")
    choice = spec.inspect_checkout(repo)
    build.ensure(choice, progress=quiet)
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    done = python(
        "from fuzz.bridge.load import under_test; print(under_test().describe())",
        env | {load.ENV_CHOICE: str(repo)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"{INSTALLED_VERSION} (checkout {repo} at {choice.commit[:12]}, "
        f"uncommitted changes {choice.diff_hash and choice.diff_hash[:12]})"
    )


def callfuzz(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fuzz.commands.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_the_command_line_chooses_builds_lists_and_removes(
    cache_dir: Path, fake_cargo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    line = INSTALLED_VERSION.rpartition(".")[0]
    spec.Index.path().parent.mkdir(parents=True)
    spec.Index.path().write_text(
        json.dumps({"fetched": time.time(), "published": [INSTALLED_VERSION], "yanked": []})
    )
    built = callfuzz("cranelift", "build", line, env=env)
    assert built.returncode == 0, built.stderr
    assert f"Cranelift {INSTALLED_VERSION} in {cache_dir / 'bridges'}" in built.stdout
    assert "callfuzz:   Compiling callfuzz-native" in built.stderr  # progress, on stderr
    shown = callfuzz("--cranelift", line, "--version", env=env)
    assert shown.stdout.strip() == f"callfuzz 0.1.0 (cranelift {INSTALLED_VERSION})"
    listed = callfuzz("cranelift", "list", env=env)
    assert f"release-{INSTALLED_VERSION}" in listed.stdout and "current" in listed.stdout
    ran = callfuzz(
        "--cranelift", line, "run", str(ROOT / "corpus" / "call-indirect-func-addr.clif"), env=env
    )
    assert "Traceback" not in ran.stderr
    removed = callfuzz("cranelift", "remove", line, env=env)
    assert removed.returncode == 0 and f"removed release-{INSTALLED_VERSION}" in removed.stdout
    assert cache.entries() == []
    assert len(cargo_calls(fake_cargo)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cranelift", "0.50", "run", "x.clif"], "Cranelift 0.50 is not supported"),
        (["--cranelift", "9.9", "gen"], "Cranelift 9.9 is not supported"),
        (["--cranelift", "/", "run", "x.clif"], "not a wasmtime checkout: / has no"),
        (["cranelift", "build", "0.104"], "Cranelift 0.104 is not supported"),
        (["cranelift", "build", "0.131.3"], "building the bridge for Cranelift 0.131.3 failed"),
        (["cranelift", "remove", "0.131"], "no cached bridge for 0.131"),
        (["cranelift", "remove"], "name the bridges to remove"),
    ],
)
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(
    cache_dir: Path, fake_cargo: Path, args: list[str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    spec.Index.path().parent.mkdir(parents=True)
    spec.Index.path().write_text(
        json.dumps({"fetched": time.time(), "published": ["0.131.3"], "yanked": []})
    )
    done = callfuzz(*args, env=env | {"FAKE_CARGO_FAIL": "1"})
    assert done.returncode == 2, done.stderr
    # one error line; anything else on stderr is build progress
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("callfuzz: error: ")]
    assert message in line, done.stderr
    assert all(x.startswith("callfuzz: ") for x in done.stderr.splitlines()), done.stderr
    assert cache.entries() == []
    if "failed" in message:
        assert f"log: {cache_dir / 'logs' / 'release-0.131.3.log'}" in line
    # the environment variable is read the same way
    if args[0] == "--cranelift":
        done = callfuzz(*args[2:], env=env | {load.ENV_CHOICE: args[1]})
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


# --- a real build (minutes; CALLFUZZ_SLOW=1) ---------------------------------


@pytest.mark.skipif(
    os.environ.get("CALLFUZZ_SLOW") != "1",
    reason="builds Cranelift 0.105 for real (minutes, needs crates.io): set CALLFUZZ_SLOW=1",
)
def test_an_old_release_builds_and_runs_the_corpus() -> None:
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    built = callfuzz("cranelift", "build", "0.105", env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    shown = callfuzz("--cranelift", "0.105", "--version", env=env)
    assert "(cranelift 0.105." in shown.stdout
    ran = callfuzz(
        "--cranelift",
        "0.105",
        "run",
        str(ROOT / "corpus" / "call-indirect-func-addr.clif"),
        env=env,
    )
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]


def test_remove_all_empties_the_cache(cache_dir: Path) -> None:
    fake_entry(cache_dir, "release-0.128.4", {"kind": "release", "version": "0.128.4"})
    checkout = {"kind": "checkout", "version": "0.138.0", "path": "/w", "commit": "0123456789abc"}
    fake_entry(cache_dir, "checkout-0123456789ab", checkout)
    (cache_dir / "target" / "release").mkdir(parents=True)
    (cache_dir / "target" / "release" / "lib.rlib").write_bytes(b"x" * 2**20)
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    done = callfuzz("cranelift", "remove", "--all", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "removed checkout-0123456789ab: Cranelift 0.138.0 (checkout /w at 0123456789ab)",
        "removed release-0.128.4: Cranelift 0.128.4",
        "removed the shared build directory (1 MiB)",
    ]
    assert cache.entries() == [] and not (cache_dir / "target").exists()


# --- releases newer than the newest callfuzz knows (issue 22) -------------------

INDEX_FIXTURE = Path(__file__).parent / "data" / "crates-index" / "cranelift-codegen"
INDEX_BASE = INDEX_FIXTURE.parent.as_uri() + "/"
# the fixture index (0.138.0 is newer than the newest known) and a made-up 0.150
NEWER_INDEX = INDEX_FIXTURE.read_text() + "\n" + json.dumps({"vers": "0.150.2"}) + "\n"


@pytest.mark.parametrize(("line", "version"), [("0.138", "0.138.0"), ("0.150", "0.150.2")])
def test_a_release_newer_than_the_newest_known_is_resolved_and_built(
    cache_dir: Path,
    fake_cargo: Path,
    monkeypatch: pytest.MonkeyPatch,
    line: str,
    version: str,
) -> None:
    serve_index(monkeypatch, NEWER_INDEX)
    choice = spec.resolve(line)
    assert choice == Release(version)
    # the fake cargo hands back the installed bridge: let its check report the release
    monkeypatch.setattr(build, "_check", lambda library, log: version)
    lines: list[str] = []
    entry = build.ensure(choice, progress=lines.append)
    (manifest,) = cargo_calls(fake_cargo)
    assert f'cranelift-codegen = {{ version = "={version}", default-features' in manifest
    assert f'cranelift-interpreter = {{ version = "={version}" }}' in manifest
    assert (entry.key, entry.version) == (f"release-{version}", version)
    assert (
        f"Cranelift {version} is newer than the newest release callfuzz knows: "
        "attempted with 0.137's cfg flags and feature table"
    ) in lines


def test_a_newer_release_that_does_not_build_fails_with_its_build_log(
    cache_dir: Path, fake_cargo: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    env |= {"FAKE_CARGO_FAIL": "1", spec.ENV_INDEX_URL: INDEX_BASE}
    done = callfuzz("--cranelift", "0.138", "run", "x.clif", env=env)
    assert done.returncode == 2, done.stderr
    log = cache_dir / "logs" / "release-0.138.0.log"
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("callfuzz: error: ")]
    assert line == (
        "callfuzz: error: building the bridge for Cranelift 0.138.0 failed: error[E0425]: "
        f"cannot find value `F16` in module `types`; log: {log}"
    )
    assert "cargo exited with 101" in log.read_text()
    (manifest,) = cargo_calls(fake_cargo)
    assert 'cranelift-reader = { version = "=0.138.0" }' in manifest
    assert cache.entries() == []


def test_a_crate_missing_from_crates_io_is_named(
    cache_dir: Path, fake_cargo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CARGO_FAIL", "1")
    cargo_says = (
        'error: failed to select a version for the requirement `cranelift-interpreter = "=0.138.0"`'
    )
    monkeypatch.setenv("FAKE_CARGO_ERROR", cargo_says)
    with pytest.raises(BridgeError) as err:
        build.ensure(Release("0.138.0"), progress=quiet)
    log = cache_dir / "logs" / "release-0.138.0.log"
    assert str(err.value) == (
        "building the bridge for Cranelift 0.138.0 failed: cranelift-interpreter 0.138.0 is "
        "not published on crates.io, though cranelift-codegen 0.138.0 is (cargo: failed to "
        'select a version for the requirement `cranelift-interpreter = "=0.138.0"`); use a '
        f"wasmtime checkout of that release instead: --cranelift PATH; log: {log}"
    )


@pytest.mark.parametrize("text", ["0.104", "0.104.3", "0.50", "0.0.1"])
def test_a_release_older_than_0_105_is_still_refused_in_one_line(
    cache_dir: Path, fake_cargo: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    serve_index(monkeypatch, NEWER_INDEX)
    with pytest.raises(BridgeError) as err:
        spec.resolve(text)
    assert str(err.value) == (
        f"Cranelift {text} is not supported: callfuzz builds against releases 0.105 and "
        "newer or a wasmtime checkout"
    )
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    done = callfuzz("--cranelift", text, "run", "x.clif", env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"callfuzz: error: {err.value}"]
    assert cargo_calls(fake_cargo) == []


# --- `cranelift list`: the bridge pip installed ---------------------------------


def test_list_reports_the_installed_bridge_whatever_the_current_directory(
    tmp_path: Path,
) -> None:
    # a `fuzz` package in the current directory (another checkout, say) must
    # not stand in for the installed one when the installed bridge is asked
    shadow = tmp_path / "elsewhere"
    (shadow / "fuzz").mkdir(parents=True)
    (shadow / "fuzz" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in CHOICE_VARS}
    done = subprocess.run(
        # -P: this process finds the installed callfuzz, as its script would
        [sys.executable, "-P", "-m", "fuzz.commands.cli", "cranelift", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=shadow,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"pip-installed bridge: Cranelift {INSTALLED_VERSION}\n" in done.stdout


def test_list_says_why_there_is_no_installed_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fuzz.commands import cranelift

    monkeypatch.setattr(cranelift, "installed_library", lambda: None)
    assert cranelift.installed_version().startswith("not built (no _cranelift extension module in ")
    broken = tmp_path / "_cranelift.abi3.so"
    broken.write_text("not a library")
    monkeypatch.setattr(cranelift, "installed_library", lambda: broken)
    said = cranelift.installed_version()
    assert said.startswith(f"unusable ({broken}: ImportError: ") and said.endswith(")")
    monkeypatch.undo()
    assert cranelift.installed_library() == installed_library()
    assert cranelift.installed_version() == INSTALLED_VERSION


def test_a_line_resolves_to_its_newest_release_that_has_every_crate(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.135.11 is cranelift-codegen's alone on crates.io (an LTS patch without
    reader or interpreter, as in the fixture): 0.135 is 0.135.8, and naming
    0.135.11 says why it cannot be built."""
    monkeypatch.setenv(spec.ENV_INDEX_URL, INDEX_BASE)
    monkeypatch.setattr(spec, "fetch_index", FETCH_INDEX)
    assert "0.135.11" in spec.parse_index(FETCH_INDEX("cranelift-codegen"))[0]
    assert spec.resolve("0.135") == Release("0.135.8")
    with pytest.raises(BridgeError, match=r"0\.135\.11 is cranelift-codegen's alone"):
        spec.resolve("0.135.11")


def test_a_line_published_for_codegen_alone_is_named_so(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """crates.io had cranelift-codegen 0.138.0 without its reader and
    interpreter: the line cannot be built, and the error says why."""

    def fetch(crate: str) -> str:
        extra = json.dumps({"vers": "0.139.0"}) if crate == "cranelift-codegen" else ""
        return INDEX + "\n" + extra

    monkeypatch.setattr(spec, "fetch_index", fetch)
    with pytest.raises(BridgeError, match=r"0\.139 is cranelift-codegen's alone .*0\.139\.0"):
        spec.resolve("0.139")
