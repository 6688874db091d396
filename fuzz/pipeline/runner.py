"""Runs a parsed file: every run command on the interpreter and on every target
configuration (compile, link, emulate), then judges the outcomes."""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fuzz import _cranelift
from fuzz.features import Feature, abi_for_version, has, lacking
from fuzz.pipeline import debuginfo, unwind
from fuzz.pipeline.cabi import check as cabi
from fuzz.pipeline.cabi.build import CBuildError
from fuzz.pipeline.cabi.declare import CSignature
from fuzz.pipeline.contract import CallHook, CallMap, Function
from fuzz.pipeline.emulate import DEFAULT_BUDGET, VARIANTS, Emulator, RawOutcome
from fuzz.pipeline.filetest import (
    BadInput,
    FileTest,
    RunCommand,
    Skipped,
    TargetLine,
    flag_on,
    settings,
)
from fuzz.pipeline.link import (
    LAYOUTS,
    NEAR,
    CompiledFunction,
    Image,
    LinkError,
    NeedsLibcall,
    link,
)
from fuzz.pipeline.oracle import (
    INTERPRETER,
    Judgement,
    Kind,
    Outcome,
    Verdict,
    at_trap_sites,
    is_finding,
    judge,
)
from fuzz.pipeline.qemu import QemuExecutor, qemu_version
from fuzz.pipeline.routing import QEMU, UNICORN, ExecutorChoice, Route, route
from fuzz.pipeline.sigcheck import check_signatures
from fuzz.pipeline.trampoline import SLOT_BYTES, slot_count, trampoline_clif
from fuzz.targets import TARGETS, Target
from fuzz.values import NanPolicy, Value
from fuzz.versions import Version, parse_version

if TYPE_CHECKING:
    from fuzz._cranelift import Pair, SignatureInfo

# (file, target name, run's function, outcome) -> the outcome to judge
OutcomeHook = Callable[[FileTest, str, str, Outcome], Outcome]


@dataclass(frozen=True)
class FaultHooks:
    """The one place a planted, test-only fault (fuzz.faults) reaches the
    pipeline: the outcome a target line produced, the machine at every
    call's entry and return (contract.CallHook), and a function's debug
    compile (fuzz.pipeline.debuginfo)."""

    outcome: OutcomeHook | None = None
    call: CallHook | None = None
    debug: debuginfo.DebugHook | None = None


DEFAULT_FUEL = 1_000_000
# the run command of a C-ABI check (fuzz.pipeline.cabi) of a function's signature
C_ABI_RUN = "c-abi"
# a file with this comment line asks for the C-ABI check (its reproducers do)
C_ABI_DIRECTIVE = "; callfuzz: c-abi"
# `; callfuzz: layout far`: how the linker places the file's functions on
# the target lines unicorn runs (fuzz.pipeline.link.LAYOUTS); campaigns give
# a share of generated cases one, and its reproducers keep it
LAYOUT_DIRECTIVE = re.compile(r"^; callfuzz: layout (\w+)$", re.MULTILINE)


def layout_of(text: str) -> str:
    """The layout a file asks for (NEAR when it names none); BadInput for
    one the linker does not know."""
    found = LAYOUT_DIRECTIVE.search(text)
    if found is None:
        return NEAR
    if found.group(1) not in LAYOUTS:
        raise BadInput(f"unknown layout {found.group(1)!r}: one of {', '.join(LAYOUTS)}")
    return found.group(1)


@dataclass
class RunResult:
    command: RunCommand
    outcomes: dict[str, Outcome]
    judgement: Judgement


@dataclass
class Config:
    """One target line, compiled and linked (or the reason it cannot run)."""

    line: TargetLine
    isa: _cranelift.Isa
    image: Image | None = None
    trampolines: dict[str, str] = field(default_factory=dict)  # signature text -> symbol
    failure: Outcome | None = None
    functions: list[CompiledFunction] = field(default_factory=list)
    calls: CallMap | None = None  # entries and return addresses, for the contract checks
    route: Route = Route(UNICORN)
    flags_on: frozenset[str] = frozenset()  # the ISA flags set (qemu-user's -cpu)
    shared: tuple[str, ...] = ()  # the shared flags it compiles with
    layout: str = NEAR  # how the linker placed its functions (fuzz.pipeline.link.LAYOUTS)


