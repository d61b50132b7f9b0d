//! The panic boundary: the one place in the C ABI that catches a panic,
//! the value each return type gives C after one ([`Fallback`], every impl
//! here), the state of the test hook `ql_debug_panic_next_call`, and the
//! NULL checks `try_ref!` / `try_out!` that return a status from inside a
//! boundary.
//!
//! No unwind may cross into C (since Rust 1.81 it aborts the program). So
//! every exported function's body runs inside [`boundary`], and so does
//! every callback the library hands C whose body can panic (the built-in
//! handlers').
//!
//! A generic function, not a macro: the closure already lets `try_ref!`
//! return a status early, and the return type picks its fallback, so a
//! macro would add nothing but a second syntax for the same thing.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{ql_status, SizedOptions, QL_ERR_PANIC};

/// Set by `ql_debug_panic_next_call`: the next boundary panics.
static PANIC_NEXT: AtomicBool = AtomicBool::new(false);

/// Runs `body`, turning a panic into the return type's fallback value
/// (`QL_ERR_PANIC` for a status). Every exported function's body goes
/// through here, so no unwind ever crosses into C. Honours
/// `ql_debug_panic_next_call`.
pub(crate) fn boundary<T: Fallback>(body: impl FnOnce() -> T) -> T {
    catch(|| {
        if PANIC_NEXT.load(Ordering::Relaxed) && PANIC_NEXT.swap(false, Ordering::Relaxed) {
            panic!("ql_debug_panic_next_call: a panic inside the boundary, on request");
        }
        body()
    })
}

/// As [`boundary`], for a built-in handler's `handle` callback, which the
/// listener thread calls for every record: it leaves a pending
/// `ql_debug_panic_next_call` to the next `ql_*` call it is meant for.
pub(crate) fn handle_boundary(body: impl FnOnce() -> HandlerCode) -> HandlerCode {
    catch(body)
}

/// The one `catch_unwind` of the C ABI.
fn catch<T: Fallback>(body: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|_| T::fallback())
}

/// What `ql_debug_panic_next_call` does: the next [`boundary`] panics.
/// (That function is exported from `ffi/mod.rs`, which keeps its place in
/// the header: cbindgen writes a module's own functions before those of
/// its submodules.)
pub(crate) fn panic_next_call() {
    PANIC_NEXT.store(true, Ordering::Relaxed);
}

/// The value an exported function (or callback) returns when its body
/// panicked.
pub(crate) trait Fallback {
    fn fallback() -> Self;
}

/// A built-in handler's `handle` return code: 0, or an errno-like code
/// the listener counts and tells `on_error`. Its own type, so that a
/// panic gives a handler code, not a status (`QL_ERR_PANIC`, 11, would
/// read as `EAGAIN`).
pub(crate) struct HandlerCode(pub(crate) i32);

/// Every status-returning function: the panic is the failure it reports.
impl Fallback for ql_status {
    fn fallback() -> Self {
        QL_ERR_PANIC
    }
}

/// A handler that panicked failed: -1, no errno's value.
impl Fallback for HandlerCode {
    fn fallback() -> Self {
        HandlerCode(-1)
    }
}

/// `ql_status_str`, `ql_version`, `ql_level_name`: static text, never NULL.
impl Fallback for *const c_char {
    fn fallback() -> Self {
        c"panic inside queue_listener".as_ptr()
    }
}

/// Void functions and callbacks: nothing done.
impl Fallback for () {
    fn fallback() -> Self {}
}

/// `ql_queue_enabled` says yes after a panic, so that `ql_logf` goes on to
/// `ql_log`, which reports the failure instead of a silent drop.
impl Fallback for bool {
    fn fallback() -> Self {
        true
    }
}

/// `ql_handler_lines_lost`: 0, as for a handler that is not built in.
impl Fallback for u64 {
    fn fallback() -> Self {
        0
    }
}

/// Every options struct: its defaults, what its `*_options_default`
/// function always returns (`ql_queue_options`, `ql_handler_options`,
/// `ql_syslog_options`, `ql_journald_options`).
impl<T: SizedOptions> Fallback for T {
    fn fallback() -> Self {
        T::defaults()
    }
}

/// Returns `QL_ERR_NULL` from the enclosing function when a pointer is NULL,
/// else gives the reference.
macro_rules! try_ref {
    ($ptr:expr) => {
        // SAFETY: the caller promises the pointer is NULL or valid (each
        // function's `# Safety` section).
        match unsafe { $ptr.as_ref() } {
            Some(r) => r,
            None => return $crate::ffi::QL_ERR_NULL,
        }
    };
}

/// Returns `QL_ERR_NULL` from the enclosing function when an out-pointer is
/// NULL, else gives the mutable reference.
macro_rules! try_out {
    ($ptr:expr) => {
        // SAFETY: as in `try_ref!`, for a writable out-parameter.
        match unsafe { $ptr.as_mut() } {
            Some(r) => r,
            None => return $crate::ffi::QL_ERR_NULL,
        }
    };
}

pub(crate) use {try_out, try_ref};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_gives_the_fallback_of_its_type() {
        assert_eq!(boundary(|| -> ql_status { panic!("test") }), QL_ERR_PANIC);
        assert_eq!(handle_boundary(|| panic!("test")).0, -1);
        assert_eq!(
            handle_boundary(|| HandlerCode(libc::EAGAIN)).0,
            libc::EAGAIN
        );
        assert!(boundary(|| -> bool { panic!("test") }));
    }
}
