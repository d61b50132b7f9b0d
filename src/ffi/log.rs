//! The producer calls: `ql_log` and its variants make a built-in record
//! on a queue; `ql_context_*` set the calling thread's context fields.

use std::ffi::{c_char, c_void};
use std::ptr;

use super::queue::ql_queue;
use super::record::{bytes, c_str, ql_field, ql_source, CFields, QL_FIELDS_MAX};
use super::{
    boundary, ql_status, try_out, try_ref, QL_ERR_EMPTY, QL_ERR_INVALID, QL_ERR_NULL,
    QL_ERR_UNSUPPORTED, QL_OK,
};
use crate::deferred::Found;
use crate::fields::{FieldError, FieldList};
use crate::printf::{Arg, ArgKind, Format};
use crate::record::{Call, Source};

/// The queue of a producer call, from the enclosing function: returns
/// `QL_ERR_NULL` for NULL, `QL_OK` below the queue's threshold (nothing
/// else read), `QL_ERR_FORKED` for a queue inherited across `fork`.
macro_rules! producer_queue {
    ($queue:expr, $level:expr) => {{
        let queue = try_ref!($queue);
        if !queue.inner.enabled($level) {
            return QL_OK;
        }
        super::queue::refuse_inherited!(queue);
        queue
    }};
}

