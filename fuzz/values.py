"""CLIF values as bit patterns: conversion to and from the bridge, memory
images for the trampoline slots, printing, and the bit-exact comparison with
its NaN policy.

NaN policy (`NanPolicy`):
- `exact`: every bit counts, NaN payloads and signs included.
- `any` (the default for `callfuzz run`): two NaNs of the same float type (or in
  the same lane of a float vector) are equal whatever their payload and sign,
  because Cranelift leaves the payload of a NaN produced by arithmetic
  unspecified; every other value still compares bit-exact.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from functools import cache
from typing import Literal


class NanPolicy(enum.Enum):
    EXACT = "exact"
    ANY = "any"


@dataclass(frozen=True)
class TypeInfo:
    name: str
    bits: int  # total width
    lane_bits: int
    lanes: int
    is_float: bool

    @property
    def is_vector(self) -> bool:
        return self.lanes > 1

    @property
    def bytes(self) -> int:
        return self.bits // 8


# Every CLIF scalar type with its width and whether it is a float: the one
# list of CLIF types the harness, generator and reducer draw from.
_SCALARS = {
    "i8": (8, False),
    "i16": (16, False),
    "i32": (32, False),
    "i64": (64, False),
    "i128": (128, False),
    "f16": (16, True),
    "f32": (32, True),
    "f64": (64, True),
    "f128": (128, True),
}
SCALAR_TYPES: tuple[str, ...] = tuple(_SCALARS)
INT_TYPES: tuple[str, ...] = tuple(t for t, (_b, f) in _SCALARS.items() if not f)
FLOAT_TYPES: tuple[str, ...] = tuple(t for t, (_b, f) in _SCALARS.items() if f)
# integers narrower than a register: the ones `uext`/`sext` apply to
NARROW_INT_TYPES: tuple[str, ...] = tuple(t for t, (b, f) in _SCALARS.items() if not f and b < 64)
# the 128-bit vectors every backend with SIMD passes in one register
VECTOR_TYPES: tuple[str, ...] = ("i8x16", "i16x8", "i32x4", "i64x2", "f32x4", "f64x2")

# exponent width per float size, for NaN detection
_EXP_BITS = {16: 5, 32: 8, 64: 11, 128: 15}


@cache
def type_info(name: str) -> TypeInfo:
    lane, _, count = name.partition("x")
    if lane not in _SCALARS or (count and not count.isdigit()):
        raise ValueError(f"unknown CLIF type '{name}'")
    bits, is_float = _SCALARS[lane]
    lanes = int(count) if count else 1
    return TypeInfo(name, bits * lanes, bits, lanes, is_float)


def is_sarg(purpose: str) -> bool:
    """Whether an ABI parameter's purpose is a struct argument, `sarg(N)`."""
    return purpose.startswith("sarg(")


def sarg_size(purpose: str) -> int:
    """The bytes of a struct argument `sarg(N)`: N."""
    return int(purpose[len("sarg(") : -1])


def is_nan(bits: int, width: int) -> bool:
    exp_bits = _EXP_BITS[width]
    mant_bits = width - 1 - exp_bits
    exp = (bits >> mant_bits) & ((1 << exp_bits) - 1)
    return exp == (1 << exp_bits) - 1 and bits & ((1 << mant_bits) - 1) != 0


