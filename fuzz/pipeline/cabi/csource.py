"""The C side of the C-ABI oracle: per signature a recorder callee and a
caller, freestanding and relocation-free (no globals, no calls but through
the pointer the harness passes, areas by absolute address), so each
function's bytes can be placed anywhere in the image."""

from __future__ import annotations

from collections.abc import Sequence

from fuzz.pipeline.cabi import layout
from fuzz.pipeline.cabi.declare import SRET_WORDS, CSignature, vector_typedef
from fuzz.values import VECTOR_TYPES

PRELUDE = [
    "/* callfuzz C-ABI oracle: recorder callees and callers */",
    *(
        f"typedef {lane} {vector_typedef(v)} __attribute__((vector_size(16)));"
        for v, lane in (
            ("i8x16", "signed char"),
            ("i16x8", "short"),
            ("i32x4", "int"),
            ("i64x2", "long"),
            ("f32x4", "float"),
            ("f64x2", "double"),
        )
        if v in VECTOR_TYPES
    ),
    f"struct cf_sret {{ unsigned long w[{SRET_WORDS}]; }};",
    f"#define CF_AREA(off) ((char *)({layout.absolute(0):#x}UL + (off)))",
    "",
]


def callee_name(key: str) -> str:
    return f"cf_c_callee_{key}"


def caller_name(key: str) -> str:
    return f"cf_c_caller_{key}"


def _return_type(sig: CSignature, key: str) -> str:
    if sig.sret_index is not None:
        return "struct cf_sret"
    if len(sig.returns) > 1:
        return f"struct cf_ret_{key}"
    return sig.returns[0].ctype if sig.returns else "void"


def function_source(sig: CSignature, key: str, attribute: str | None = None) -> list[str]:
    """The C callee and caller of one signature. `attribute` overrides the
    convention's (a planted fault: a C callee of another convention)."""
    attr = sig.attribute if attribute is None else attribute
    ret = _return_type(sig, key)
    lines = []
    if len(sig.returns) > 1 and sig.sret_index is None:
        fields = " ".join(f"{r.ctype} f{i};" for i, r in enumerate(sig.returns))
        lines.append(f"struct cf_ret_{key} {{ {fields} }};")
    params = ", ".join(f"{p.ctype} p{i}" for i, p in enumerate(sig.params)) or "void"
    lines.append(f"{attr} {ret} {callee_name(key)}({params}) {{".lstrip())
    for i, p in enumerate(sig.params):
        lines.append(f"    *({p.ctype} *)CF_AREA({layout.slot(layout.SEEN_PARAMS, i):#x}) = p{i};")
    if sig.returns_struct:
        lines.append(f"    {ret} r;")
        for i, r in enumerate(sig.returns):
            field = f"w[{i}]" if sig.sret_index is not None else f"f{i}"
            lines.append(
                f"    r.{field} = *({r.ctype} *)CF_AREA({layout.slot(layout.RETS, i):#x});"
            )
        lines.append("    return r;")
    elif sig.returns:
        lines.append(f"    return *({ret} *)CF_AREA({layout.slot(layout.RETS, 0):#x});")
    lines.append("}")
    types = ", ".join(p.ctype for p in sig.params) or "void"
    pointer = f"cf_fn_{key}"
    lines.append(f"typedef {ret} ({sig.attribute} *{pointer})({types});")
    lines.append(f"void {caller_name(key)}(char *s, void *f) {{")
    args = ", ".join(
        f"*({p.ctype} *)(s + {layout.slot(layout.ARGS, i):#x})" for i, p in enumerate(sig.params)
    )
    call = f"(({pointer})f)({args})"
    if sig.returns_struct:
        lines.append(f"    {ret} r = {call};")
        for i, r in enumerate(sig.returns):
            field = f"w[{i}]" if sig.sret_index is not None else f"f{i}"
            lines.append(
                f"    *({r.ctype} *)(s + {layout.slot(layout.SEEN_RETS, i):#x}) = r.{field};"
            )
    elif sig.returns:
        lines.append(f"    *({ret} *)(s + {layout.slot(layout.SEEN_RETS, 0):#x}) = {call};")
    else:
        lines.append(f"    {call};")
    lines.append("}")
    return lines


def unit_source(
    signatures: Sequence[tuple[str, CSignature]], callee_attribute: str | None = None
) -> str:
    """One C file for several signatures, each under its key."""
    lines = list(PRELUDE)
    for key, sig in signatures:
        lines += function_source(sig, key, callee_attribute)
        lines.append("")
    return "\n".join(lines)