def _compile_failure(err: Exception) -> Outcome:
    if isinstance(err, _cranelift.CraneliftPanic):
        message, location = err.args
        return Outcome(Kind.COMPILE_PANIC, detail=f"{message} at {location}")
    if isinstance(err, _cranelift.Unsupported):
        return Outcome(Kind.UNSUPPORTED, detail=str(err))
    return Outcome(Kind.COMPILE_ERROR, detail=str(err))


class Runner:
    """Holds the reusable state: one emulator per target, built ISAs and
    compiled trampolines. `timings` accumulates seconds per stage."""

    def __init__(
        self,
        nan_policy: NanPolicy = NanPolicy.ANY,
        budget: int = DEFAULT_BUDGET,
        fuel: int = DEFAULT_FUEL,
        fault: FaultHooks | None = None,
        ub_check: bool = True,
        contract: bool = True,
        executor: ExecutorChoice = ExecutorChoice.AUTO,
        c_abi: bool = False,
    ) -> None:
        self.executor = executor
        # per target: throws the unwinder stand-in landed in a handler (fuzz.pipeline.unwind)
        self.throws: Counter[str] = Counter()
        # check every signature with a C counterpart against the C compiler (fuzz.pipeline.cabi)
        self.c_abi = c_abi
        self.qemu = QemuExecutor()
        # runs each executor made (divergences' reruns and referee runs included)
        self.executor_runs: Counter[str] = Counter()
        # the call contract checks (fuzz.pipeline.contract); off only to measure them
        self.contract = contract
        # a divergent run is run again from another initial state (undefined
        # behaviour detection); only tests of the raw machine turn it off
        self.ub_check = ub_check
        self.fault = fault or FaultHooks()
        self.nan_policy = nan_policy
        self.budget = budget
        self.fuel = fuel
        self.emulators: dict[str, Emulator] = {}
        # each target's call contract as the Cranelift under test promises it
        self.release = parse_version(_cranelift.version())
        self._contract_targets: dict[str, tuple[Target, Target]] = {}
        self._isas: dict[tuple[str, tuple[str, ...], tuple[str, ...]], _cranelift.Isa] = {}
        self._trampolines: dict[tuple[int, str], CompiledFunction] = {}
        self.timings: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        # target lines compiled again with debug info (fuzz.pipeline.debuginfo)
        self.debug_compiles = 0
        # of them: those whose labels gave no value-label range back
        self.debug_without_ranges = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        cpu = time.thread_time()
        try:
            yield
        finally:
            self.timings[name] += time.perf_counter() - start
            # CPU seconds too: wall time counts waiting when cores are shared
            self.cpu[name] += time.thread_time() - cpu
            self.counts[name] += 1

    def contract_target(self, target: Target) -> Target:
        """`target` with the call contract of the Cranelift under test
        (fuzz.features: callee-saved sets changed between releases)."""
        found = self._contract_targets.get(target.name)
        if found is None or found[0] is not target:
            found = (target, abi_for_version(target, self.release))
            self._contract_targets[target.name] = found
        return found[1]

    def emulator(self, target: Target) -> Emulator:
        if target.name not in self.emulators:
            self.emulators[target.name] = Emulator(target)
            self.emulators[target.name].checker.fault = self.fault.call
        return self.emulators[target.name]

    def isa(self, line: TargetLine, shared: Sequence[str]) -> _cranelift.Isa:
        key = (line.target.triple, tuple(shared), line.isa_flags)
        if key not in self._isas:
            try:
                with self.stage("compile isa"):
                    self._isas[key] = _cranelift.Isa(
                        line.target.triple, list(shared), list(line.isa_flags)
                    )
            except _cranelift.FlagError as err:
                raise BadInput(str(err)) from None
        return self._isas[key]

    # --- preparation -------------------------------------------------------

    def check(
        self,
        ft: FileTest,
        isas: Sequence[tuple[Sequence[str], _cranelift.Isa]],
        shared: Sequence[str] = (),
    ) -> None:
        """Reject invalid input before anything runs. The verifier runs as
        upstream's does: with a configuration's ISA (instructions such as
        `get_pinned_reg` need one), once per distinct set of shared flags; with
        the `shared` flags alone when no target runs."""
        check_signatures(ft.functions)
        by_flags = {tuple(flags): isa for flags, isa in reversed(isas)}
        try:
            with self.stage("verify"):
                if not by_flags:
                    ft.module.verify(list(shared))
                for isa in by_flags.values():
                    ft.module.verify(isa=isa)
        except _cranelift.VerifierError as err:
            raise BadInput(f"verifier error: {err}") from None
        except _cranelift.FlagError as err:
            raise BadInput(str(err)) from None

    def _trampoline(
        self, isa: _cranelift.Isa, signature: SignatureInfo, symbol: str
    ) -> CompiledFunction:
        key = (id(isa), signature["text"])
        if key not in self._trampolines:
            text = trampoline_clif(signature)
            with self.stage("compile trampoline"):
                compiled = _cranelift.parse(text).compile(isa)[0]
            self._trampolines[key] = CompiledFunction.from_bridge(compiled)
        t = self._trampolines[key]
        return CompiledFunction(symbol, t.code, t.relocs, t.traps, t.call_returns, t.stack_args)

    def prepare(self, ft: FileTest, line: TargetLine, shared: Sequence[str]) -> Config:
        isa = self.isa(line, shared)
        flags_on = frozenset(name for name, value in isa.flags() if value == "true")
        config = Config(line, isa, flags_on=flags_on, shared=tuple(shared))
        config.route = route(line.target, flags_on, self.executor)
        if config.route.executor is None:
            config.failure = Outcome(Kind.NOT_EXECUTABLE, detail=config.route.reason)
            return config
        try:
            with self.stage(f"compile {line.target.name}"):
                # what a callee-pops function pops, for the call contract
                pops = list(line.target.callee_pops_convs) if self.contract else []
                config.functions = [
                    CompiledFunction.from_bridge(d)
                    for d in ft.module.compile(isa, stack_args_for=pops)
                ]
                signatures = {
                    ft.functions[r.func]["signature"]["text"]: ft.functions[r.func]["signature"]
                    for r in ft.runs
                }
                tramps = []
                for i, (text, sig) in enumerate(signatures.items()):
                    symbol = f"%callfuzz_trampoline{i}"
                    config.trampolines[text] = symbol
                    tramps.append(self._trampoline(isa, sig, symbol))
        except _cranelift.CraneliftError as err:
            config.failure = _compile_failure(err)
            return config
        if debuginfo.wanted(ft.text):
            config.failure = self.debug_compile(ft, config)
            if config.failure is not None:
                return config
        try:
            with self.stage("link"):
                config.image = link(config.functions + tramps, line.target)
        except NeedsLibcall as err:
            config.failure = Outcome(Kind.NOT_EXECUTABLE, detail=str(err))
            return config
        except LinkError as err:
            config.failure = Outcome(Kind.NOT_EXECUTABLE, detail=f"link: {err}")
            return config
        image = config.image
        libcall_cc = settings(shared).get("libcall_call_conv", "")
        if image.libcalls and libcall_cc not in ("", "isa_default", DEFAULT_CC):
            # the stubs read and write registers by the target's default convention
            config.failure = Outcome(
                Kind.NOT_EXECUTABLE,
                detail=f"libcalls in convention {libcall_cc}: the emulated libcalls "
                f"follow {DEFAULT_CC}",
            )
            return config
        throws = any(unwind.thrower_cc(f"%{name}") for name in image.libcalls.values())
        if throws and any(f.try_sites is None for f in config.functions):
            config.failure = Outcome(
                Kind.NOT_EXECUTABLE,
                detail="a thrower needs the try_call sites this bridge does not report "
                "(built before them: rebuild it)",
            )
            return config
        if config.route.executor == UNICORN:
            for name, address in image.symbols.items():
                if found := line.target.unrunnable_code(image.code_of(name), address):
                    gap = f"`{found}`: unicorn would run it wrong"
                    config.route = route(line.target, flags_on, self.executor, gap)
                    if config.route.executor is None:
                        config.failure = Outcome(Kind.NOT_EXECUTABLE, detail=config.route.reason)
                    break
        wanted = layout_of(ft.text)
        if wanted != NEAR and config.route.executor == UNICORN and config.failure is None:
            # unicorn maps the chunks wherever they lie; qemu-user loads one
            # image, so a layout that placed functions apart is not refereed
            try:
                with self.stage("link"):
                    placed = link(config.functions + tramps, line.target, layout=wanted)
            except LinkError as err:
                config.failure = Outcome(Kind.HARNESS, detail=f"{wanted} layout: link: {err}")
                return config
            if placed.far:
                config.image = image = placed
                config.layout = wanted
                config.route = dataclasses.replace(config.route, referee=False)
        if self.contract:
            config.calls = call_map(
                ft, config.functions + tramps, image, line.target, shared, self.release
            )
        return config

    def debug_compile(self, ft: FileTest, config: Config) -> Outcome | None:
        """The debug-compile oracle on a compiled target line: what is wrong
        with compiling it again with debug info (fuzz.pipeline.debuginfo)."""
        target = config.line.target.name
        self.debug_compiles += 1
        try:
            with self.stage(f"compile debug {target}"):
                debug = [
                    debuginfo.DebugCompiled.from_bridge(d)
                    for d in ft.module.compile(config.isa, debug_info=True)
                ]
        except _cranelift.CraneliftError as err:
            return debuginfo.debug_failure(err)
        if self.fault.debug is not None:
            debug = [self.fault.debug(target, d) for d in debug]
        if debuginfo.ranges_missing(debug, settings(config.shared)):
            self.debug_without_ranges += 1
        params = {name: f["signature"]["params"] for name, f in ft.functions.items()}
        return debuginfo.judge_debug(config.functions, debug, debuginfo.debug_exempt(params))

    # --- execution ---------------------------------------------------------

    def interpret(self, ft: FileTest, run: RunCommand) -> Outcome:
        with self.stage("interpret"):
            try:
                result = ft.interpreter_module.interpret(
                    run.func, [v.to_bridge() for v in run.args], self.fuel
                )
            except _cranelift.CraneliftPanic as err:
                message, location = err.args
                if message.startswith("not implemented"):
                    # A documented gap of the interpreter, not a Cranelift bug.
                    return Outcome(Kind.UNSUPPORTED, detail=f"interpreter: {message}")
                return Outcome(Kind.INTERP_FAILURE, detail=f"panic: {message} at {location}")
            except _cranelift.CraneliftError as err:
                return Outcome(Kind.INTERP_FAILURE, detail=str(err))
        if result[0] == "return":
            returns = ft.functions[run.func]["signature"]["returns"]
            try:
                return Outcome(Kind.RETURN, _returned(result[1], [ty for ty, _e, _p in returns]))
            except ValueError as err:  # a type callfuzz has no values for
                return Outcome(Kind.INTERP_FAILURE, detail=f"unexpected result: {err}")
        if result[0] == "trap":
            return Outcome(Kind.TRAP, detail=result[1])
        return Outcome(Kind.FUEL, detail=f"after {self.fuel} steps")

    def execute(
        self,
        ft: FileTest,
        config: Config,
        run: RunCommand,
        variant: int = 0,
        executor: str | None = None,
    ) -> Outcome:
        """One run on one target line, from the executors' initial state
        `variant`, on the line's executor (or `executor`)."""
        if config.failure is not None:
            return config.failure
        executor = executor or config.route.executor or UNICORN
        assert config.image is not None
        target = config.line.target
        signature = ft.functions[run.func]["signature"]
        slots = bytearray(SLOT_BYTES * slot_count(signature))
        for i, value in enumerate(run.args):
            image = value.memory_image(target.big_endian)
            slots[i * SLOT_BYTES : i * SLOT_BYTES + len(image)] = image
        entry = config.image.symbols[config.trampolines[signature["text"]]]
        callee = config.image.symbols[run.func]
        executor, raw = self.run_raw(
            config, config.image, entry, callee, bytes(slots), executor, variant, config.calls
        )
        if raw.kind != "return":
            outcome = Outcome(
                Kind(_RAW_KINDS[raw.kind]),
                detail=raw.detail,
                pc=raw.pc,
                violations=raw.violations,
                executor=executor,
                trap_site=raw.trap_site,
            )
        else:
            values = tuple(
                Value.from_memory(ty, raw.slots[i * SLOT_BYTES :], target.big_endian)
                for i, (ty, _ext, _purpose) in enumerate(signature["returns"])
            )
            outcome = Outcome(Kind.RETURN, values, violations=raw.violations, executor=executor)
        if self.fault.outcome is not None:
            outcome = self.fault.outcome(ft, target.name, run.func, outcome)
        return outcome

    def run_raw(
        self,
        config: Config,
        image: Image,
        entry: int,
        callee: int,
        slots: bytes,
        executor: str,
        variant: int = 0,
        calls: CallMap | None = None,
    ) -> tuple[str, RawOutcome]:
        """One call of `entry(slots, callee)` in `image` on the executor named
        (unicorn hands what it cannot decode to qemu-user where the line may
        use it); the executor that ran it, and what the machine did."""
        # the executors check the call contract of the release under test
        target = self.contract_target(config.line.target)
        raw: RawOutcome | None = None
        if executor == UNICORN:
            with self.stage(f"emulate {target.name}"):
                emulator = self.emulator(target)
                thrown = emulator.throws
                raw = emulator.run(image, entry, callee, slots, self.budget, variant, calls)
                self.throws[target.name] += emulator.throws - thrown
            if raw.kind == "not-executable" and config.route.referee:
                # an instruction unicorn lacks (found only when it ran): qemu-user runs it
                executor, raw = QEMU, None
        if raw is None:
            with self.stage(f"qemu {target.name}"):
                server = self.qemu.server(target, config.flags_on)
                thrown = server.throws
                raw = server.run(image, entry, callee, slots, self.budget, variant, calls)
                self.throws[target.name] += server.throws - thrown
        self.executor_runs[executor] += 1
        return executor, raw

    def c_abi_results(self, ft: FileTest, config: Config) -> list[RunResult]:
        """The C-ABI oracle on one prepared target line: a result per
        signature of the file with a C counterpart (fuzz.pipeline.cabi)."""
        label = config.line.label
        if config.route.executor is None:
            return []  # the line's flags need an executor this machine lacks
        target = config.line.target
        with self.stage("c-abi signatures"):
            found, _none = cabi.signatures_of(ft.functions, target)
        if not found:
            return []
        keyed = [(key, sig) for key, _name, sig in found]

        def result(name: str, outcome: Outcome, verdict: Verdict) -> RunResult:
            command = RunCommand(name, f"{C_ABI_RUN} {name}", (), None, None)
            blame = [label] if is_finding(verdict, False) else []
            return RunResult(command, {label: outcome}, Judgement({label: verdict}, blame))

        try:
            with self.stage(f"c-abi build {target.name}"):
                isa = self.isa(config.line, [*config.shared, *cabi.C_FLAGS])
                built = cabi.build_image(keyed, target, isa, DEFAULT_CC)
        except (CBuildError, LinkError, BadInput, _cranelift.CraneliftError) as err:
            # the recorders are plain code: Cranelift rejecting them, or the C
            # side not building, is the oracle's failure, not a finding
            out = Outcome(Kind.HARNESS, detail=f"C-ABI oracle: {err}")
            return [result(found[0][1], out, Verdict.HARNESS_ERROR)]
        executor = config.route.executor

        def on(executor: str) -> cabi.RunRaw:
            def run(image: Image, entry: int, callee: int, area: bytes) -> RawOutcome:
                return self.run_raw(config, image, entry, callee, area, executor)[1]

            return run

        image = built.image
        results = []
        for key, name, sig in found:
            if key in built.missing:
                out = Outcome(Kind.NOT_EXECUTABLE, detail=built.missing[key])
                results.append(result(name, out, Verdict.NOT_EXECUTABLE))
                continue
            if key in built.unsupported:
                out = Outcome(Kind.UNSUPPORTED, detail=built.unsupported[key])
                results.append(result(name, out, Verdict.UNSUPPORTED))
                continue
            try:
                # (its runs count as the executors' stages)
                checked = cabi.check_signature(image, key, sig, on(executor))
                confirmed = ""
                if checked.mismatches and executor == UNICORN and config.route.referee:
                    # as for any divergence: qemu-user referees what unicorn found
                    again = _refereed(image, key, sig, on(QEMU))
                    if again is not None and not again.mismatches and not again.abstained:
                        out = Outcome(
                            Kind.EMULATOR,
                            detail=f"unicorn: c abi mismatch: {checked.mismatches[0]}; "
                            f"qemu-user {qemu_version()}: agrees",
                            executor=UNICORN,
                        )
                        results.append(result(name, out, Verdict.EMULATOR_DISAGREEMENT))
                        continue
                    if again is not None and again.mismatches:
                        confirmed = f"qemu-user {qemu_version()}"
            except cabi.GlueError as err:
                results.append(
                    result(name, Outcome(Kind.HARNESS, detail=str(err)), Verdict.HARNESS_ERROR)
                )
                continue
            if checked.abstained:
                out = Outcome(Kind.NOT_EXECUTABLE, detail=checked.abstained)
                results.append(result(name, out, Verdict.NOT_EXECUTABLE))
            elif checked.mismatches:
                out = Outcome(
                    Kind.C_ABI,
                    detail=str(checked.mismatches[0]),
                    c_abi=checked.mismatches,
                    executor=executor,
                    confirmed_by=confirmed,
                )
                results.append(result(name, out, Verdict.C_ABI_MISMATCH))
            else:
                results.append(result(name, Outcome(Kind.RETURN), Verdict.AGREE))
        return results

    def run_file(
        self,
        ft: FileTest,
        lines: Sequence[TargetLine],
        extra_shared: Sequence[str] = (),
    ) -> list[RunResult]:
        return self.run_configs(ft, self.prepare_file(ft, lines, extra_shared))

    def prepare_file(
        self, ft: FileTest, lines: Sequence[TargetLine], extra_shared: Sequence[str] = ()
    ) -> list[Config]:
        """Check the file, then compile and link it for every target line,
        each with the `set` flags in effect for it."""
        shared = [line_flags(ft, line, extra_shared) for line in lines]
        # Build every ISA first, so a bad flag is reported before anything runs.
        isas = [(flags, self.isa(line, flags)) for line, flags in zip(lines, shared, strict=True)]
        self.check(ft, isas, [*ft.shared_flags, *extra_shared])
        return [self.prepare(ft, line, flags) for line, flags in zip(lines, shared, strict=True)]

    def run_configs(self, ft: FileTest, configs: Sequence[Config]) -> list[RunResult]:
        """Every run command on the interpreter and every prepared target line, judged."""
        results = []
        for run in ft.runs:
            # upstream asks the interpreter only in `test interpret` files
            outcomes = {INTERPRETER: self.interpret(ft, run)} if ft.interpreted else {}
            for config in configs:
                outcomes[config.line.label] = self.execute(ft, config, run)
            judgement = judge(outcomes, run.compare, run.expected, self.nan_policy)
            if judgement.divergent and self.ub_check:
                undefined = self.undefined_behaviour(ft, configs, run, outcomes, judgement)
                if undefined:
                    outcomes.update(undefined)
                    judgement = judge(outcomes, run.compare, run.expected, self.nan_policy)
            if judgement.divergent or self.executor is ExecutorChoice.BOTH:
                refereed = self.referee(ft, configs, run, outcomes, judgement)
                if refereed:
                    outcomes.update(refereed)
                    judgement = judge(outcomes, run.compare, run.expected, self.nan_policy)
            # shown and recorded as judged: a fault at a trap site as that trap
            results.append(RunResult(run, at_trap_sites(outcomes), judgement))
        if self.c_abi:
            for config in configs:
                results += self.c_abi_results(ft, config)
        return results

    def referee(
        self,
        ft: FileTest,
        configs: Sequence[Config],
        run: RunCommand,
        outcomes: Mapping[str, Outcome],
        judgement: Judgement,
    ) -> dict[str, Outcome]:
        """qemu-user runs again what unicorn ran and found divergent (with
        `--executor both`: everything unicorn ran). Where qemu-user agrees
        with the reference, unicorn's result is an emulator disagreement;
        where it reproduces the divergence, the finding says so."""
        found = {}
        for config in configs:
            label = config.line.label
            if config.failure is not None or not config.route.referee:
                continue
            first = outcomes[label]
            verdict = judgement.verdicts[label]
            if first.violations or verdict is Verdict.UNDEFINED_BEHAVIOUR:
                # the call contract names its own cause (qemu-user checks it
                # at the final stop only: it cannot referee a call's)
                continue
            if first.kind is Kind.TIMEOUT:
                continue  # a budget's verdict: qemu-user counts no instructions
            divergent = is_finding(verdict, label in judgement.blame)
            if not divergent and self.executor is not ExecutorChoice.BOTH:
                continue
            other = self.execute(ft, config, run, executor=QEMU)
            if other.kind is Kind.HARNESS:
                continue  # the referee failed: it neither confirms nor refutes
            again = judge({**outcomes, label: other}, run.compare, run.expected, self.nan_policy)
            refuted = not is_finding(again.verdicts[label], label in again.blame)
            version = f"qemu-user {qemu_version()}"
            if divergent and refuted:
                found[label] = Outcome(
                    Kind.EMULATOR,
                    detail=f"unicorn: {verdict.value}: {first}; {version}: {other}",
                    pc=first.pc,
                    executor=UNICORN,
                )
            elif divergent:
                also = "" if first.identical(other) else f" (giving {other})"
                found[label] = dataclasses.replace(first, confirmed_by=f"{version}{also}")
            elif not refuted:
                found[label] = Outcome(
                    Kind.EMULATOR,
                    detail=f"unicorn: agrees: {first}; {version}: {again.verdicts[label].value}: "
                    f"{other}",
                    pc=other.pc,
                    executor=QEMU,
                )
        return found

    def undefined_behaviour(
        self,
        ft: FileTest,
        configs: Sequence[Config],
        run: RunCommand,
        outcomes: Mapping[str, Outcome],
        judgement: Judgement,
    ) -> dict[str, Outcome]:
        """Targets of a divergent run whose outcome changes with the initial
        machine state: they read state the program never wrote, so their
        result says nothing about Cranelift."""
        found = {}
        for config in configs:
            label = config.line.label
            if config.failure is not None or not is_finding(
                judgement.verdicts[label], label in judgement.blame
            ):
                continue
            first = outcomes[label]
            if first.violations:
                continue  # the call contract already names the cause
            for variant in range(1, VARIANTS):
                other = self.execute(ft, config, run, variant)
                if not first.identical(other):
                    found[label] = Outcome(
                        Kind.UNDEFINED,
                        detail=f"reads state it never wrote: {first} from one initial "
                        f"state, {other} from another",
                        pc=first.pc,
                    )
                    break
        return found


