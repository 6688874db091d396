"""One step of `callfuzz bisect`, in its own process (one Cranelift per
process: `CALLFUZZ_CRANELIFT` chooses it): the findings a file gives on a
target, as JSON on stdout.

    python -m fuzz.commands.bisect_step FILE TARGET"""

from __future__ import annotations

import json
import sys

from fuzz.pipeline.filetest import BadInput, TargetLine, parse_file
from fuzz.pipeline.oracle import is_finding
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import lookup


def findings(path: str, target: str) -> list[dict[str, str]]:
    try:
        ft = parse_file(path)
        lines = default_lines(ft, [TargetLine(lookup(target))])
        results = Runner().run_file(ft, lines)
    except BadInput as err:  # an older reader may not read it
        return [{"verdict": "bad input", "detail": str(err)}]
    found = []
    for result in results:
        for label, verdict in result.judgement.verdicts.items():
            if label.split()[0] == target and is_finding(verdict, label in result.judgement.blame):
                found.append({"verdict": verdict.value, "detail": str(result.outcomes[label])})
    return found


def main() -> None:
    path, target = sys.argv[1:3]
    print(json.dumps(findings(path, target)))


if __name__ == "__main__":
    main()
