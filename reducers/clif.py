"""A small, editable model of a CLIF filetest, enough for the reducer's passes.

The reducer edits text, but it must always produce valid CLIF: a function's
signature, its entry block, every call site's `sigN` declaration and the run
lines change together. The model keeps each part as a list the passes can
shrink, and prints back to filetest text.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_HEADER = re.compile(r"^function (%[\w.]+)\((.*)\)(?: -> (.*?))?(?: (\w+))? \{$")
_SIG_DECL = re.compile(r"^(sig\d+) = \((.*)\)(?: -> (.*?))?(?: (\w+))?$")
FN_DECL = re.compile(r"^(fn\d+) = (colocated )?(%[\w.]+) (sig\d+)$")
_FN_IMPLICIT = re.compile(r"^(fn\d+) = (colocated )?(%[\w.]+)\((.*)\)(?: -> (.*?))?(?: (\w+))?$")
_BLOCK = re.compile(r"^(block\d+)(?:\((.*)\))?:$")
# `; run: %f(1, 2) == 3`, `; print: %f(1, 2)`
RUN_LINE = re.compile(r"^;\s*(run|print):\s*(%[\w.]+)\((.*?)\)(?:\s*(==|!=)\s*(.*))?$")
# a comment line that says how callfuzz runs the case (`; callfuzz: layout far`,
# `; callfuzz: debug-compile`): kept, or a reduced case would stop reproducing
DIRECTIVE = "; callfuzz:"
_VALUE = re.compile(r"\bv\d+\b")
_CALL_CONVS = frozenset(
    {
        "fast",
        "cold",
        "tail",
        "system_v",
        "windows_fastcall",
        "apple_aarch64",
        "probestack",
        "winch",
        "preserve_all",
    }
)


def split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


@dataclass
class Sig:
    params: list[str]  # "i64", "i8 uext", "i64 sret"
    returns: list[str]
    cc: str | None  # None: the default (omitted)

    @classmethod
    def parse(cls, params: str, returns: str | None, cc: str | None) -> Sig:
        # `-> i8 uext {`, `-> i64, i64 {`: the regex took a return's last word
        # for a convention
        if cc is not None and cc not in _CALL_CONVS:
            returns = f"{returns or ''} {cc}"
            cc = None
        rets = split_top(returns) if returns else []
        # `-> i64 tail`: the regex may leave the convention on the last return
        if rets and cc is None:
            words = rets[-1].split()
            if len(words) > 1 and words[-1] in _CALL_CONVS:
                cc = words[-1]
                rets[-1] = " ".join(words[:-1])
        return cls(split_top(params), rets, cc)

    def text(self) -> str:
        out = f"({', '.join(self.params)})"
        if self.returns:
            out += f" -> {', '.join(self.returns)}"
        return out + (f" {self.cc}" if self.cc else "")


def ty_of(param: str) -> str:
    return param.split()[0]


@dataclass
class Inst:
    text: str  # without indentation

    @property
    def results(self) -> list[str]:
        if " = " not in self.text:
            return []
        lhs = self.text.split(" = ", 1)[0]
        return (
            [v.strip() for v in lhs.split(",")]
            if _VALUE.fullmatch(lhs.split(",")[0].strip())
            else []
        )

    @property
    def rhs(self) -> str:
        return self.text.split(" = ", 1)[1] if self.results else self.text

    @property
    def opcode(self) -> str:
        return self.rhs.split()[0].split(".")[0]

    def uses(self) -> list[str]:
        return _VALUE.findall(self.rhs)


@dataclass
class Block:
    name: str
    params: list[tuple[str, str]]  # (value, type)
    insts: list[Inst]

    def header(self) -> str:
        if not self.params:
            return f"{self.name}:"
        return f"{self.name}({', '.join(f'{v}: {t}' for v, t in self.params)}):"


@dataclass
class Run:
    kind: str  # "run" or "print"
    func: str
    args: list[str]
    compare: str | None = None
    expected: str | None = None

    def text(self) -> str:
        out = f"; {self.kind}: {self.func}({', '.join(self.args)})"
        if self.compare:
            out += f" {self.compare} {self.expected}"
        return out


@dataclass
class Func:
    name: str
    sig: Sig
    decls: list[str]
    blocks: list[Block]
    runs: list[Run] = field(default_factory=list)
    value_types: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"function {self.name}{self.sig.text()} {{"]
        lines += [f"    {d}" for d in self.decls]
        for block in self.blocks:
            lines.append(block.header())
            lines += [f"    {i.text}" for i in block.insts]
        lines.append("}")
        lines += [r.text() for r in self.runs]
        return "\n".join(lines)

    def sig_decls(self) -> dict[str, Sig]:
        out = {}
        for d in self.decls:
            m = _SIG_DECL.match(d)
            if m:
                out[m[1]] = Sig.parse(m[2], m[3], m[4])
        return out

    def fn_decls(self) -> dict[str, tuple[str, str, bool]]:
        """fnN -> (callee name, sigN, colocated)."""
        out = {}
        for d in self.decls:
            m = FN_DECL.match(d)
            if m:
                out[m[1]] = (m[3], m[4], bool(m[2]))
        return out

    def all_insts(self) -> Iterator[tuple[Block, int, Inst]]:
        for block in self.blocks:
            for i, inst in enumerate(block.insts):
                yield block, i, inst

    def fresh(self) -> str:
        """A value name nothing uses yet."""
        used = {int(v[1:]) for v in _VALUE.findall(self.text())}
        n = max(used, default=0) + 1
        return f"v{n}"


@dataclass
class Module:
    header: list[str]  # callfuzz directives, test, set and target lines
    funcs: list[Func]

    def text(self) -> str:
        return "\n".join(self.header) + "\n\n" + "\n\n".join(f.text() for f in self.funcs) + "\n"

    def func(self, name: str) -> Func | None:
        return next((f for f in self.funcs if f.name == name), None)

    def copy(self) -> Module:
        return copy.deepcopy(self)

    def runs(self) -> list[Run]:
        return [r for f in self.funcs for r in f.runs]


class NotUnderstood(ValueError):
    """A line the model cannot represent: the reducer leaves such files alone."""


def parse_module(text: str, value_types: dict[str, dict[str, str]] | None = None) -> Module:
    header: list[str] = []
    funcs: list[Func] = []
    current: Func | None = None
    block: Block | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";"):
            run = RUN_LINE.match(line)
            if run and funcs:
                args = split_top(run[3])
                funcs[-1].runs.append(Run(run[1], run[2], args, run[4], run[5]))
            if line.startswith(DIRECTIVE) and current is None:
                header.append(line)  # how callfuzz runs the case (layout, debug compile)
            continue  # other comments go
        if current is None:
            m = _HEADER.match(line)
            if m:
                current = Func(m[1], Sig.parse(m[2], m[3], m[4]), [], [])
                block = None
            elif line.startswith("function"):
                raise NotUnderstood(line)
            else:
                header.append(line)
            continue
        if line == "}":
            _explicit_signatures(current)
            if value_types is not None:
                current.value_types = dict(value_types.get(current.name, {}))
            funcs.append(current)
            current = None
            continue
        m = _BLOCK.match(line)
        if m:
            params = []
            for p in split_top(m[2] or ""):
                v, t = p.split(":")
                params.append((v.strip(), t.strip()))
            block = Block(m[1], params, [])
            current.blocks.append(block)
        elif block is None:
            current.decls.append(line)
        else:
            block.insts.append(Inst(line))
    if current is not None:
        raise NotUnderstood("a function without its closing brace")
    return Module(header, funcs)


def _explicit_signatures(f: Func) -> None:
    """`fnN = %g(i64) tail` becomes `sigK = (i64) tail` + `fnN = %g sigK`,
    the one form the edits change (printing folds it back at the end)."""
    taken = [int(d[3:].split(" ", 1)[0]) for d in f.decls if re.match(r"^sig\d+ =", d)]
    next_sig = max(taken, default=-1) + 1
    decls = []
    for d in f.decls:
        m = _FN_IMPLICIT.match(d)
        if m and not FN_DECL.match(d):
            sig = Sig.parse(m[4], m[5], m[6])
            decls.append(f"sig{next_sig} = {sig.text()}")
            decls.append(f"{m[1]} = {m[2] or ''}{m[3]} sig{next_sig}")
            next_sig += 1
        else:
            decls.append(d)
    f.decls = decls


_SLOT = re.compile(r"\b(ss\d+)\b")
_LOADS = re.compile(r"^[us]?load(\d+(x\d+)?)?$")  # load, uload8, sload16x4, ...
_STORES = re.compile(r"^(store|istore\d+)$")


def unwritten_slot_reads(m: Module) -> set[tuple[str, str]]:
    """(function, slot) for each explicit slot a function reads but never
    writes: Cranelift's interpreter reads zeros there, machine code whatever
    an earlier frame left, and when that frame was the program's own (no
    fill byte the harness varies) the difference is a deterministic `wrong
    result`, not `undefined behaviour`. A slot whose address goes anywhere
    but a load's or store's address (a call, arithmetic) counts as written."""
    out: set[tuple[str, str]] = set()
    for f in m.funcs:
        address_of: dict[str, str] = {}  # value -> the slot it addresses
        read: set[str] = set()
        written: set[str] = set()
        for _block, _i, inst in f.all_insts():
            slot = _SLOT.search(inst.rhs)
            if inst.opcode == "stack_addr" and slot and inst.results:
                address_of[inst.results[0]] = slot[1]
            elif inst.opcode == "stack_load" and slot:
                read.add(slot[1])
            elif inst.opcode == "stack_store" and slot:
                written.add(slot[1])
        for _block, _i, inst in f.all_insts():
            uses = inst.uses()
            addressed = [address_of[v] for v in uses if v in address_of]
            if not addressed:
                continue
            if _LOADS.match(inst.opcode) and len(uses) == 1:
                read.update(addressed)
            elif _STORES.match(inst.opcode) and uses[-1] in address_of and len(addressed) == 1:
                written.add(address_of[uses[-1]])
            else:
                written.update(addressed)  # the address escapes
        out |= {(f.name, slot) for slot in read - written}
    return out
