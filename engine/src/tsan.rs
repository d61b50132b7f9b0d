//! Tells ThreadSanitizer about the engine's own hand-offs between threads,
//! when the program runs under it.
//!
//! The library is built without `-fsanitize=thread` (that needs nightly
//! Rust), so TSan does not see its atomics. It does see the C library
//! calls the engine makes (`malloc`, `memcpy`...), and so reports a race
//! when memory one thread allocated reaches another through a lane, the
//! record pool or the format table. Where TSan's runtime is in the process
//! (its entry points resolve), the engine annotates those hand-offs;
//! elsewhere each call is one load and a branch.

use std::ffi::{c_void, CStr};
use std::sync::OnceLock;

type Annotate = unsafe extern "C" fn(*mut c_void);
type Mark = unsafe extern "C" fn();

struct Runtime {
    release: Annotate,
    acquire: Annotate,
    ignore_begin: Mark,
    ignore_end: Mark,
}

fn find(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the process's
    // global symbols.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!found.is_null()).then_some(found)
}

/// True when a loaded object's name contains "libtsan" (TSan's runtime as
/// gcc and clang link it). Asked first so that `dlsym` is only called for
/// symbols that exist: a failed lookup allocates an error message that
/// valgrind then reports as lost in a fork child.
fn tsan_loaded() -> bool {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        found: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info; its name is NUL
        // terminated or NULL.
        let name = unsafe { (*info).dlpi_name };
        if !name.is_null() {
            // SAFETY: as above.
            let name = unsafe { CStr::from_ptr(name) }.to_bytes();
            if name.windows(7).any(|w| w == b"libtsan") {
                // SAFETY: `found` is the bool passed below.
                unsafe { *(found as *mut bool) = true };
                return 1;
            }
        }
        0
    }
    let mut found = false;
    // SAFETY: the callback matches dl_iterate_phdr's and only writes the
    // bool it is given.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut found as *mut bool as *mut c_void) };
    found
}

fn runtime() -> Option<&'static Runtime> {
    static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            if !tsan_loaded() {
                return None;
            }
            let (release, acquire) = (find(c"__tsan_release")?, find(c"__tsan_acquire")?);
            let begin = find(c"__tsan_ignore_thread_begin")?;
            let end = find(c"__tsan_ignore_thread_end")?;
            // SAFETY: when present, TSan's entry points have these
            // signatures (sanitizer/tsan_interface.h).
            unsafe {
                Some(Runtime {
                    release: std::mem::transmute::<*mut c_void, Annotate>(release),
                    acquire: std::mem::transmute::<*mut c_void, Annotate>(acquire),
                    ignore_begin: std::mem::transmute::<*mut c_void, Mark>(begin),
                    ignore_end: std::mem::transmute::<*mut c_void, Mark>(end),
                })
            }
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

/// Runs `f` with TSan ignoring this thread's memory accesses: for
/// crossbeam's blocking waits and wakes, whose own synchronization TSan
/// cannot see (a waiting thread's context, allocated by it, written by the
/// thread that wakes it).
#[inline]
pub fn unseen<T>(f: impl FnOnce() -> T) -> T {
    let Some(runtime) = runtime() else {
        return f();
    };
    struct End(Mark);
    impl Drop for End {
        fn drop(&mut self) {
            // SAFETY: paired with the begin below.
            unsafe { (self.0)() }
        }
    }
    // SAFETY: TSan's entry point; ended by `End`, also on unwind.
    unsafe { (runtime.ignore_begin)() };
    let _end = End(runtime.ignore_end);
    f()
}
