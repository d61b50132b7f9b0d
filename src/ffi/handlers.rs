//! The built-in handlers, as `ql_handler` entries made by the library on the
//! same public mechanism a program uses for its own handlers. The output
//! layer ([`crate::output`]) holds every rule; this file converts options
//! and pointers.

use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::slice;
use std::sync::Arc;
use std::time::Duration;

use super::record::WithPtr;
use super::record::{ql_record, CFields};
use super::{
    boundary, handle_boundary, ql_status, try_out, HandlerCode, QL_ERR_INVALID, QL_ERR_NULL, QL_OK,
};
use crate::crash::Scratch;
use crate::listener::Handler;
use crate::log_queue::Entry;
use crate::output::file::{self, FileOptions, FileTarget, When};
use crate::output::stream::{FdTarget, StdioTarget};
use crate::output::{
    color_wanted, Clock, Counters, FlushPolicy, LineHandler, Pattern, RecordView, Sink, SinkCounts,
    Style, SystemClock, Target, DEFAULT_PATTERN,
};

/// One handler of a listener.
///
/// `ql_listener_new` copies the array of handlers; from then on the
/// listener owns each `ctx` and calls `destroy(ctx)` (when set) once, from
/// `ql_listener_free`. When `ql_listener_new` fails, nothing is called and
/// `ctx` stays the caller's.
///
/// Threads: `handle` and `flush` run on the listener thread only, one call
/// at a time for the whole listener, so a handler needs no lock of its own
/// unless other code shares its `ctx`. `destroy` runs on the thread calling
/// `ql_listener_free`, after the listener thread has ended.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_handler {
    /// Passed as the first argument of every callback.
    pub ctx: *mut c_void,
    /// With `respect_handler_level`, the handler gets a record only when the
    /// record's level is at least this; 0 (NOTSET) gets every record.
    /// Ignored otherwise.
    pub level: i32,
    /// Handles one prepared record, which it borrows for the call. Returns 0,
    /// or a nonzero code that is counted in `handler_errors` and told to
    /// `on_error`; the next handler and the next records still run. Required.
    pub handle: Option<unsafe extern "C" fn(ctx: *mut c_void, record: *mut c_void) -> i32>,
    /// Optional. Flushes buffered output; called at every flush barrier
    /// (`ql_listener_flush`) and when the listener loop ends (after the
    /// sentinel), before `ql_stop` returns.
    pub flush: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// Optional. Frees `ctx`; called once by `ql_listener_free`.
    pub destroy: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// Optional. Called when the listener found the built-in queue empty
    /// after handling records and is about to wait: the end of a batch, the
    /// moment to flush buffered output cheaply. Never called for a queue
    /// given as a vtable.
    pub batch_end: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

/// A program's (or a built-in) `ql_handler` as an engine handler.
pub(crate) struct CHandler(pub(crate) ql_handler);
// SAFETY: handle/flush run on the listener thread one at a time and destroy
// after it ended, as documented on `ql_handler`.
unsafe impl Send for CHandler {}
// SAFETY: as above.
unsafe impl Sync for CHandler {}

impl Handler<Entry> for CHandler {
    fn level(&self) -> i32 {
        self.0.level
    }

    #[inline]
    fn handle(&self, record: &Entry) -> Result<(), i32> {
        let Some(f) = self.0.handle else {
            return Ok(()); // refused at creation; unreachable
        };
        // SAFETY: a callback of the program's, called as `ql_handler` says.
        match record.with_ptr(|p| unsafe { f(self.0.ctx, p) }) {
            0 => Ok(()),
            code => Err(code),
        }
    }

    fn flush(&self) {
        if let Some(f) = self.0.flush {
            // SAFETY: a callback of the program's, called as `ql_handler` says.
            unsafe { f(self.0.ctx) }
        }
    }

    fn batch_end(&self) {
        if let Some(f) = self.0.batch_end {
            // SAFETY: a callback of the program's, called as `ql_handler` says.
            unsafe { f(self.0.ctx) }
        }
    }

    fn counts(&self) -> Option<SinkCounts> {
        // SAFETY: the listener owns the handler until it is freed.
        unsafe { builtin_counts(&self.0) }
    }

