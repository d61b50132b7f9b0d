//! `printf::Format::format` allocates nothing but `out` growing: with room
//! reserved in `out`, formatting every kind of conversion makes no
//! allocation at all (counted by a pass-through global allocator, per
//! thread). Its own test binary, so that the allocator is nobody else's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use queue_listener_engine::printf::{parse, Arg};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread's slot may be gone while it exits.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed to `System` unchanged; counting touches only
// a const-initialised thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn printf_format_allocates_only_out() {
    let fmt = parse(
        b"%d %-8hhu %#lx %05o %c %s %.3s %p %p %+.1000f %.60e %#g %g %G %a %.3A %e %f %% \xc3\xa9 %*.*d",
    )
    .unwrap();
    let args = [
        Arg::Int(-123),
        Arg::Int(300),
        Arg::Int(i64::MIN),
        Arg::Int(8),
        Arg::Int(65),
        Arg::Str(Some("h\u{e9}llo".as_bytes())),
        Arg::Str(None),
        Arg::Ptr(0),
        Arg::Ptr(0xdead_beef),
        Arg::Double(0.1),
        Arg::Double(5e-324),
        Arg::Double(999_999.5),
        Arg::Double(1.0 / 3.0),
        Arg::Double(1e-300),
        Arg::Double(-f64::MAX),
        Arg::Double(1.96875),
        Arg::Double(-f64::NAN),
        Arg::Double(f64::INFINITY),
        Arg::Int(-20),
        Arg::Int(7),
        Arg::Int(42),
    ];
    let mut out = Vec::with_capacity(8192);
    let before = allocations();
    fmt.format(&args, &mut out).unwrap();
    let after = allocations();
    assert!(out.len() > 1100, "{} bytes formatted", out.len());
    assert_eq!(
        after - before,
        0,
        "allocations while formatting into a Vec with room"
    );
    // And the counter counts: growing `out` is seen.
    let mut small = Vec::new();
    let before = allocations();
    fmt.format(&args, &mut small).unwrap();
    assert!(allocations() > before, "the counting allocator saw nothing");
    assert_eq!(small, out);
}
