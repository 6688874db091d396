//! `fuzz._cranelift`: the thin bridge from callfuzz to the published Cranelift crates.
//!
//! It only does what needs Cranelift itself: parse CLIF, verify, compile for a
//! target, interpret, and report the version. Everything else lives in Python.
//! Every entry point runs under `catch_unwind`, so a Cranelift panic becomes a
//! `CraneliftPanic` exception carrying its message and source location.

mod panics;
mod values;

use std::sync::Arc;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::LibCall;
use cranelift_codegen::ir::{self, ExternalName, Function, InstructionData, Opcode, Value};
use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
#[cfg(not(cranelift_reloc_label))]
use cranelift_codegen::FinalizedRelocTarget as RelocTarget;
#[cfg(cranelift_reloc_label)]
use cranelift_codegen::RelocTarget;
use cranelift_codegen::{CodegenError, Context};
use cranelift_interpreter::environment::FunctionStore;
use cranelift_interpreter::interpreter::{
    Interpreter, InterpreterError, InterpreterState, LibCallValues,
};
use cranelift_interpreter::step::ControlFlow;
#[cfg(not(cranelift_libcall_trapcode))]
use cranelift_interpreter::step::CraneliftTrap;
use cranelift_reader::{parse_option, parse_run_command, Comparison, Location, RunCommand};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

create_exception!(
    _cranelift,
    CraneliftError,
    PyException,
    "Base of every bridge error."
);
create_exception!(
    _cranelift,
    ParseError,
    CraneliftError,
    "CLIF text that does not parse."
);
create_exception!(
    _cranelift,
    ParseWarning,
    ParseError,
    "A file upstream's reader skips with a warning (a target Cranelift does not support)."
);
create_exception!(
    _cranelift,
    VerifierError,
    CraneliftError,
    "CLIF that the verifier rejects."
);
create_exception!(
    _cranelift,
    FlagError,
    CraneliftError,
    "An unknown target, flag or flag value."
);
create_exception!(
    _cranelift,
    CompileError,
    CraneliftError,
    "Cranelift refused to compile."
);
create_exception!(
    _cranelift,
    Unsupported,
    CompileError,
    "A feature the backend does not implement."
);
create_exception!(
    _cranelift,
    InterpreterFailure,
    CraneliftError,
    "The interpreter itself failed."
);
create_exception!(
    _cranelift,
    CraneliftPanic,
    CraneliftError,
    "Cranelift panicked: (message, location)."
);

/// The Cranelift release this bridge was built against (read from Cargo.lock by build.rs).
#[pyfunction]
fn version() -> &'static str {
    env!("CALLFUZZ_CRANELIFT_VERSION")
}

/// A target ISA built once from a triple, shared flags and ISA flags.
#[pyclass(frozen)]
struct Isa {
    isa: OwnedTargetIsa,
}

#[pymethods]
impl Isa {
    /// `shared` and `isa_flags` are option words as in a filetest (`name` or `name=value`).
    #[new]
    fn new(triple: &str, shared: Vec<String>, isa_flags: Vec<String>) -> PyResult<Self> {
        panics::guard(|| build_isa(triple, &shared, &isa_flags))
    }

    /// Every ISA flag with its value, as Cranelift prints them.
    fn flags(&self) -> Vec<(String, String)> {
        self.isa
            .isa_flags()
            .iter()
            .map(|v| (v.name.to_string(), v.value_string()))
            .collect()
    }
}

fn option_message(e: cranelift_reader::ParseOptionError) -> String {
    cranelift_reader::ParseError::from(e).message
}

fn build_isa(triple: &str, shared: &[String], isa_flags: &[String]) -> PyResult<Isa> {
    let loc = Location { line_number: 0 };
    // `lookup_by_name` takes the triple as text on every supported release
    // (`lookup` takes a target-lexicon `Triple`, whose version follows Cranelift's).
    let mut isa_builder = isa::lookup_by_name(triple)
        .map_err(|e| FlagError::new_err(format!("unknown target '{triple}': {e}")))?;
    let mut flag_builder = settings::builder();
    flag_builder
        .set("unwind_info", "false")
        .map_err(|e| FlagError::new_err(format!("{e}")))?;
    for opt in shared {
        parse_option(opt, &mut flag_builder, loc).map_err(|e| {
            FlagError::new_err(format!("shared flag '{opt}': {}", option_message(e)))
        })?;
    }
    for opt in isa_flags {
        parse_option(opt, &mut isa_builder, loc).map_err(|e| {
            FlagError::new_err(format!("{triple} flag '{opt}': {}", option_message(e)))
        })?;
    }
    let isa = isa_builder
        .finish(settings::Flags::new(flag_builder))
        .map_err(|e| FlagError::new_err(format!("invalid flags for {triple}: {e}")))?;
    Ok(Isa { isa })
}

