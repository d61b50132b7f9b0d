//! The C ABI: conversions, NULL checks, status codes and the panic
//! boundary. No logic of its own lives here; everything a function does is a
//! call into the engine ([`crate::listener`], [`crate::queue`]).
//!
//! The panic boundary is one file, `boundary.rs`: `boundary(...)`, which
//! every exported function's body runs in, the value each return type
//! gives C after a panic (every `Fallback`), and the NULL checks
//! `try_ref!` / `try_out!`. It holds the C ABI's only `catch_unwind`; the
//! built-in handlers' callbacks go through it too.

#![allow(non_camel_case_types)]

use std::ffi::c_char;

mod boundary;
pub mod handlers;
pub mod journald;
pub mod listener;
mod process;
pub mod queue;
pub mod record;

// Declared right after `record`: cbindgen writes functions in module
// order, and the header keeps `ql_log` ... `ql_context_clear` after
// `ql_level_name`.
pub mod log;

mod status;
pub mod syslog;

pub use status::*;

pub(crate) use boundary::{boundary, handle_boundary, try_out, try_ref, HandlerCode};

/// A program's record pointer (the engine's, in [`crate::log_queue`]).
pub use crate::log_queue::RawRecord;

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
    boundary::panic_next_call();
}

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

/// An options struct that can grow without breaking the ABI: its first
/// member is `struct_size`, which `ql_*_options_default()` sets to the
/// size the program was compiled with.
///
/// # Safety
/// `Self` is `#[repr(C)]`, starts with a `usize` `struct_size`, holds only
/// members for which every value a C program can store through the
/// header's types is valid (integers, raw and function pointers, and
/// `bool`, which C keeps 0 or 1; no Rust enum or reference), and has no
/// padding after its last
/// member (checked by [`no_tail_padding`]), so that a member added later
/// starts at or after the size of every earlier layout.
pub(crate) unsafe trait SizedOptions: Copy {
    /// The size of the first layout with `struct_size` (0.2.0): smaller is
    /// no layout the library ever had.
    const FIRST_SIZE: usize;
    /// The defaults, with `struct_size` set to this library's size.
    fn defaults() -> Self;
}

/// True when a `#[repr(C)]` struct of `size` bytes has its last member
/// (at `offset`, `len` bytes) end exactly at its end.
pub(crate) const fn no_tail_padding(size: usize, offset: usize, len: usize) -> bool {
    offset + len == size
}

/// Reads options a program passed: NULL gives the defaults. A program
/// built against an older header (a smaller `struct_size`) gets the
/// defaults for the members it does not know; one built against a newer
/// header (a larger `struct_size`) may pass members this library does not
/// know only when they are zero, else `QL_ERR_UNSUPPORTED` (the program
/// asked for something this library cannot do). `QL_ERR_INVALID` for a
/// `struct_size` smaller than any layout the library ever had (0, for
/// options not made with `ql_*_options_default()`).
///
/// # Safety
/// `options` must be NULL or valid for reading `struct_size` bytes.
pub(crate) unsafe fn read_sized<T: SizedOptions>(options: *const T) -> Result<T, ql_status> {
    if options.is_null() {
        return Ok(T::defaults());
    }
    // SAFETY: the caller's promise: at least the `usize` at the start.
    let size = unsafe { options.cast::<usize>().read_unaligned() };
    let ours = std::mem::size_of::<T>();
    if size < T::FIRST_SIZE {
        return Err(QL_ERR_INVALID);
    }
    if size > ours {
        // SAFETY: the caller's promise: `size` bytes are readable.
        let tail =
            unsafe { std::slice::from_raw_parts(options.cast::<u8>().add(ours), size - ours) };
        if tail.iter().any(|&b| b != 0) {
            return Err(QL_ERR_UNSUPPORTED);
        }
    }
    let mut out = T::defaults();
    // SAFETY: `min(size, ours)` bytes are readable (the caller's promise)
    // and writable in `out`; every member the copy covers is covered whole
    // (earlier layouts end where a member ends: no tail padding), and any
    // bit pattern a C program stores is valid for them (the trait's
    // promise). `struct_size` itself is overwritten with the caller's
    // value, which nothing reads after this.
    unsafe {
        std::ptr::copy_nonoverlapping(
            options.cast::<u8>(),
            std::ptr::addr_of_mut!(out).cast::<u8>(),
            size.min(ours),
        )
    };
    Ok(out)
}

#[cfg(test)]
mod sized_tests {
    use super::*;

    /// Version 1 of an options struct, and version 2, which added `b`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct V1 {
        struct_size: usize,
        a: u64,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct V2 {
        struct_size: usize,
        a: u64,
        b: u64,
    }
    // SAFETY: repr(C), usize first, integers only, no tail padding.
    unsafe impl SizedOptions for V2 {
        const FIRST_SIZE: usize = std::mem::size_of::<V1>();
        fn defaults() -> Self {
            V2 {
                struct_size: std::mem::size_of::<V2>(),
                a: 1,
                b: 2,
            }
        }
    }

    #[test]
    fn old_new_and_foreign_sizes() {
        // A program built against version 1: `b` takes its default.
        let old = V1 {
            struct_size: std::mem::size_of::<V1>(),
            a: 10,
        };
        let got = unsafe { read_sized(std::ptr::addr_of!(old).cast::<V2>()) }.unwrap();
        assert_eq!((got.a, got.b), (10, 2));
        // This library's own size.
        let same = V2 {
            a: 11,
            b: 12,
            ..V2::defaults()
        };
        let got = unsafe { read_sized(&same) }.unwrap();
        assert_eq!((got.a, got.b), (11, 12));
        // A newer program: unknown members zero are fine, set are refused.
        let mut newer = [0u64; 4];
        newer[0] = 32;
        newer[1] = 13;
        newer[2] = 14;
        let got = unsafe { read_sized(newer.as_ptr().cast::<V2>()) }.unwrap();
        assert_eq!((got.a, got.b), (13, 14));
        newer[3] = 1;
        let refused = unsafe { read_sized(newer.as_ptr().cast::<V2>()) };
        assert_eq!(refused.err(), Some(QL_ERR_UNSUPPORTED));
        // Smaller than any layout (options not made by the default call).
        let zero = [0u64; 3];
        let refused = unsafe { read_sized(zero.as_ptr().cast::<V2>()) };
        assert_eq!(refused.err(), Some(QL_ERR_INVALID));
        assert_eq!(unsafe { read_sized::<V2>(std::ptr::null()) }.unwrap().b, 2);
    }
}
