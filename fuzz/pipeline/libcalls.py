"""Cranelift's libcalls, computed for emulated code.

The linker places one stub per libcall an image calls, a bare return
instruction (`fuzz.targets.Target.return_insn`); the emulator hooks the stub's
address and, before the return runs, computes the call here from the argument
registers of the target's libcall convention (`Target.libcall_abi`).

Semantics: IEEE 754 round to integral (ceil, floor, trunc, nearest with ties
to even), fused multiply-add with one rounding, x86 SSSE3 `pshufb`, and the C
memory functions. A NaN operand comes back quieted (what libm and the
hardware return), an invalid operation (inf * 0, inf - inf) gives the
canonical quiet NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from fuzz.targets import LibcallAbi, Reg, Target

_ROUNDING: dict[str, Callable[[float], int]] = {
    "Ceil": math.ceil,
    "Floor": math.floor,
    "Trunc": math.trunc,
    "Nearest": round,  # a float's round() ties to even
}
FLOAT_LIBCALLS = frozenset(f"%{op}F{width}" for op in (*_ROUNDING, "Fma") for width in (32, 64))
MEMORY_LIBCALLS = frozenset({"%Memcpy", "%Memmove", "%Memset", "%Memcmp"})
VECTOR_LIBCALLS = frozenset({"%X86Pshufb"})
# the outline stack probe: it touches the pages a frame will use, changes no
# register; the emulators map the whole stack, so the stub does nothing
PROBESTACK = "%Probestack"


def provided(target: Target) -> frozenset[str]:
    """The libcalls (as relocations name them) this target's images may call."""
    abi = target.libcall_abi
    if abi is None or not target.return_insn:
        return frozenset()
    vectors = VECTOR_LIBCALLS if abi.vectors else frozenset()
    return FLOAT_LIBCALLS | MEMORY_LIBCALLS | vectors | {PROBESTACK}


# --- IEEE binary formats -------------------------------------------------------


@dataclass(frozen=True)
class Format:
    bits: int
    precision: int  # significand bits, the hidden one included
    bias: int

    @property
    def exp_mask(self) -> int:
        return (1 << (self.bits - self.precision)) - 1

    @property
    def quiet(self) -> int:
        return 1 << (self.precision - 2)

    @property
    def canonical_nan(self) -> int:
        return (self.exp_mask << (self.precision - 1)) | self.quiet

    def sign(self, x: int) -> int:
        return x >> (self.bits - 1)

    def exponent(self, x: int) -> int:
        return (x >> (self.precision - 1)) & self.exp_mask

    def fraction(self, x: int) -> int:
        return x & ((1 << (self.precision - 1)) - 1)

    def is_nan(self, x: int) -> bool:
        return self.exponent(x) == self.exp_mask and self.fraction(x) != 0

    def is_inf(self, x: int) -> bool:
        return self.exponent(x) == self.exp_mask and self.fraction(x) == 0

    def is_zero(self, x: int) -> bool:
        return x & ((1 << (self.bits - 1)) - 1) == 0

    def value(self, x: int) -> Fraction:
        """The exact value of a finite x."""
        e, f = self.exponent(x), self.fraction(x)
        m = f if e == 0 else f | (1 << (self.precision - 1))
        scale = max(e, 1) - self.bias - (self.precision - 1)
        v = Fraction(m) * (Fraction(2) ** scale)
        return -v if self.sign(x) else v

    def round(self, v: Fraction) -> int:
        """v (non-zero) rounded to nearest, ties to even: the bits."""
        sign = (1 << (self.bits - 1)) if v < 0 else 0
        v = abs(v)
        n, d = v.numerator, v.denominator
        e = n.bit_length() - d.bit_length()  # 2**(e-1) < v < 2**(e+1)
        if v < Fraction(2) ** e:
            e -= 1
        e = max(e, 1 - self.bias)  # below the normal range: subnormal quantum
        q = Fraction(2) ** (e - (self.precision - 1))
        m, r = divmod(v / q, 1)
        m = int(m)
        if r > Fraction(1, 2) or (r == Fraction(1, 2) and m & 1):
            m += 1
        # a carry out of the significand bumps the exponent field by itself
        bits = ((e + self.bias - 1) << (self.precision - 1)) + m
        if self.exponent(bits) >= self.exp_mask or bits >> (self.bits - 1):
            bits = self.exp_mask << (self.precision - 1)  # overflow: infinity
        return sign | bits


F32 = Format(32, 24, 127)
F64 = Format(64, 53, 1023)
_FORMATS = {32: F32, 64: F64}


def round_integral(op: str, fmt: Format, x: int) -> int:
    """`op` (Ceil, Floor, Trunc, Nearest) of x's bits, to an integral value."""
    if fmt.is_nan(x):
        return x | fmt.quiet
    if fmt.is_inf(x) or fmt.exponent(x) >= fmt.bias + fmt.precision - 1:
        return x  # infinite, or too large to have a fraction
    v = fmt.value(x)  # exact in a Python float: every f32 and f64 is one
    n = _ROUNDING[op](float(v))
    if n == 0:
        return x & (1 << (fmt.bits - 1))  # a zero keeps x's sign
    return fmt.round(Fraction(n))