/// A parsed CLIF module: its functions and the run commands written after them.
#[pyclass(frozen)]
struct Module {
    funcs: Arc<Vec<Function>>,
    /// Per function: the comment text of each `; run:` / `; print:` line.
    run_lines: Vec<Vec<String>>,
}

#[pyfunction]
fn parse(text: &str) -> PyResult<Module> {
    panics::guard(|| {
        let file = cranelift_reader::parse_test(text, cranelift_reader::ParseOptions::default())
            .map_err(|e| {
                let args = (
                    format!("line {}: {}", e.location.line_number, e.message),
                    e.location.line_number,
                );
                // upstream skips such a file rather than failing it
                if e.is_warning {
                    ParseWarning::new_err(args)
                } else {
                    ParseError::new_err(args)
                }
            })?;
        let mut funcs = Vec::new();
        let mut run_lines = Vec::new();
        for (func, details) in file.functions {
            run_lines.push(
                details
                    .comments
                    .iter()
                    .map(|c| c.text.trim_start_matches([';', ' ']).to_string())
                    .filter(|t| t.starts_with("run:") || t.starts_with("print:"))
                    .collect(),
            );
            funcs.push(func);
        }
        let mut seen = std::collections::HashSet::new();
        for f in &funcs {
            let name = f.name.to_string();
            if !seen.insert(name.clone()) {
                return Err(ParseError::new_err((
                    format!("function {name} is defined twice"),
                    0u32,
                )));
            }
        }
        Ok(Module {
            funcs: Arc::new(funcs),
            run_lines,
        })
    })
}

impl Module {
    fn find(&self, name: &str) -> PyResult<&Function> {
        self.funcs
            .iter()
            .find(|f| f.name.to_string() == name)
            .ok_or_else(|| CraneliftError::new_err(format!("no function named {name}")))
    }
}

fn abi_param_list<'py>(py: Python<'py>, params: &[ir::AbiParam]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for p in params {
        let ext = match p.extension {
            ir::ArgumentExtension::Uext => "uext",
            ir::ArgumentExtension::Sext => "sext",
            ir::ArgumentExtension::None => "",
        };
        let purpose = match p.purpose {
            ir::ArgumentPurpose::Normal => "normal".to_string(),
            other => other.to_string(),
        };
        list.append((p.value_type.to_string(), ext, purpose))?;
    }
    Ok(list)
}

fn signature_dict<'py>(py: Python<'py>, sig: &ir::Signature) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("text", sig.to_string())?;
    d.set_item("params", abi_param_list(py, &sig.params)?)?;
    d.set_item("returns", abi_param_list(py, &sig.returns)?)?;
    d.set_item("call_conv", sig.call_conv.to_string())?;
    Ok(d)
}

fn ext_name(func: &Function, name: &ExternalName) -> String {
    name.display(Some(&func.params)).to_string()
}

/// The callee an indirect call reaches when its address is a `func_addr` of
/// the same function: its name and whether it is colocated.
fn indirect_target(func: &Function, callee: Option<Value>) -> Option<(String, bool)> {
    let dfg = &func.dfg;
    let v = dfg.resolve_aliases(callee?);
    let def = dfg.value_def(v).inst()?;
    match dfg.insts[def] {
        InstructionData::FuncAddr { func_ref, .. } => {
            let ext = &dfg.ext_funcs[func_ref];
            Some((ext_name(func, &ext.name), ext.colocated))
        }
        _ => None,
    }
}

