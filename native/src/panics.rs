//! Turns Cranelift panics into Python exceptions instead of dead processes.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use pyo3::PyResult;

use crate::CraneliftPanic;

thread_local! {
    /// Message and location of the last panic on this thread, set by the hook.
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Records panics instead of printing them; `guard` reports them.
pub fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_string()
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
    }));
}

/// Runs `f` on this thread; a panic becomes `Err((message, location))`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, (String, String)> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| ("unknown panic".to_string(), String::new()))
    })
}

/// Runs `f`, converting a panic into `CraneliftPanic(message, location)`.
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch(f).unwrap_or_else(|panic| Err(CraneliftPanic::new_err(panic)))
}