def fma(fmt: Format, a: int, b: int, c: int) -> int:
    """a * b + c, rounded once."""
    for x in (a, b, c):
        if fmt.is_nan(x):
            return x | fmt.quiet
    product_sign = fmt.sign(a) ^ fmt.sign(b)
    if fmt.is_inf(a) or fmt.is_inf(b):
        if fmt.is_zero(a) or fmt.is_zero(b):
            return fmt.canonical_nan  # inf * 0
        if fmt.is_inf(c) and fmt.sign(c) != product_sign:
            return fmt.canonical_nan  # inf - inf
        return (product_sign << (fmt.bits - 1)) | (fmt.exp_mask << (fmt.precision - 1))
    if fmt.is_inf(c):
        return c
    exact = fmt.value(a) * fmt.value(b) + fmt.value(c)
    if exact == 0:
        # an exact zero sum is +0 under round-to-nearest, unless both terms are -0
        both_negative = product_sign and fmt.sign(c) and fmt.is_zero(c)
        product_zero = fmt.is_zero(a) or fmt.is_zero(b)
        return (1 << (fmt.bits - 1)) if both_negative and product_zero else 0
    return fmt.round(exact)


def pshufb(src: bytes, mask: bytes) -> bytes:
    """SSSE3 PSHUFB: each mask byte picks a source byte (low 4 bits) or, with
    its top bit set, zero."""
    return bytes(0 if m & 0x80 else src[m & 0x0F] for m in mask)


# --- running one on a machine -----------------------------------------------------


class LibcallFault(Exception):
    """An access the libcall cannot make (the caller passed a bad pointer):
    the run crashes, as it would in the real function."""


class Memory(Protocol):
    def read(self, address: int, size: int) -> bytes: ...

    def write(self, address: int, data: bytes) -> None: ...


MAX_BYTES = 1 << 24  # a length past any mapped area: the caller's garbage


class Machine:
    """One target's registers as a libcall convention sees them."""

    def __init__(
        self, get: Callable[[Reg], int], put: Callable[[Reg, int], None], target: Target
    ) -> None:
        assert target.libcall_abi is not None
        self._read = get
        self._write = put
        self.abi: LibcallAbi = target.libcall_abi
        self.target = target
        self._regs: dict[str, Reg] = {r.name: r for r in target.registers}

    def _get(self, name: str) -> int:
        return int(self._read(self._regs[name]))

    def _set(self, name: str, value: int) -> None:
        self._write(self._regs[name], value)

    def int_arg(self, index: int) -> int:
        return self._get(self.target.int_arg_regs[index]) & ((1 << 64) - 1)

    def set_int_ret(self, value: int) -> None:
        self._set(self.target.int_ret_reg, value & ((1 << 64) - 1))

    def _float_field(self, fmt: Format) -> tuple[int, int]:
        """(shift, mask) of a value of `fmt` in a float register."""
        shift = self.abi.f32_shift if fmt is F32 else 0
        return shift, ((1 << fmt.bits) - 1) << shift

    def float_arg(self, index: int, fmt: Format) -> int:
        raw = self._get(self.abi.floats[index])
        if fmt is F32 and self.abi.nan_boxed and raw >> 32 & 0xFFFF_FFFF != 0xFFFF_FFFF:
            return F32.canonical_nan  # an unboxed f32 reads as the canonical NaN
        shift, mask = self._float_field(fmt)
        return (raw & mask) >> shift

    def set_float_ret(self, fmt: Format, bits: int) -> None:
        reg = self.abi.float_ret
        if fmt is F32 and self.abi.nan_boxed:
            self._set(reg, 0xFFFF_FFFF_0000_0000 | bits)
            return
        shift, mask = self._float_field(fmt)
        self._set(reg, (self._get(reg) & ~mask) | (bits << shift))

    def vector_arg(self, index: int) -> bytes:
        return self._get(self.abi.vectors[index]).to_bytes(16, "little")

    def set_vector_ret(self, data: bytes) -> None:
        self._set(self.abi.vector_ret, int.from_bytes(data, "little"))


def call(name: str, machine: Machine, memory: Memory) -> None:
    """Compute libcall `name` (`CeilF32`) from the argument registers into the
    return register; raises LibcallFault on an access the call cannot make."""
    if name.startswith("Fma"):
        fmt = _FORMATS[int(name[-2:])]
        a, b, c = (machine.float_arg(i, fmt) for i in range(3))
        machine.set_float_ret(fmt, fma(fmt, a, b, c))
    elif name[:-3] in _ROUNDING:
        fmt = _FORMATS[int(name[-2:])]
        machine.set_float_ret(fmt, round_integral(name[:-3], fmt, machine.float_arg(0, fmt)))
    elif name == "X86Pshufb":
        machine.set_vector_ret(pshufb(machine.vector_arg(0), machine.vector_arg(1)))
    elif name == PROBESTACK[1:]:
        pass
    else:
        _memory_call(name, machine, memory)


def _memory_call(name: str, machine: Machine, memory: Memory) -> None:
    a, b, n = (machine.int_arg(i) for i in range(3))
    if n > MAX_BYTES:
        raise LibcallFault(f"{name} of {n:#x} bytes")
    if name in ("Memcpy", "Memmove"):
        memory.write(a, memory.read(b, n))  # read whole first: memmove's overlap
        machine.set_int_ret(a)
    elif name == "Memset":
        memory.write(a, bytes([b & 0xFF]) * n)
        machine.set_int_ret(a)
    elif name == "Memcmp":
        left, right = memory.read(a, n), memory.read(b, n)
        diff = next((x - y for x, y in zip(left, right, strict=True) if x != y), 0)
        machine.set_int_ret((diff > 0) - (diff < 0))
    else:
        raise AssertionError(f"libcall {name} is not provided")
