"""The call-ABI generator: random signatures and call graphs for one target.

A case is one self-contained filetest: `test interpret`, `test run`, `set`
lines, one `target` line, the functions and `; run:` lines. Design choices
that make any misplaced bit visible:

- `%main` (default convention) takes only integer "input words", so run lines
  are plain integers; floats and vectors are made inside by bitcasts, which
  keep NaN payloads, subnormals and graffiti bytes exact.
- Every function folds every parameter and every call result into an i64
  checksum (rotate, xor, add a constant: each step is a bijection), and
  derives all its returns from it, so a wrong byte anywhere changes `%main`'s
  results.
- Values of the exact type are passed straight through where possible
  (argument permutations), so a call moves raw bit patterns, not just hashes.
- Values made before a call are folded in after it, so a clobbered register
  shows: several, of every register class the caller's convention allows, so
  callee-saved registers of each class are live across calls and values spill.
- Callers keep state where a call can damage it: values stored to an
  explicit stack slot before a call are loaded after it and folded in, and
  every function stores a canary in a slot of its own and folds it back
  before it returns (or tail-calls).
- Some signatures pass many arguments on the stack, narrow `uext`/`sext`
  integers among them after stack arguments of varying sizes, so narrow
  stack slots fall at every offset modulo 16.
- Call sites always carry the callee's exact signature and convention.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fuzz.features import Version, for_version, has
from fuzz.gen.cells import PLAIN_FORMS, TAIL_FORMS, TRY_FORMS, Cell, call_cells
from fuzz.gen.choices import Source, boolean, choice
from fuzz.pipeline import unwind
from fuzz.targets import Target
from fuzz.values import NARROW_INT_TYPES, is_sarg, sarg_size, type_info

MAX_PARAMS = 40
MAX_RETURNS = 16
MAX_LIVE = 6  # values made before a call and folded in after it
STACK_HEAVY_PCT = 12  # signatures that spill narrow extended arguments to the stack
# cases that use ISA extensions only qemu-user runs (Target.qemu_isa_flags):
# few enough that most cases still run on unicorn, the fast path
QEMU_ONLY_PCT = 10
MIX = 0x9E37_79B9_7F4A_7C15  # a well-mixed 64-bit constant
_MASK64 = (1 << 64) - 1
TRY_CALL_PCT = 20  # non-tail calls made `try_call` where the callee's convention allows
MAX_HANDLERS = 3  # exception-table entries of one `try_call`
MAX_PASSED = 3  # values a `try_call` hands its normal-return block beside the results
# `try_call` sites that call the thrower (fuzz.pipeline.unwind) instead of a
# generated callee, where the callee convention has payload registers
THROW_PCT = 25
UNCAUGHT_TAG = 99  # a tag no table names: only a `default` handler catches it
SARG_PCT = 12  # signatures of non-tail callees with struct arguments (where the target has them)
# struct-argument sizes: every one is copied with the Memcpy libcall (x86_64
# gen_memcpy), small and large alike
SARG_SIZES = (8, 16, 24, 64, 136, 520, 4096)
SRET_SIZES = (16, 16, 24, 64, 264, 1032)  # bytes of an explicit `sret` struct
STACK_LIMIT_PCT = 10  # callee signatures with a vmctx parameter and a `stack_limit`
LIMIT_TRIPPED_PCT = 20  # calls to such a callee whose limit is above any stack
# a limit no stack reaches (the interpreter's twin traps on a limit >= 2**63),
# low enough that the prologue's `limit + frame size` does not wrap
TRIPPED_LIMIT = -(1 << 16)
BIG_FRAME_PCT = 8  # functions with an explicit slot larger than the probe interval
BIG_FRAME_SIZES = (4104, 8200, 20000, 70000, 300000)
# functions that round a float, fuse a multiply-add or swizzle bytes: calls of
# the CeilF64, FmaF32, X86Pshufb... libcalls on x86_64 without SSE4.1, FMA,
# SSSE3 (emit_vm_call)
FLOAT_LIBCALL_PCT = 10
MACHINE_VALUES_PCT = 10  # functions that read their frame, stack pointer and return address
SYMBOL_PCT = 10  # calls preceded by `symbol_value` of the callee, compared with its func_addr
PATCHABLE_PCT = 50  # direct colocated calls of functions without returns made patchable
STACK_SWITCH_PCT = 15  # cases with an uncalled function that switches stacks (compile-only)
# cases with an uncalled function reading a thread-local (compile-only: the
# linker has no TLS, so such a case's target line is not executable here)
TLS_PCT = 2
DYNAMIC_SLOT_PCT = 10  # cases with an uncalled function using a dynamic stack slot (compile-only)
PROBESTACK_PCT = 25  # cases with `enable_probestack` (strategies: Target.probestack_strategies)
SHARED_FLAG_PCT = 25  # cases with each of Target.fuzz_shared_flags on


@dataclass(frozen=True)
class Param:
    ty: str
    ext: str = ""  # "", "uext", "sext"
    purpose: str = ""  # "", "sret", or "sarg(N)": a struct of N bytes passed by copy

    def __str__(self) -> str:
        return " ".join(p for p in (self.ty, self.ext, self.purpose) if p)


def sarg_offsets(size: int) -> list[int]:
    """The words of a struct argument its caller writes and its callee reads,
    of an `sret` struct its callee writes and its caller reads (first,
    middle, last: a struct of any size costs a few stores)."""
    return sorted({0, (size // 16) * 8, size - 8})


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    returns: tuple[Param, ...]
    cc: str
    # how the function finds its `stack_limit` from its vmctx parameter: "" (no
    # limit), "vmctx" (the parameter is the limit), "load" (it points at it, +8)
    limit: str = ""
    sret_size: int = 16  # bytes of the struct an `sret` parameter points at

    def __str__(self) -> str:
        params = ", ".join(map(str, self.params))
        rets = ", ".join(map(str, self.returns))
        arrow = f" -> {rets}" if self.returns else ""
        return f"({params}){arrow} {self.cc}"


@dataclass
class Case:
    target: Target
    text: str
    flags: list[str]
    isa_flags: list[str]
    cells: Counter[Cell] = field(default_factory=Counter)


@dataclass
class _Callee:
    name: str
    sig: Signature
    colocated: bool


class _Body:
    """Emits the instructions of one function and tracks typed values."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        # declarations: global values, stack slots, signatures, function references
        self.gvs: list[str] = []
        self.ngv = 0  # global values declared so far
        self.slots: list[str] = []
        self.sigs: list[str] = []
        self.fns: list[str] = []
        self.next = 0
        self.pool: dict[str, list[str]] = {}
        self.consts: dict[int, str] = {}
        self.canary = ""  # the address of the function's canary slot
        self.blocks = 1  # block0 is the entry

    def block(self) -> str:
        name = f"block{self.blocks}"
        self.blocks += 1
        return name

    def slot(self, size: int) -> str:
        """A new explicit stack slot; returns the value holding its address."""
        name = f"ss{len(self.slots)}"
        self.slots.append(f"    {name} = explicit_slot {size}")
        return self.emit(f"stack_addr.i64 {name}")

    def value(self, ty: str | None = None) -> str:
        name = f"v{self.next}"
        self.next += 1
        if ty is not None:
            self.pool.setdefault(ty, []).append(name)
        return name

    def emit(self, text: str, ty: str | None = None) -> str:
        # the hot path of generation: value() inlined
        name = f"v{self.next}"
        self.next += 1
        if ty is not None:
            self.pool.setdefault(ty, []).append(name)
        self.lines.append(f"    {name} = {text}")
        return name

    def const64(self, n: int) -> str:
        # Everything lives in block0, so one iconst serves every later use.
        found = self.consts.get(n)
        if found is not None:
            return found
        signed = n & _MASK64
        if signed >> 63:
            signed -= 1 << 64
        found = self.consts[n] = self.emit(f"iconst.i64 {signed}")
        return found

    # -- folding any value into an i64 checksum -----------------------------

    def to_words(self, v: str, ty: str, ext: str) -> list[str]:
        """i64 words that together hold every bit of `v`."""
        info = type_info(ty)
        if info.is_vector:
            # Two i64 lanes hold every bit; `little` fixes the lane order on
            # big-endian s390x too.
            wide = v if ty == "i64x2" else self.emit(f"bitcast.i64x2 little {v}")
            return [self.emit(f"extractlane {wide}, {i}") for i in range(2)]
        if info.is_float:
            int_ty = f"i{info.bits}"
            return self.to_words(self.emit(f"bitcast.{int_ty} {v}"), int_ty, "")
        if ty == "i128":
            lo = self.value()
            hi = self.value()
            self.lines.append(f"    {lo}, {hi} = isplit {v}")
            return [lo, hi]
        if ty == "i64":
            return [v]
        op = "sextend" if ext == "sext" else "uextend"
        return [self.emit(f"{op}.i64 {v}")]

    def fold(self, acc: str, word: str, salt: int) -> str:
        rot = self.emit(f"rotl {acc}, {self.const64(salt % 13 + 1)}")
        mixed = self.emit(f"bxor {rot}, {word}")
        # add, not multiply: unicorn's s390x lacks z14's `msgrkc`
        return self.emit(f"iadd {mixed}, {self.const64(MIX + 2 * (salt % 8))}")

    # -- making a value of any type from an i64 -----------------------------

    def from_word(self, word: str, ty: str, salt: int) -> str:
        info = type_info(ty)
        w = self.emit(f"bxor {word}, {self.const64(salt * MIX)}")
        if info.is_vector:
            hi = self.emit(f"rotl {w}, {self.const64(17)}")
            wide = self.emit(f"insertlane {self.emit(f'splat.i64x2 {w}')}, {hi}, 1")
            return wide if ty == "i64x2" else self.emit(f"bitcast.{ty} little {wide}")
        if info.is_float:
            as_int = self.from_word(w, f"i{info.bits}", salt)
            return self.emit(f"bitcast.{ty} {as_int}")
        if ty == "i128":
            hi = self.emit(f"rotl {w}, {self.const64(29)}")
            return self.emit(f"iconcat {w}, {hi}")
        if ty == "i64":
            return w
        return self.emit(f"ireduce.{ty} {w}")