    fn close(&self) {
        // SAFETY: the listener owns the handler until it is freed, and its
        // thread has ended (`Listener::close` stops it first).
        unsafe { builtin_close(&self.0) }
    }

    fn crash_begin(&self, give_up: &dyn Fn() -> bool) -> bool {
        // SAFETY: the listener owns the handler; the crash flush holds the
        // listener's gate (or runs on its thread), so no other code uses
        // the sink now.
        unsafe { builtin_crash_begin(&self.0, give_up) }
    }

    fn crash_handle(&self, record: &Entry, scratch: &mut Scratch, give_up: &dyn Fn() -> bool) {
        // SAFETY: as in `crash_begin`.
        unsafe { builtin_crash_handle(&self.0, record, scratch, give_up) }
    }
}

impl Drop for CHandler {
    fn drop(&mut self) {
        if let Some(f) = self.0.destroy {
            // SAFETY: the listener owns ctx and drops each handler once.
            unsafe { f(self.0.ctx) }
        }
    }
}

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

/// Time-based rotation of a file handler, as Python's
/// `TimedRotatingFileHandler`'s `when`.
pub type ql_rotate_when = i32;
/// No time-based rotation (the default).
pub const QL_ROTATE_NEVER: ql_rotate_when = 0;
/// Every `rotate_interval` seconds.
pub const QL_ROTATE_SECONDS: ql_rotate_when = 1;
/// Every `rotate_interval` minutes.
pub const QL_ROTATE_MINUTES: ql_rotate_when = 2;
/// Every `rotate_interval` hours.
pub const QL_ROTATE_HOURS: ql_rotate_when = 3;
/// Every `rotate_interval` days (24 hours).
pub const QL_ROTATE_DAYS: ql_rotate_when = 4;
/// At midnight, every `rotate_interval` days.
pub const QL_ROTATE_MIDNIGHT: ql_rotate_when = 5;
/// At midnight before a Monday (Python's `W0`), every week; `QL_ROTATE_W0
/// + n` for the other days (n = 1 Tuesday ... 6 Sunday).
pub const QL_ROTATE_W0: ql_rotate_when = 10;
/// Sunday (Python's `W6`).
pub const QL_ROTATE_W6: ql_rotate_when = 16;

/// How a built-in handler shapes each line.
pub type ql_format = i32;
/// The line pattern (`pattern`). The default.
pub const QL_FORMAT_TEXT: ql_format = 0;
/// JSON Lines: one RFC 8259 object per line, keys `time` (RFC 3339, local
/// time with microseconds and offset), `level`, `levelno`, `thread`,
/// `logger`, `message`; `pattern` and `raw` are ignored. Every control
/// character is escaped, and each byte that is not valid UTF-8 becomes
/// U+FFFD, so every line parses.
pub const QL_FORMAT_JSON: ql_format = 1;
/// logfmt: `time=... level=WARNING levelno=30 thread=42 logger=app
/// msg="..."`, values quoted when they hold a space, `"`, `=` or anything
/// not printable ASCII, with C escapes inside.
pub const QL_FORMAT_LOGFMT: ql_format = 2;

/// Whether a text handler colours level names for a terminal.
pub type ql_color = i32;
/// On when the handler writes to a terminal (`isatty`) and the `NO_COLOR`
/// environment variable is unset or empty, read when the handler is made.
/// The default.
pub const QL_COLOR_AUTO: ql_color = 0;
/// Never.
pub const QL_COLOR_NEVER: ql_color = 1;
/// Always (also into files and pipes).
pub const QL_COLOR_ALWAYS: ql_color = 2;

/// The most backups a file handler keeps (`backup_count`).
pub const QL_BACKUP_COUNT_MAX: u32 = 1000;
const _: () = assert!(QL_BACKUP_COUNT_MAX == file::BACKUP_COUNT_MAX);

