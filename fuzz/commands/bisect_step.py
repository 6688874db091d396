"""One step of `callfuzz bisect`, in its own process (one Cranelift per
process: `CALLFUZZ_CRANELIFT` chooses it): what a file gives on a target,
as a JSON list on stdout: an outcome per run of the file on the target,

    {"verdict", "detail", "finding": bool, "key", "message"}

`key` the bucket key (fuzz.triage.buckets) of a finding, `message` a
compile panic's message, masked. A file this release cannot read or verify
gives one outcome of verdict `bad input` (never a finding); one the feature
table says the release cannot run on the target (`callfuzz run` skips it as
"not for this release") one of verdict `not for this release`.

    python -m fuzz.commands.bisect_step FILE TARGET [--c-abi]"""

from __future__ import annotations

import json
import sys
from typing import Any

from fuzz.pipeline.filetest import BadInput, TargetLine, parse_file
from fuzz.pipeline.oracle import Verdict, is_finding
from fuzz.pipeline.runner import C_ABI_DIRECTIVE, Runner, default_lines, release_lines
from fuzz.targets import lookup
from fuzz.triage.attribution import attributed_bucket
from fuzz.triage.buckets import mask


def panic_message(detail: str) -> str:
    """`message at file:line:col` -> the message, masked (numbers and names
    vary between releases and cases)."""
    return mask(detail.rpartition(" at ")[0] or detail)


BAD_INPUT = "bad input"
NOT_FOR_RELEASE = "not for this release"


def outcome(verdict: str, detail: str, key: str = "", message: str = "") -> dict[str, Any]:
    return {
        "verdict": verdict,
        "detail": detail,
        "finding": bool(key),
        "key": key,
        "message": message,
    }


def outcomes(path: str, target: str, c_abi: bool = False) -> list[dict[str, Any]]:
    try:
        ft = parse_file(path)
        runner = Runner(c_abi=c_abi or C_ABI_DIRECTIVE in ft.text)
        # the gate `callfuzz run` applies: what the table says the release
        # lacks is not run (compiled anyway, it gives the harness's failure
        # to use it, e.g. a throw with no try_call site known, not Cranelift's)
        lines, too_new = release_lines(
            ft, default_lines(ft, [TargetLine(lookup(target))]), runner.release
        )
        if too_new and not lines:
            return [outcome(NOT_FOR_RELEASE, too_new[0].reason)]
        results = runner.run_file(ft, lines)
    except BadInput as err:  # an older reader may not read it
        return [outcome(BAD_INPUT, str(err))]
    found = []
    for result in results:
        for label, verdict in result.judgement.verdicts.items():
            if label.split()[0] != target:
                continue
            detail = result.outcomes[label].detail or str(result.outcomes[label])
            finding = is_finding(verdict, label in result.judgement.blame)
            # a wrong result keyed by what it depends on, as campaigns key it
            line = next((ln for ln in lines if ln.label == label), None)
            key = attributed_bucket(runner, ft, line, label, result).key if finding else ""
            panic = verdict is Verdict.COMPILE_PANIC
            found.append(
                outcome(verdict.value, detail, key, panic_message(detail) if panic else "")
            )
    return found


def main() -> None:
    path, target, *rest = sys.argv[1:]
    print(json.dumps(outcomes(path, target, c_abi="--c-abi" in rest)))


if __name__ == "__main__":
    main()
