"""Which function each counter belongs to. SanitizerCoverage lays out a
function's counters together, its entry block first (flag 1 in the PC
table), so a function is the run of counters from its entry to the next
function's. Each entry PC is named from the module's symbol table (`nm -C`:
v0 names say which instance of a generic function it is) and placed in a
source file from its line table (`addr2line`), both from binutils; a file
path becomes `crate/path-in-crate` (`cranelift-codegen/src/isa/x64/abi.rs`,
generated ISLE code `cranelift-codegen/OUT_DIR/isle_x64.rs`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, TypedDict

PCS_FILE = "pcs.json"


class FunctionTable(TypedDict):
    counters: int
    # [first counter, counter count, demangled name, crate/file]
    functions: list[tuple[int, int, str, str]]


def write_entries(path: Path, key: str, counters: int, entries: list[tuple[int, int]]) -> None:
    """The PC table's function entries: (counter index, PC as a file address)."""
    path.write_text(json.dumps({"bridge": key, "counters": counters, "entries": entries}))


def _names(library: Path) -> dict[int, str]:
    """Address -> demangled name of every defined text symbol (`nm`)."""
    if shutil.which("nm") is None:
        return {}
    done = subprocess.run(
        ["nm", "-C", "--defined-only", str(library)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    names: dict[int, str] = {}
    for line in done.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            try:
                names.setdefault(int(parts[0], 16), parts[2])
            except ValueError:
                continue
    return names


def _files(library: Path, addresses: list[int]) -> list[str]:
    """`file:line` of each address (`addr2line`), `?` when unknown."""
    if shutil.which("addr2line") is None or not addresses:
        return ["?"] * len(addresses)
    done = subprocess.run(
        ["addr2line", "-e", str(library)],
        input="".join(f"{a:x}\n" for a in addresses),
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    lines = done.stdout.splitlines()
    if len(lines) != len(addresses):
        return ["?"] * len(addresses)
    return [line.rsplit(":", 1)[0] if ":" in line else "?" for line in lines]


_REGISTRY = re.compile(r"/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/(.*)$")
_OUT_DIR = re.compile(r"/build/([A-Za-z0-9_-]+?)-[0-9a-f]{16}/out/(.*)$")
_CHECKOUT = re.compile(r"/cranelift/([a-z0-9_-]+)/((?:src|meta)/.*)$")
_STD = re.compile(r"/library/([a-z_]+)/(src/.*)$")
_BRIDGE = re.compile(r"/(?:native|src)/(src/[^/]+\.rs)$")


def source_path(path: str) -> str:
    """A file the line table names, as `crate/path` (or `?`)."""
    if path in ("?", "??", ""):
        return "?"
    if match := _OUT_DIR.search(path):
        return f"{match[1]}/OUT_DIR/{match[2]}"
    if match := _REGISTRY.search(path):
        return f"{match[1]}/{match[2]}"
    if match := _CHECKOUT.search(path):
        return f"cranelift-{match[1]}/{match[2]}"
    if match := _STD.search(path):
        return f"{match[1]}/{match[2]}"
    if match := _BRIDGE.search(path):
        return f"callfuzz-native/{match[1]}"
    return path.lstrip("/")


def symbolize(library: Path, pcs_file: Path) -> FunctionTable:
    """The function table of an instrumented module from its PC-table entries."""
    data: dict[str, Any] = json.loads(pcs_file.read_text())
    counters = int(data["counters"])
    entries = [(int(i), int(pc)) for i, pc in data["entries"]]
    names = _names(library)
    files = _files(library, [pc for _i, pc in entries])
    functions = []
    for n, ((start, pc), file) in enumerate(zip(entries, files, strict=True)):
        end = entries[n + 1][0] if n + 1 < len(entries) else counters
        name = names.get(pc, f"0x{pc:x}")
        functions.append((start, end - start, name, source_path(file)))
    return {"counters": counters, "functions": functions}


def load(path: Path) -> FunctionTable:
    data: FunctionTable = json.loads(path.read_text())
    return data