/// How a built-in handler formats and writes: start from
/// `ql_handler_options_default()` and change what you need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_handler_options {
    /// The size of this struct as the program was compiled with it: set by
    /// `ql_handler_options_default()`, never by hand. It lets the struct grow in later versions
    /// without breaking programs built against this header (see "Versioning
    /// and ABI" in the README): the library reads `struct_size` bytes,
    /// and members it knows that an older program's struct lacks take their
    /// defaults. A size smaller than any layout (0: options not made by
    /// `ql_handler_options_default()`) is `QL_ERR_INVALID`; a larger one whose members
    /// unknown to this library are not all zero is `QL_ERR_UNSUPPORTED`.
    pub struct_size: usize,
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
    /// many bytes; 0 (the default) never rotates by size.
    pub max_bytes: u64,
    /// File handler only: backups kept when rotating (`path.1` is the
    /// newest), at most `QL_BACKUP_COUNT_MAX`. 0 with a rotation set
    /// truncates the file instead. Default 0.
    pub backup_count: u32,
    /// Write the logger name and message as they are. By default every
    /// control byte in them (below 0x20 except TAB, and 0x7f) is written as
    /// `\n`, `\r` or `\xHH`, so no content can end a line early and forge
    /// another record. Default false.
    pub raw: bool,
    /// How long a write to a pipe, socket, terminal or device may wait for
    /// the reader without progress before it fails with `EAGAIN` (the lines
    /// are then kept for a retry, or counted lost at a flush). Default 5000.
    /// 0 never waits.
    pub write_timeout_ms: u32,
    /// File handler only: time-based rotation, one of `QL_ROTATE_*`.
    /// Default `QL_ROTATE_NEVER`. May be combined with `max_bytes`.
    pub rotate_when: ql_rotate_when,
    /// File handler only: units of `rotate_when` between rotations.
    /// Default 1 (0 counts as 1).
    pub rotate_interval: u32,
    /// File handler only: compute midnight and weekdays in UTC instead of
    /// local time. Default false.
    pub rotate_utc: bool,
    /// File handler only: rotate a non-empty file when the handler is
    /// made (needs `backup_count` > 0 to keep it). Default false.
    pub rotate_on_open: bool,
    /// File handler only: compress each backup with gzip (`path.1.gz`),
    /// on a thread of its own. Default false.
    pub compress: bool,
    /// File handler only: before each write, check that the path still
    /// names the open file, and reopen it when it was moved or deleted (as
    /// Python's WatchedFileHandler; one `stat` per write). Default false;
    /// a handler that rotates (`backup_count` > 0 with `max_bytes` or
    /// `rotate_when`) always does, to follow other rotators of the file.
    pub watch: bool,
    /// File handler only: where the time for time-based rotation comes
    /// from, in ns since the Unix epoch; called on the listener thread.
    /// NULL (the default) for the system's wall clock.
    pub clock: Option<unsafe extern "C" fn(ctx: *mut c_void) -> i64>,
    /// Passed to `clock`; must stay valid while the handler lives.
    pub clock_ctx: *mut c_void,
    /// One of `QL_FORMAT_*`. Default `QL_FORMAT_TEXT`.
    pub format: ql_format,
    /// One of `QL_COLOR_*`: ANSI colours on the `{level}` of text lines.
    /// Default `QL_COLOR_AUTO` (on for a terminal, unless `NO_COLOR`).
    pub color: ql_color,
}

fn default_handler_options() -> ql_handler_options {
    ql_handler_options {
        struct_size: std::mem::size_of::<ql_handler_options>(),
        level: 0,
        pattern: ptr::null(),
        flush: QL_FLUSH_BATCH,
        max_bytes: 0,
        backup_count: 0,
        raw: false,
        write_timeout_ms: 5000,
        rotate_when: QL_ROTATE_NEVER,
        rotate_interval: 1,
        rotate_utc: false,
        rotate_on_open: false,
        compress: false,
        watch: false,
        clock: None,
        clock_ctx: ptr::null_mut(),
        format: QL_FORMAT_TEXT,
        color: QL_COLOR_AUTO,
    }
}

/// The default handler options: level 0, the default pattern,
/// `QL_FLUSH_BATCH`, escaped text, a 5 s write timeout, no rotation. Any
/// thread.
#[no_mangle]
pub extern "C" fn ql_handler_options_default() -> ql_handler_options {
    boundary(default_handler_options)
}

