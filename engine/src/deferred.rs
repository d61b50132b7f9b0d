//! Deferred formatting: a printf-style call site hands over its format and
//! raw arguments; the listener formats them ([`crate::printf`]), so the
//! producer never runs `vsnprintf`.
//!
//! A format is parsed once: [`find`] keeps each parsed format in a
//! process-wide table keyed by the format's address (a string literal's
//! address never changes), and compares the bytes on every look-up, so a
//! format that is not a literal (a buffer reused with other text) is never
//! mistaken for another. The table holds [`SITES`] formats; past that, and
//! for what the formatter does not support, the call site formats eagerly
//! (counted: [`eager_count`]). Entries live as long as the process (the
//! records that point at them may outlive any owner).

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::printf::{self, Format, Unsupported};

/// Formats the table holds at most.
pub const SITES: usize = 4096;

/// Arguments a deferred call may capture at most; a format needing more is
/// formatted eagerly.
pub const MAX_ARGS: usize = 32;

/// The longest format deferred: a longer one (text passed as the format)
/// is formatted eagerly, so the table never keeps large copies.
pub const MAX_FORMAT: usize = 4096;

/// How many slots a look-up probes past the first.
const PROBES: usize = 16;

/// One parsed format, keyed by the address its text was found at.
pub struct Site {
    key: usize,
    text: Box<[u8]>,
    parsed: Result<Format, Unsupported>,
}

/// What a call site does with its format.
#[derive(Clone, Copy)]
pub enum Found {
    /// Capture these argument kinds and defer.
    Defer(&'static Format),
    /// Format eagerly (counted).
    Eager,
    /// Refuse the call: the format asks for `%n`.
    Refuse,
}

/// The table: each slot empty, or a format published once and never
/// changed or freed. Filled by compare-and-swap, never by a lock or a
/// `OnceLock` (whose initialisation others wait for): a `fork` while a
/// thread fills a slot leaves no waiter stuck in the child.
static TABLE: [AtomicPtr<Site>; SITES] = [const { AtomicPtr::new(ptr::null_mut()) }; SITES];

static EAGER: AtomicU64 = AtomicU64::new(0);

/// Calls that formatted eagerly because their format could not be
/// deferred (unsupported conversions, too many arguments, a full table).
pub fn eager_count() -> u64 {
    EAGER.load(Ordering::Relaxed)
}

/// The widest field (width, or precision of a number) a deferred format
/// may ask for: the message is cut at [`crate::record::MAX_MESSAGE`]
/// anyway, and a field over `INT_MAX` makes glibc fail where this
/// formatter would write it all, on the listener's thread.
pub const MAX_FIELD: usize = crate::record::MAX_MESSAGE;

/// Counts a call formatted eagerly for a reason only the call shows (a
/// `*` field over [`MAX_FIELD`]).
pub fn note_eager() {
    EAGER.fetch_add(1, Ordering::Relaxed);
}

fn decide(parsed: &'static Result<Format, Unsupported>) -> Found {
    match parsed {
        // Fixed widths and precisions past MAX_FIELD: formatted eagerly,
        // as glibc does them (`*` ones are checked per call).
        Ok(format) if format.args().len() <= MAX_ARGS && format.fields_within(MAX_FIELD, |_| 0) => {
            Found::Defer(format)
        }
        Err(Unsupported::N) => Found::Refuse,
        _ => {
            EAGER.fetch_add(1, Ordering::Relaxed);
            Found::Eager
        }
    }
}

/// The parsed format for the text `text` found at address `key`.
pub fn find(key: usize, text: &[u8]) -> Found {
    if text.len() > MAX_FORMAT {
        // `%n` is refused however long the format.
        if printf::parse(text) == Err(Unsupported::N) {
            return Found::Refuse;
        }
        EAGER.fetch_add(1, Ordering::Relaxed);
        return Found::Eager;
    }
    // Fibonacci hashing of the address (literals are 1-byte aligned).
    let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % SITES;
    let mut made: Option<Box<Site>> = None;
    for probe in 0..=PROBES {
        let slot = &TABLE[(start + probe) % SITES];
        let mut current = slot.load(Ordering::Acquire);
        if current.is_null() {
            let site = made.take().unwrap_or_else(|| {
                Box::new(Site {
                    key,
                    text: text.into(),
                    parsed: printf::parse(text),
                })
            });
            let site = Box::into_raw(site);
            crate::tsan::release(slot as *const _ as *const ());
            match slot.compare_exchange(ptr::null_mut(), site, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => current = site,
                Err(other) => {
                    // Another thread filled it first: keep ours for the
                    // next empty slot.
                    // SAFETY: `site` came from Box::into_raw just above
                    // and was never published.
                    made = Some(unsafe { Box::from_raw(site) });
                    current = other;
                }
            }
        }
        crate::tsan::acquire(slot as *const _ as *const ());
        // SAFETY: a published slot points to a leaked `Site` that is
        // never changed or freed.
        let site: &'static Site = unsafe { &*current };
        if site.key == key && *site.text == *text {
            return decide(&site.parsed);
        }
    }
    // Every slot around here holds another format: format eagerly.
    EAGER.fetch_add(1, Ordering::Relaxed);
    Found::Eager
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defer(found: Found) -> &'static Format {
        match found {
            Found::Defer(format) => format,
            Found::Eager => panic!("eager"),
            Found::Refuse => panic!("refused"),
        }
    }

    #[test]
    fn a_format_is_parsed_once_per_address_and_text() {
        // Keys are addresses the tests make up: far from any real format's.
        let a = defer(find(0x7000_0001, b"a=%d"));
        assert!(std::ptr::eq(a, defer(find(0x7000_0001, b"a=%d"))));
        // The same address with other text (a reused buffer): another one.
        let b = defer(find(0x7000_0001, b"b=%s"));
        assert!(!std::ptr::eq(a, b));
        assert_eq!(b.args(), &[printf::ArgKind::Str]);
        assert!(std::ptr::eq(a, defer(find(0x7000_0001, b"a=%d"))));
        assert!(matches!(find(0x7000_0002, b"%n"), Found::Refuse));
        let before = eager_count();
        assert!(matches!(find(0x7000_0003, b"%1$d"), Found::Eager));
        assert!(eager_count() > before);
    }

    #[test]
    fn threads_racing_for_a_new_format_share_one() {
        let found: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope
                        .spawn(|| defer(find(0x7100_0000, b"race %d %s")) as *const Format as usize)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(found.windows(2).all(|w| w[0] == w[1]), "{found:?}");
    }

    #[test]
    fn too_many_arguments_or_a_huge_field_are_eager() {
        let many = "%d".repeat(MAX_ARGS + 1);
        assert!(matches!(find(0x7200_0000, many.as_bytes()), Found::Eager));
        assert!(matches!(find(0x7200_0001, b"%2000000d"), Found::Eager));
        assert!(matches!(find(0x7200_0002, b"%.2000000f"), Found::Eager));
        assert!(matches!(find(0x7200_0003, b"%.2000000s"), Found::Defer(_)));
        let long = vec![b'x'; MAX_FORMAT + 1];
        assert!(matches!(find(0x7200_0004, &long), Found::Eager));
        let mut long_n = long.clone();
        long_n.extend_from_slice(b"%hn");
        assert!(matches!(find(0x7200_0005, &long_n), Found::Refuse));
        let mut long_literal = long.clone();
        long_literal.extend_from_slice(b"%%n");
        assert!(matches!(find(0x7200_0006, &long_literal), Found::Eager));
    }
}
