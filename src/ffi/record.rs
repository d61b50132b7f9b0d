//! `ql_record`, the built-in record, and the producer API (`ql_log`).

use std::ffi::{c_char, c_void, CStr};
use std::ptr;
use std::slice;

use super::queue::ql_queue;
use super::{boundary, ql_status, try_ref, RawRecord, QL_ERR_NULL, QL_OK};
use crate::queue::PutError;
use crate::record::{level_name, LogRecord};

/// Python's level NOTSET (0): a handler at this level gets every record.
pub const QL_LEVEL_NOTSET: i32 = 0;
/// Python's level DEBUG (10).
pub const QL_LEVEL_DEBUG: i32 = 10;
/// Python's level INFO (20).
pub const QL_LEVEL_INFO: i32 = 20;
/// Python's level WARNING (30).
pub const QL_LEVEL_WARNING: i32 = 30;
/// Python's level ERROR (40).
pub const QL_LEVEL_ERROR: i32 = 40;
/// Python's level CRITICAL (50).
pub const QL_LEVEL_CRITICAL: i32 = 50;
/// A queue threshold that lets every record through, negative levels
/// included (the default).
pub const QL_LEVEL_ALL: i32 = i32::MIN;

/// Bytes of logger name plus message (each with its NUL) stored inside a
/// built-in record; longer text is kept whole in one heap allocation.
pub const QL_RECORD_INLINE_TEXT: usize = 96;
const _: () = assert!(QL_RECORD_INLINE_TEXT == crate::record::INLINE_TEXT);

/// The longest message kept: a longer one is cut to this many bytes, the
/// last eight of which are the visible marker `...[cut]`.
pub const QL_MESSAGE_MAX: usize = 1 << 20;
const _: () = assert!(QL_MESSAGE_MAX == crate::record::MAX_MESSAGE);

/// A built-in record, as handlers and hooks see it.
///
/// On a queue fed by `ql_log` / `ql_logf`, the `void *record` every
/// handler and hook receives points to one of these: cast it to
/// `const ql_record *`. It is valid for the duration of the call only;
/// copy what you keep. The library owns it and frees it after `done`; never
/// free or modify it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ql_record {
    /// The level given to `ql_log` (any integer; see `QL_LEVEL_*`).
    pub level: i32,
    /// The Linux thread id (`gettid`) of the thread that logged it.
    pub thread_id: u32,
    /// Wall-clock time when it was logged, in ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// The logger name, NUL-terminated ("root" when none was given).
    pub logger: *const c_char,
    /// Length of `logger` in bytes, without the NUL.
    pub logger_len: usize,
    /// The message, NUL-terminated. It may itself contain NUL bytes when
    /// the program logged them: `message_len` is authoritative.
    pub message: *const c_char,
    /// Length of `message` in bytes, without the final NUL.
    pub message_len: usize,
    /// The value given to `ql_log_user` (NULL otherwise); never read by the
    /// library.
    pub user: *mut c_void,
}

/// What the built-in queue carries: a program's pointer, or a built-in
/// record the library owns.
///
/// A built-in record is boxed, so an entry is two words and a queue of
/// program pointers moves no more than it needs; the boxes are recycled
/// through the queue's [`crate::record::RecordPool`].
pub(crate) enum Entry {
    Ptr(RawRecord),
    Log(Box<LogRecord>),
}

pub(crate) fn view_of(record: &LogRecord) -> ql_record {
    ql_record {
        level: record.level,
        thread_id: record.thread_id,
        timestamp_ns: record.timestamp_ns,
        logger: record.logger_with_nul().as_ptr().cast(),
        logger_len: record.logger().len(),
        message: record.message_with_nul().as_ptr().cast(),
        message_len: record.message().len(),
        user: record.user as *mut c_void,
    }
}

impl Entry {
    /// Calls `f` with the pointer C code sees for this entry: the program's
    /// own pointer, or a `ql_record` view that lives for the call.
    #[inline]
    pub(crate) fn with_ptr<T>(&self, f: impl FnOnce(*mut c_void) -> T) -> T {
        match self {
            Entry::Ptr(p) => f(p.0),
            Entry::Log(record) => {
                let view = view_of(record);
                f(ptr::addr_of!(view).cast_mut().cast())
            }
        }
    }
}

/// A built-in record handed out by `ql_queue_get*`: the view first, so a
/// `ql_record *` to it is a pointer to the whole.
#[repr(C)]
pub(crate) struct OwnedRecord {
    view: ql_record,
    record: LogRecord,
}

/// Boxes a built-in record for a caller of `ql_queue_get*`.
pub(crate) fn hand_out(record: LogRecord) -> *mut c_void {
    let mut owned = Box::new(OwnedRecord {
        view: view_of(&record),
        record,
    });
    // The text may live inside the record, which moved into the box.
    owned.view = view_of(&owned.record);
    Box::into_raw(owned).cast()
}