/// Every call site of `func`, with the signature it uses and, when known
/// statically, the callee it reaches (direct calls, or `func_addr` feeding an
/// indirect call in the same function).
fn call_sites<'py>(py: Python<'py>, func: &Function) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    let dfg = &func.dfg;
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            let data = &dfg.insts[inst];
            let (opcode, callee, sig) = match *data {
                InstructionData::Call {
                    opcode, func_ref, ..
                } => {
                    let ext = &dfg.ext_funcs[func_ref];
                    (
                        opcode,
                        Some((ext_name(func, &ext.name), ext.colocated)),
                        ext.signature,
                    )
                }
                InstructionData::CallIndirect {
                    opcode,
                    sig_ref,
                    args,
                    ..
                } => (
                    opcode,
                    indirect_target(func, args.first(&dfg.value_lists)),
                    sig_ref,
                ),
                #[cfg(not(cranelift_no_try_call))]
                InstructionData::TryCall {
                    opcode,
                    func_ref,
                    exception,
                    ..
                } => {
                    let ext = &dfg.ext_funcs[func_ref];
                    (
                        opcode,
                        Some((ext_name(func, &ext.name), ext.colocated)),
                        dfg.exception_tables[exception].signature(),
                    )
                }
                #[cfg(not(cranelift_no_try_call))]
                InstructionData::TryCallIndirect {
                    opcode,
                    args,
                    exception,
                } => (
                    opcode,
                    indirect_target(func, args.first(&dfg.value_lists)),
                    dfg.exception_tables[exception].signature(),
                ),
                InstructionData::FuncAddr {
                    opcode, func_ref, ..
                } => {
                    let ext = &dfg.ext_funcs[func_ref];
                    (
                        opcode,
                        Some((ext_name(func, &ext.name), ext.colocated)),
                        ext.signature,
                    )
                }
                _ => continue,
            };
            let site = PyDict::new(py);
            site.set_item("opcode", opcode.to_string())?;
            site.set_item("inst", dfg.display_inst(inst).to_string())?;
            site.set_item("callee", callee.as_ref().map(|c| c.0.clone()))?;
            site.set_item("colocated", callee.map(|c| c.1).unwrap_or(false))?;
            site.set_item("signature", signature_dict(py, &dfg.signatures[sig])?)?;
            site.set_item(
                "tail",
                matches!(opcode, Opcode::ReturnCall | Opcode::ReturnCallIndirect),
            )?;
            list.append(site)?;
        }
    }
    Ok(list)
}

#[pymethods]
impl Module {
    /// Function names in file order, as CLIF prints them (`%name` or `u0:1`).
    fn names(&self) -> Vec<String> {
        self.funcs.iter().map(|f| f.name.to_string()).collect()
    }