/// The source location and the fields of a call, checked: `QL_ERR_NULL`
/// for NULL `fields` with a nonzero count or a NULL key, `QL_ERR_INVALID`
/// for more than `QL_FIELDS_MAX` or a bad key or kind.
///
/// # Safety
/// `source` NULL or valid; `fields` NULL or valid for `field_count`
/// entries, as `ql_log_src` says.
unsafe fn call_parts<'a>(
    source: *const ql_source,
    fields: *const ql_field,
    field_count: usize,
) -> Result<(Source<'a>, CFields<'a>), ql_status> {
    if fields.is_null() && field_count > 0 {
        return Err(QL_ERR_NULL);
    }
    // Before any field is read: a count past the array (SIZE_MAX) must
    // not make us read past it.
    if field_count > QL_FIELDS_MAX {
        return Err(QL_ERR_INVALID);
    }
    // SAFETY: the caller's promise.
    let fields = unsafe { CFields::from_raw(fields, field_count) };
    fields.shape()?;
    if crate::fields::check(&fields).is_err() {
        return Err(QL_ERR_INVALID);
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
    Ok((source, fields))
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
/// `QL_ERR_NOMEM` when the memory a long message or many fields need
/// could not be allocated (or the queue could not grow): the record is
/// dropped and counted the same way; the process goes on.
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
///   (file and function names past 1024 bytes are cut, as is a logger
///   name).
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
        let queue = producer_queue!(queue, level);
        // SAFETY: the caller's promise.
        let Some(message) = (unsafe { bytes(message, len) }) else {
            return QL_ERR_NULL;
        };
        // SAFETY: the caller's promise.
        let (source, fields) = match unsafe { call_parts(source, fields, field_count) } {
            Ok(parts) => parts,
            Err(status) => return status,
        };
        let call = Call {
            level,
            // SAFETY: the caller's promise.
            logger: unsafe { c_str(logger) },
            user: user as usize,
            source: &source,
            fields: &fields,
        };
        super::status_of_put(queue.inner.log(&call, message))
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

/// A parsed printf format, kept by the library for the life of the process
/// (from `ql_printf_find`). Opaque: the pointer is the library's parsed
/// format, never read through this type.
pub struct ql_printf {
    _private: [u8; 0],
}

/// `ql_arg.bits` holds an `int` (sign-extended to 64 bits): `int`,
/// `unsigned`, `char`, `short` (promoted), and `*` widths and precisions.
pub const QL_ARG_INT: u8 = 1;
/// `ql_arg.bits` holds a `long` (or `long long`, `intmax_t`, `size_t`,
/// `ptrdiff_t`: 64 bits here).
pub const QL_ARG_LONG: u8 = 2;
/// `ql_arg.bits` holds the bits of a `double`.
pub const QL_ARG_DOUBLE: u8 = 3;
/// `ql_arg.text` is a `char *` (NULL allowed), copied by the call.
pub const QL_ARG_STR: u8 = 4;
/// `ql_arg.bits` holds a `void *` (`%p`).
pub const QL_ARG_PTR: u8 = 5;
/// The most arguments a deferred format may take (`*` included).
pub const QL_ARGS_MAX: usize = 32;

const _: () = assert!(QL_ARGS_MAX == crate::deferred::MAX_ARGS);
const _: () = assert!(ArgKind::Int as u8 == QL_ARG_INT && ArgKind::Long as u8 == QL_ARG_LONG);
const _: () = assert!(ArgKind::Double as u8 == QL_ARG_DOUBLE && ArgKind::Str as u8 == QL_ARG_STR);
const _: () = assert!(ArgKind::Ptr as u8 == QL_ARG_PTR);

/// One argument a call site read from its `va_list` for a deferred format,
/// of the kind `ql_printf_find` said (`QL_ARG_*`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_arg {
    /// The value's bits, for every kind but `QL_ARG_STR`.
    pub bits: u64,
    /// The string, for `QL_ARG_STR` (NULL allowed); ignored otherwise.
    pub text: *const c_char,
}

/// The bytes of `text` up to its NUL or `limit`, whichever is first.
///
/// # Safety
/// `text` must be valid for reading up to its NUL or `limit` bytes.
unsafe fn c_strn<'a>(text: *const c_char, limit: usize) -> &'a [u8] {
    // SAFETY: the caller's promise; strnlen reads no further.
    let len = unsafe { libc::strnlen(text, limit) };
    // SAFETY: `len` bytes were just read.
    unsafe { std::slice::from_raw_parts(text.cast(), len) }
}

/// Looks up a printf format for deferred formatting: parsed once per format
/// (the library keeps it, keyed by the format's address and compared byte
/// for byte on every call, so a format that is not a string literal is
/// safe too).
///
/// On `QL_OK`, `*format_out` is the parsed format and `*kinds_out` /
/// `*count_out` the kinds of the arguments to read from the `va_list`, in
/// order (`QL_ARG_*`, `*` widths and precisions included): the call site
/// reads them and calls `ql_log_args`. `QL_ERR_UNSUPPORTED` when the
/// format cannot be deferred (positional arguments, `%lc` / `%ls`, the `'`
/// flag, `long double`, more than `QL_ARGS_MAX` arguments, or the library's
/// table of formats is full): format it eagerly instead (each such call is
/// counted, `ql_printf_eager_count`). `QL_ERR_INVALID` for a format with
/// `%n`, which is refused. `QL_ERR_NULL` for a NULL pointer. Any thread;
/// `ql_logf` and the call-site macros call it for you.
///
/// # Safety
/// `format` must be NULL or a NUL-terminated string; the out-pointers NULL
/// or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn ql_printf_find(
    format: *const c_char,
    format_out: *mut *const ql_printf,
    kinds_out: *mut *const u8,
    count_out: *mut usize,
) -> ql_status {
    boundary(|| {
        let format_out = try_out!(format_out);
        let kinds_out = try_out!(kinds_out);
        let count_out = try_out!(count_out);
        if format.is_null() {
            return QL_ERR_NULL;
        }
        // SAFETY: the caller's promise.
        let text = unsafe { c_str(format) };
        match crate::deferred::find(format as usize, text) {
            Found::Defer(parsed) => {
                let kinds = parsed.args();
                *format_out = (parsed as *const Format).cast::<ql_printf>();
                *kinds_out = kinds.as_ptr().cast::<u8>();
                *count_out = kinds.len();
                QL_OK
            }
            Found::Eager => QL_ERR_UNSUPPORTED,
            Found::Refuse => QL_ERR_INVALID,
        }
    })
}

/// Calls that formatted eagerly because their format could not be deferred
/// (see `ql_printf_find`), since the process started. Any thread.
#[no_mangle]
pub extern "C" fn ql_printf_eager_count() -> u64 {
    boundary(crate::deferred::eager_count)
}