/// Frees a built-in record that `ql_queue_get`, `ql_queue_get_nowait` or
/// `ql_queue_get_timeout` handed out. NULL is a no-op.
///
/// Only for those records: the records handlers receive belong to the
/// library and must never be freed.
///
/// # Safety
/// `record` must be NULL or a record from a `ql_queue_get*` call, not yet
/// freed.
#[no_mangle]
pub unsafe extern "C" fn ql_record_free(record: *mut ql_record) {
    boundary(|| {
        if !record.is_null() {
            // SAFETY: `record` came from `hand_out` (the caller's promise),
            // which made it with `Box::into_raw` of an `OwnedRecord` whose
            // first field is the view.
            drop(unsafe { Box::from_raw(record.cast::<OwnedRecord>()) });
        }
    })
}

/// The name of a level, as Python's `logging.getLevelName`: "NOTSET",
/// "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL" for Python's levels,
/// NULL for any other value (print those as numbers, for example "Level 25").
///
/// Returns a static string; never to be freed. After an internal panic
/// (never expected), the static text "panic inside queue_listener". Any
/// thread.
#[no_mangle]
pub extern "C" fn ql_level_name(level: i32) -> *const c_char {
    boundary(|| level_name(level).map_or(ptr::null(), CStr::as_ptr))
}

/// # Safety
/// `text` must be NULL or valid for `len` bytes.
unsafe fn bytes<'a>(text: *const c_char, len: usize) -> Option<&'a [u8]> {
    match (text.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: the caller's promise.
        (false, n) => Some(unsafe { slice::from_raw_parts(text.cast(), n) }),
    }
}

/// # Safety
/// `text` must be NULL or a NUL-terminated string.
unsafe fn c_str<'a>(text: *const c_char) -> &'a [u8] {
    if text.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::ffi::CStr::from_ptr(text) }.to_bytes()
    }
}

/// Logs a message as a built-in record: `ql_log_user` with a NULL user
/// value.
///
/// # Safety
/// As `ql_log_user`.
#[no_mangle]
pub unsafe extern "C" fn ql_log(
    queue: *const ql_queue,
    level: i32,
    logger: *const c_char,
    message: *const c_char,
    len: usize,
) -> ql_status {
    // SAFETY: the same contract.
    unsafe { ql_log_user(queue, level, logger, message, len, ptr::null_mut()) }
}

/// Logs a message as a built-in record (`ql_record`) on the built-in queue.
///
/// - `level`: any integer (`QL_LEVEL_*` are Python's). A record below the
///   queue's threshold (`ql_queue_set_level`) costs one comparison: it is
///   not made, not queued, not counted, and `QL_OK` is returned.
/// - `logger`: a NUL-terminated name, copied; NULL or "" means "root".
/// - `message`, `len`: `len` bytes, copied (they need no NUL and may hold
///   any bytes). `message` may be NULL only when `len` is 0. A message over
///   `QL_MESSAGE_MAX` bytes is cut and ends with `...[cut]`.
/// - `user`: any value, handed to handlers in `ql_record.user`.
///
/// The record is stamped with the wall-clock time and the calling thread's
/// id. Logger name and message up to `QL_RECORD_INLINE_TEXT` bytes in all
/// are stored inside the record: no heap allocation. On a full bounded
/// queue the queue's overflow policy applies (see `ql_queue_options`):
/// `QL_OK` once queued (with `QL_OVERFLOW_DROP_OLDEST`, after dropping the
/// oldest records), or the record is dropped, counted in the queue's
/// dropped count, and `QL_ERR_FULL` (drop newest), `QL_ERR_TIMEOUT` (the
/// blocking deadline passed) or `QL_ERR_WOULD_DEADLOCK` (called on a
/// listener thread, where waiting could wait for itself) is returned.
///
/// `QL_ERR_NULL` when `queue` is NULL, or `message` is NULL with a nonzero
/// `len`. Any thread, concurrently.
///
/// # Safety
/// `queue` must be NULL or a live queue; `logger` NULL or a NUL-terminated
/// string; `message` NULL or valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ql_log_user(
    queue: *const ql_queue,
    level: i32,
    logger: *const c_char,
    message: *const c_char,
    len: usize,
    user: *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        if !queue.enabled(level) {
            return QL_OK;
        }
        super::queue::refuse_inherited!(queue);
        // SAFETY: the caller's promise.
        let Some(message) = (unsafe { bytes(message, len) }) else {
            return QL_ERR_NULL;
        };
        // SAFETY: the caller's promise.
        let logger = unsafe { c_str(logger) };
        let record = queue.pool.make(level, logger, message, user as usize);
        match queue.inner.offer(Entry::Log(record)) {
            Ok(()) => QL_OK,
            Err(refused) => {
                queue.inner.count_drop();
                super::status_of_put::<()>(Err(match refused {
                    PutError::Full(_) => PutError::Full(()),
                    PutError::Timeout(_) => PutError::Timeout(()),
                    PutError::WouldDeadlock(_) => PutError::WouldDeadlock(()),
                }))
            }
        }
    })
}
