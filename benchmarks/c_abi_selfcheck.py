"""The C-ABI oracle's glue checked against itself: C calling C and Cranelift
calling Cranelift over the signatures of generated cases, per target, with
the C side compiled in batches. Prints signatures checked and mismatches per
direction (the glue is right when both self-checks have 0), and the mixed
directions' mismatches for reference.

    .venv/bin/python benchmarks/c_abi_selfcheck.py [--signatures N] [--batch B]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from fuzz import _cranelift
from fuzz.gen.choices import RandomSource
from fuzz.gen.generate import generate
from fuzz.pipeline.cabi import check
from fuzz.pipeline.cabi.build import compiler_path
from fuzz.pipeline.emulate import Emulator, RawOutcome
from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.link import Image
from fuzz.targets import TARGETS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signatures", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    for name in args.targets.split(","):
        target = TARGETS[name]
        absent = [c.compiler for c in target.c_abis if compiler_path(c.compiler) is None]
        if absent:
            print(f"{name}: {', '.join(absent)} not installed: its conventions are left out")
        emulator = Emulator(target)
        isa = _cranelift.Isa(target.triple, list(check.C_FLAGS), [])

        def run(
            image: Image, entry: int, callee: int, area: bytes, emulator: Emulator = emulator
        ) -> RawOutcome:
            return emulator.run(image, entry, callee, area)

        seen: set[str] = set()
        counts: Counter[str] = Counter()
        glue_errors = checked = abstained = seed = 0
        start = time.perf_counter()
        while checked + abstained < args.signatures:
            batch = []
            while len(batch) < args.batch:
                ft = parse_text(generate(RandomSource(seed), target).text)
                seed += 1
                for _key, _name, sig in check.signatures_of(ft.functions, target)[0]:
                    if sig.text not in seen:
                        seen.add(sig.text)
                        batch.append((str(len(batch)), sig))
            built = check.build_image(batch, target, isa, "system_v")
            image, unsupported = built.image, built.unsupported | built.missing
            for key, sig in batch:
                if key in unsupported:
                    abstained += 1
                    continue
                try:
                    result = check.check_signature(image, key, sig, run)
                except check.GlueError:
                    glue_errors += 1
                    continue
                if result.abstained:
                    abstained += 1
                    continue
                checked += 1
                for direction in {m.direction for m in result.mismatches}:
                    counts[direction] += 1
        seconds = time.perf_counter() - start
        print(
            f"{name}: {checked} signatures checked ({abstained} abstained) in {seconds:.0f} s; "
            f"C calls C: {glue_errors} mismatches; Cranelift calls Cranelift: "
            f"{counts['Cranelift calls Cranelift']} mismatches; mixed: "
            f"C calls Cranelift {counts['C calls Cranelift']}, "
            f"Cranelift calls C {counts['Cranelift calls C']}"
        )


if __name__ == "__main__":
    main()
