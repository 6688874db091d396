"""The interpreter's twin of a module: what cranelift-interpreter (0.135)
cannot run, rewritten into what it can, for the reference only (the
executors run the original).

- `try_call`/`try_call_indirect`: the interpreter has none (`unimplemented!`).
  No CLIF instruction raises an exception (only an embedder's unwinder can),
  so a `try_call` of a function returns normally, and then it is exactly a
  `call` followed by a `jump` to its normal-return block, `retN` being the
  call's results. A `try_call` of the thrower (`%Throw_CC(tag, p0, p1)`,
  fuzz.pipeline.unwind), directly or through its `func_addr`, with a
  constant tag, always throws: it is a `jump` to the first handler whose tag
  matches (else `default`), `exnN` being the payload argument N.
  Its `func_addr` becomes 0 (the interpreter panics on the address of a
  function it lacks; only that `try_call` uses it).
- `stack_limit`: the interpreter ignores it (it has no machine stack). The
  prologue of a function with a frame traps `stk_ovf` when the stack would
  go below the limit; the twin traps at its entry when the limit is at or
  above 2**63, where no stack of the executors (nor of a real 64-bit
  process) lies, and never otherwise. Exact for limits far from the stack
  (generated cases use 0 and -65536); a limit near the real stack pointer
  depends on the frame size and stays the executors' own.
- machine values (`get_frame_pointer`, `get_stack_pointer`,
  `get_return_address`, `symbol_value`): the interpreter has none. A
  function that uses them only in relations every machine guarantees
  (`icmp ule sp, fp`; `icmp ne` of any of the three and zero; `icmp eq` of
  `symbol_value` and `func_addr` of the same function) gets those
  comparisons as the constant 1; a function that uses them any other way
  is left as it is (the interpreter says it is unsupported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fuzz.pipeline.unwind import thrower_cc

_TRY_CALL = re.compile(
    r"^(?P<indent>\s*)(?P<op>try_call|try_call_indirect)\s+(?P<callee>[%\w.:]+)"
    r"\((?P<args>[^()]*)\),\s*(?P<sig>sig\d+),\s*(?P<block>block\d+)"
    r"(?:\((?P<bargs>[^()]*)\))?,\s*\[(?P<table>.*)\]\s*(?P<comment>;.*)?$"
)
_TABLE_ENTRY = re.compile(
    r"^\s*(?:tag(?P<tag>\d+)|(?P<default>default))\s*:\s*(?P<block>block\d+)"
    r"(?:\((?P<bargs>[^()]*)\))?\s*$"
)
_ICONST = re.compile(r"^\s*(?P<v>v\d+)\s*=\s*iconst\.i\d+\s+(?P<n>-?\d+)\s*$")
_EXN = re.compile(r"^exn(\d+)$")
# parameters may hold parentheses (`i64 sarg(24)`), returns never do
_SIG_DECL = re.compile(r"^\s*(?P<sig>sig\d+)\s*=\s*\((?P<params>.*)\)(?P<rest>[^()]*)$")
_FUNCTION = re.compile(r"^function\s+\S+?\((?P<params>.*)\)[^()]*\{")
_GV_VMCTX = re.compile(r"^\s*(?P<gv>gv\d+)\s*=\s*vmctx\s*$")
_GV_LOAD = re.compile(
    r"^\s*(?P<gv>gv\d+)\s*=\s*load\.(?P<ty>i64)(?P<flags>(?:\s+[a-z]+)*)\s+"
    r"(?P<base>gv\d+)(?P<offset>[+-]\d+)?\s*$"
)
_STACK_LIMIT = re.compile(r"^\s*stack_limit\s*=\s*(?P<gv>gv\d+)\s*$")
_FRAME = re.compile(r"^\s*(?:ss\d+\s*=\s*explicit_slot|fn\d+\s*=|sig\d+\s*=)")
_BLOCK0 = re.compile(r"^block0(?:\((?P<params>.*)\))?:")
_VALUE = re.compile(r"\bv(\d+)\b")
_RET = re.compile(r"^ret(\d+)$")
_MACHINE_VALUE = re.compile(
    r"^\s*(?P<v>v\d+)\s*=\s*(?P<op>get_frame_pointer|get_stack_pointer|get_return_address)"
    r"\.i64\s*$"
)
_SYMBOL_VALUE = re.compile(r"^\s*(?P<v>v\d+)\s*=\s*symbol_value\.i64\s+(?P<gv>gv\d+)\s*$")
_FUNC_ADDR = re.compile(r"^\s*(?P<v>v\d+)\s*=\s*func_addr\.i64\s+(?P<fn>fn\d+)\s*$")
_ZERO = re.compile(r"^\s*(?P<v>v\d+)\s*=\s*iconst\.i64\s+0\s*$")
_GV_SYMBOL = re.compile(r"^\s*(?P<gv>gv\d+)\s*=\s*symbol\s+(?:colocated\s+)?(?P<name>\S+)\s*$")
_FN_DECL = re.compile(
    r"^\s*(?P<fn>fn\d+)\s*=\s*(?:colocated\s+)?(?:patchable\s+)?(?P<name>[^\s(]+)"
)
_ICMP = re.compile(
    r"^(?P<indent>\s*)(?P<c>v\d+)\s*=\s*icmp\s+(?P<cc>\w+)\s+(?P<a>v\d+),\s*(?P<b>v\d+)\s*$"
)
# the lowest limit the twin takes for one no stack reaches
UNREACHABLE_LIMIT = 1 << 63


@dataclass
class _Function:
    """What the twin needs to know of the function it is reading."""

    vmctx: int | None = None  # the index of the vmctx parameter
    returns: dict[str, int] = field(default_factory=dict)  # sigN -> return count
    gvs: dict[str, str | tuple[str, str, str]] = field(default_factory=dict)
    limit: str | None = None  # the global value `stack_limit` names
    frame: bool = False  # a slot or a call: Cranelift checks the limit
    throwers: set[str] = field(default_factory=set)  # fnN naming a thrower
    consts: dict[str, int] = field(default_factory=dict)  # vN -> its iconst
    addrs: dict[str, str] = field(default_factory=dict)  # vN -> the fnN it is the address of


def _return_count(rest: str) -> int:
    """How many values a signature declaration's tail (`-> i64, f32 tail`)
    returns: one per comma-separated item after the arrow."""
    if "->" not in rest:
        return 0
    return len([r for r in rest.split("->", 1)[1].split(",") if r.strip()])


class _Fresh:
    def __init__(self, text: str) -> None:
        self.next = max((int(n) for n in _VALUE.findall(text)), default=0) + 1

    def __call__(self) -> str:
        self.next += 1
        return f"v{self.next - 1}"


def interpretable(text: str) -> str:
    """`text` with every `try_call` made a call and a jump and every
    `stack_limit` an explicit check (the text itself when it has neither)."""
    if "get_" in text or "symbol_value" in text:
        text = "".join(_relations(f) for f in _functions(text))
    if "try_call" not in text and "stack_limit" not in text:
        return text
    fresh = _Fresh(text)
    fn = _Function()
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("function"):
            fn = _Function(vmctx=_vmctx_index(line))
        _declare(fn, line)
        if block0 := _BLOCK0.match(line):
            out.append(line)
            out += _limit_check(fn, block0["params"] or "", fresh)
            continue
        addr = _FUNC_ADDR.match(line)
        if addr and addr["fn"] in fn.throwers:
            # the interpreter has no address of a function it lacks (a
            # panic): the address only ever reaches the thrower's try_call
            out.append(f"{line[: len(line) - len(line.lstrip())]}{addr['v']} = iconst.i64 0\n")
            continue
        m = _TRY_CALL.match(line)
        rewritten = None
        if m is not None and _calls_thrower(fn, m):
            rewritten = _throw_jump(fn, m)
        elif m is not None:
            rewritten = _call_and_jump(m, fn.returns.get(m["sig"]), fresh)
        out.append(rewritten or line)  # what it cannot read stays (and is unsupported)
    return "".join(out)


def _vmctx_index(header: str) -> int | None:
    m = _FUNCTION.match(header)
    if m is None:
        return None
    params = [p.split() for p in m["params"].split(",")]
    return next((i for i, words in enumerate(params) if "vmctx" in words), None)


def _declare(fn: _Function, line: str) -> None:
    if decl := _SIG_DECL.match(line):
        fn.returns[decl["sig"]] = _return_count(decl["rest"])
    if gv := _GV_VMCTX.match(line):
        fn.gvs[gv["gv"]] = "vmctx"
    elif gv := _GV_LOAD.match(line):
        fn.gvs[gv["gv"]] = (gv["base"], gv["offset"] or "", gv["flags"].strip())
    elif limit := _STACK_LIMIT.match(line):
        fn.limit = limit["gv"]
    if _FRAME.match(line):
        fn.frame = True
    if (decl := _FN_DECL.match(line)) and thrower_cc(decl["name"]):
        fn.throwers.add(decl["fn"])
    elif const := _ICONST.match(line):
        fn.consts[const["v"]] = int(const["n"])
    elif addr := _FUNC_ADDR.match(line):
        fn.addrs[addr["v"]] = addr["fn"]


def _calls_thrower(fn: _Function, m: re.Match[str]) -> bool:
    callee = m["callee"] if m["op"] == "try_call" else fn.addrs.get(m["callee"])
    return callee in fn.throwers


def _split(text: str) -> list[str]:
    """`text` split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _throw_jump(fn: _Function, m: re.Match[str]) -> str | None:
    """The jump to the handler a thrower's `try_call` lands in, its `exnN`
    the payload arguments; None when the tag is no constant or nothing
    catches it (the executors' stand-in says so)."""
    args = _split(m["args"])
    tag = fn.consts.get(args[0]) if args else None
    if tag is None:
        return None
    for entry in _split(m["table"]):
        e = _TABLE_ENTRY.match(entry)
        if e is None or not (e["default"] or int(e["tag"]) == tag & 0xFFFF_FFFF):
            continue  # a `context` entry, or another tag
        passed = []
        for a in _split(e["bargs"] or ""):
            exn = _EXN.match(a)
            if exn is not None and 1 + int(exn[1]) >= len(args):
                return None
            passed.append(args[1 + int(exn[1])] if exn else a)
        jump = f"jump {e['block']}({', '.join(passed)})" if passed else f"jump {e['block']}"
        return f"{m['indent']}{jump}\n"
    return None