def call_map(
    ft: FileTest,
    functions: Sequence[CompiledFunction],
    image: Image,
    target: Target,
    shared: Sequence[str],
    release: Version | None = None,
) -> CallMap:
    """The entries (with their signatures) and call return addresses of an
    image (as Cranelift `release` records them); a trampoline has the
    target's default convention."""
    entries = {}
    for f in functions:
        if f.name in ft.functions:
            sig = ft.functions[f.name]["signature"]
            function = Function(
                f.name,
                sig["call_conv"],
                tuple(sig["params"]),
                tuple(sig["returns"]),
                f.stack_args,
            )
        else:
            function = Function(f.name, DEFAULT_CC, stack_args=f.stack_args)
        entries[image.symbols[f.name]] = function
    returns = {
        image.symbols[f.name] + at: f.name
        for f in functions
        for at in return_offsets(f, target, release)
    }
    pinned = flag_on(shared, "enable_pinned_reg")
    unchecked = frozenset({target.pinned_reg} if pinned and target.pinned_reg else ())
    return CallMap(entries, returns, unchecked)


def return_offsets(f: CompiledFunction, target: Target, release: Version | None) -> list[int]:
    """The return addresses (offsets in `f`) of the calls `f` makes. Before
    the `call-site-after-call` rule (fuzz.features), riscv64 recorded the
    site of a direct call or tail call at the start of its auipc+jalr pair
    (the offset of its `RiscvCallPlt` relocation): a call (the jalr links
    ra) returns 8 bytes on, a tail call (it links x0) does not return."""
    if has("call-site-after-call", release, target.name):
        return f.call_returns
    pairs = {r.offset for r in f.relocs if r.kind == "RiscvCallPlt"}
    out = []
    for at in f.call_returns:
        if at not in pairs:
            out.append(at)  # also where a call just before the pair returns
            continue
        pairs.discard(at)  # one site per pair
        if _jalr_links_ra(f.code[at + 4 : at + 8]):
            out.append(at + 8)
    return out


