"""The interpreter's twin of a module with `try_call`s.

cranelift-interpreter has no `try_call`/`try_call_indirect` (0.135: an
`unimplemented!`). No CLIF instruction raises an exception (only an
embedder's unwinder can), so in a module the executors run a `try_call`
always returns normally, and then it is exactly a `call` followed by a
`jump` to its normal-return block, `retN` being the call's results. The twin
is the module so rewritten, for the reference only: the executors run the
original, whose exception tables and handlers they compile but never take.
"""

from __future__ import annotations

import re

_TRY_CALL = re.compile(
    r"^(?P<indent>\s*)(?P<op>try_call|try_call_indirect)\s+(?P<callee>[%\w.:]+)"
    r"\((?P<args>[^()]*)\),\s*(?P<sig>sig\d+),\s*(?P<block>block\d+)"
    r"(?:\((?P<bargs>[^()]*)\))?,\s*\[.*\]\s*(?P<comment>;.*)?$"
)
# parameters may hold parentheses (`i64 sarg(24)`), returns never do
_SIG_DECL = re.compile(r"^\s*(?P<sig>sig\d+)\s*=\s*\((?P<params>.*)\)(?P<rest>[^()]*)$")
_VALUE = re.compile(r"\bv(\d+)\b")
_RET = re.compile(r"^ret(\d+)$")


def _return_count(rest: str) -> int:
    """How many values a signature declaration's tail (`-> i64, f32 tail`)
    returns: one per comma-separated item after the arrow."""
    if "->" not in rest:
        return 0
    return len([r for r in rest.split("->", 1)[1].split(",") if r.strip()])


def interpretable(text: str) -> str:
    """`text` with every `try_call` and `try_call_indirect` made a call
    and a jump (the text itself when it has none)."""
    if "try_call" not in text:
        return text
    fresh = max((int(n) for n in _VALUE.findall(text)), default=0) + 1
    returns: dict[str, int] = {}
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("function"):
            returns = {}
        decl = _SIG_DECL.match(line)
        if decl:
            returns[decl["sig"]] = _return_count(decl["rest"])
        m = _TRY_CALL.match(line)
        if m is None or m["sig"] not in returns:
            out.append(line)
            continue
        results = [f"v{fresh + i}" for i in range(returns[m["sig"]])]
        fresh += len(results)
        if m["op"] == "try_call":
            call = f"call {m['callee']}({m['args']})"
        else:
            call = f"call_indirect {m['sig']}, {m['callee']}({m['args']})"
        defs = f"{', '.join(results)} = " if results else ""
        bargs = [a.strip() for a in (m["bargs"] or "").split(",") if a.strip()]
        passed = []
        for a in bargs:
            ret = _RET.match(a)
            passed.append(results[int(ret[1])] if ret else a)
        jump = f"jump {m['block']}({', '.join(passed)})" if passed else f"jump {m['block']}"
        out.append(f"{m['indent']}{defs}{call}\n{m['indent']}{jump}\n")
    return "".join(out)