@dataclass(frozen=True)
class Value:
    """A CLIF value: its type and its bits as an unsigned integer
    (vector lane 0 in the low bits, as in the little-endian memory image)."""

    ty: str
    bits: int

    @property
    def info(self) -> TypeInfo:
        return type_info(self.ty)

    @classmethod
    def from_bridge(cls, pair: tuple[str, int | bytes], ty: str | None = None) -> Value:
        """`ty` relabels the value with the type the signature gives it: the
        bridge only knows a 128-bit vector as i8x16."""
        raw_ty, raw = pair
        ty = ty or raw_ty
        info = type_info(ty)
        if type_info(raw_ty).bits != info.bits:
            raise ValueError(f"a {raw_ty} value cannot stand for {ty}")
        if isinstance(raw, bytes):
            return cls(ty, int.from_bytes(raw, "little"))
        return cls(ty, raw & ((1 << info.bits) - 1))

    def to_bridge(self) -> tuple[str, int | bytes]:
        info = self.info
        if info.is_float or info.is_vector:
            return (self.ty, self.bits.to_bytes(info.bytes, "little"))
        return (self.ty, self.signed())

    def signed(self) -> int:
        bits = self.info.bits
        return self.bits - (1 << bits) if self.bits >> (bits - 1) else self.bits

    def memory_image(self, big_endian: bool) -> bytes:
        """The bytes a native load of this type reads. Vectors always use the
        little-endian image, as the trampoline loads them with `little`."""
        info = self.info
        order: Literal["big", "little"] = "big" if big_endian and not info.is_vector else "little"
        return self.bits.to_bytes(info.bytes, order)

    @classmethod
    def from_memory(cls, ty: str, data: bytes, big_endian: bool) -> Value:
        info = type_info(ty)
        order: Literal["big", "little"] = "big" if big_endian and not info.is_vector else "little"
        return cls(ty, int.from_bytes(data[: info.bytes], order))

    def lanes(self) -> list[int]:
        info = self.info
        mask = (1 << info.lane_bits) - 1
        return [(self.bits >> (i * info.lane_bits)) & mask for i in range(info.lanes)]

    def same_as(self, other: Value, policy: NanPolicy = NanPolicy.EXACT) -> bool:
        if self.ty != other.ty:
            return False
        if self.bits == other.bits:
            return True
        info = self.info
        if policy is NanPolicy.ANY and info.is_float:
            w = info.lane_bits
            return all(
                a == b or (is_nan(a, w) and is_nan(b, w))
                for a, b in zip(self.lanes(), other.lanes(), strict=True)
            )
        return False

    def __str__(self) -> str:
        return format_value(self)


def _format_float(bits: int, width: int) -> str:
    if width == 32:
        return repr(struct.unpack("<f", bits.to_bytes(4, "little"))[0])
    if width == 64:
        return repr(struct.unpack("<d", bits.to_bytes(8, "little"))[0])
    if width == 16:
        return repr(struct.unpack("<e", bits.to_bytes(2, "little"))[0])
    return f"0x{bits:032x}"


def format_value(v: Value) -> str:
    info = v.info
    if info.is_vector:
        return "0x" + v.bits.to_bytes(info.bytes, "big").hex()
    if info.is_float:
        if is_nan(v.bits, info.bits):
            return f"NaN(0x{v.bits:0{info.bits // 4}x})"
        return _format_float(v.bits, info.bits)
    return str(v.signed())


def format_values(values: list[Value] | tuple[Value, ...]) -> str:
    if len(values) == 1:
        return format_value(values[0])
    return "[" + ", ".join(format_value(v) for v in values) + "]"


def clif_literal(v: Value) -> str | None:
    """The value as a `; run:` line writes it (integers in decimal, floats
    as hexadecimal floats), or None where callfuzz does not write one (NaN
    payloads, f128, vectors): such a run line stays a `print:`."""
    info = v.info
    if info.is_vector:
        return None
    if not info.is_float:
        return str(v.signed())
    if info.bits not in (16, 32, 64) or is_nan(v.bits, info.bits):
        return None
    code = {16: "<e", 32: "<f", 64: "<d"}[info.bits]
    number = struct.unpack(code, v.bits.to_bytes(info.bytes, "little"))[0]
    if number in (float("inf"), float("-inf")):
        return "+Inf" if number > 0 else "-Inf"
    mantissa, _, exponent = number.hex().partition("p")
    mantissa = mantissa.rstrip("0").removesuffix(".") if "." in mantissa else mantissa
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}p{int(exponent)}"


def clif_literals(values: tuple[Value, ...]) -> str | None:
    """A run line's expected values, or None when one cannot be written."""
    written = [clif_literal(v) for v in values]
    if any(w is None for w in written):
        return None
    return written[0] if len(written) == 1 else "[" + ", ".join(map(str, written)) + "]"