def _jalr_links_ra(word: bytes) -> bool:
    """Whether a 4-byte riscv64 instruction is `jalr ra, ...` (rd = x1)."""
    insn = int.from_bytes(word, "little")
    return len(word) == 4 and insn & 0x7F == 0x67 and (insn >> 7) & 0x1F == 1


# the default convention of every target triple callfuzz runs (Linux, ELF)
DEFAULT_CC = "system_v"

_RAW_KINDS = {
    "trap": "trap",
    "crash": "crash",
    "timeout": "timeout",
    "not-executable": "not executable here",
    "harness": "harness error",
}


def _refereed(image: Image, key: str, sig: CSignature, run: cabi.RunRaw) -> cabi.Checked | None:
    """qemu-user's C-ABI check of a signature unicorn found misplaced; None
    when qemu-user failed: it neither confirms nor refutes."""
    try:
        return cabi.check_signature(image, key, sig, run)
    except cabi.GlueError:
        return None


def _returned(pairs: Sequence[Pair], types: Sequence[str]) -> tuple[Value, ...]:
    """The interpreter's values labelled with the signature's types; a value of
    another shape than the signature's (a defect of the interpreter: a
    scalar-to-vector `bitcast` gives one lane) keeps its own type, so it is a
    wrong result to judge, not an exception that loses the file's results."""
    values = []
    for i, pair in enumerate(pairs):
        try:
            values.append(Value.from_bridge(pair, types[i] if len(pairs) == len(types) else None))
        except ValueError:
            values.append(Value.from_bridge(pair))
    return tuple(values)


