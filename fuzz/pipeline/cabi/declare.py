"""The C counterpart of a CLIF signature on one target, or why it has none.

A signature has one when its convention is a C convention of the target
(`CAbi.conventions`) and every part maps to a C type whose convention is the
one Cranelift implements for it: integers with the extension the C type
implies, i128, the floats the compiler has, 128-bit vectors where the C ABI
defines them, one explicit `sret` (a struct returned by value), and several
returns only where the target's struct classification gives Cranelift's
registers (`CAbi.struct_returns`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fuzz.targets import CAbi, Target
from fuzz.values import type_info

if TYPE_CHECKING:
    from fuzz._cranelift import AbiParam, SignatureInfo

# the struct a C function returns where the CLIF one writes through `sret`:
# larger than two registers on every target, so C returns it in memory
SRET_WORDS = 4
SRET_BYTES = 8 * SRET_WORDS

_INTS = {
    "i8": ("signed char", "unsigned char"),
    "i16": ("short", "unsigned short"),
    "i32": ("int", "unsigned int"),
    "i64": ("long", "unsigned long"),
    "i128": ("__int128", "unsigned __int128"),
}
_FLOATS = {"f32": "float", "f64": "double"}
# vector lane type -> the C element type of its `vector_size(16)` typedef
_LANES = {
    "i8": "signed char",
    "i16": "short",
    "i32": "int",
    "i64": "long",
    "f32": "float",
    "f64": "double",
}


class NoCounterpart(Exception):
    """A signature without a C counterpart on a target: the reason, one line."""


@dataclass(frozen=True)
class CValue:
    """One argument or return value: its CLIF type and C type, and its size."""

    clif: str
    ctype: str
    size: int  # bytes of the value itself (what the oracle compares)


@dataclass(frozen=True)
class CSignature:
    """A CLIF signature with its C counterpart on one target."""

    text: str  # the CLIF signature, as Cranelift prints it
    cc: str
    attribute: str  # the C attribute giving the convention ("" for the default)
    params: tuple[CValue, ...]  # the C parameters (the `sret` pointer is not one)
    returns: tuple[CValue, ...]  # one or more (a struct); empty for void or sret
    sret_index: int | None  # where the `sret` pointer is among the CLIF parameters
    clif_params: tuple[AbiParam, ...]
    clif_returns: tuple[AbiParam, ...]

    @property
    def returns_struct(self) -> bool:
        return len(self.returns) > 1 or self.sret_index is not None


def vector_typedef(clif: str) -> str:
    """The name of the C typedef of a 128-bit vector type (`cf_i32x4`)."""
    return f"cf_{clif}"


def _ctype(c: CAbi, cc: str, ty: str, ext: str) -> str:
    reason = c.decisions.get((cc, ty))
    if reason is not None:
        raise NoCounterpart(f"{ty} in {cc}: {reason}")
    info = type_info(ty)
    if info.is_vector:
        if not c.vectors:
            raise NoCounterpart(f"{ty}: no C vector convention")
        if info.bits != 128 or info.lane_bits == 16 and info.is_float:
            raise NoCounterpart(f"{ty}: only 128-bit integer, f32 and f64 vectors")
        return vector_typedef(ty)
    if ty in _INTS:
        signed, unsigned = _INTS[ty]
        if ty == "i32" and c.unsigned_i32_sext:
            if ext == "uext":
                raise NoCounterpart("i32 uext: the psABI sign-extends `unsigned int`")
            return signed
        return unsigned if ext == "uext" else signed
    if ty in _FLOATS:
        return _FLOATS[ty]
    if ty == "f16" and c.f16:
        return "_Float16"
    if ty == "f128" and c.f128:
        return c.f128
    raise NoCounterpart(f"{ty}: no C type for it here")


def c_signature(signature: SignatureInfo, target: Target) -> CSignature:
    """The C counterpart of `signature` on `target`; NoCounterpart says why not."""
    cc = signature["call_conv"]
    c = target.c_abi_for(cc)
    if c is None:
        raise NoCounterpart(f"{cc} is not a C convention on {target.name}")
    params: list[CValue] = []
    sret: int | None = None
    for index, (ty, ext, purpose) in enumerate(signature["params"]):
        if purpose == "sret":
            if sret is not None or ty != "i64":
                raise NoCounterpart("an sret parameter that is not one i64 pointer")
            sret = index
            continue
        if purpose != "normal":
            raise NoCounterpart(f"a `{purpose}` parameter")
        params.append(CValue(ty, _ctype(c, cc, ty, ext), type_info(ty).bits // 8))
    returns = [
        CValue(ty, _ctype(c, cc, ty, ext), type_info(ty).bits // 8)
        for ty, ext, purpose in signature["returns"]
        if purpose == "normal"
    ]
    if len(returns) != len(signature["returns"]):
        raise NoCounterpart("a special-purpose return")
    if sret is not None:
        if returns:
            raise NoCounterpart("sret together with returns")
        returns = [CValue("i64", "unsigned long", 8) for _ in range(SRET_WORDS)]
    elif len(returns) > 1:
        shape = tuple(r.clif for r in returns)
        why = c.no_struct_returns.get(cc)
        if why is not None:
            raise NoCounterpart(f"returns in {cc}: {why}")
        if shape not in c.struct_returns:
            raise NoCounterpart(
                f"returns ({', '.join(shape)}): no C struct is returned in those registers"
            )
    return CSignature(
        text=signature["text"],
        cc=cc,
        attribute=c.conventions[cc],
        params=tuple(params),
        returns=tuple(returns),
        sret_index=sret,
        clif_params=tuple(signature["params"]),
        clif_returns=tuple(signature["returns"]),
    )
