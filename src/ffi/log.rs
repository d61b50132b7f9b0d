//! The producer calls: `ql_log` and its variants make a built-in record
//! on a queue; `ql_context_*` set the calling thread's context fields.

use std::ffi::{c_char, c_void};
use std::ptr;

use super::queue::ql_queue;
use super::record::{bytes, c_str, ql_field, ql_source, CFields, QL_FIELDS_MAX};
use super::{
    boundary, ql_status, try_ref, QL_ERR_EMPTY, QL_ERR_INVALID, QL_ERR_NULL, QL_ERR_UNSUPPORTED,
    QL_OK,
};
use crate::fields::{FieldError, FieldList};
use crate::record::Source;

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
    // SAFETY: the same contract, with no source and no fields.
    unsafe {
        ql_log_src(
            queue,
            level,
            logger,
            ptr::null(),
            ptr::null(),
            0,
            message,
            len,
            user,
        )
    }
}

/// Logs a message with structured fields: `ql_log_src` with no source
/// location and a NULL user value.
///
/// # Safety
/// As `ql_log_src`.
#[no_mangle]
pub unsafe extern "C" fn ql_log_fields(
    queue: *const ql_queue,
    level: i32,
    logger: *const c_char,
    fields: *const ql_field,
    field_count: usize,
    message: *const c_char,
    len: usize,
) -> ql_status {
    // SAFETY: the same contract.
    unsafe {
        ql_log_src(
            queue,
            level,
            logger,
            ptr::null(),
            fields,
            field_count,
            message,
            len,
            ptr::null_mut(),
        )
    }
}

/// Logs a message as a built-in record, with its source location and
/// structured fields: what every other logging call comes down to. The
/// call-site macros (`QL_INFO` ...) call it through `ql_logf_src`.
///
/// As `ql_log_user`, and:
/// - `source`: NULL, or where the call was made; its strings are copied
///   (file and function names past 1024 bytes are cut).
/// - `fields`, `field_count`: NULL and 0, or an array of `field_count`
///   fields (at most `QL_FIELDS_MAX`), copied. The calling thread's
///   context fields (`ql_context_set`) are added after them; a key given
///   more than once keeps its first value, so a call's field wins over a
///   context field. String values longer than `QL_MESSAGE_MAX` are cut
///   like messages.
///
/// A record whose text (logger, message, file, function, keys and string
/// values, each with a NUL) fits in `QL_RECORD_INLINE_TEXT` bytes costs no
/// heap allocation once the queue's record pool is warm, fields included.
///
/// `QL_ERR_NULL` for a NULL queue, a NULL message with a nonzero `len`,
/// NULL `fields` with a nonzero count, a field with a NULL key, or a NULL
/// string value with a nonzero length. `QL_ERR_INVALID` for a key that is
/// not 1 to `QL_FIELD_KEY_MAX` bytes of ASCII letters, digits, `_`, `.`
/// and `-`, a `kind` that is none of `QL_FIELD_*`, or more than
/// `QL_FIELDS_MAX` fields. A refused call logs nothing and counts nothing.
/// Any thread, concurrently.
///
/// # Safety
/// `queue` must be NULL or a live queue; `logger` NULL or a NUL-terminated
/// string; `message` NULL or valid for `len` bytes; `source` NULL or valid,
/// its strings NULL or NUL-terminated; `fields` NULL or valid for
/// `field_count` fields, each key NULL or NUL-terminated and each string
/// value valid for its length.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ql_log_src(
    queue: *const ql_queue,
    level: i32,
    logger: *const c_char,
    source: *const ql_source,
    fields: *const ql_field,
    field_count: usize,
    message: *const c_char,
    len: usize,
    user: *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        if !queue.inner.enabled(level) {
            return QL_OK;
        }
        super::queue::refuse_inherited!(queue);
        // SAFETY: the caller's promise.
        let Some(message) = (unsafe { bytes(message, len) }) else {
            return QL_ERR_NULL;
        };
        if fields.is_null() && field_count > 0 {
            return QL_ERR_NULL;
        }
        // Before any field is read: a count past the array (SIZE_MAX) must
        // not make us read past it.
        if field_count > QL_FIELDS_MAX {
            return QL_ERR_INVALID;
        }
        // SAFETY: the caller's promise.
        let fields = unsafe { CFields::from_raw(fields, field_count) };
        if let Err(status) = fields.shape() {
            return status;
        }
        if crate::fields::check(&fields).is_err() {
            return QL_ERR_INVALID;
        }
        // SAFETY: the caller's promise.
        let source = match unsafe { source.as_ref() } {
            // SAFETY: the caller's promise.
            Some(s) => unsafe {
                Source {
                    file: c_str(s.file),
                    line: s.line,
                    func: c_str(s.func),
                }
            },
            None => Source::default(),
        };
        // SAFETY: the caller's promise.
        let logger = unsafe { c_str(logger) };
        super::status_of_put(queue.inner.log(
            level,
            logger,
            message,
            user as usize,
            &source,
            &fields,
        ))
    })
}

/// Binds a context field to every record the calling thread logs from now
/// on (a request id, a user): it is added to each built-in record when the
/// record is made, on the logging thread, so a handler never sees another
/// thread's context. Setting a key the thread already has replaces its
/// value in place. The key and a string value are copied.
///
/// `QL_ERR_NULL` for a NULL key or a NULL string with a nonzero length;
/// `QL_ERR_INVALID` for a bad key or kind (see `ql_log_src`), or a new key
/// when the thread already holds `QL_FIELDS_MAX` context fields;
/// `QL_ERR_UNSUPPORTED` when the thread is exiting and its context is
/// already destroyed (a pthread key destructor, an `atexit` handler):
/// nothing is set, and records it logs from there carry no context. The
/// calling thread only; the fields are freed when the thread exits.
///
/// # Safety
/// `field.key` must be NULL or NUL-terminated; a string value valid for its
/// length.
#[no_mangle]
pub unsafe extern "C" fn ql_context_set(field: ql_field) -> ql_status {
    boundary(|| {
        let one = [field];
        // SAFETY: the caller's promise.
        let fields = unsafe { CFields::from_raw(one.as_ptr(), 1) };
        if let Err(status) = fields.shape() {
            return status;
        }
        match crate::fields::context_set(fields.field(0)) {
            Ok(()) => QL_OK,
            Err(FieldError::Exiting) => QL_ERR_UNSUPPORTED,
            Err(FieldError::BadKey | FieldError::TooMany) => QL_ERR_INVALID,
        }
    })
}

/// Removes the calling thread's context field `key`. `QL_OK` when it was
/// there, `QL_ERR_EMPTY` when it was not (also when the thread is exiting
/// and its context is already destroyed), `QL_ERR_NULL` for a NULL key.
///
/// # Safety
/// `key` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ql_context_remove(key: *const c_char) -> ql_status {
    boundary(|| {
        if key.is_null() {
            return QL_ERR_NULL;
        }
        // SAFETY: the caller's promise.
        if crate::fields::context_remove(unsafe { c_str(key) }) {
            QL_OK
        } else {
            QL_ERR_EMPTY
        }
    })
}

/// Removes every context field of the calling thread (nothing to do when
/// the thread is exiting and its context is already destroyed).
#[no_mangle]
pub extern "C" fn ql_context_clear() {
    boundary(crate::fields::context_clear)
}