def line_flags(ft: FileTest, line: TargetLine, extra: Sequence[str] = ()) -> list[str]:
    """The shared flags a target line compiles with: the `set` lines in effect
    for it (the file's when the line does not say), then `extra` (`--set`)."""
    return [*(ft.shared_flags if line.flags is None else line.flags), *extra]


def default_lines(ft: FileTest, wanted: Sequence[TargetLine] | None) -> list[TargetLine]:
    """The file's target lines restricted to the wanted targets; a wanted target
    the file does not name runs with no ISA flags. Nothing wanted: the file's
    target lines, which may all be skipped ones (pulley); a file with none runs
    on all four targets, or on none for a `test interpret`-only file."""
    if not wanted:
        if ft.named_targets or not ft.compiled:
            return list(ft.targets)
        return [TargetLine(t) for t in TARGETS.values()]
    lines: list[TargetLine] = []
    for want in wanted:
        own = [tl for tl in ft.targets if tl.target is want.target]
        for line in own if own and not want.isa_flags else [want]:
            if line.label not in {seen.label for seen in lines}:
                lines.append(line)
    return lines


def unselected(ft: FileTest, lines: Sequence[TargetLine]) -> list[Skipped]:
    """The file's runnable target lines that `lines` leaves out (`-t`)."""
    chosen = {line.label for line in lines}
    return [Skipped(tl.label, "not selected by -t") for tl in ft.targets if tl.label not in chosen]


NOT_FOR_RELEASE = "not for this release: "


def release_needs(features: Sequence[Feature], target: str = "") -> str:
    """What a case uses that the release under test lacks, and since when."""
    uses = ", ".join(f"{f.name.removeprefix(f'{target}:')} ({f.releases()})" for f in features)
    return f"it uses {uses} (fuzz/features.py)"


def release_lines(
    ft: FileTest, lines: Sequence[TargetLine], release: Version | None
) -> tuple[list[TargetLine], list[Skipped]]:
    """`lines` split by the feature table (fuzz.features, the gate the
    generator uses too): those Cranelift `release` can compile the file for,
    and those it cannot, skipped as not for this release (a case written
    for a newer Cranelift: its panic there is not a finding)."""
    kept: list[TargetLine] = []
    skipped: list[Skipped] = []
    for line in lines:
        missing = lacking(ft.text, release, line.target.name, line.isa_flags)
        if missing:
            skipped.append(
                Skipped(line.label, NOT_FOR_RELEASE + release_needs(missing, line.target.name))
            )
        else:
            kept.append(line)
    return kept, skipped
