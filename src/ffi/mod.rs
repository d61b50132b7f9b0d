//! The C ABI: conversions, NULL checks, status codes and the panic
//! boundary. No logic of its own lives here; everything a function does is a
//! call into the engine ([`crate::listener`], [`crate::queue`]).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

pub mod handlers;
pub mod journald;
pub mod listener;
mod process;
pub mod queue;
pub mod record;
mod status;
pub mod syslog;

pub use status::*;

/// A record as the C side sees it: an opaque pointer the program owns.
///
/// The library never reads or frees what it points to; it only moves the
/// pointer from the queue to the hooks and handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord(pub *mut c_void);

// SAFETY: the pointer is moved between threads, never dereferenced by the
// library. The C API's documentation makes the program responsible for
// records being usable from the listener thread.
unsafe impl Send for RawRecord {}
// SAFETY: as above; `&RawRecord` only gives out the pointer value.
unsafe impl Sync for RawRecord {}

/// Set by `ql_debug_panic_next_call`: the next boundary panics.
static PANIC_NEXT: AtomicBool = AtomicBool::new(false);

/// Runs `body`, turning a panic into the return type's fallback value
/// (`QL_ERR_PANIC` for a status). Every exported function's body goes
/// through here, so no unwind ever crosses into C.
pub(crate) fn boundary<T: Fallback>(body: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if PANIC_NEXT.load(Ordering::Relaxed) && PANIC_NEXT.swap(false, Ordering::Relaxed) {
            panic!("ql_debug_panic_next_call: a panic inside the boundary, on request");
        }
        body()
    }))
    .unwrap_or_else(|_| T::fallback())
}

/// For tests of the panic boundary: makes the next call of any `ql_*`
/// function (on any thread) panic inside the library before it does
/// anything, as an internal bug would. That call then returns
/// `QL_ERR_PANIC` (functions returning a status), or its documented
/// fallback: `ql_status_str`, `ql_version` and `ql_level_name` the static
/// text "panic inside queue_listener", `ql_queue_enabled` true, the
/// `*_default` functions the defaults, `ql_handler_lines_lost` 0; void
/// functions do nothing.
/// Nothing else changes. The panic message goes to stderr. Not for
/// production use. Any thread.
#[no_mangle]
pub extern "C" fn ql_debug_panic_next_call() {
    PANIC_NEXT.store(true, Ordering::Relaxed);
}

/// The value an exported function returns when its body panicked.
pub(crate) trait Fallback {
    fn fallback() -> Self;
}

impl Fallback for ql_status {
    fn fallback() -> Self {
        QL_ERR_PANIC
    }
}

impl Fallback for *const c_char {
    fn fallback() -> Self {
        c"panic inside queue_listener".as_ptr()
    }
}

impl Fallback for () {
    fn fallback() -> Self {}
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

/// The major version of the header a program was compiled with (Cargo.toml's
/// version; compare with `ql_version()` for the library it runs with).
pub const QL_VERSION_MAJOR: u32 = 0;
/// The minor version of the header (before 1.0 a minor release may break
/// the ABI, and changes the soname).
pub const QL_VERSION_MINOR: u32 = 2;
/// The patch version of the header.
pub const QL_VERSION_PATCH: u32 = 0;

/// Parses a decimal version part at compile time.
const fn part(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

// The header's version is Cargo.toml's: the build fails when they differ.
const _: () = assert!(QL_VERSION_MAJOR == part(env!("CARGO_PKG_VERSION_MAJOR")));
const _: () = assert!(QL_VERSION_MINOR == part(env!("CARGO_PKG_VERSION_MINOR")));
const _: () = assert!(QL_VERSION_PATCH == part(env!("CARGO_PKG_VERSION_PATCH")));

/// The library's version, as in Cargo.toml ("MAJOR.MINOR.PATCH").
///
/// Returns a static NUL-terminated string; never NULL (after an internal
/// panic, "panic inside queue_listener"). Any thread.
#[no_mangle]
pub extern "C" fn ql_version() -> *const c_char {
    boundary(|| {
        const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
        V.as_ptr().cast()
    })
}