/// A built-in handler's `ctx`. The listener thread changes `lines` (one
/// call at a time); any thread reads `counters` (atomics) meanwhile, so the
/// two are never borrowed mutably as a whole.
struct Builtin {
    lines: std::cell::UnsafeCell<Box<dyn Sink>>,
    counters: Arc<Counters>,
}

impl Builtin {
    /// # Safety
    /// `ctx` must be a live `Builtin`, and the caller the one thread that
    /// uses its `lines` now (the listener's contract for handler calls).
    unsafe fn lines<'a>(ctx: *mut c_void) -> &'a mut Box<dyn Sink> {
        // SAFETY: the caller's promise; only a shared reference to the
        // `Builtin` is made, and the mutable one is to the cell's content.
        unsafe { &mut *(*ctx.cast_const().cast::<Builtin>()).lines.get() }
    }
}

/// Reads a built-in record the listener passed; `None` for one the library
/// could never have made (a program's own): NULL logger or message text
/// with a nonzero length, or a malformed field ([`CFields::malformed`]),
/// which would otherwise forge keys or lines in the output.
///
/// # Safety
/// `r`'s strings must be NULL or valid for their lengths, and `fields` made
/// from its `fields`, as the listener hands out for built-in records.
unsafe fn view<'a>(r: &'a ql_record, fields: &'a CFields<'a>) -> Option<RecordView<'a>> {
    if fields.malformed() {
        return None;
    }
    // SAFETY: as above, for the two byte strings.
    let (logger, message) = unsafe {
        (
            super::record::bytes(r.logger, r.logger_len)?,
            super::record::bytes(r.message, r.message_len)?,
        )
    };
    // SAFETY: as above; a record a program made with an older layout in
    // mind has NULL here, read as empty.
    let (file, func) = unsafe {
        (
            text_or_empty(r.file, r.file_len),
            text_or_empty(r.func, r.func_len),
        )
    };
    Some(RecordView {
        level: r.level,
        thread_id: r.thread_id,
        timestamp_ns: r.timestamp_ns,
        logger,
        message,
        file,
        line: r.line,
        func,
        fields,
    })
}

/// # Safety
/// `text` must be NULL or valid for `len` bytes.
unsafe fn text_or_empty<'a>(text: *const c_char, len: usize) -> &'a [u8] {
    if text.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { slice::from_raw_parts(text.cast(), len) }
    }
}

unsafe extern "C" fn builtin_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
    if record.is_null() {
        // A `prepare` hook may make it: nothing to write, and not counted
        // in the handler's account (a filter, not a loss).
        return libc::EINVAL;
    }
    handle_boundary(|| {
        // SAFETY: ctx is the `Builtin` this handler was made with (a shared
        // reference, as in `Builtin::lines`).
        let counters = unsafe { &(*ctx.cast_const().cast::<Builtin>()).counters };
        // SAFETY: built-in handlers are documented to take built-in records.
        let parts = unsafe { record.cast::<ql_record>().as_ref() }
            // More fields than a built-in record holds: not read at all.
            .filter(|r| r.field_count <= super::record::RECORD_FIELDS_MAX)
            // SAFETY: as above: `fields` NULL or valid for `field_count`.
            .map(|r| (r, unsafe { CFields::from_raw(r.fields, r.field_count) }));
        let Some((record, fields)) = &parts else {
            // Too many fields: nothing to write.
            counters.refuse();
            return HandlerCode(libc::EINVAL);
        };
        // SAFETY: as above.
        let Some(record) = (unsafe { view(record, fields) }) else {
            counters.refuse();
            return HandlerCode(libc::EINVAL);
        };
        // SAFETY: ctx is the `Builtin` this handler was made with; the
        // listener calls it from one thread at a time.
        let lines = unsafe { Builtin::lines(ctx) };
        HandlerCode(match lines.handle(&record) {
            Ok(()) => 0,
            Err(code) => code,
        })
    })
    .0
}

unsafe extern "C" fn builtin_flush(ctx: *mut c_void) {
    boundary(|| {
        // SAFETY: as in `builtin_handle`.
        unsafe { Builtin::lines(ctx) }.flush();
    })
}

unsafe extern "C" fn builtin_batch_end(ctx: *mut c_void) {
    boundary(|| {
        // SAFETY: as in `builtin_handle`.
        unsafe { Builtin::lines(ctx) }.batch_end();
    })
}