    /// One dict per function: name, signature, call sites, run commands.
    fn functions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        panics::guard(|| {
            let out = PyList::empty(py);
            for (func, lines) in self.funcs.iter().zip(&self.run_lines) {
                let d = PyDict::new(py);
                d.set_item("name", func.name.to_string())?;
                d.set_item("signature", signature_dict(py, &func.signature)?)?;
                d.set_item("call_sites", call_sites(py, func)?)?;
                let runs = PyList::empty(py);
                for line in lines {
                    runs.append(run_command_dict(py, func, line)?)?;
                }
                d.set_item("runs", runs)?;
                d.set_item("text", func.display().to_string())?;
                out.append(d)?;
            }
            Ok(out)
        })
    }

    /// The type of every value `name` defines (block parameters and
    /// instruction results), keyed by its CLIF name (`v3`): what the reducer
    /// needs to put a constant of the right type in a value's place.
    fn value_types<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        panics::guard(|| {
            let func = self.find(name)?;
            let dfg = &func.dfg;
            let out = PyDict::new(py);
            for block in func.layout.blocks() {
                for &param in dfg.block_params(block) {
                    out.set_item(param.to_string(), dfg.value_type(param).to_string())?;
                }
                for inst in func.layout.block_insts(block) {
                    for &result in dfg.inst_results(inst) {
                        out.set_item(result.to_string(), dfg.value_type(result).to_string())?;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Run Cranelift's verifier on every function: with `isa` when given (as
    /// upstream does for a file's target, so ISA-dependent instructions such as
    /// `get_pinned_reg` or `get_frame_pointer` are checked against its flags),
    /// else with the given shared flags alone.
    #[pyo3(signature = (shared=Vec::new(), isa=None))]
    fn verify(&self, shared: Vec<String>, isa: Option<&Isa>) -> PyResult<()> {
        panics::guard(|| {
            let mut builder = settings::builder();
            for opt in &shared {
                parse_option(opt, &mut builder, Location { line_number: 0 }).map_err(|e| {
                    FlagError::new_err(format!("shared flag '{opt}': {}", option_message(e)))
                })?;
            }
            let flags = settings::Flags::new(builder);
            for func in self.funcs.iter() {
                let result = match isa {
                    Some(isa) => cranelift_codegen::verify_function(func, &*isa.isa),
                    None => cranelift_codegen::verify_function(func, &flags),
                };
                result.map_err(|errors| {
                    let first = errors.0.first().map(|e| e.to_string()).unwrap_or_default();
                    VerifierError::new_err(format!("{}: {first}", func.name))
                })?;
            }
            Ok(())
        })
    }

    /// Compile one function (or every function) for `isa`.
    /// Returns one dict per function: name, code, relocs, traps, call return
    /// offsets, and for functions in a convention named in `stack_args_for`
    /// (as CLIF prints it: `tail`) the size of their stack-argument area.
    /// `debug_info`: compile as `compile_debug` does instead (no stack
    /// arguments measured).
    #[pyo3(signature = (isa, name=None, stack_args_for=Vec::new(), debug_info=false))]
    fn compile<'py>(
        &self,
        py: Python<'py>,
        isa: &Isa,
        name: Option<&str>,
        stack_args_for: Vec<String>,
        debug_info: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        panics::guard(|| {
            let out = PyList::empty(py);
            let funcs: Vec<&Function> = match name {
                Some(n) => vec![self.find(n)?],
                None => self.funcs.iter().collect(),
            };
            for func in funcs {
                if debug_info {
                    out.append(compile_debug(py, &*isa.isa, func)?)?;
                    continue;
                }
                let conv = func.signature.call_conv.to_string();
                let measure = stack_args_for.contains(&conv);
                out.append(compile_one(py, &*isa.isa, func, measure)?)?;
            }
            Ok(out)
        })
    }

    /// Interpret `name` with `args` (a list of (type, value)) for at most `fuel` steps.
    /// Returns ("return", [values]), ("trap", code) or ("fuel", None).
    #[pyo3(signature = (name, args, fuel=1_000_000))]
    fn interpret<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        args: Vec<(String, Bound<'py, PyAny>)>,
        fuel: u64,
    ) -> PyResult<(&'static str, Py<PyAny>)> {
        panics::guard(|| {
            let args = args
                .iter()
                .map(|(ty, v)| values::from_py(ty, v))
                .collect::<PyResult<Vec<_>>>()?;
            // The interpreter recurses natively for every call and tail call, so it
            // runs on a large, lazily committed stack segment of this thread.
            let funcs = &self.funcs;
            let outcome = stacker::grow(INTERPRETER_STACK, || {
                panics::catch(|| run_interpreter(funcs, name, &args, fuel))
            })
            .map_err(CraneliftPanic::new_err)?;
            match outcome {
                Interpreted::Return(vals) => {
                    Ok(("return", values::list_to_py(py, &vals)?.into_any().unbind()))
                }
                Interpreted::Trap(code) => {
                    Ok(("trap", code.into_pyobject(py)?.into_any().unbind()))
                }
                Interpreted::Fuel => Ok(("fuel", py.None())),
                Interpreted::Failure(msg) => Err(InterpreterFailure::new_err(msg)),
            }
        })
    }
}

/// Reserved, lazily committed: deep `return_call` loops need it.
const INTERPRETER_STACK: usize = 2 << 30;

pub(crate) enum Interpreted {
    Return(Vec<cranelift_codegen::data_value::DataValue>),
    Trap(String),
    Fuel,
    Failure(String),
}

/// Interprets `name` over `funcs`, on the caller's (grown) stack.
pub(crate) fn run_interpreter(
    funcs: &[Function],
    name: &str,
    args: &[cranelift_codegen::data_value::DataValue],
    fuel: u64,
) -> Interpreted {
    let mut store = FunctionStore::default();
    for f in funcs {
        store.add(f.name.to_string(), f);
    }
    let state = InterpreterState::default()
        .with_function_store(store)
        .with_libcall_handler(libcall);
    let mut interp = Interpreter::new(state).with_fuel(Some(fuel));
    match interp.call_by_name(name, args) {
        Ok(ControlFlow::Return(vals)) => Interpreted::Return(vals.to_vec()),
        Ok(ControlFlow::Trap(trap)) => Interpreted::Trap(trap_name(&trap)),
        Ok(_) => Interpreted::Failure("interpreter stopped without returning".into()),
        Err(InterpreterError::FuelExhausted) => Interpreted::Fuel,
        Err(e) => Interpreted::Failure(format!("{e}: {e:?}")),
    }
}

/// What a libcall handler fails with (a `TrapCode` before 0.113).
#[cfg(cranelift_libcall_trapcode)]
type LibCallTrap = ir::TrapCode;
#[cfg(not(cranelift_libcall_trapcode))]
type LibCallTrap = CraneliftTrap;

/// The libcalls a CLIF function can call by name (`%CeilF32`), computed as
/// upstream's `test interpret` does; any other traps as the default handler.
fn libcall(call: LibCall, args: LibCallValues) -> Result<LibCallValues, LibCallTrap> {
    use DataValue::{F32, F64};
    let value = match (call, &args[..]) {
        (LibCall::CeilF32, [F32(a)]) => F32(a.ceil()),
        (LibCall::CeilF64, [F64(a)]) => F64(a.ceil()),
        (LibCall::FloorF32, [F32(a)]) => F32(a.floor()),
        (LibCall::FloorF64, [F64(a)]) => F64(a.floor()),
        (LibCall::TruncF32, [F32(a)]) => F32(a.trunc()),
        (LibCall::TruncF64, [F64(a)]) => F64(a.trunc()),
        (LibCall::NearestF32, [F32(a)]) => F32(a.round_ties_even()),
        (LibCall::NearestF64, [F64(a)]) => F64(a.round_ties_even()),
        (LibCall::FmaF32, [F32(a), F32(b), F32(c)]) => F32(Ieee32::with_float(
            f32::from_bits(a.bits()).mul_add(f32::from_bits(b.bits()), f32::from_bits(c.bits())),
        )),
        (LibCall::FmaF64, [F64(a), F64(b), F64(c)]) => F64(Ieee64::with_float(
            f64::from_bits(a.bits()).mul_add(f64::from_bits(b.bits()), f64::from_bits(c.bits())),
        )),
        _ => return Err(LibCallTrap::UnreachableCodeReached),
    };
    let mut out = LibCallValues::new();
    out.push(value);
    Ok(out)
}

fn trap_name(trap: &cranelift_interpreter::step::CraneliftTrap) -> String {
    use cranelift_interpreter::step::CraneliftTrap;
    match trap {
        CraneliftTrap::User(code) => code.to_string(),
        other => format!("{other}"),
    }
}

fn run_command_dict<'py>(
    py: Python<'py>,
    func: &Function,
    line: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("text", line)?;
    let cmd = parse_run_command(line, &func.signature).map_err(|e| {
        ParseError::new_err((format!("{}: `{line}`: {}", func.name, e.message), 0u32))
    })?;
    match cmd {
        Some(RunCommand::Run(inv, cmp, expected)) => {
            d.set_item("func", format!("%{}", inv.func))?;
            d.set_item("args", values::list_to_py(py, &inv.args)?)?;
            d.set_item(
                "compare",
                match cmp {
                    Comparison::Equals => "==",
                    Comparison::NotEquals => "!=",
                },
            )?;
            d.set_item("expected", values::list_to_py(py, &expected)?)?;
        }
        Some(RunCommand::Print(inv)) => {
            d.set_item("func", format!("%{}", inv.func))?;
            d.set_item("args", values::list_to_py(py, &inv.args)?)?;
            d.set_item("compare", py.None())?;
            d.set_item("expected", py.None())?;
        }
        None => {
            return Err(ParseError::new_err((
                format!("not a run command: `{line}`"),
                0u32,
            )))
        }
    }
    Ok(d)
}

fn compile_one<'py>(
    py: Python<'py>,
    isa: &dyn isa::TargetIsa,
    func: &Function,
    measure_stack_args: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let mut ctx = Context::for_function(func.clone());
    compile_in(py, isa, func, &mut ctx, measure_stack_args)
}

/// Compiles `func` as `compile_one` does, but with every value given a debug
/// value label (a label per value, numbered as the value) and VCode
/// disassembly on: debug info must not change the code. The dict adds
/// `vcode` (the disassembly), `labels` (values labelled) and
/// `value_label_ranges` (the location ranges Cranelift gave back for them).
fn compile_debug<'py>(
    py: Python<'py>,
    isa: &dyn isa::TargetIsa,
    func: &Function,
) -> PyResult<Bound<'py, PyDict>> {
    let mut labelled = func.clone();
    let labels = label_every_value(&mut labelled);
    let mut ctx = Context::for_function(labelled);
    ctx.set_disasm(true);
    let d = compile_in(py, isa, func, &mut ctx, false)?;
    let (vcode, ranges) = match ctx.compiled_code() {
        Some(c) => (
            c.vcode.clone().unwrap_or_default(),
            c.value_labels_ranges.values().map(Vec::len).sum::<usize>(),
        ),
        None => (String::new(), 0),
    };
    d.set_item("vcode", vcode)?;
    d.set_item("labels", labels)?;
    d.set_item("value_label_ranges", ranges)?;
    Ok(d)
}