class Generator:
    """Draws one case for one target from a choice source."""

    def __init__(
        self,
        src: Source,
        target: Target,
        max_callees: int = 5,
        qemu_only: bool = False,
        slot_align: bool = True,
        try_context: bool = True,
        frame_pointers: bool = False,
        patchable: bool = True,
        probestack: str = "",
    ) -> None:
        self.src = src
        self.t = target
        self.abi_types = (target.qemu_abi_types if qemu_only else None) or target.abi_types
        self.slot_align = slot_align  # `explicit_slot N, align = A` (fuzz.features)
        self.try_context = try_context  # `context vN` in exception tables (fuzz.features)
        # preserve_frame_pointers: get_frame_pointer and get_return_address need it
        self.frame_pointers = frame_pointers
        self.patchable = patchable  # `fnN = colocated patchable %f` (fuzz.features)
        self.probestack = probestack  # the case's probestack_strategy, if it probes
        self.functions: list[str] = []
        self.cells: Counter[Cell] = Counter()
        self.count = 0
        self.types_used: set[str] = set()
        self.has_tail_call = False
        # callees left to make: keeps cases in the 50-500 line range
        self.budget = src.integer(1, max_callees)

    # -- signatures ---------------------------------------------------------

    def types_for(self, cc: str) -> tuple[str, ...]:
        return self.abi_types.get(cc, self.abi_types["*"])

    def draw_param(self, cc: str) -> Param:
        ty = choice(self.src, self.types_for(cc))
        ext = ""
        if ty in NARROW_INT_TYPES and boolean(self.src, 60):
            ext = choice(self.src, ("uext", "sext"))
        self.types_used.add(ty)
        return Param(ty, ext)

    def stack_heavy_params(self, cc: str) -> list[Param]:
        """Every integer argument register filled with i64, then a mix of
        narrow extended integers and wider ones: the stack slots of the narrow
        ones land at offsets that vary modulo 16."""
        params = [Param("i64") for _ in range(len(self.t.int_arg_regs) + self.src.integer(0, 2))]
        for _ in range(self.src.integer(1, 8)):
            ty = choice(self.src, ("i8", "i16", "i32", "i8", "i16", "i32", "i64", "i128"))
            if ty not in self.types_for(cc):
                ty = "i64"
            ext = choice(self.src, ("uext", "sext")) if ty in NARROW_INT_TYPES else ""
            self.types_used.add(ty)
            params.append(Param(ty, ext))
        return params

    def draw_signature(
        self,
        cc: str,
        want_sret: bool = False,
        many_pct: int = 15,
        sarg_ok: bool = False,
    ) -> Signature:
        many = boolean(self.src, many_pct)
        n_params = self.src.integer(0, MAX_PARAMS if many else 6)
        n_rets = self.src.integer(0, MAX_RETURNS if boolean(self.src, 25) else 3)
        if cc in self.t.no_return_convs or want_sret:
            # preserve_all returns nothing; Cranelift panics on sret plus returns
            n_rets = 0
        if boolean(self.src, STACK_HEAVY_PCT):
            params = self.stack_heavy_params(cc)
        else:
            params = [self.draw_param(cc) for _ in range(n_params)]
        if sarg_ok and cc in self.t.sarg_convs and boolean(self.src, SARG_PCT):
            for _ in range(self.src.integer(1, 2)):
                size = choice(self.src, SARG_SIZES)
                params.insert(self.src.integer(0, len(params)), Param("i64", "", f"sarg({size})"))
        limit = ""
        # (not where a preserve_all prologue clobbers a register for the check)
        limit_ok = not (cc == "preserve_all" and self.t.preserve_all_limit_clobbers)
        if limit_ok and boolean(self.src, STACK_LIMIT_PCT):
            limit = choice(self.src, ("vmctx", "load"))
            # among the first parameters: a vmctx passed on the stack panics
            # (corpus/stack-limit-vmctx-on-stack.clif)
            params.insert(self.src.integer(0, min(1, len(params))), Param("i64", "", "vmctx"))
        if want_sret:
            params.insert(0, Param("i64", "", "sret"))
        returns = tuple(self.draw_param(cc) for _ in range(n_rets))
        sret_size = choice(self.src, SRET_SIZES) if want_sret else 16
        return Signature(tuple(params), returns, cc, limit, sret_size)

    # -- functions ----------------------------------------------------------

    def new_name(self, stem: str) -> str:
        self.count += 1
        return f"%{stem}{self.count}"

    def define(self, name: str, sig: Signature, depth: int) -> None:
        """Generate the body of `name` with signature `sig` (and its callees)."""
        b = _Body()
        params = []
        for p in sig.params:
            # an sret or sarg pointer is an address: never folded, never passed on
            params.append(b.value(p.ty if not p.purpose else None))
        typed = ", ".join(f"{v}: {p.ty}" for v, p in zip(params, sig.params, strict=True))
        # `block0:` when there are none: before 0.109 the reader rejects `block0():`
        head = f"block0({typed}):" if typed else "block0:"
        acc = b.const64(0x0123_4567_89AB_CDEF + depth)
        salt = 1
        sret_ptr = None
        for v, p in zip(params, sig.params, strict=True):
            if p.purpose == "sret":
                sret_ptr = v
                continue
            if is_sarg(p.purpose):
                for offset in sarg_offsets(sarg_size(p.purpose)):
                    acc = b.fold(acc, b.emit(f"load.i64 {v}+{offset}"), salt)
                    salt += 1
                continue
            if p.purpose == "vmctx":
                continue  # the limit, or its address: the prologue's business
            for w in b.to_words(v, p.ty, p.ext):
                acc = b.fold(acc, w, salt)
                salt += 1
        if sig.limit:
            b.gvs.append("    gv0 = vmctx")
            if sig.limit == "load":
                b.gvs.append("    gv1 = load.i64 notrap aligned gv0+8")
            b.ngv = 1 + (sig.limit == "load")
            b.gvs.append(f"    stack_limit = gv{b.ngv - 1}")
        # the function's canary: stored now, folded back before it returns
        b.canary = b.slot(8)
        b.lines.append(f"    store {acc}, {b.canary}")
        if boolean(self.src, MACHINE_VALUES_PCT):
            acc, salt = self.machine_values(b, acc, salt)
        if boolean(self.src, FLOAT_LIBCALL_PCT):
            acc, salt = self.float_libcall(b, acc, salt)
        big = None
        # (not where a preserve_all prologue clobbers a register for the probes)
        if self.big_frame_ok(sig) and boolean(self.src, BIG_FRAME_PCT):
            # a frame past the probe interval (probestack), its far end written
            # and read back (touched from the top down: what a probe must allow)
            size = choice(self.src, BIG_FRAME_SIZES)
            big = (b.slot(size), size - 8)
            b.lines.append(f"    store {acc}, {big[0]}+{big[1]}")

        n_calls = min(self.src.integer(0, 3) if depth < 3 else 0, self.budget)
        tail = False
        for i in range(n_calls):
            last = i == n_calls - 1
            acc, salt, tail = self.call_site(b, sig, acc, salt, depth, last, sret_ptr)
            if tail:
                break

        if big is not None and not tail:
            acc = b.fold(acc, b.emit(f"load.i64 {big[0]}+{big[1]}"), salt)
            salt += 1
        if not tail:
            acc = b.fold(acc, b.emit(f"load.i64 {b.canary}"), salt)
            salt += 1
            if sret_ptr is not None:
                for k, offset in enumerate(sarg_offsets(sig.sret_size)):
                    out = b.from_word(acc, "i64", salt + k)
                    b.lines.append(f"    store {out}, {sret_ptr}+{offset}")
            rets = [b.from_word(acc, r.ty, salt + i) for i, r in enumerate(sig.returns)]
            b.lines.append(f"    return {', '.join(rets)}".rstrip())
        self.functions.append(
            "\n".join(
                [
                    f"function {name}{sig_text(sig)} {{",
                    *b.gvs,
                    *b.slots,
                    *b.sigs,
                    *b.fns,
                    head,
                    *b.lines,
                    "}",
                    "",
                ]
            )
        )

    def call_site(
        self,
        b: _Body,
        caller: Signature,
        acc: str,
        salt: int,
        depth: int,
        last: bool,
        sret_ptr: str | None,
    ) -> tuple[str, int, bool]:
        tail_ok = last and caller.cc in self.t.tail_call_convs
        # Tail calls are where stack arguments get rewritten in place: favour them.
        try_convs = [cc for cc in self.t.call_convs if cc in self.t.exception_payloads]
        if tail_ok and boolean(self.src, 60):
            form = choice(self.src, TAIL_FORMS)
        elif try_convs and boolean(self.src, TRY_CALL_PCT):
            form = choice(self.src, TRY_FORMS)
        else:
            form = choice(self.src, PLAIN_FORMS)
        is_tail = form.startswith("return_call")
        is_try = form.startswith("try_call")
        throws = False  # a try_call of the thrower
        if is_tail:
            # A tail call needs the caller's convention and return types.
            cc = caller.cc
            # A caller with an sret pointer hands it on: the tail callee
            # writes the caller's results.
            callee_sig = self.draw_signature(cc, want_sret=sret_ptr is not None, many_pct=35)
            # the limit itself, not its address: the caller's frame goes with the call
            limit = "vmctx" if callee_sig.limit else ""
            callee_sig = Signature(callee_sig.params, caller.returns, cc, limit, caller.sret_size)
        elif is_try:
            cc = choice(self.src, try_convs)
            throws = unwind.thrower(cc) in unwind.throwers(self.t) and boolean(self.src, THROW_PCT)
            if throws:
                params = tuple(Param(ty) for ty in unwind.PARAMS)
                callee_sig = Signature(params, (), cc)
            else:
                callee_sig = self.draw_signature(
                    cc, want_sret=cc in self.t.sret_convs and boolean(self.src, 15), sarg_ok=True
                )
        else:
            tail_cc = self.t.tail_call_convs
            cc = choice(
                self.src, tail_cc if tail_cc and boolean(self.src, 30) else self.t.call_convs
            )
            callee_sig = self.draw_signature(
                cc, want_sret=cc in self.t.sret_convs and boolean(self.src, 15), sarg_ok=True
            )
        colocated = boolean(self.src)
        if throws:
            callee = _Callee(unwind.thrower(cc), callee_sig, colocated)
        else:
            self.budget -= 1
            callee = _Callee(self.new_name("f"), callee_sig, colocated)
            self.define(callee.name, callee_sig, depth + 1)
            values = [(p.ty, p.purpose) for p in callee_sig.params + callee_sig.returns]
            self.cells.update(call_cells(self.t.name, values, cc, form))

        # Signatures are declared explicitly (sigN beside fnN): the implicit
        # ones a `fnN = %f(...)` makes would collide with call_indirect's.
        if is_tail:
            # the frame goes with the tail call: its canary is folded into
            # the arguments first
            acc = b.fold(acc, b.emit(f"load.i64 {b.canary}"), salt)
            salt += 1
        fref = f"fn{len(b.fns)}"
        sref = f"sig{len(b.sigs)}"
        b.sigs.append(f"    {sref} = {callee_sig}")
        # a patchable call: direct, colocated, to a function without returns
        patchable = (
            self.patchable
            and form in ("call", "try_call")
            and colocated
            and not throws
            and not callee_sig.returns
            and boolean(self.src, PATCHABLE_PCT)
        )
        kind = "colocated patchable " if patchable else "colocated " if colocated else ""
        b.fns.append(f"    {fref} = {kind}{callee.name} {sref}")
        if not throws and boolean(self.src, SYMBOL_PCT):
            acc = self.symbol_relation(b, callee.name, fref, acc, salt)
            salt += 1
        sret_slot = None
        args = []
        # a thrower's handlers: how many, whether the last is `default`, and
        # the tag it throws (one they name, or one only `default` catches)
        shape = None
        if throws:
            n = self.src.integer(1, MAX_HANDLERS)
            default = boolean(self.src, 50)
            tags = list(range(1, n + 1 - default))
            tag = choice(self.src, tags) if tags and not (default and boolean(self.src, 30)) else 0
            shape = (n, default)
            args.append(b.emit(f"iconst.i32 {tag or UNCAUGHT_TAG}"))
            payloads = [b.from_word(acc, "i64", salt + 100 + i) for i in range(2)]
            args += [
                b.emit(f"bxor {p}, {b.const64(MIX)}") if i else p for i, p in enumerate(payloads)
            ]
        for i, p in enumerate(callee_sig.params if not throws else ()):
            if p.purpose == "sret" and is_tail and sret_ptr is not None:
                args.append(sret_ptr)
            elif p.purpose == "vmctx":
                limit = b.const64(TRIPPED_LIMIT if boolean(self.src, LIMIT_TRIPPED_PCT) else 0)
                if callee_sig.limit == "load":
                    at = b.slot(16)
                    b.lines.append(f"    store {limit}, {at}+8")
                    limit = at
                args.append(limit)
            elif is_sarg(p.purpose):
                size = sarg_size(p.purpose)
                struct = b.slot(size)
                for k, offset in enumerate(sarg_offsets(size)):
                    word = b.from_word(acc, "i64", salt + 150 + k)
                    b.lines.append(f"    store {word}, {struct}+{offset}")
                args.append(struct)
            elif p.purpose == "sret":
                slot = f"ss{len(b.slots)}"
                align = ", align = 16" if self.slot_align else ""
                b.slots.append(f"    {slot} = explicit_slot {callee_sig.sret_size}{align}")
                sret_slot = b.emit(f"stack_addr.i64 {slot}")
                args.append(sret_slot)
            elif b.pool.get(p.ty) and boolean(self.src, 50):
                args.append(choice(self.src, b.pool[p.ty]))  # raw bits straight through
            else:
                args.append(b.from_word(acc, p.ty, salt + 100 + i))
        # Values made before the call and folded in after it: registers of
        # every class live across the call, some spilled.
        live = []
        for k in range(self.src.integer(1, MAX_LIVE)):
            live_ty = choice(self.src, self.types_for(caller.cc))
            self.types_used.add(live_ty)  # its ISA flags too (riscv64 vectors: has_v)
            live.append((b.from_word(acc, live_ty, salt + 7 + k), live_ty))
        # State the call must not damage: a slot of the caller's frame.
        kept = None
        if not is_tail and boolean(self.src, 60):
            words = self.src.integer(1, 3)
            kept = (b.slot(8 * words), words)
            for k in range(words):
                b.lines.append(
                    f"    store {b.from_word(acc, 'i64', salt + 50 + k)}, {kept[0]}+{8 * k}"
                )

        if form.endswith("_indirect"):
            addr = b.emit(f"func_addr.i64 {fref}")
            target = f"{sref}, {addr}" if not is_try else addr
        else:
            target = fref
        call = f"{form} {target}({', '.join(args)})"
        if is_tail:
            self.has_tail_call = True
            b.lines.append(f"    {call}")
            return acc, salt, True
        if is_try:
            results, acc, live = self.try_call(
                b, caller, call, sref, callee_sig, acc, live, salt, shape, sret_ptr
            )
        else:
            results = [b.value(r.ty) for r in callee_sig.returns]
            b.lines.append(f"    {', '.join(results)} = {call}" if results else f"    {call}")
        for r, p in zip(results, callee_sig.returns, strict=True):
            for w in b.to_words(r, p.ty, p.ext):
                acc = b.fold(acc, w, salt)
                salt += 1
        for value, ty in live:
            for w in b.to_words(value, ty, ""):
                acc = b.fold(acc, w, salt)
                salt += 1
        if kept is not None:
            for k in range(kept[1]):
                acc = b.fold(acc, b.emit(f"load.i64 {kept[0]}+{8 * k}"), salt)
                salt += 1
        if sret_slot is not None:
            for offset in sarg_offsets(callee_sig.sret_size):
                loaded = b.emit(f"load.i64 {sret_slot}+{offset}")
                acc = b.fold(acc, loaded, salt)
                salt += 1
        return acc, salt, False

    def big_frame_ok(self, sig: Signature) -> bool:
        """Whether a function of `sig` may have a frame that needs probes:
        not where the probes clobber what the function needs (a preserve_all
        caller's registers; riscv64's outline probe overwrites the first
        argument: only functions without parameters or returns)."""
        if not self.probestack:
            return True
        if sig.cc == "preserve_all" and self.t.preserve_all_probe_clobbers:
            return False
        # (nor returns: many of them come back through an implicit sret pointer in a0)
        return not (
            self.probestack == "outline"
            and self.t.outline_probe_clobbers_args
            and (sig.params or sig.returns)
        )

    def float_libcall(self, b: _Body, acc: str, salt: int) -> tuple[str, int]:
        """A float rounding or fused multiply-add on finite values made from
        the checksum (no NaN: its payload is no call-lowering matter), or a
        byte swizzle, folded back in: a libcall where the ISA lacks the
        instruction (X86Pshufb without SSSE3)."""
        if self.t.bare_vectors and boolean(self.src, 25):
            table = b.from_word(acc, "i8x16", salt)
            index = b.from_word(acc, "i8x16", salt + 1)
            swizzled = b.emit(f"swizzle {table}, {index}")
            for w in b.to_words(swizzled, "i8x16", ""):
                acc = b.fold(acc, w, salt)
                salt += 1
            return acc, salt
        ty = choice(self.src, ("f32", "f64"))
        small = b.emit(f"band {acc}, {b.const64(0xF_FFFF)}")
        signed = b.emit(f"isub {small}, {b.const64(0x8_0000)}")
        x = b.emit(f"fcvt_from_sint.{ty} {signed}")
        half = b.emit(f"{ty}const 0x1.8p-1" if ty == "f32" else "f64const 0x1.8p-1")
        y = b.emit(f"fmul {x}, {half}")  # .5 fractions: rounding modes differ
        op = choice(self.src, ("ceil", "floor", "trunc", "nearest", "fma"))
        z = b.emit(f"fma {y}, {half}, {x}" if op == "fma" else f"{op} {y}")
        for w in b.to_words(z, ty, ""):
            acc = b.fold(acc, w, salt)
            salt += 1
        return acc, salt

    def machine_values(self, b: _Body, acc: str, salt: int) -> tuple[str, int]:
        """Reads the stack pointer (and, with frame pointers, the frame
        pointer and return address) and folds in what holds on every
        machine: sp <= fp, none of them 0 (the interpreter's twin knows
        these relations, fuzz.pipeline.twin)."""
        zero = b.const64(0)
        sp = b.emit("get_stack_pointer.i64")
        facts = [f"icmp ne {sp}, {zero}"]
        if self.frame_pointers:
            fp = b.emit("get_frame_pointer.i64")
            ra = b.emit("get_return_address.i64")
            facts += [f"icmp ule {sp}, {fp}", f"icmp ne {fp}, {zero}", f"icmp ne {ra}, {zero}"]
        for fact in facts:
            acc = b.fold(acc, b.emit(f"uextend.i64 {b.emit(fact)}"), salt)
            salt += 1
        return acc, salt

    def symbol_relation(self, b: _Body, callee: str, fref: str, acc: str, salt: int) -> str:
        """`symbol_value` of the callee (colocated or not) equals its
        `func_addr`: folded in, as every machine and the twin agree."""
        gv = f"gv{b.ngv}"
        b.ngv += 1
        b.gvs.append(f"    {gv} = symbol {'colocated ' if boolean(self.src) else ''}{callee}")
        symbol = b.emit(f"symbol_value.i64 {gv}")
        same = b.emit(f"icmp eq {symbol}, {b.emit(f'func_addr.i64 {fref}')}")
        return b.fold(acc, b.emit(f"uextend.i64 {same}"), salt)

    def try_call(
        self,
        b: _Body,
        caller: Signature,
        call: str,
        sref: str,
        callee_sig: Signature,
        acc: str,
        live: list[tuple[str, str]],
        salt: int,
        shape: tuple[int, bool] | None = None,
        sret_ptr: str | None = None,
    ) -> tuple[list[str], str, list[tuple[str, str]]]:
        """Ends the current block with `call` as a `try_call`: its results
        and some values made before it (the checksum, live values) go to a
        new normal-return block as block arguments, its exceptions to handler
        blocks that take the payloads and return. Returns the results, the
        checksum and the live values as the normal-return block names them.

        A generated callee never throws (CLIF has no instruction that
        raises); the thrower does, into the handlers `shape` (count, last
        one `default`) says (fuzz.pipeline.unwind)."""
        passed = [(acc, "i64")] + live[: self.src.integer(0, MAX_PASSED - 1)]
        normal = b.block()
        rets = [f"ret{i}" for i in range(len(callee_sig.returns))]
        args = ", ".join(rets + [v for v, _ in passed])
        # the handler blocks go after the try_call that ends this block
        before, b.lines = b.lines, []
        table = self.exception_table(b, caller, callee_sig.cc, acc, salt, shape, sret_ptr)
        handlers, b.lines = b.lines, before
        b.lines.append(f"    {call}, {sref}, {normal}({args}), [{table}]")
        b.lines += handlers
        results = [b.value(r.ty) for r in callee_sig.returns]
        renamed = [b.value(ty) for _, ty in passed]
        params = [f"{v}: {p.ty}" for v, p in zip(results, callee_sig.returns, strict=True)]
        params += [f"{v}: {ty}" for v, (_, ty) in zip(renamed, passed, strict=True)]
        b.lines.append(f"{normal}({', '.join(params)}):")
        # only the renamed values are used from here on: block arguments move
        live = [(v, ty) for v, (_, ty) in zip(renamed[1:], passed[1:], strict=True)] + live[
            len(passed) - 1 :
        ]
        return results, renamed[0], live

    def exception_table(
        self,
        b: _Body,
        caller: Signature,
        cc: str,
        acc: str,
        salt: int,
        shape: tuple[int, bool] | None = None,
        sret_ptr: str | None = None,
    ) -> str:
        """The `[...]` entries of a `try_call` to a callee of convention `cc`:
        tagged and default handlers (`shape`: their count and whether the
        last is `default`; drawn when None), each a block of its own
        (emitted into `b.lines`) taking the exception payloads and the
        checksum; `context` where the release has it."""
        payloads = self.t.exception_payloads[cc]
        entries = []
        n = shape[0] if shape else self.src.integer(1, MAX_HANDLERS)
        for k in range(n):
            handler = b.block()
            exn = [f"exn{i}" for i in range(payloads)]
            last_default = shape[1] if shape else boolean(self.src, 50)
            label = "default" if k == n - 1 and last_default else f"tag{k + 1}"
            entries.append(f"{label}: {handler}({', '.join(exn + [acc])})")
            self.handler(b, caller, handler, payloads, salt + 200 + k, sret_ptr)
        if self.try_context and boolean(self.src, 30):
            entries.append(f"context {acc}")
        return ", ".join(entries)

    def handler(
        self,
        b: _Body,
        caller: Signature,
        name: str,
        payloads: int,
        salt: int,
        sret_ptr: str | None = None,
    ) -> None:
        """A handler block: folds its payloads into the checksum and returns
        values derived from it (through the caller's sret pointer too, as
        its normal path does). Its constants stay its own (they would not
        dominate the code after the normal-return block)."""
        consts, b.consts = b.consts, {}
        params = [b.value() for _ in range(payloads + 1)]
        b.lines.append(f"{name}({', '.join(f'{v}: i64' for v in params)}):")
        acc = params[-1]
        for i, word in enumerate(params[:-1]):
            acc = b.fold(acc, word, salt + i)
        if sret_ptr is not None:
            for k, offset in enumerate(sarg_offsets(caller.sret_size)):
                b.lines.append(
                    f"    store {b.from_word(acc, 'i64', salt + 50 + k)}, {sret_ptr}+{offset}"
                )
        rets = [b.from_word(acc, r.ty, salt + i) for i, r in enumerate(caller.returns)]
        b.lines.append(f"    return {', '.join(rets)}".rstrip())
        b.consts = consts