unsafe extern "C" fn builtin_destroy(ctx: *mut c_void) {
    boundary(|| {
        // SAFETY: ctx came from `Box::into_raw` in `make` and is destroyed
        // once (the listener's contract). Dropping flushes (the output
        // layer counts what it cannot write).
        drop(unsafe { Box::from_raw(ctx.cast::<Builtin>()) });
    })
}

/// The built-in handler behind `handler`, if it is one. A program's handler
/// has other code behind `handle`, so it can never compare equal to ours
/// (merging applies to identical code only).
fn builtin(handler: &ql_handler) -> Option<*const Builtin> {
    let ours = handler.handle.is_some_and(|f| {
        std::ptr::fn_addr_eq(
            f,
            builtin_handle as unsafe extern "C" fn(*mut c_void, *mut c_void) -> i32,
        )
    });
    (ours && !handler.ctx.is_null()).then_some(handler.ctx.cast_const().cast())
}

/// A built-in handler's account; `None` for any other handler.
///
/// # Safety
/// The handler's `ctx` must be alive (not destroyed).
pub(crate) unsafe fn builtin_counts(handler: &ql_handler) -> Option<SinkCounts> {
    let this = builtin(handler)?;
    // SAFETY: a built-in handler's ctx is a live `Builtin` (the caller's
    // promise); its counters are atomics, readable from any thread while
    // the listener thread writes them.
    Some(unsafe { &*this }.counters.snapshot())
}

/// The crash flush begins on a built-in handler ([`Sink::crash_begin`]);
/// `false` (skipped) for any other handler: a program's handler is never
/// called from a signal handler.
///
/// # Safety
/// The handler's `ctx` must be alive, and no other thread may use its sink
/// now (the crash flush holds the listener's gate).
pub(crate) unsafe fn builtin_crash_begin(handler: &ql_handler, give_up: &dyn Fn() -> bool) -> bool {
    match builtin(handler) {
        // SAFETY: the caller's promise.
        Some(this) => unsafe { Builtin::lines(this.cast_mut().cast()) }.crash_begin(give_up),
        None => false,
    }
}

/// The crash flush's write of one record by a built-in handler
/// ([`Sink::crash_handle`]); built-in records only (a program pointer
/// cannot be read there).
///
/// # Safety
/// As `builtin_crash_begin`.
pub(crate) unsafe fn builtin_crash_handle(
    handler: &ql_handler,
    record: &Entry,
    scratch: &mut Scratch,
    give_up: &dyn Fn() -> bool,
) {
    let (Some(this), Entry::Log(record)) = (builtin(handler), record) else {
        return;
    };
    let Scratch { message, line } = scratch;
    let view = RecordView {
        message: record.crash_message(message),
        ..RecordView::from(&**record)
    };
    // SAFETY: the caller's promise.
    unsafe { Builtin::lines(this.cast_mut().cast()) }.crash_handle(&view, line, give_up);
}

/// Closes a built-in handler's sink ([`Sink::close`]); nothing for any
/// other handler.
///
/// # Safety
/// The handler's `ctx` must be alive, and no other thread may use its sink
/// now (the listener's thread has ended).
pub(crate) unsafe fn builtin_close(handler: &ql_handler) {
    if let Some(this) = builtin(handler) {
        // SAFETY: the caller's promise: a live `Builtin`, its sink used by
        // this thread only.
        unsafe { Builtin::lines(this.cast_mut().cast()) }.close();
    }
}

unsafe extern "C" fn null_handle(_ctx: *mut c_void, _record: *mut c_void) -> i32 {
    0
}

/// `QL_ERR_INVALID`, with the cause left in `errno` for the caller.
fn invalid_with_errno(e: &std::io::Error) -> ql_status {
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() = e.raw_os_error().unwrap_or(libc::EINVAL) };
    QL_ERR_INVALID
}

/// A clock the program gave.
struct CClock {
    now: unsafe extern "C" fn(ctx: *mut c_void) -> i64,
    ctx: *mut c_void,
}

// SAFETY: called on the listener thread only; the program promises `ctx`
// stays valid while the handler lives.
unsafe impl Send for CClock {}