/// Gives every block parameter and instruction result of `func` a value
/// label of its own (as a frontend with debug info does); how many.
fn label_every_value(func: &mut Function) -> usize {
    use cranelift_codegen::entity::EntityRef;
    let mut values = Vec::new();
    for block in func.layout.blocks() {
        values.extend_from_slice(func.dfg.block_params(block));
        for inst in func.layout.block_insts(block) {
            values.extend_from_slice(func.dfg.inst_results(inst));
        }
    }
    func.dfg.collect_debug_info();
    if let Some(labels) = func.dfg.values_labels.as_mut() {
        for &v in &values {
            let start = ir::ValueLabelStart {
                from: ir::RelSourceLoc::default(),
                label: ir::ValueLabel::new(v.index()),
            };
            labels.insert(v, ir::ValueLabelAssignments::Starts(vec![start]));
        }
    }
    values.len()
}

/// Compiles in `ctx` (which holds `func` or a copy of it) and describes the
/// result: `func` names it and its relocation targets.
fn compile_in<'py>(
    py: Python<'py>,
    isa: &dyn isa::TargetIsa,
    func: &Function,
    ctx: &mut Context,
    measure_stack_args: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let compiled = ctx
        .compile(isa, &mut ControlPlane::default())
        .map_err(|e| match e.inner {
            CodegenError::Unsupported(msg) => Unsupported::new_err(format!("{}: {msg}", func.name)),
            CodegenError::Verifier(errs) => {
                let first = errs.0.first().map(|e| e.to_string()).unwrap_or_default();
                VerifierError::new_err(format!("{}: {first}", func.name))
            }
            other => CompileError::new_err(format!("{}: {other}", func.name)),
        })?;
    let buffer = &compiled.buffer;
    let d = PyDict::new(py);
    d.set_item("name", func.name.to_string())?;
    d.set_item("code", pyo3::types::PyBytes::new(py, buffer.data()))?;
    let relocs = PyList::empty(py);
    for r in buffer.relocs() {
        let target = match &r.target {
            RelocTarget::ExternalName(name) => ext_name(func, name),
            #[cfg(not(cranelift_reloc_label))]
            RelocTarget::Func(off) => format!("+{off}"),
            // a finalized buffer has resolved its labels to offsets
            #[cfg(cranelift_reloc_label)]
            RelocTarget::Label(at) if at.is_offset() => format!("+{}", at.as_offset()),
            #[cfg(cranelift_reloc_label)]
            RelocTarget::Label(at) => {
                return Err(CompileError::new_err(format!(
                    "{}: relocation against unresolved label {at}",
                    func.name
                )))
            }
        };
        relocs.append((r.offset, format!("{:?}", r.kind), target, r.addend))?;
    }
    d.set_item("relocs", relocs)?;
    let traps = PyList::empty(py);
    for t in buffer.traps() {
        traps.append((t.offset, t.code.to_string()))?;
    }
    d.set_item("traps", traps)?;
    // the return address of every call the function makes: where the
    // harness checks the call contract when control comes back
    #[cfg(cranelift_call_sites_slice)]
    let returns: Vec<u32> = buffer.call_sites().iter().map(|s| s.ret_addr).collect();
    #[cfg(not(cranelift_call_sites_slice))]
    let returns: Vec<u32> = buffer.call_sites().map(|s| s.ret_addr).collect();
    d.set_item("call_returns", returns)?;
    d.set_item("try_sites", try_sites(buffer))?;
    #[cfg(not(cranelift_no_frame_layout))]
    let stack_args = measure_stack_args
        .then(|| stack_arg_size(isa, &func.signature))
        .flatten();
    // before 0.126 nothing publishes a frame layout: never measured
    #[cfg(cranelift_no_frame_layout)]
    let stack_args: Option<u32> = {
        let _ = measure_stack_args;
        None
    };
    d.set_item("stack_args", stack_args)?;
    Ok(d)
}

