//! The journald handler for C: options in, a `ql_handler` out. Every rule
//! lives in [`crate::output::journald`].

use std::ffi::{c_char, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use super::handlers::{install_sink, ql_handler};
use super::{boundary, ql_status, try_out, QL_ERR_INVALID};
use crate::output::journald::{JournaldOptions, JournaldSink, DEFAULT_RETRY_BYTES};
use crate::output::Counters;

/// `ql_journald_options.facility` for no `SYSLOG_FACILITY` field (the
/// default).
pub const QL_JOURNALD_NO_FACILITY: i32 = -1;

/// How a journald handler sends: start from `ql_journald_options_default()`
/// and change what you need. See docs/journald.md for the fields of each
/// entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_journald_options {
    /// The size of this struct as the program was compiled with it: set by
    /// `ql_journald_options_default()`, never by hand. It lets the struct grow in later versions
    /// without breaking programs built against this header (see "Versioning
    /// and ABI" in the README): the library reads `struct_size` bytes,
    /// and members it knows that an older program's struct lacks take their
    /// defaults. A size smaller than any layout (0: options not made by
    /// `ql_journald_options_default()`) is `QL_ERR_INVALID`; a larger one whose members
    /// unknown to this library are not all zero is `QL_ERR_UNSUPPORTED`.
    pub struct_size: usize,
    /// The handler's level for `respect_handler_level`. Default 0 (all).
    pub level: i32,
    /// journald's native socket, copied; NULL (the default) for
    /// `/run/systemd/journal/socket`. A namespaced journald listens on
    /// `/run/systemd/journal.NAME/socket`. At most 107 bytes. It need not
    /// exist yet: the handler connects at its first record.
    pub socket_path: *const c_char,
    /// `SYSLOG_IDENTIFIER` of every entry, copied; NULL (the default) for
    /// the program's short name (the last part of `argv[0]`); "" for no
    /// such field. At most 256 bytes, no newline.
    pub identifier: *const c_char,
    /// `SYSLOG_FACILITY` of every entry, 0..=23 (as syslog's `LOG_USER >>
    /// 3` is 1, `LOG_LOCAL0 >> 3` 16), or `QL_JOURNALD_NO_FACILITY` (the
    /// default) for none.
    pub facility: i32,
    /// How long a send may wait for journald to take an entry (its queue
    /// full: journald slow or stopped), without progress, before the entries
    /// are held for a retry (`EAGAIN`). After such a wait, retries only
    /// probe (no wait) until journald takes an entry again; a flush waits
    /// once more. Default 5000. 0 never waits.
    pub write_timeout_ms: u32,
    /// Bytes of entries held for a retry while journald cannot take them
    /// (not running, restarting, full); past it the oldest are dropped and
    /// counted lost. 0 holds nothing: an entry that cannot go at once is
    /// lost. Default 4 MiB.
    pub retry_bytes: u64,
}

fn default_journald_options() -> ql_journald_options {
    ql_journald_options {
        struct_size: std::mem::size_of::<ql_journald_options>(),
        level: 0,
        socket_path: ptr::null(),
        identifier: ptr::null(),
        facility: QL_JOURNALD_NO_FACILITY,
        write_timeout_ms: 5000,
        retry_bytes: DEFAULT_RETRY_BYTES as u64,
    }
}

/// The default journald options: level 0, the system journal's socket, the
/// program's name as identifier, no facility, a 5 s write timeout, 4 MiB
/// held for a retry. Any thread.
#[no_mangle]
pub extern "C" fn ql_journald_options_default() -> ql_journald_options {
    boundary(default_journald_options)
}