impl Clock for CClock {
    fn now_ns(&self) -> i64 {
        // SAFETY: the program's callback, with its own ctx.
        unsafe { (self.now)(self.ctx) }
    }
}

/// The options, read once.
struct Options {
    raw: ql_handler_options,
    policy: FlushPolicy,
    pattern: Pattern,
    stall: Duration,
}

/// # Safety
/// `options` must be NULL or valid for reading `struct_size` bytes; its
/// `pattern` NULL or a C string.
unsafe fn read_options(options: *const ql_handler_options) -> Result<Options, ql_status> {
    // SAFETY: the caller's promise.
    let raw = unsafe { super::read_sized(options) }?;
    let policy = match raw.flush {
        QL_FLUSH_EVERY_RECORD => FlushPolicy::EveryRecord,
        QL_FLUSH_BATCH => FlushPolicy::Batch,
        QL_FLUSH_EXPLICIT => FlushPolicy::Explicit,
        _ => return Err(QL_ERR_INVALID),
    };
    let pattern = if raw.pattern.is_null() {
        DEFAULT_PATTERN
    } else {
        // SAFETY: the caller's promise.
        unsafe { CStr::from_ptr(raw.pattern) }
            .to_str()
            .map_err(|_| QL_ERR_INVALID)?
    };
    let style = match raw.format {
        QL_FORMAT_TEXT => Style::Text,
        QL_FORMAT_JSON => Style::Json,
        QL_FORMAT_LOGFMT => Style::Logfmt,
        _ => return Err(QL_ERR_INVALID),
    };
    if !(QL_COLOR_AUTO..=QL_COLOR_ALWAYS).contains(&raw.color) {
        return Err(QL_ERR_INVALID);
    }
    let pattern = Pattern::parse(pattern)
        .map_err(|_| QL_ERR_INVALID)?
        .raw(raw.raw)
        .style(style);
    Ok(Options {
        raw,
        policy,
        pattern,
        stall: Duration::from_millis(u64::from(raw.write_timeout_ms)),
    })
}

fn file_options(o: &ql_handler_options, stall: Duration) -> Result<FileOptions, ql_status> {
    let when = match o.rotate_when {
        QL_ROTATE_NEVER => None,
        QL_ROTATE_SECONDS => Some(When::Seconds),
        QL_ROTATE_MINUTES => Some(When::Minutes),
        QL_ROTATE_HOURS => Some(When::Hours),
        QL_ROTATE_DAYS => Some(When::Days),
        QL_ROTATE_MIDNIGHT => Some(When::Midnight),
        w @ QL_ROTATE_W0..=QL_ROTATE_W6 => Some(When::Weekday((w - QL_ROTATE_W0) as u32)),
        _ => return Err(QL_ERR_INVALID),
    };
    if o.backup_count > QL_BACKUP_COUNT_MAX {
        return Err(QL_ERR_INVALID);
    }
    Ok(FileOptions {
        max_bytes: o.max_bytes,
        backups: o.backup_count,
        when,
        interval: o.rotate_interval.max(1),
        utc: o.rotate_utc,
        rotate_on_open: o.rotate_on_open,
        watch: o.watch,
        compress: o.compress,
        stall,
    })
}

/// Writes a built-in handler over `target` to `*out`.
fn install(
    options: Options,
    level: i32,
    target: Box<dyn Target>,
    counters: Arc<Counters>,
    out: &mut ql_handler,
) -> ql_status {
    let lines = LineHandler::new(
        options.pattern,
        options.policy,
        target,
        Arc::clone(&counters),
    );
    install_sink(Box::new(lines), level, counters, out)
}

/// Writes a built-in handler over any sink of the output layer to `*out`:
/// its records are read as [`RecordView`]s, its account (`counters`, which
/// the sink updates) read by `ql_listener_handler_stats`.
pub(crate) fn install_sink(
    sink: Box<dyn Sink>,
    level: i32,
    counters: Arc<Counters>,
    out: &mut ql_handler,
) -> ql_status {
    let ctx = Box::into_raw(Box::new(Builtin {
        lines: sink.into(),
        counters,
    }));
    *out = ql_handler {
        ctx: ctx.cast(),
        level,
        handle: Some(builtin_handle),
        flush: Some(builtin_flush),
        destroy: Some(builtin_destroy),
        batch_end: Some(builtin_batch_end),
    };
    QL_OK
}