/// One `try_call` site: the offset of its return address, Cranelift's
/// `frame_offset` (FP minus SP at the call; None before 0.124 or where the
/// backend gives none) and its handlers in table order, each (tag number or
/// None for `default`, handler offset); `context` entries are left out.
type TrySite = (u32, Option<u32>, Vec<(Option<u32>, u32)>);

/// The call sites of `buffer` that have exception handlers (none before
/// 0.121: no `try_call`): what the harness's unwinder stand-in reads.
#[cfg(not(cranelift_no_try_call))]
fn try_sites(buffer: &FinalBuffer) -> Vec<TrySite> {
    #[cfg(not(any(cranelift_handler_pairs, cranelift_handler_label_or_offset)))]
    use cranelift_codegen::FinalizedMachExceptionHandler as H;
    #[cfg(cranelift_handler_label_or_offset)]
    use cranelift_codegen::MachExceptionHandler as H;
    let mut out = Vec::new();
    for site in buffer.call_sites() {
        #[cfg(cranelift_handler_pairs)]
        let handlers: Vec<(Option<u32>, u32)> = site
            .exception_handlers
            .iter()
            .map(|(tag, offset)| (tag.expand().map(|t| t.as_u32()), *offset))
            .collect();
        #[cfg(not(any(cranelift_handler_pairs, cranelift_handler_label_or_offset)))]
        let handlers: Vec<(Option<u32>, u32)> = site
            .exception_handlers
            .iter()
            .filter_map(|h| match h {
                H::Tag(tag, offset) => Some((Some(tag.as_u32()), *offset)),
                H::Default(offset) => Some((None, *offset)),
                H::Context(_) => None,
            })
            .collect();
        // a finalized buffer has resolved every handler label to an offset
        #[cfg(cranelift_handler_label_or_offset)]
        let handlers: Vec<(Option<u32>, u32)> = site
            .exception_handlers
            .iter()
            .filter_map(|h| match h {
                H::Tag(tag, at) if at.is_offset() => Some((Some(tag.as_u32()), at.as_offset())),
                H::Default(at) if at.is_offset() => Some((None, at.as_offset())),
                _ => None,
            })
            .collect();
        if handlers.is_empty() {
            continue;
        }
        #[cfg(cranelift_no_call_site_frame_offset)]
        let frame_offset: Option<u32> = None;
        #[cfg(not(cranelift_no_call_site_frame_offset))]
        let frame_offset = site.frame_offset;
        out.push((site.ret_addr, frame_offset, handlers));
    }
    out
}

