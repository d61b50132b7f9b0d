//! `ql_record`, the C view of a record, its fields, and the levels; the
//! producer calls that make records are in [`super::log`].

use std::ffi::{c_char, c_void, CStr};
use std::ptr;
use std::slice;

use super::{boundary, ql_status, QL_ERR_INVALID, QL_ERR_NULL};
use crate::fields::{Field, FieldList, Value};
use crate::log_queue::Entry;
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
pub const QL_RECORD_INLINE_TEXT: usize = 256;
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
///
/// A record a program makes itself and gives to the built-in handlers (on
/// a queue of its own) must be one the library could have made: text NULL
/// only with length 0, at most 128 fields, each with a valid key (see
/// `ql_field`), a `QL_FIELD_*` kind and a string NULL only with length 0.
/// A built-in handler refuses any other record: it returns `EINVAL` and
/// counts it received and lost, so nothing forged reaches the output.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ql_record {
    /// The level given to `ql_log` (any integer; see `QL_LEVEL_*`).
    pub level: i32,
    /// The Linux thread id (`gettid`) of the thread that logged it.
    pub thread_id: u32,
    /// Wall-clock time when it was logged, in ns since the Unix epoch
    /// (`CLOCK_REALTIME`, read from the TSC where it is invariant: README,
    /// "Timestamps").
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
    /// The source file given by the call-site macros (`QL_INFO` ...) or
    /// `ql_log_src`, NUL-terminated; "" when none was given. NULL is read
    /// as "" too (a record a program made itself).
    pub file: *const c_char,
    /// Length of `file` in bytes, without the NUL.
    pub file_len: usize,
    /// The function, NUL-terminated; "" when none was given (NULL as "").
    pub func: *const c_char,
    /// Length of `func` in bytes, without the NUL.
    pub func_len: usize,
    /// The record's structured fields: those given with the call, then the
    /// logging thread's context fields (`ql_context_set`), each key once.
    /// NULL when `field_count` is 0.
    pub fields: *const ql_field,
    /// How many fields.
    pub field_count: usize,
    /// The source line, 0 when none was given.
    pub line: u32,
}

/// `ql_field.kind` of a string value (`value.s`).
pub const QL_FIELD_STR: i32 = 1;
/// `ql_field.kind` of a signed integer (`value.i`).
pub const QL_FIELD_INT: i32 = 2;
/// `ql_field.kind` of an unsigned integer (`value.u`).
pub const QL_FIELD_UINT: i32 = 3;
/// `ql_field.kind` of a double (`value.d`; NaN and infinities allowed).
pub const QL_FIELD_DOUBLE: i32 = 4;
/// `ql_field.kind` of a boolean (`value.b`).
pub const QL_FIELD_BOOL: i32 = 5;

/// The longest field key, in bytes.
pub const QL_FIELD_KEY_MAX: usize = 32;
const _: () = assert!(QL_FIELD_KEY_MAX == crate::fields::MAX_KEY);

/// The most fields one call may give, and the most context fields one
/// thread may hold.
pub const QL_FIELDS_MAX: usize = 64;
const _: () = assert!(QL_FIELDS_MAX == crate::fields::MAX_FIELDS);

/// A string value: `len` bytes at `ptr` (any bytes; UTF-8 expected). In
/// records the library made, a NUL follows them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ql_str {
    /// The bytes (NULL only when `len` is 0).
    pub ptr: *const c_char,
    /// How many.
    pub len: usize,
}

/// A field's value; `ql_field.kind` says which member is set.
#[repr(C)]
#[derive(Clone, Copy)]
pub union ql_field_value {
    /// `QL_FIELD_STR`.
    pub s: ql_str,
    /// `QL_FIELD_INT`.
    pub i: i64,
    /// `QL_FIELD_UINT`.
    pub u: u64,
    /// `QL_FIELD_DOUBLE`.
    pub d: f64,
    /// `QL_FIELD_BOOL`.
    pub b: bool,
}

/// One structured field: a key and a typed value.
///
/// Make them with `ql_field_str`, `ql_field_strn`, `ql_field_int`,
/// `ql_field_uint`, `ql_field_double` and `ql_field_bool`. A key is 1 to
/// `QL_FIELD_KEY_MAX` bytes of ASCII letters, digits, `_`, `.` and `-`,
/// NUL-terminated. The library copies keys and string values when the
/// record is made: nothing passed needs to outlive the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_field {
    /// The key, NUL-terminated.
    pub key: *const c_char,
    /// `QL_FIELD_STR`, `QL_FIELD_INT`, `QL_FIELD_UINT`, `QL_FIELD_DOUBLE`
    /// or `QL_FIELD_BOOL`.
    pub kind: i32,
    /// The value.
    pub value: ql_field_value,
}

