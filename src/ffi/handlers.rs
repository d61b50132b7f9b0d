//! The built-in handlers, as `ql_handler` entries made by the library on the
//! same public mechanism a program uses for its own handlers.

use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::slice;

use super::listener::ql_handler;
use super::record::ql_record;
use super::{boundary, ql_status, try_out, QL_ERR_INVALID, QL_ERR_NULL, QL_OK};
use crate::handlers::{
    FdSink, FileSink, FlushPolicy, LineHandler, LineSink, Pattern, RecordView, StdioSink,
    DEFAULT_PATTERN,
};

/// When a built-in handler writes its buffered lines out.
pub type ql_flush_policy = i32;
/// After every record: nothing is ever left in the handler's buffer.
pub const QL_FLUSH_EVERY_RECORD: ql_flush_policy = 0;
/// At the end of each batch the listener takes off the built-in queue (the
/// queue found empty), at every flush barrier and when the listener stops:
/// few writes under load, nothing held back when it is quiet. The default.
pub const QL_FLUSH_BATCH: ql_flush_policy = 1;
/// Only at a flush barrier (`ql_listener_flush`) and when the listener
/// stops, or when 1 MiB of lines is buffered.
pub const QL_FLUSH_EXPLICIT: ql_flush_policy = 2;

/// How a built-in handler formats and writes: start from
/// `ql_handler_options_default()` and change what you need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_handler_options {
    /// The handler's level for `respect_handler_level`. Default 0 (all).
    pub level: i32,
    /// The line pattern, copied; NULL for the default
    /// `"{time} {level} [{thread}] {logger}: {message}"`. Fields: `{time}`
    /// (local time, ISO 8601 with milliseconds and UTC offset), `{level}`
    /// (Python's level name, or "Level N"), `{levelno}`, `{thread}`,
    /// `{logger}`, `{message}`; `{{` and `}}` write braces. Each record is
    /// one line, ended by `\n`.
    pub pattern: *const c_char,
    /// One of `QL_FLUSH_*`. Default `QL_FLUSH_BATCH`.
    pub flush: ql_flush_policy,
    /// File handler only: rotate when a write would take the file past this
    /// many bytes; 0 (the default) never rotates.
    pub max_bytes: u64,
    /// File handler only: backups kept when rotating (`path.1` is the
    /// newest). 0 with `max_bytes` set truncates the file instead, as
    /// Python's RotatingFileHandler. Default 0.
    pub backup_count: u32,
}

fn default_handler_options() -> ql_handler_options {
    ql_handler_options {
        level: 0,
        pattern: ptr::null(),
        flush: QL_FLUSH_BATCH,
        max_bytes: 0,
        backup_count: 0,
    }
}

impl super::Fallback for ql_handler_options {
    fn fallback() -> Self {
        default_handler_options()
    }
}

/// The default handler options: level 0, the default pattern,
/// `QL_FLUSH_BATCH`, no rotation. Any thread.
#[no_mangle]
pub extern "C" fn ql_handler_options_default() -> ql_handler_options {
    boundary(default_handler_options)
}

struct Builtin {
    lines: LineHandler,
}

/// Reads a built-in record the listener passed.
///
/// # Safety
/// `record` must point to a `ql_record` whose strings are valid for their
/// lengths, as the listener hands out for built-in records.
unsafe fn view<'a>(record: *const c_void) -> RecordView<'a> {
    // SAFETY: the caller's promise.
    let r = unsafe { &*record.cast::<ql_record>() };
    // SAFETY: as above, for the two byte strings.
    let (logger, message) = unsafe {
        (
            slice::from_raw_parts(r.logger.cast::<u8>(), r.logger_len),
            slice::from_raw_parts(r.message.cast::<u8>(), r.message_len),
        )
    };
    RecordView {
        level: r.level,
        thread_id: r.thread_id,
        timestamp_ns: r.timestamp_ns,
        logger,
        message,
    }
}

/// The code a built-in handler returns when it panicked.
const PANICKED: i32 = -1;

unsafe extern "C" fn builtin_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
    if record.is_null() {
        return libc::EINVAL;
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: ctx is the `Builtin` this handler was made with; the
        // listener calls it from one thread at a time.
        let this = unsafe { &mut *ctx.cast::<Builtin>() };
        // SAFETY: built-in handlers are documented to take built-in records.
        let record = unsafe { view(record) };
        match this.lines.handle(&record) {
            Ok(()) => 0,
            Err(code) => code,
        }
    }))
    .unwrap_or(PANICKED)
}

unsafe extern "C" fn builtin_flush(ctx: *mut c_void) {
    boundary(|| {
        // SAFETY: as in `builtin_handle`.
        unsafe { &mut *ctx.cast::<Builtin>() }.lines.flush();
    })
}