def sig_text(sig: Signature) -> str:
    """A signature as a function header writes it (default cc omitted)."""
    text = str(sig)
    return text[: -len(" system_v")] if sig.cc == "system_v" else text


# -- inputs -------------------------------------------------------------------


def _edge_values(bits: int) -> list[int]:
    top = 1 << (bits - 1)
    values = [0, -1, top - 1, -top, 1]
    if bits >= 16:
        # float-shaped patterns: quiet/signalling NaN payloads, subnormals, -0.0
        exp = {16: 5, 32: 8, 64: 11, 128: 15}.get(bits, 0)
        if exp:
            mant = bits - 1 - exp
            ones = ((1 << exp) - 1) << mant
            values += [ones | 1, ones | (1 << (mant - 1)) | 0x5A, 1, top]
    return values


def graffiti(arg_index: int, bits: int) -> int:
    """Bytes that say where they came from: high nibble argument, low nibble byte."""
    raw = 0
    for j in range(bits // 8):
        raw |= ((((arg_index & 0xF) << 4) | (j & 0xF)) & 0xFF) << (8 * j)
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def draw_inputs(src: Source, types: list[str]) -> list[int]:
    out = []
    for i, ty in enumerate(types):
        bits = type_info(ty).bits
        if boolean(src, 50):
            out.append(graffiti(i + 1, bits))
        else:
            out.append(choice(src, _edge_values(bits)))
    return out


# -- the whole case -----------------------------------------------------------


def generate(
    src: Source, target: Target, max_callees: int = 5, version: Version | None = None
) -> Case:
    """One case; `max_callees` bounds its size (small cases for reducer tests);
    only what Cranelift `version` has (fuzz.features; None: the newest)."""
    target = for_version(target, version)
    qemu_only = bool(target.qemu_isa_flags) and boolean(src, QEMU_ONLY_PCT)
    frame_pointers = boolean(src)
    probestack = ""  # the strategy, when the case probes
    if target.probestack_strategies and boolean(src, PROBESTACK_PCT):
        probestack = choice(src, target.probestack_strategies)
    g = Generator(
        src,
        target,
        max_callees,
        qemu_only,
        has("slot_align", version),
        has("try_call_context", version),
        frame_pointers,
        has("patchable", version),
        probestack,
    )
    # %main: default convention, integer inputs only.
    n_inputs = src.integer(1, 8)
    input_types = [choice(src, ("i64", "i64", "i32", "i128")) for _ in range(n_inputs)]
    main_sig = Signature(
        tuple(Param(t) for t in input_types), (Param("i64"), Param("i64")), "system_v"
    )
    g.types_used.update(input_types)
    g.define("%main", main_sig, 0)

    flags = [f"opt_level={choice(src, ('none', 'speed', 'speed_and_size'))}"]
    switch = target.stack_switch and boolean(src, STACK_SWITCH_PCT)
    if switch:
        flags.append("stack_switch_model=basic")
    tls = choice(src, target.tls_models) if target.tls_models and boolean(src, TLS_PCT) else ""
    if tls:
        flags.append(f"tls_model={tls}")
    if has("regalloc_algorithm", version):
        flags.append(f"regalloc_algorithm={choice(src, target.regalloc_algorithms)}")
    frame_pointers = frame_pointers or (g.has_tail_call and target.tail_calls_need_frame_pointers)
    flags.append(f"preserve_frame_pointers={str(frame_pointers).lower()}")
    if has("enable_multi_ret_implicit_sret", version):
        flags.append("enable_multi_ret_implicit_sret=true")
    flags.append("enable_llvm_abi_extensions=true")
    if probestack:
        flags.append("enable_probestack=true")
        flags.append(f"probestack_strategy={probestack}")
    for flag in target.fuzz_shared_flags:
        if has(flag, version) and boolean(src, SHARED_FLAG_PCT):
            flags.append(f"{flag}=true")
    isa_flags = [f for f in target.fuzz_isa_flags if boolean(src, 40)]
    if qemu_only:
        # every extension at once: one qemu-user CPU per target (and has_v or
        # not), not a server per subset of flags
        isa_flags += list(target.qemu_isa_flags)
    if any(type_info(t).is_vector for t in g.types_used):
        isa_flags = sorted(set(isa_flags) | set(target.vector_isa_flags))

    runs = []
    for _ in range(src.integer(1, 3)):
        values = draw_inputs(src, input_types)
        runs.append(f"; print: %main({', '.join(map(str, values))})")
    lines = ["test interpret", "test run"]
    lines += [f"set {f}" for f in flags]
    lines.append(" ".join(["target", target.name, *isa_flags]))
    lines.append("")
    # Functions are emitted callees first (post-order), %main last, so the
    # run lines attach to %main.
    if switch:
        # compiled, never called (switching needs a stack made ready for it);
        # first, as run lines attach to the function before them (%main)
        lines += [
            "function %switch(i64, i64, i64) -> i64 {",
            "    ss0 = explicit_slot 8",  # state kept across the switch
            "block0(v0: i64, v1: i64, v2: i64):",
            "    v3 = stack_addr.i64 ss0",
            "    store v2, v3",
            "    v4 = stack_switch v0, v1, v2",
            "    v5 = load.i64 v3",
            "    v6 = iadd v4, v5",
            "    return v6",
            "}",
            "",
        ]
    if probestack == "outline" and target.outline_probe_clobbers_args:
        # frames past the probe interval are rare where the probe overwrites
        # the first argument (Generator.big_frame_ok): one that is sure to
        # compile the outline probe, uncalled
        lines += [
            "function %probed() {",
            "    ss0 = explicit_slot 20000",
            "block0:",
            "    v0 = stack_addr.i64 ss0",
            "    v1 = iconst.i64 0",
            "    store v1, v0",
            "    return",
            "}",
            "",
        ]
    if target.dynamic_slots and boolean(src, DYNAMIC_SLOT_PCT):
        # compiled, never called: the interpreter has no dyn_scale_target_const
        lines += [
            "function %dyn(i64) -> i64 {",
            "    gv0 = dyn_scale_target_const.i32x4",
            "    dt0 = i32x4*gv0",
            "    dss0 = explicit_dynamic_slot dt0",
            "    ss0 = explicit_slot 8",
            "block0(v0: i64):",
            "    v1 = dynamic_stack_addr.i64 dss0",
            "    store v0, v1",
            "    v2 = load.i64 v1",
            "    return v2",
            "}",
            "",
        ]
    if tls:
        lines += [
            "function %tls() -> i64 {",
            f"    gv0 = symbol {choice(src, ('', 'colocated '))}tls u1:0",
            "    ss0 = explicit_slot 8",
            "block0:",
            "    v0 = tls_value.i64 gv0",
            "    v1 = stack_addr.i64 ss0",
            "    store v0, v1",
            "    v2 = load.i64 v1",
            "    v3 = load.i64 v2",
            "    return v3",
            "}",
            "",
        ]
    lines += g.functions
    lines += runs
    return Case(target, "\n".join(lines) + "\n", flags, isa_flags, g.cells)
