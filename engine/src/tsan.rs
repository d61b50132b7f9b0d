//! Tells ThreadSanitizer about the engine's own hand-offs between threads,
//! when the program runs under it.
//!
//! The library is built without `-fsanitize=thread` (that needs nightly
//! Rust), so TSan does not see its atomics. It does see the C library
//! calls the engine makes (`malloc`, `memcpy`...), and so reports a race
//! when memory one thread allocated reaches another through a lane or the
//! format table. Where TSan's runtime is in the process (`__tsan_release`
//! and `__tsan_acquire` resolve), the engine annotates those hand-offs
//! with it; elsewhere each call is one load and a branch.

use std::ffi::c_void;
use std::sync::OnceLock;

type Annotate = unsafe extern "C" fn(*mut c_void);

struct Runtime {
    release: Annotate,
    acquire: Annotate,
}

fn runtime() -> Option<&'static Runtime> {
    static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let find = |name: &std::ffi::CStr| {
                // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the
                // process's global symbols.
                let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
                // SAFETY: when present, these TSan entry points take one
                // address and return nothing.
                (!found.is_null())
                    .then(|| unsafe { std::mem::transmute::<*mut c_void, Annotate>(found) })
            };
            Some(Runtime {
                release: find(c"__tsan_release")?,
                acquire: find(c"__tsan_acquire")?,
            })
        })
        .as_ref()
}

/// What this thread did so far happens before what a thread does after
/// [`acquire`] on the same address.
#[inline]
pub fn release(addr: *const ()) {
    if let Some(runtime) = runtime() {
        // SAFETY: TSan's annotation takes any address as a key.
        unsafe { (runtime.release)(addr as *mut c_void) }
    }
}

/// See [`release`].
#[inline]
pub fn acquire(addr: *const ()) {
    if let Some(runtime) = runtime() {
        // SAFETY: as in `release`.
        unsafe { (runtime.acquire)(addr as *mut c_void) }
    }
}