unsafe extern "C" fn builtin_batch_end(ctx: *mut c_void) {
    boundary(|| {
        // SAFETY: as in `builtin_handle`.
        unsafe { &mut *ctx.cast::<Builtin>() }.lines.batch_end();
    })
}

unsafe extern "C" fn builtin_destroy(ctx: *mut c_void) {
    boundary(|| {
        // SAFETY: ctx came from `Box::into_raw` in `make` and is destroyed
        // once (the listener's contract).
        let mut this = unsafe { Box::from_raw(ctx.cast::<Builtin>()) };
        this.lines.flush();
    })
}

unsafe extern "C" fn null_handle(_ctx: *mut c_void, _record: *mut c_void) -> i32 {
    0
}

/// # Safety
/// `options` must be NULL or valid; its `pattern` NULL or a C string.
unsafe fn make(
    options: *const ql_handler_options,
    sink: impl FnOnce() -> Result<Box<dyn LineSink>, ql_status>,
    handler_out: *mut ql_handler,
) -> ql_status {
    let out = try_out!(handler_out);
    // SAFETY: the caller's promise.
    let options = unsafe { options.as_ref() }
        .copied()
        .unwrap_or_else(default_handler_options);
    let policy = match options.flush {
        QL_FLUSH_EVERY_RECORD => FlushPolicy::EveryRecord,
        QL_FLUSH_BATCH => FlushPolicy::Batch,
        QL_FLUSH_EXPLICIT => FlushPolicy::Explicit,
        _ => return QL_ERR_INVALID,
    };
    let pattern = if options.pattern.is_null() {
        DEFAULT_PATTERN
    } else {
        // SAFETY: the caller's promise.
        match unsafe { CStr::from_ptr(options.pattern) }.to_str() {
            Ok(p) => p,
            Err(_) => return QL_ERR_INVALID,
        }
    };
    let Ok(pattern) = Pattern::parse(pattern) else {
        return QL_ERR_INVALID;
    };
    let sink = match sink() {
        Ok(sink) => sink,
        Err(status) => return status,
    };
    let ctx = Box::into_raw(Box::new(Builtin {
        lines: LineHandler::new(pattern, policy, sink),
    }));
    *out = ql_handler {
        ctx: ctx.cast(),
        level: options.level,
        handle: Some(builtin_handle),
        flush: Some(builtin_flush),
        destroy: Some(builtin_destroy),
        batch_end: Some(builtin_batch_end),
    };
    QL_OK
}

/// Makes a stream handler writing to a file descriptor the program owns.
///
/// `fd`: where lines go; a negative value means stderr (2). The library
/// never closes it; it must stay open until the listener is freed.
/// `options`: NULL for the defaults (`ql_handler_options_default`).
/// On success writes the handler to `*handler_out`: put it in a listener's
/// handler array, which then owns it (or free it with `ql_handler_free`
/// if it is never used). Each write holds whole lines; on a pipe, at most
/// `PIPE_BUF` bytes, so lines of other writers never cut into them.
///
/// Built-in handlers take built-in records only (`ql_log`, `ql_logf`):
/// never use them on a queue of program pointers.
///
/// `QL_ERR_NULL` for a NULL `handler_out`; `QL_ERR_INVALID` for a bad
/// pattern or flush policy. Any thread.
///
/// # Safety
/// `options` must be NULL or valid, with `pattern` NULL or a C string;
/// `handler_out` NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn ql_stream_handler_fd(
    fd: c_int,
    options: *const ql_handler_options,
    handler_out: *mut ql_handler,
) -> ql_status {
    boundary(|| {
        let fd = if fd < 0 { libc::STDERR_FILENO } else { fd };
        // SAFETY: forwarded.
        unsafe { make(options, || Ok(Box::new(FdSink::new(fd))), handler_out) }
    })
}

/// Makes a stream handler writing to a C `FILE *` the program owns (for
/// example `stdout`), one `fwrite` per group of whole lines, which holds
/// the stream's lock: lines never interleave with the program's other
/// writes through that stream. The flush policy ends with `fflush`.
/// Otherwise as `ql_stream_handler_fd`; `QL_ERR_NULL` for a NULL `stream`.
///
/// # Safety
/// `stream` must be NULL or an open `FILE *` that stays open until the
/// listener is freed; otherwise as `ql_stream_handler_fd`.
#[no_mangle]
pub unsafe extern "C" fn ql_stream_handler_file(
    stream: *mut libc::FILE,
    options: *const ql_handler_options,
    handler_out: *mut ql_handler,
) -> ql_status {
    boundary(|| {
        if stream.is_null() {
            return QL_ERR_NULL;
        }
        // SAFETY: forwarded; the stream is valid (the caller's promise).
        unsafe {
            make(
                options,
                || Ok(Box::new(StdioSink::new(stream))),
                handler_out,
            )
        }
    })
}