/// A compiled function's finalized buffer.
#[cfg(not(cranelift_buffer_unparameterized))]
type FinalBuffer = cranelift_codegen::MachBufferFinalized<cranelift_codegen::Final>;
#[cfg(cranelift_buffer_unparameterized)]
type FinalBuffer = cranelift_codegen::MachBufferFinalized;

#[cfg(cranelift_no_try_call)]
fn try_sites(_buffer: &FinalBuffer) -> Vec<TrySite> {
    Vec::new()
}

/// The size in bytes of the stack-argument area of a function of signature
/// `sig`, as Cranelift's call lowering sizes it (`sized_stack_arg_space`,
/// a call's `callee_pop_size`): what a `tail` callee pops when it returns.
/// Cranelift does not publish it, so it is measured on probe functions
/// through the frame layout every compiled function publishes from 0.126
/// on (`MachBufferFinalized::frame_layout`):
///
/// - a caller probe makes one call with `sig`; its first stack slot lies
///   just above its outgoing-argument area, which that call sized to its
///   stack arguments plus its stack returns; the same probe without
///   parameters measures the stack returns alone, which are taken off;
/// - on s390x a `tail` call's arguments are not in the caller's outgoing
///   area (s390x/lower/isle.rs `gen_call_info`) but counted into the
///   callee's own frame (s390x/abi.rs `compute_frame_layout`: `clobber_size
///   += tail_args_size`), so there the probe is a callee of `sig` that only
///   traps, whose frame size (`frame_to_fp_offset`) is measured, again with
///   and without parameters.
///
/// None when a probe does not compile (or panics): the harness then bounds
/// what a callee may pop instead of knowing it.
#[cfg(not(cranelift_no_frame_layout))]
fn stack_arg_size(isa: &dyn isa::TargetIsa, sig: &ir::Signature) -> Option<u32> {
    let measure = if isa.name() == "s390x" && sig.call_conv == isa::CallConv::Tail {
        callee_frame_size
    } else {
        caller_outgoing_size
    };
    let with_params = measure(isa, sig)?;
    if with_params == 0 {
        return Some(0);
    }
    let mut bare = sig.clone();
    bare.params.clear();
    with_params.checked_sub(measure(isa, &bare)?)
}

