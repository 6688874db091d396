"""Types of the Rust bridge (native/src/lib.rs): every record it hands to
Python is a TypedDict here, so mypy checks each field where it is read."""

from typing import Literal, TypedDict, overload

# A value crossing the bridge: (CLIF type, integer or little-endian bytes).
Pair = tuple[str, int | bytes]
# (type, "uext" | "sext" | "", purpose: "normal" | "sret" | ...)
AbiParam = tuple[str, str, str]

class SignatureInfo(TypedDict):
    text: str
    params: list[AbiParam]
    returns: list[AbiParam]
    call_conv: str

class CallSite(TypedDict):
    opcode: str  # call, call_indirect, return_call, return_call_indirect, func_addr
    inst: str
    callee: str | None  # known statically: direct calls, or a func_addr feeding one
    colocated: bool
    signature: SignatureInfo
    tail: bool

class RunInfo(TypedDict):
    text: str
    func: str
    args: list[Pair]
    compare: Literal["==", "!="] | None  # None: a `print:` line
    expected: list[Pair] | None

class FunctionInfo(TypedDict):
    name: str
    signature: SignatureInfo
    call_sites: list[CallSite]
    runs: list[RunInfo]
    text: str

# (offset, kind, target symbol or "+N" inside the same function, addend)
RelocInfo = tuple[int, str, str, int]

class CompiledInfo(TypedDict):
    name: str
    code: bytes
    relocs: list[RelocInfo]
    traps: list[tuple[int, str]]
    call_returns: list[int]  # offset of the return address of every call it makes
    # its `try_call` sites: (return-address offset, Cranelift's frame_offset
    # (FP - SP at the call; None before 0.124), handlers in table order as
    # (tag number, or None for `default`; handler offset)); [] before 0.121
    try_sites: list[tuple[int, int | None, list[tuple[int | None, int]]]]
    # bytes of its incoming stack-argument area, as Cranelift's call lowering
    # sizes it (what a `tail` function pops on return), measured on probe
    # functions for the conventions `compile(stack_args_for=...)` names; None
    # for the others, and where the release (before 0.126) or a probe cannot tell
    stack_args: int | None

class DebugCompiledInfo(CompiledInfo):
    """`compile(debug_info=True)`: every value labelled, VCode printed."""

    vcode: str  # the VCode disassembly
    labels: int  # values given a debug value label
    value_label_ranges: int  # the location ranges Cranelift gave back for them

class CraneliftError(Exception): ...
class ParseError(CraneliftError): ...
class ParseWarning(ParseError): ...
class VerifierError(CraneliftError): ...
class FlagError(CraneliftError): ...
class CompileError(CraneliftError): ...
class Unsupported(CompileError): ...
class InterpreterFailure(CraneliftError): ...
class CraneliftPanic(CraneliftError): ...

def version() -> str: ...
def parse(text: str) -> Module: ...
def panic_for_test() -> None: ...
def abort_for_test() -> None: ...

class Isa:
    def __init__(self, triple: str, shared: list[str], isa_flags: list[str]) -> None: ...
    def flags(self) -> list[tuple[str, str]]: ...

class Module:
    def names(self) -> list[str]: ...
    def functions(self) -> list[FunctionInfo]: ...
    def value_types(self, name: str) -> dict[str, str]: ...
    def verify(self, shared: list[str] = ..., isa: Isa | None = None) -> None: ...
    @overload
    def compile(
        self,
        isa: Isa,
        name: str | None = None,
        stack_args_for: list[str] = ...,
        debug_info: Literal[False] = False,
    ) -> list[CompiledInfo]: ...
    @overload
    def compile(
        self,
        isa: Isa,
        name: str | None = None,
        stack_args_for: list[str] = ...,
        *,
        debug_info: Literal[True],
    ) -> list[DebugCompiledInfo]: ...
    def interpret(
        self, name: str, args: list[Pair], fuel: int = 1_000_000
    ) -> (
        tuple[Literal["return"], list[Pair]]
        | tuple[Literal["trap"], str]
        | tuple[Literal["fuel"], None]
    ): ...