/// Makes a file handler: appends lines to `path` (created if missing, mode
/// 0666 minus the umask), with size-based rotation when
/// `options->max_bytes` is set, as Python's RotatingFileHandler: `path.1`
/// is the newest backup, at most `backup_count` are kept. The file is
/// opened with `O_APPEND` and every write holds whole lines, so several
/// handlers or processes appending to one file never interleave inside a
/// line (rotation, though, assumes one rotating handler per file).
///
/// `QL_ERR_NULL` for a NULL `path` or `handler_out`; `QL_ERR_INVALID` for a
/// bad pattern or flush policy, or a file that cannot be opened (its errno
/// is left in `errno`). Otherwise as `ql_stream_handler_fd`.
///
/// # Safety
/// `path` must be NULL or a C string; otherwise as `ql_stream_handler_fd`.
#[no_mangle]
pub unsafe extern "C" fn ql_file_handler(
    path: *const c_char,
    options: *const ql_handler_options,
    handler_out: *mut ql_handler,
) -> ql_status {
    boundary(|| {
        if path.is_null() {
            return QL_ERR_NULL;
        }
        // SAFETY: the caller's promise.
        let path = Path::new(OsStr::from_bytes(
            unsafe { CStr::from_ptr(path) }.to_bytes(),
        ));
        // SAFETY: the caller's promise.
        let (max_bytes, backups) =
            unsafe { options.as_ref() }.map_or((0, 0), |o| (o.max_bytes, o.backup_count));
        // SAFETY: forwarded.
        unsafe {
            make(
                options,
                || match FileSink::open(path, max_bytes, backups) {
                    Ok(sink) => Ok(Box::new(sink)),
                    Err(_) => Err(QL_ERR_INVALID),
                },
                handler_out,
            )
        }
    })
}

/// Makes a handler that does nothing with each record (Python's
/// NullHandler), at `level`. It owns nothing. `QL_ERR_NULL` for a NULL
/// `handler_out`. Any thread.
///
/// # Safety
/// `handler_out` must be NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn ql_null_handler(level: i32, handler_out: *mut ql_handler) -> ql_status {
    boundary(|| {
        let out = try_out!(handler_out);
        *out = ql_handler {
            ctx: ptr::null_mut(),
            level,
            handle: Some(null_handle),
            flush: None,
            destroy: None,
            batch_end: None,
        };
        QL_OK
    })
}

/// Lines a built-in stream or file handler dropped because its writes kept
/// failing (it keeps up to 4 MiB of lines for retrying, then drops the
/// oldest). Each failed write is also reported: the next record's `handle`
/// returns the errno, counted in `handler_errors` and told to `on_error`.
/// 0 for any other handler. Read it only while the listener is stopped or
/// from the listener thread (the count is not synchronized). NULL gives 0.
///
/// # Safety
/// `handler` must be NULL or a handler whose `ctx` is alive.
#[no_mangle]
pub unsafe extern "C" fn ql_handler_lines_lost(handler: *const ql_handler) -> u64 {
    boundary(|| {
        // SAFETY: the caller's promise.
        let Some(h) = (unsafe { handler.as_ref() }) else {
            return 0;
        };
        // A program's handler has other code behind `handle`, so it can
        // never compare equal to ours (merging applies to identical code).
        let ours = h.handle.is_some_and(|f| {
            std::ptr::fn_addr_eq(
                f,
                builtin_handle as unsafe extern "C" fn(*mut c_void, *mut c_void) -> i32,
            )
        });
        if !ours || h.ctx.is_null() {
            return 0;
        }
        // SAFETY: a built-in handler's ctx is a live `Builtin`.
        unsafe { &*h.ctx.cast::<Builtin>() }.lines.lost_lines()
    })
}

/// Frees a handler that was never given to a listener (a listener owns the
/// handlers it was made with and destroys them itself): calls its
/// `destroy(ctx)` when set, then clears the struct. NULL is a no-op. Any
/// thread.
///
/// # Safety
/// `handler` must be NULL or a handler not owned by any listener.
#[no_mangle]
pub unsafe extern "C" fn ql_handler_free(handler: *mut ql_handler) {
    boundary(|| {
        // SAFETY: the caller's promise.
        let Some(h) = (unsafe { handler.as_mut() }) else {
            return;
        };
        if let Some(destroy) = h.destroy.take() {
            // SAFETY: the handler's own destroy, called once (taken).
            unsafe { destroy(h.ctx) }
        }
        h.ctx = ptr::null_mut();
        h.handle = None;
        h.flush = None;
        h.batch_end = None;
    })
}

impl super::Fallback for u64 {
    fn fallback() -> Self {
        0
    }
}