/// A probe function of signature `sig` whose one block takes its parameters
/// and whose body `body` writes; then compiled, and `read` applied to what
/// `body` gave and the frame layout. None if it does not compile or panics.
#[cfg(not(cranelift_no_frame_layout))]
fn probe_frame<B, T>(
    isa: &dyn isa::TargetIsa,
    sig: &ir::Signature,
    body: impl FnOnce(&mut cranelift_codegen::cursor::FuncCursor, &[ir::Value]) -> B,
    read: impl FnOnce(B, &cranelift_codegen::MachBufferFrameLayout) -> Option<T>,
) -> Option<T> {
    use cranelift_codegen::cursor::{Cursor, FuncCursor};
    panics::catch(|| {
        let mut func = Function::with_name_signature(
            ir::UserFuncName::testcase("stack_args_probe"),
            sig.clone(),
        );
        let block = func.dfg.make_block();
        func.layout.append_block(block);
        let params: Vec<ir::Value> = sig
            .params
            .iter()
            .map(|p| func.dfg.append_block_param(block, p.value_type))
            .collect();
        let mut pos = FuncCursor::new(&mut func).at_bottom(block);
        let made = body(&mut pos, &params);
        let mut ctx = Context::for_function(func);
        let compiled = ctx.compile(isa, &mut ControlPlane::default()).ok()?;
        read(made, compiled.buffer.frame_layout()?)
    })
    .ok()
    .flatten()
}

/// A caller's outgoing-argument area for one call with `sig`: the offset of
/// its first stack slot, which lies just above that area.
#[cfg(not(cranelift_no_frame_layout))]
fn caller_outgoing_size(isa: &dyn isa::TargetIsa, sig: &ir::Signature) -> Option<u32> {
    use cranelift_codegen::ir::InstBuilder;
    let slot_data = ir::StackSlotData::new(ir::StackSlotKind::ExplicitSlot, 8, 0);
    probe_frame(
        isa,
        sig,
        |pos, params| {
            let slot = pos.func.create_sized_stack_slot(slot_data);
            let callee = pos.func.import_signature(sig.clone());
            let address = pos.ins().iconst(isa.pointer_type(), 0);
            let call = pos.ins().call_indirect(callee, address, params);
            let results = pos.func.dfg.inst_results(call).to_vec();
            pos.ins().return_(&results);
            slot
        },
        |slot, layout| layout.stackslots.get(slot).map(|s| s.offset),
    )
}

/// The frame of a callee of `sig` that only traps: no saved registers, no
/// slots, no calls; on s390x its incoming `tail` arguments.
#[cfg(not(cranelift_no_frame_layout))]
fn callee_frame_size(isa: &dyn isa::TargetIsa, sig: &ir::Signature) -> Option<u32> {
    use cranelift_codegen::ir::InstBuilder;
    probe_frame(
        isa,
        sig,
        |pos, _params| {
            pos.ins().trap(ir::TrapCode::STACK_OVERFLOW);
        },
        |(), layout| Some(layout.frame_to_fp_offset),
    )
}

#[pymodule]
fn _cranelift(m: &Bound<'_, PyModule>) -> PyResult<()> {
    panics::install_hook();
    let py = m.py();
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(parse, m)?)?;
    m.add_class::<Isa>()?;
    m.add_class::<Module>()?;
    m.add("CraneliftError", py.get_type::<CraneliftError>())?;
    m.add("ParseError", py.get_type::<ParseError>())?;
    m.add("ParseWarning", py.get_type::<ParseWarning>())?;
    m.add("VerifierError", py.get_type::<VerifierError>())?;
    m.add("FlagError", py.get_type::<FlagError>())?;
    m.add("CompileError", py.get_type::<CompileError>())?;
    m.add("Unsupported", py.get_type::<Unsupported>())?;
    m.add("InterpreterFailure", py.get_type::<InterpreterFailure>())?;
    m.add("CraneliftPanic", py.get_type::<CraneliftPanic>())?;
    m.add_function(wrap_pyfunction!(panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(abort_for_test, m)?)?;
    Ok(())
}

/// Panics on purpose, so tests can check that panics become exceptions.
#[pyfunction]
fn panic_for_test() -> PyResult<()> {
    panics::guard(|| -> PyResult<()> { panic!("callfuzz test panic") })
}

/// Aborts the whole process on purpose, the way a double panic or a failed
/// allocation inside Cranelift would, so campaign tests can check that a dead
/// worker is replaced and its case recorded.
#[pyfunction]
fn abort_for_test() {
    std::process::abort();
}