/// # Safety
/// `options` must be NULL or valid for reading `struct_size` bytes; its
/// `pattern` NULL or a C string.
unsafe fn make(
    options: *const ql_handler_options,
    color_fd: Option<c_int>,
    target: impl FnOnce(&Options, &Arc<Counters>) -> Result<Box<dyn Target>, ql_status>,
    handler_out: *mut ql_handler,
) -> ql_status {
    let out = try_out!(handler_out);
    // SAFETY: forwarded.
    let mut options = match unsafe { read_options(options) } {
        Ok(o) => o,
        Err(status) => return status,
    };
    let color = color_wanted(options.raw.color, color_fd);
    options.pattern = options.pattern.color(color);
    let counters = Arc::new(Counters::default());
    let target = match target(&options, &counters) {
        Ok(t) => t,
        Err(status) => return status,
    };
    let level = options.raw.level;
    install(options, level, target, counters, out)
}

/// Makes a stream handler writing to a file descriptor the program owns.
///
/// `fd`: where lines go; a negative value means stderr (2). The library
/// never closes it; it must stay open until the listener is freed.
/// `options`: NULL for the defaults (`ql_handler_options_default`).
/// On success writes the handler to `*handler_out`: put it in a listener's
/// handler array, which then owns it (or free it with `ql_handler_free`
/// if it is never used).
///
/// Every record is one line, written whole or counted lost (see
/// `ql_listener_handler_stats`): a partial write resumes at the exact
/// byte; `EINTR` is retried; a full pipe or socket, or `EAGAIN` on a
/// non-blocking fd, is waited for up to `write_timeout_ms` without
/// progress. A closed pipe gives `EPIPE`, a counted failure: `SIGPIPE`
/// never kills the process (the listener thread blocks it; elsewhere it is
/// blocked around the write and taken back), and the process's signal
/// dispositions are left alone. On a pipe each write holds whole lines of
/// at most `PIPE_BUF` (4096) bytes together, so lines up to that size never
/// interleave with other writers' (POSIX makes no such promise for longer
/// lines). On a regular file opened with `O_APPEND` the rules of
/// `ql_file_handler` apply.
///
/// Built-in handlers take built-in records only (`ql_log`, `ql_logf`):
/// never use them on a queue of program pointers.
///
/// `QL_ERR_NULL` for a NULL `handler_out`; `QL_ERR_INVALID` for a bad
/// pattern (an unknown field, or a control character other than TAB: a
/// line break would make one record two lines), flush policy, format or
/// colour, or an fd that is not open (`errno` `EBADF`: a closed stderr
/// would later write into whatever file takes its number). Any thread.
///
/// # Safety
/// `options` must be NULL or valid for reading `struct_size` bytes, with
/// `pattern` NULL or a C string;
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
        unsafe {
            make(
                options,
                Some(fd),
                |o, _| match FdTarget::new(fd, o.stall) {
                    Ok(t) => Ok(Box::new(t)),
                    Err(e) => Err(invalid_with_errno(&e)),
                },
                handler_out,
            )
        }
    })
}

/// Makes a stream handler writing to a C `FILE *` the program owns (for
/// example `stdout`). Each write holds the stream's lock (`flockfile`),
/// first flushes what the program left in the stream's buffer, then writes
/// whole lines through the stream's file descriptor by the rules of
/// `ql_stream_handler_fd`: lines never interleave with the program's other
/// writes through that stream, and `EINTR` or a partial write never loses
/// or tears a line. A stream without a file descriptor (`fmemopen`,
/// `fopencookie`) is written with `fwrite` and `fflush`.
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
                Some(libc::fileno(stream)),
                // SAFETY: the stream is valid (the caller's promise).
                |o, _| match StdioTarget::new(stream, o.stall) {
                    Ok(t) => Ok(Box::new(t)),
                    Err(e) => Err(invalid_with_errno(&e)),
                },
                handler_out,
            )
        }
    })
}

