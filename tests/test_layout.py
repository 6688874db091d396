"""The layout's promises: no import cycle between modules or between packages,
and every module imports on its own, in any order."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fuzz", "reducers")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """Project modules `path` imports anywhere (top level, functions, TYPE_CHECKING)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # `from fuzz.gen import cells` names a module; `from x import y` a member
            names = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            names = names or [base]
        else:
            continue
        for imported in names:
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                out.add(imported)
    return out


GRAPH = {name: _imports(path, name) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_of(module: str) -> str:
    """The unit of the package graph: `fuzz.pipeline`, `fuzz.gen`, ...,
    `reducers`; a module at the top of `fuzz` is a unit of its own."""
    parts = module.split(".")
    return parts[0] if parts[0] != "fuzz" else ".".join(parts[:2])


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        mine = package_of(module)
        packages.setdefault(mine, set()).update(
            p for p in map(package_of, imported) if p != mine and p != "fuzz"
        )
    return packages


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_is_read() -> None:
    # a few edges the layout is built on, so an empty graph cannot pass
    assert "fuzz.targets" in GRAPH["fuzz.pipeline.runner"]
    assert "fuzz.pipeline.runner" in GRAPH["fuzz.campaign.worker"]
    assert "reducers.reduce" in GRAPH["fuzz.commands.fuzz"]


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(GRAPH) == []


def test_no_import_cycle_between_packages() -> None:
    assert _cycles(_package_graph(GRAPH)) == []


def test_only_commands_tie_campaigns_to_the_reducer() -> None:
    users = {m for m, imported in GRAPH.items() if any(i.startswith("reducers") for i in imported)}
    assert {package_of(m) for m in users} <= {"fuzz.commands", "reducers"}, users


def _import_each(names: Iterable[str], alone: bool) -> subprocess.CompletedProcess[str]:
    """Import the modules in order in one interpreter; `alone`: each with no
    other project module loaded (the native bridge stays: an extension module
    initialises once per process)."""
    script = (
        "import importlib, sys\n"
        "import fuzz._cranelift\n"
        f"for name in {list(names)!r}:\n"
        f"    if {alone!r}:\n"
        "        for m in [m for m in sys.modules if m.split('.')[0] in ('fuzz', 'reducers')]:\n"
        "            if m not in ('fuzz', 'fuzz._cranelift'):\n"
        "                del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_every_module_imports_on_its_own_in_any_order() -> None:
    names = sorted(MODULES)
    done = _import_each(names, alone=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for seed in range(3):
        order = names[:]
        random.Random(seed).shuffle(order)
        done = _import_each(order, alone=False)
        assert done.returncode == 0, done.stderr[-2000:]
