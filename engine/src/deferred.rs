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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::printf::{self, ArgKind, Format, Unsupported};

/// Formats the table holds at most.
pub const SITES: usize = 4096;

/// Arguments a deferred call may capture at most; a format needing more is
/// formatted eagerly.
pub const MAX_ARGS: usize = 32;

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

fn table() -> &'static [OnceLock<Site>] {
    static TABLE: OnceLock<Box<[OnceLock<Site>]>> = OnceLock::new();
    TABLE.get_or_init(|| (0..SITES).map(|_| OnceLock::new()).collect())
}

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
    let table = table();
    // Fibonacci hashing of the address (literals are 1-byte aligned).
    let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % SITES;
    for probe in 0..=PROBES {
        let site = table[(start + probe) % SITES].get_or_init(|| Site {
            key,
            text: text.into(),
            parsed: printf::parse(text),
        });
        if site.key == key && *site.text == *text {
            return decide(&site.parsed);
        }
    }
    // Every slot around here holds another format: format eagerly.
    EAGER.fetch_add(1, Ordering::Relaxed);
    Found::Eager
}

/// The kinds a deferred format captures (see [`ArgKind`]).
pub fn kinds(format: &Format) -> &[ArgKind] {
    format.args()
}
