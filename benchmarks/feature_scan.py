"""Static check of the feature table against wasmtime's sources (issue 24):
at every release tag of a wasmtime git repository (vN is Cranelift
0.(N+87)), is every setting, setting value, calling convention and ISA flag
the generator may use there (fuzz.features) spelled in that release's
sources? A cheap complement to `gen --check` on a built bridge, which also
covers types, syntax and what the backends accept.

    .venv/bin/python benchmarks/feature_scan.py WASMTIME_GIT_DIR"""

from __future__ import annotations

import re
import subprocess
import sys

from fuzz.features import has
from fuzz.targets import TARGETS
from fuzz.versions import OLDEST_MINOR

ISA_FILE = {"x86_64": "x86.rs", "aarch64": "arm64.rs", "riscv64": "riscv64.rs", "s390x": "s390x.rs"}
SETTINGS = (
    "enable_llvm_abi_extensions",
    "enable_multi_ret_implicit_sret",
    "preserve_frame_pointers",
    "regalloc_algorithm",
    "opt_level",
)


def show(repo: str, tag: str, path: str) -> str:
    done = subprocess.run(
        ["git", "-C", repo, "show", f"{tag}:{path}"], capture_output=True, text=True
    )
    return done.stdout


def missing(repo: str, tag: str, version: tuple[int, int, int]) -> list[str]:
    found = set()
    conventions = show(repo, tag, "cranelift/codegen/src/isa/call_conv.rs")
    for t in TARGETS.values():
        flags = show(repo, tag, f"cranelift/codegen/meta/src/isa/{ISA_FILE[t.name]}")
        for flag in {*t.fuzz_isa_flags, *t.qemu_isa_flags, *t.vector_isa_flags}:
            # riscv64 names its extensions without the `has_` prefix
            spelled = f'"{flag}"' in flags or f'"{flag.removeprefix("has_")}"' in flags
            if has(flag, version, t.name) and not spelled:
                found.add(f"{t.name} isa flag {flag}")
        for cc in t.call_convs:
            if has(cc, version, t.name) and f'"{cc}"' not in conventions:
                found.add(f"convention {cc}")
    settings = show(repo, tag, "cranelift/codegen/meta/src/shared/settings.rs")
    for name in SETTINGS:
        if has(name, version) and f'"{name}"' not in settings:
            found.add(f"setting {name}")
    for value in ("backtracking", "single_pass"):
        wanted = has("regalloc_algorithm", version) and has(f"regalloc_algorithm={value}", version)
        if wanted and f'"{value}"' not in settings:
            found.add(f"setting value regalloc_algorithm={value}")
    return sorted(found)


def main() -> None:
    repo = sys.argv[1]
    tags = subprocess.run(["git", "-C", repo, "tag"], capture_output=True, text=True).stdout.split()
    for major in range(OLDEST_MINOR - 87, 200):
        releases = sorted(t for t in tags if re.fullmatch(rf"v{major}\.0\.\d+", t))
        if not releases:
            continue
        version = (0, major + 87, 0)
        gaps = missing(repo, releases[0], version)
        print(f"0.{major + 87} ({releases[0]}): {', '.join(gaps) or 'ok'}")


if __name__ == "__main__":
    main()
