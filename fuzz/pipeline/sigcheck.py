"""A call site's signature must equal its callee's definition: params, returns,
extensions, purposes and calling convention. A mismatch makes garbage that is
the user's error, not a Cranelift bug (upstream's "random data through
call_indirect" reports), so such input is rejected before anything runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fuzz.pipeline.filetest import BadInput

if TYPE_CHECKING:
    from fuzz._cranelift import FunctionInfo, SignatureInfo


def _shape(sig: SignatureInfo) -> tuple[object, ...]:
    return (tuple(sig["params"]), tuple(sig["returns"]), sig["call_conv"])


def signature_mismatches(functions: dict[str, FunctionInfo]) -> list[str]:
    """One message per call site whose signature differs from its callee's."""
    problems = []
    for caller, info in functions.items():
        for site in info["call_sites"]:
            callee = site["callee"]
            if callee is None or callee not in functions:
                continue  # an unknown target; the linker names undefined symbols
            defined = functions[callee]["signature"]
            used = site["signature"]
            if _shape(used) != _shape(defined):
                problems.append(
                    f"{caller}: `{site['inst']}` uses signature {used['text']} "
                    f"but {callee} is defined as {defined['text']}"
                )
    return problems


def check_signatures(functions: dict[str, FunctionInfo]) -> None:
    problems = signature_mismatches(functions)
    if problems:
        raise BadInput("call-site signature mismatch: " + "; ".join(problems))
