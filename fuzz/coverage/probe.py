"""Run in a fresh interpreter with libFuzzer preloaded, by the builder:
`python -m fuzz.coverage.probe LIBRARY KEY`. Loads an instrumented bridge,
compiles a function for every target, checks that its counters moved,
writes its function entries (from the PC table) next to it and prints one
JSON line: version, counters, functions, counters reached."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path

from fuzz.coverage.counters import Counters, reached
from fuzz.coverage.symbols import PCS_FILE, write_entries

CHECK_CLIF = "function %f(i64) -> i64 {\nblock0(v0: i64):\n    return v0\n}\n"


def main(argv: list[str]) -> int:
    library, key = Path(argv[0]).resolve(), argv[1]
    from fuzz.targets import TARGETS

    loader = importlib.machinery.ExtensionFileLoader("_cranelift", str(library))
    spec = importlib.util.spec_from_file_location("_cranelift", library, loader=loader)
    assert spec is not None
    bridge = importlib.util.module_from_spec(spec)
    loader.exec_module(bridge)
    counters = Counters(library)
    before = reached(counters.snapshot())
    module = bridge.parse(CHECK_CLIF)
    module.verify()
    for target in TARGETS.values():
        module.compile(bridge.Isa(target.triple, [], []))
    after = reached(counters.snapshot())
    if after <= before:
        print(f"the counters did not move ({before} before compiling, {after} after)")
        return 1
    table = counters.pc_table()
    entries = [(i, pc) for i, (pc, flags) in enumerate(table) if flags & 1]
    write_entries(library.parent / PCS_FILE, key, len(table), entries)
    summary = {
        "version": bridge.version(),
        "counters": counters.size,
        "functions": len(entries),
        "reached": after,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