/// Logs a printf-style message whose formatting is deferred: `format` (from
/// `ql_printf_find`) with the `arg_count` arguments `args`, read by the
/// call site in the order and of the kinds `ql_printf_find` gave. The
/// record is made now (time, thread, context fields, strings copied: a
/// `%s` argument may change once the call returns) and its message is
/// formatted as it leaves the queue, on the listener's thread (or the
/// thread of a `ql_queue_get`), exactly as `vsnprintf` would have in the
/// C locale. Otherwise as `ql_log_src` (statuses, fields, source).
/// `QL_ERR_INVALID` when `arg_count` is not the format's count;
/// `QL_ERR_UNSUPPORTED`, nothing queued, when a `*` width, or a `*`
/// precision of a number, is over `QL_MESSAGE_MAX`: format such a call
/// eagerly (it is counted in `ql_printf_eager_count`). Any thread.
///
/// # Safety
/// As `ql_log_src`; `format` NULL or from `ql_printf_find`; `args` NULL or
/// valid for `arg_count` entries whose `text` (for `QL_ARG_STR`) is NULL
/// or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ql_log_args(
    queue: *const ql_queue,
    level: i32,
    logger: *const c_char,
    source: *const ql_source,
    fields: *const ql_field,
    field_count: usize,
    format: *const ql_printf,
    args: *const ql_arg,
    arg_count: usize,
) -> ql_status {
    boundary(|| {
        let queue = producer_queue!(queue, level);
        if format.is_null() {
            return QL_ERR_NULL;
        }
        // SAFETY: handed out by `ql_printf_find`: the address of a
        // `&'static Format` (formats are never freed), the caller's promise.
        let format: &'static Format = unsafe { &*format.cast::<Format>() };
        let kinds = format.args();
        if arg_count != kinds.len() {
            return QL_ERR_INVALID;
        }
        if args.is_null() && arg_count > 0 {
            return QL_ERR_NULL;
        }
        let c_args: &[ql_arg] = if arg_count == 0 {
            &[]
        } else {
            // SAFETY: the caller's promise.
            unsafe { std::slice::from_raw_parts(args, arg_count) }
        };
        // A `*` width or precision past MAX_FIELD: the caller formats
        // eagerly (glibc fails a field over INT_MAX; this formatter would
        // write it all, on the listener's thread).
        if !format.fields_within(crate::deferred::MAX_FIELD, |i| c_args[i].bits as i64) {
            crate::deferred::note_eager();
            return QL_ERR_UNSUPPORTED;
        }
        let mut taken = [Arg::Int(0); QL_ARGS_MAX];
        for (index, ((slot, kind), arg)) in taken.iter_mut().zip(kinds).zip(c_args).enumerate() {
            *slot = match kind {
                ArgKind::Int | ArgKind::Long => Arg::Int(arg.bits as i64),
                ArgKind::Double => Arg::Double(f64::from_bits(arg.bits)),
                ArgKind::Ptr => Arg::Ptr(arg.bits as usize),
                ArgKind::Str if arg.text.is_null() => Arg::Str(None),
                // C reads a `%s` with a precision only that far: its array
                // need not hold a NUL.
                ArgKind::Str => match format.str_limit(index, |i| c_args[i].bits as i64) {
                    // SAFETY: the caller's promise (a string, or an array of
                    // at least `limit` bytes).
                    Some(limit) => Arg::Str(Some(unsafe { c_strn(arg.text, limit) })),
                    // SAFETY: the caller's promise.
                    None => Arg::Str(Some(unsafe { c_str(arg.text) })),
                },
            };
        }
        // SAFETY: the caller's promise.
        let (source, fields) = match unsafe { call_parts(source, fields, field_count) } {
            Ok(parts) => parts,
            Err(status) => return status,
        };
        let call = Call {
            level,
            // SAFETY: the caller's promise.
            logger: unsafe { c_str(logger) },
            user: 0,
            source: &source,
            fields: &fields,
        };
        match queue.inner.log_deferred(&call, format, &taken[..arg_count]) {
            Ok(()) => QL_OK,
            Err(None) => QL_ERR_INVALID,
            Err(Some(refused)) => super::status_of_put::<()>(Err(refused)),
        }
    })
}