def _limit_check(fn: _Function, block0_params: str, fresh: _Fresh) -> list[str]:
    """The entry check of a function with a `stack_limit`, as lines."""
    if fn.limit is None or fn.vmctx is None or not fn.frame:
        return []
    names = [p.split(":")[0].strip() for p in block0_params.split(",")]
    if fn.vmctx >= len(names):
        return []
    lines: list[str] = []
    value = _gv_value(fn, fn.limit, names[fn.vmctx], fresh, lines)
    if value is None:
        return []
    zero, below = fresh(), fresh()
    return [
        *lines,
        f"    {zero} = iconst.i64 0\n",
        f"    {below} = icmp slt {value}, {zero}\n",  # limit >= 2**63
        f"    trapnz {below}, stk_ovf\n",
    ]


def _gv_value(fn: _Function, gv: str, vmctx: str, fresh: _Fresh, lines: list[str]) -> str | None:
    """The value of global value `gv` computed into `lines` (None: a kind
    the prologue's check does not read either)."""
    data = fn.gvs.get(gv)
    if data == "vmctx":
        return vmctx
    if not isinstance(data, tuple):
        return None
    base, offset, flags = data
    address = _gv_value(fn, base, vmctx, fresh, lines)
    if address is None:
        return None
    loaded = fresh()
    load = " ".join(w for w in ("load.i64", flags, f"{address}{offset}") if w)
    lines.append(f"    {loaded} = {load}\n")
    return loaded


