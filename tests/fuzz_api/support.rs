//! What every part of the fuzzer uses: the counting allocator, the
//! generator, the panic guard of callbacks, the coverage counters.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

// ---------------------------------------------------------------------------
// A counting allocator: the Rust heap's live bytes.

pub(crate) struct Counting;

pub(crate) static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        q
    }
}

#[global_allocator]
pub(crate) static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// A small deterministic generator (SplitMix64): a seed means the same calls
// on every machine and with every version of every crate.

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with `percent` % probability.
    pub(crate) fn pct(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Panics caught inside callbacks (a panic must never unwind into C).
pub(crate) static CALLBACK_PANICS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn no_unwind<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        CALLBACK_PANICS.fetch_add(1, Ordering::Relaxed);
        fallback
    })
}

/// What the sequences reached, summed over a run (printed at the end, so a
/// fuzzer that stopped reaching the interesting paths shows).
pub(crate) static COVER: [AtomicU64; 14] = [const { AtomicU64::new(0) }; 14];
pub(crate) const C_LISTENERS: usize = 0;
pub(crate) const C_STARTS: usize = 1;
pub(crate) const C_HANDLED: usize = 2;
pub(crate) const C_DONE: usize = 3;
pub(crate) const C_BUILTIN_DONE: usize = 4;
pub(crate) const C_RELEASED: usize = 5;
pub(crate) const C_ON_DROP: usize = 6;
pub(crate) const C_DEQUEUE_ERRORS: usize = 7;
pub(crate) const C_REENTRY: usize = 8;
pub(crate) const C_GOT_BACK: usize = 9;
pub(crate) const C_REFUSED: usize = 10;
pub(crate) const C_HEAP_CHECKS: usize = 11;
pub(crate) const C_SHARED: usize = 12;
pub(crate) const C_STRUCTURED: usize = 13;
pub(crate) const COVER_NAMES: [&str; 14] = [
    "listeners made",
    "starts",
    "records handled",
    "done calls",
    "built-in records done",
    "releases",
    "on_drop calls",
    "dequeue errors",
    "calls from the listener thread",
    "records taken back by get",
    "puts refused",
    "heap checks",
    "listeners sharing a queue",
    "structured logs queued",
];

pub(crate) fn cover(what: usize) {
    COVER[what].fetch_add(1, Ordering::Relaxed);
}

pub(crate) const KNOWN_STATUSES: std::ops::RangeInclusive<i32> = 0..=16;