/// # Safety
/// `p` must be NULL or a C string.
unsafe fn bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: the caller's promise.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// Makes a journald handler: each record becomes one journal entry sent to
/// systemd-journald's native socket (no libsystemd needed), with the
/// fields `MESSAGE`, `PRIORITY` (from the level: DEBUG 7, INFO 6, WARNING
/// 4, ERROR 3, CRITICAL 2; other levels by range), `SYSLOG_IDENTIFIER`,
/// `SYSLOG_FACILITY` (when set), `QL_LOGGER`, `TID`, `QL_TIME_USEC` (when
/// the record was made), `CODE_FILE`, `CODE_LINE`, `CODE_FUNC` (when known)
/// and the record's own fields, their names upper-cased with `.` and `-`
/// made `_` (prefixed `F_` when that would be invalid or one of the fields
/// above). An entry over 128 KiB goes in a sealed memfd.
///
/// `options`: NULL for the defaults (`ql_journald_options_default`).
/// On success writes the handler to `*handler_out`: put it in a listener's
/// handler array, which then owns it (or free it with `ql_handler_free`).
///
/// Accounting (`ql_listener_handler_stats`): an entry is written when the
/// kernel took it for journald. Entries journald cannot take now (not
/// running: `ENOENT` or `ECONNREFUSED`; its queue full past
/// `write_timeout_ms`: `EAGAIN`) are held within `retry_bytes` and tried
/// again at the end of each batch, at most every 200 ms while records
/// arrive (at once when a new socket appears at the path), and at a flush;
/// a restarted journald is reconnected to. A
/// flush (a barrier, a stop, a free) counts what it still cannot send
/// lost. The failing record's `handle` returns the errno. Entries queued in
/// a journald that dies before reading them are lost without anyone
/// knowing (counted written). Built-in records only (`ql_log`...).
///
/// `QL_ERR_NULL` for a NULL `handler_out`; `QL_ERR_INVALID` for a
/// `socket_path` that is empty or over 107 bytes, an `identifier` over 256
/// bytes or holding a newline, or a `facility` outside 0..=23 other than
/// `QL_JOURNALD_NO_FACILITY`. Any thread.
///
/// # Safety
/// `options` must be NULL or valid for reading `struct_size` bytes, its
/// `socket_path` and `identifier`
/// NULL or C strings; `handler_out` NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn ql_journald_handler(
    options: *const ql_journald_options,
    handler_out: *mut ql_handler,
) -> ql_status {
    boundary(|| {
        let out = try_out!(handler_out);
        // SAFETY: the caller's promise.
        let o = match unsafe { super::read_sized(options) } {
            Ok(o) => o,
            Err(status) => return status,
        };
        let facility = match o.facility {
            QL_JOURNALD_NO_FACILITY => None,
            f @ 0..=23 => Some(f as u8),
            _ => return QL_ERR_INVALID,
        };
        let mut engine = JournaldOptions {
            facility,
            stall: Duration::from_millis(u64::from(o.write_timeout_ms)),
            retry_bytes: usize::try_from(o.retry_bytes).unwrap_or(usize::MAX),
            ..JournaldOptions::default()
        };
        // SAFETY: the caller's promise.
        if let Some(path) = unsafe { bytes(o.socket_path) } {
            engine.socket = OsStr::from_bytes(path).into();
        }
        // SAFETY: the caller's promise.
        engine.identifier = unsafe { bytes(o.identifier) }.map(<[u8]>::to_vec);
        let counters = Arc::new(Counters::default());
        match JournaldSink::new(engine, Arc::clone(&counters)) {
            Ok(sink) => install_sink(Box::new(sink), o.level, counters, out),
            Err(_) => QL_ERR_INVALID,
        }
    })
}

// SAFETY: repr(C), `struct_size` first, C-storable members only, no tail
// padding (asserted below).
unsafe impl super::SizedOptions for ql_journald_options {
    const FIRST_SIZE: usize = std::mem::size_of::<ql_journald_options>();
    fn defaults() -> Self {
        default_journald_options()
    }
}
const _: () = assert!(super::no_tail_padding(
    std::mem::size_of::<ql_journald_options>(),
    std::mem::offset_of!(ql_journald_options, retry_bytes),
    std::mem::size_of::<u64>(),
));