def _call_and_jump(m: re.Match[str], returns: int | None, fresh: _Fresh) -> str | None:
    """The call and jump for a `try_call`; None for one whose `retN` the
    signature does not have (invalid IR: the verifier says so)."""
    if returns is None:
        return None
    rets = [_RET.match(a.strip()) for a in (m["bargs"] or "").split(",")]
    if any(r is not None and int(r[1]) >= returns for r in rets):
        return None
    results = [fresh() for _ in range(returns)]
    if m["op"] == "try_call":
        call = f"call {m['callee']}({m['args']})"
    else:
        call = f"call_indirect {m['sig']}, {m['callee']}({m['args']})"
    defs = f"{', '.join(results)} = " if results else ""
    passed = []
    for a in (a.strip() for a in (m["bargs"] or "").split(",")):
        if a:
            ret = _RET.match(a)
            passed.append(results[int(ret[1])] if ret else a)
    jump = f"jump {m['block']}({', '.join(passed)})" if passed else f"jump {m['block']}"
    return f"{m['indent']}{defs}{call}\n{m['indent']}{jump}\n"


def _functions(text: str) -> list[list[str]]:
    """`text` in runs of lines, each function one run (and what lies between)."""
    runs: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if line.startswith("function"):
            runs.append([])
        runs[-1].append(line)
    return runs