/// Makes a file handler: appends lines to `path` (created if missing, mode
/// 0666 minus the umask). A relative path is made absolute now, so a later
/// `chdir` changes nothing.
///
/// Appending: the file is opened with `O_APPEND` and every write holds
/// whole lines, so several handlers or processes appending to one file
/// never interleave inside a line. A write that goes out only in part
/// (disk full, `RLIMIT_FSIZE`) is taken back out of the file (truncated to
/// where it began) while the file still ends with it, and the record goes
/// out whole later; if another writer appended after it meanwhile, it is
/// never completed: the record is counted lost and the next one starts on a
/// line of its own. A file that does not end with a newline when opened (a
/// writer died inside a line) gets one before the first record; the torn
/// line is counted (`torn_tails`).
///
/// Rotation, by size (`max_bytes`, as Python's RotatingFileHandler) and by
/// time (`rotate_when`, as TimedRotatingFileHandler), combined or not:
/// `path.1` is the newest backup, at most `backup_count` are kept (numbered
/// backups for both triggers), gzip-compressed with `compress`. The new
/// file is made first, under a temporary name in the same directory, so
/// nothing is renamed or deleted unless it can be opened; a rotation that
/// fails keeps writing to the current file, is counted
/// (`rotation_failures`) and is tried again at the next write. Only regular
/// files are ever rotated (not a device, a FIFO or a symlink to one). When
/// the path no longer names the open file (moved by another program), its
/// new file is not renamed: the handler reopens the path instead.
/// Several rotating handlers of one file take turns through a lock file
/// beside it (`.NAME.ql-lock`) and follow each other's rotations; a writer
/// that does not rotate needs `watch` (see the README for what several
/// writers can still lose).
///
/// `QL_ERR_NULL` for a NULL `path` or `handler_out`; `QL_ERR_INVALID` for a
/// bad pattern, flush policy, `rotate_when` or a `backup_count` over
/// `QL_BACKUP_COUNT_MAX`, or a file that cannot be opened (its errno is
/// left in `errno`). Otherwise as `ql_stream_handler_fd`.
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
        // SAFETY: forwarded.
        unsafe {
            make(
                options,
                None,
                |o, counters| {
                    let file = file_options(&o.raw, o.stall)?;
                    let clock: Box<dyn Clock> = match o.raw.clock {
                        Some(now) => Box::new(CClock {
                            now,
                            ctx: o.raw.clock_ctx,
                        }),
                        None => Box::new(SystemClock),
                    };
                    match FileTarget::open(path, file, clock, Arc::clone(counters)) {
                        Ok(t) => Ok(Box::new(t)),
                        Err(e) => {
                            // The caller reads why in errno.
                            // SAFETY (inside the unsafe block above):
                            // errno is thread-local.
                            *libc::__errno_location() = e.raw_os_error().unwrap_or(0);
                            Err(QL_ERR_INVALID)
                        }
                    }
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

/// Asks every built-in file handler in the process to reopen its path
/// before its next write: after an outside `logrotate` moved the file, the
/// handler goes on in a new file at the path instead of the moved one.
/// Async-signal-safe (one atomic increment), so it may be called from a
/// `SIGHUP` handler. Any thread.
#[no_mangle]
pub extern "C" fn ql_reopen_files() {
    boundary(file::request_reopen)
}

/// Records a built-in stream or file handler counted lost: the `lost` of
/// its `ql_sink_counts` (`ql_listener_handler_stats` gives it, with the
/// rest of the account, without a copy of the handler). 0 for any other
/// handler. Any thread, any time. NULL gives 0.
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
        // SAFETY: the caller's promise.
        unsafe { builtin_counts(h) }.map_or(0, |c| c.lost)
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

// SAFETY: repr(C), `struct_size` first, C-storable members only, no tail
// padding (asserted below).
unsafe impl super::SizedOptions for ql_handler_options {
    const FIRST_SIZE: usize = std::mem::size_of::<ql_handler_options>();
    fn defaults() -> Self {
        default_handler_options()
    }
}
const _: () = assert!(super::no_tail_padding(
    std::mem::size_of::<ql_handler_options>(),
    std::mem::offset_of!(ql_handler_options, color),
    std::mem::size_of::<ql_color>(),
));