/// Where a record was logged: what the call-site macros pass.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ql_source {
    /// The file (`__FILE__`), NUL-terminated, or NULL.
    pub file: *const c_char,
    /// The line (`__LINE__`), or 0.
    pub line: u32,
    /// The function (`__func__`), NUL-terminated, or NULL.
    pub func: *const c_char,
}

const EMPTY_FIELD: ql_field = ql_field {
    key: ptr::null(),
    kind: 0,
    value: ql_field_value { u: 0 },
};

/// A C array of fields, read as the engine's field list. Made only by the
/// unsafe [`CFields::from_raw`], whose promise covers every read.
pub(crate) struct CFields<'a>(&'a [ql_field]);

impl<'a> CFields<'a> {
    /// # Safety
    /// `fields` must be NULL or valid for `count` fields for `'a`; each
    /// field's key NULL or NUL-terminated, and a string value valid for its
    /// length (or NULL with length 0).
    pub(crate) unsafe fn from_raw(fields: *const ql_field, count: usize) -> CFields<'a> {
        CFields(if fields.is_null() || count == 0 {
            &[]
        } else {
            // SAFETY: the caller's promise.
            unsafe { slice::from_raw_parts(fields, count) }
        })
    }

    /// A NULL key or a NULL string with a nonzero length.
    pub(crate) fn has_null(&self) -> bool {
        self.0.iter().any(|f| {
            // SAFETY: `s` is read only for a string field.
            f.key.is_null()
                || (f.kind == QL_FIELD_STR
                    && unsafe { f.value.s }.ptr.is_null()
                    && unsafe { f.value.s }.len > 0)
        })
    }

    /// A kind that is none of `QL_FIELD_*`.
    pub(crate) fn has_bad_kind(&self) -> bool {
        self.0
            .iter()
            .any(|f| !(QL_FIELD_STR..=QL_FIELD_BOOL).contains(&f.kind))
    }

    /// What a call gets for these fields' shape: `QL_ERR_NULL` for a NULL
    /// key or a NULL string with a nonzero length, then `QL_ERR_INVALID`
    /// for a kind that is none of `QL_FIELD_*` (keys are checked by the
    /// engine).
    pub(crate) fn shape(&self) -> Result<(), ql_status> {
        if self.has_null() {
            Err(QL_ERR_NULL)
        } else if self.has_bad_kind() {
            Err(QL_ERR_INVALID)
        } else {
            Ok(())
        }
    }

    /// A field the library would have refused: a NULL key or string, a bad
    /// kind, or a key that is not [`crate::fields::valid_key`] (in a record
    /// a program made itself). The count is not checked: a built-in record
    /// holds a call's fields and its thread's context fields.
    pub(crate) fn malformed(&self) -> bool {
        self.has_null()
            || self.has_bad_kind()
            || !crate::fields::iter(self).all(|f| crate::fields::valid_key(f.key))
    }
}

impl FieldList for CFields<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn field(&self, i: usize) -> Field<'_> {
        let f = &self.0[i];
        // SAFETY: `CFields::from_raw`'s promise; the union member read is the
        // one `kind` names.
        unsafe {
            Field {
                key: c_str(f.key),
                value: match f.kind {
                    QL_FIELD_STR => Value::Str(bytes(f.value.s.ptr, f.value.s.len).unwrap_or(&[])),
                    QL_FIELD_INT => Value::Int(f.value.i),
                    QL_FIELD_UINT => Value::Uint(f.value.u),
                    QL_FIELD_DOUBLE => Value::Double(f.value.d),
                    // The byte C's `bool` occupies, read as C reads it:
                    // any nonzero byte is true (a Rust `bool` other than 0
                    // or 1 would be undefined behaviour).
                    QL_FIELD_BOOL => Value::Bool(*ptr::addr_of!(f.value).cast::<u8>() != 0),
                    // A record a program made itself with a bad kind.
                    _ => Value::Str(&[]),
                },
            }
        }
    }
}