def _relations(lines: list[str]) -> str:
    """One function's lines, its machine-value relations made constants
    when those are the only uses of its machine values."""
    machine: dict[str, str] = {}  # value -> what it is: fp, sp, ra, sym:NAME
    addr: dict[str, str] = {}  # value -> the function whose address it is
    zeros: set[str] = set()
    symbols: dict[str, str] = {}
    fns: dict[str, str] = {}
    for line in lines:
        if m := _GV_SYMBOL.match(line):
            symbols[m["gv"]] = m["name"]
        elif m := _FN_DECL.match(line):
            fns[m["fn"]] = m["name"]
        elif m := _MACHINE_VALUE.match(line):
            machine[m["v"]] = {"get_frame_pointer": "fp", "get_stack_pointer": "sp"}.get(
                m["op"], "ra"
            )
        elif (m := _SYMBOL_VALUE.match(line)) and m["gv"] in symbols:
            machine[m["v"]] = f"sym:{symbols[m['gv']]}"
        elif (m := _FUNC_ADDR.match(line)) and m["fn"] in fns:
            addr[m["v"]] = fns[m["fn"]]
        elif m := _ZERO.match(line):
            zeros.add(m["v"])
    if not machine:
        return "".join(lines)
    out = []
    for line in lines:
        icmp = _ICMP.match(line)
        if icmp and _guaranteed(icmp, machine, addr, zeros):
            out.append(f"{icmp['indent']}{icmp['c']} = iconst.i8 1\n")
            continue
        defined = _VALUE.match(line.strip())
        if defined and defined[0] in machine and " = " in line:
            out.append(f"{line[: len(line) - len(line.lstrip())]}{defined[0]} = iconst.i64 0\n")
            continue
        if any(f"v{n}" in machine for n in _VALUE.findall(line)):
            return "".join(lines)  # another use: the value itself matters
        out.append(line)
    return "".join(out)


def _guaranteed(
    icmp: re.Match[str], machine: dict[str, str], addr: dict[str, str], zeros: set[str]
) -> bool:
    """Whether an `icmp` holds on every machine by what its operands are."""
    cc, a, b = icmp["cc"], machine.get(icmp["a"]), machine.get(icmp["b"])
    if (cc, a, b) in (("ule", "sp", "fp"), ("uge", "fp", "sp")):
        return True
    if cc == "ne" and a in ("fp", "sp", "ra") and icmp["b"] in zeros:
        return True
    return cc == "eq" and a is not None and a.startswith("sym:") and addr.get(icmp["b"]) == a[4:]
