//! Finds the cranelift-codegen release this bridge links and tells the bridge
//! about it: the version, for findings to name the Cranelift they were seen on,
//! and one `cranelift_*` cfg flag per API difference between releases, so one
//! source builds against every release from 0.105 on (and a wasmtime checkout).
//!
//! The version is read from Cargo.lock, which cargo has resolved before it runs
//! this script; `CALLFUZZ_CRANELIFT_VERSION` (set by callfuzz's bridge builder)
//! is the fallback when no lock file names it.
use std::env;
use std::fs;

/// `(cfg, first minor release of the 0.x line that needs it, last one)`:
/// each flag selects the API that releases in that range have.
const FLAGS: &[(&str, u32, u32, &str)] = &[
    (
        "cranelift_no_f16",
        0,
        109,
        "no types::F16 / types::F128 (added in 0.110)",
    ),
    (
        "cranelift_libcall_trapcode",
        0,
        112,
        "the interpreter's libcall handler fails with a TrapCode (CraneliftTrap from 0.113)",
    ),
    (
        "cranelift_no_try_call",
        0,
        119,
        "no try_call / try_call_indirect (0.120.2 parses and compiles them)",
    ),
    (
        "cranelift_handler_pairs",
        120,
        122,
        "call-site exception handlers are (Option<ExceptionTag>, offset) pairs \
         (FinalizedMachExceptionHandler from 0.123)",
    ),
    (
        "cranelift_no_call_site_frame_offset",
        120,
        123,
        "FinalizedMachCallSite has no frame_offset (added in 0.124)",
    ),
    (
        "cranelift_call_sites_slice",
        0,
        119,
        "MachBufferFinalized::call_sites returns a slice (an iterator from 0.120)",
    ),
    (
        "cranelift_no_frame_layout",
        0,
        125,
        "no MachBufferFinalized::frame_layout (added in 0.126): stack-argument sizes unmeasured",
    ),
    (
        "cranelift_handler_label_or_offset",
        137,
        u32::MAX,
        "call-site exception handlers are MachExceptionHandler over LabelOrOffset \
         (FinalizedMachExceptionHandler over offsets before 0.137)",
    ),
    (
        "cranelift_buffer_unparameterized",
        137,
        u32::MAX,
        "MachBufferFinalized has no stencil/final type parameter (MachBufferFinalized<Final> before 0.137)",
    ),
    (
        "cranelift_reloc_label",
        137,
        u32::MAX,
        "relocation targets are RelocTarget::{ExternalName, Label} (FinalizedRelocTarget before 0.137)",
    ),
];

/// The version of `cranelift-codegen` in a Cargo.lock text.
fn locked_version(lock: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"cranelift-codegen\"" {
            return lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
                .map(|v| v.trim_matches('"').to_string());
        }
    }
    None
}

/// `0.131.2` -> 131 (the minor release of the 0.x line); None for other shapes.
fn minor(version: &str) -> Option<u32> {
    let mut parts = version.split(['.', '-', '+']);
    match (parts.next(), parts.next()) {
        (Some("0"), Some(m)) => m.parse().ok(),
        _ => None,
    }
}

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CALLFUZZ_CRANELIFT_VERSION");
    for (flag, ..) in FLAGS {
        println!("cargo::rustc-check-cfg=cfg({flag})");
    }
    let from_lock = fs::read_to_string("Cargo.lock")
        .ok()
        .and_then(|lock| locked_version(&lock));
    let from_env = env::var("CALLFUZZ_CRANELIFT_VERSION")
        .ok()
        .filter(|v| !v.is_empty());
    if let (Some(lock), Some(given)) = (&from_lock, &from_env) {
        if lock != given {
            println!(
                "cargo:warning=CALLFUZZ_CRANELIFT_VERSION={given} but Cargo.lock has \
                 cranelift-codegen {lock}; using {lock}"
            );
        }
    }
    let version = from_lock.or(from_env).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CALLFUZZ_CRANELIFT_VERSION={version}");
    // An unknown version gets the newest API: the one this source is written for.
    let m = minor(&version).unwrap_or(u32::MAX);
    for (flag, first, last, _why) in FLAGS {
        if (*first..=*last).contains(&m) {
            println!("cargo:rustc-cfg={flag}");
        }
    }
}