/// Calls `f` with C views of the record's fields, on the stack: no
/// allocation per record, however many fields a record made through the C
/// API holds (at most [`RECORD_FIELDS_MAX`]).
fn with_fields<T>(record: &LogRecord, f: impl FnOnce(&[ql_field]) -> T) -> T {
    fn on_stack<const N: usize, T>(record: &LogRecord, f: impl FnOnce(&[ql_field]) -> T) -> T {
        let n = record.count();
        let mut stack = [EMPTY_FIELD; N];
        for (i, slot) in stack[..n].iter_mut().enumerate() {
            *slot = field_view(record, i);
        }
        f(&stack[..n])
    }
    match record.count() {
        0 => f(&[]),
        1..=16 => on_stack::<16, T>(record, f),
        17..=RECORD_FIELDS_MAX => on_stack::<RECORD_FIELDS_MAX, T>(record, f),
        // Never from the C API (it checks the count); kept safe anyway.
        n => f(&(0..n).map(|i| field_view(record, i)).collect::<Vec<_>>()),
    }
}

/// The most fields a built-in record holds: a call's and its thread's
/// context fields.
pub(crate) const RECORD_FIELDS_MAX: usize = 2 * crate::fields::MAX_FIELDS;

fn field_view(record: &LogRecord, i: usize) -> ql_field {
    let (key, text) = record.field_with_nuls(i);
    let (kind, value) = match record.field(i).value {
        Value::Str(_) => {
            let text = text.unwrap_or(b"\0");
            let s = ql_str {
                ptr: text.as_ptr().cast(),
                len: text.len() - 1,
            };
            (QL_FIELD_STR, ql_field_value { s })
        }
        Value::Int(i) => (QL_FIELD_INT, ql_field_value { i }),
        Value::Uint(u) => (QL_FIELD_UINT, ql_field_value { u }),
        Value::Double(d) => (QL_FIELD_DOUBLE, ql_field_value { d }),
        Value::Bool(b) => (QL_FIELD_BOOL, ql_field_value { b }),
    };
    ql_field {
        key: key.as_ptr().cast(),
        kind,
        value,
    }
}

pub(crate) fn view_of(record: &LogRecord, fields: &[ql_field]) -> ql_record {
    ql_record {
        level: record.level,
        thread_id: record.thread_id,
        timestamp_ns: record.timestamp_ns,
        logger: record.logger_with_nul().as_ptr().cast(),
        logger_len: record.logger().len(),
        message: record.message_with_nul().as_ptr().cast(),
        message_len: record.message().len(),
        user: record.user as *mut c_void,
        file: record.file_with_nul().as_ptr().cast(),
        file_len: record.file().len(),
        func: record.func_with_nul().as_ptr().cast(),
        func_len: record.func().len(),
        fields: if fields.is_empty() {
            ptr::null()
        } else {
            fields.as_ptr()
        },
        field_count: fields.len(),
        line: record.line,
    }
}

/// The C view of the engine's item type (`crate::log_queue::Entry`).
pub(crate) trait WithPtr {
    /// Calls `f` with the pointer C code sees for this entry: the program's
    /// own pointer, or a `ql_record` view that lives for the call.
    fn with_ptr<T>(&self, f: impl FnOnce(*mut c_void) -> T) -> T;
}

impl WithPtr for Entry {
    #[inline]
    fn with_ptr<T>(&self, f: impl FnOnce(*mut c_void) -> T) -> T {
        match self {
            Entry::Ptr(p) => f(p.0),
            Entry::Log(record) => with_fields(record, |fields| {
                let view = view_of(record, fields);
                f(ptr::addr_of!(view).cast_mut().cast())
            }),
        }
    }
}

/// A built-in record handed out by `ql_queue_get*`: the view first, so a
/// `ql_record *` to it is a pointer to the whole.
#[repr(C)]
pub(crate) struct OwnedRecord {
    view: ql_record,
    record: LogRecord,
    fields: Vec<ql_field>,
}

/// Boxes a built-in record for a caller of `ql_queue_get*`.
pub(crate) fn hand_out(record: LogRecord) -> *mut c_void {
    let mut owned = Box::new(OwnedRecord {
        view: view_of(&record, &[]),
        record,
        fields: Vec::new(),
    });
    // The text may live inside the record, which moved into the box.
    owned.fields = (0..owned.record.count())
        .map(|i| field_view(&owned.record, i))
        .collect();
    owned.view = view_of(&owned.record, &owned.fields);
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
pub(crate) unsafe fn bytes<'a>(text: *const c_char, len: usize) -> Option<&'a [u8]> {
    match (text.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: the caller's promise.
        (false, n) => Some(unsafe { slice::from_raw_parts(text.cast(), n) }),
    }
}

/// # Safety
/// `text` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn c_str<'a>(text: *const c_char) -> &'a [u8] {
    if text.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::ffi::CStr::from_ptr(text) }.to_bytes()
    }
}
