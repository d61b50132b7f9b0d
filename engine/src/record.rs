//! The built-in log record: level, wall-clock time, thread, logger name,
//! message, source location, structured fields and a user value, stored
//! inline so a short record costs no heap allocation.
//!
//! The logger name, message, file and function names, field keys and string
//! values are copied when the record is made, each followed by a NUL byte so
//! C code can use them as strings. Text that does not fit in [`INLINE_TEXT`]
//! bytes goes to the heap, whole; a message (or string value) longer than
//! [`MAX_MESSAGE`] bytes is cut there and ends with [`CUT_MARKER`]. The
//! field slots live in a vector a recycled record keeps, so once the pool is
//! warm a record with fields costs no allocation either.

use std::cell::Cell;
use std::ffi::CStr;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::fields::{Field, FieldList, Value, NO_FIELDS};
use crate::printf::{Arg, Format};

/// Python's level numbers. Any other integer is a valid level too.
pub mod level {
    /// Passes everything (a handler at this level gets every record).
    pub const NOTSET: i32 = 0;
    /// Detailed diagnostics.
    pub const DEBUG: i32 = 10;
    /// Normal operation.
    pub const INFO: i32 = 20;
    /// Something unexpected; the program goes on.
    pub const WARNING: i32 = 30;
    /// A failure of one operation.
    pub const ERROR: i32 = 40;
    /// A failure of the program.
    pub const CRITICAL: i32 = 50;
}

/// Python's name for a level ("DEBUG", "INFO", ...), as a static C
/// string; `None` for other levels (`logging.getLevelName` writes those as
/// "Level N").
pub fn level_name(level: i32) -> Option<&'static CStr> {
    Some(match level {
        level::NOTSET => c"NOTSET",
        level::DEBUG => c"DEBUG",
        level::INFO => c"INFO",
        level::WARNING => c"WARNING",
        level::ERROR => c"ERROR",
        level::CRITICAL => c"CRITICAL",
        _ => return None,
    })
}

/// An allocation the caller sized (a message, fields, arguments) failed:
/// the record was not made (its put drops it and counts the drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMem;

/// The message of a deferred record whose formatting could not get its
/// room on the listener's thread.
const NOT_FORMATTED: &[u8] = b"[message not formatted: out of memory]";

/// `len` zero bytes on the heap, or [`NoMem`].
fn zeroed(len: usize) -> Result<Box<[u8]>, NoMem> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| NoMem)?;
    buf.resize(len, 0);
    Ok(buf.into_boxed_slice())
}

/// Bytes of text (logger name, message, file, function, field keys and
/// string values, each with its NUL) kept inside the record itself.
pub const INLINE_TEXT: usize = 256;

/// The longest message kept; a longer one is cut to this many bytes, the
/// last of which are [`CUT_MARKER`].
pub const MAX_MESSAGE: usize = 1 << 20;

/// Ends a message that was cut at [`MAX_MESSAGE`] bytes.
pub const CUT_MARKER: &[u8] = b"...[cut]";

/// Field slots a recycled record keeps.
const KEEP_FIELDS: usize = 2 * crate::fields::MAX_FIELDS;

/// The logger name used when none is given: Python's root logger.
pub const ROOT_LOGGER: &[u8] = b"root";

#[allow(clippy::large_enum_variant)] // inline on purpose: no allocation
enum Text {
    Inline([u8; INLINE_TEXT]),
    Heap(Box<[u8]>),
}

/// Where in the program a record was logged (empty and 0 when unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct Source<'a> {
    /// The source file (`__FILE__`).
    pub file: &'a [u8],
    /// The line (`__LINE__`), 0 when unknown.
    pub line: u32,
    /// The function (`__func__`).
    pub func: &'a [u8],
}

/// What a producer's call says of its record besides the message: the
/// arguments every way of making a record shares.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The record's level.
    pub level: i32,
    /// The logger name (empty: [`ROOT_LOGGER`]).
    pub logger: &'a [u8],
    /// A value the program attaches (a pointer, for C), never read here.
    pub user: usize,
    /// Where in the program it was logged.
    pub source: &'a Source<'a>,
    /// The call's fields, already checked with [`crate::fields::check`].
    pub fields: &'a dyn FieldList,
}

impl<'a> Call<'a> {
    /// A call with no source location and no fields.
    pub fn plain(level: i32, logger: &'a [u8], user: usize) -> Call<'a> {
        const NO_SOURCE: Source<'static> = Source {
            file: b"",
            line: 0,
            func: b"",
        };
        Call {
            level,
            logger,
            user,
            source: &NO_SOURCE,
            fields: NO_FIELDS,
        }
    }
}

/// The longest file or function name kept; longer ones are cut.
pub const MAX_SOURCE: usize = 1024;

/// Where a field's value lives inside the record.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Str(u32, u32),
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
}

/// One built-in record.
pub struct LogRecord {
    /// The record's level.
    pub level: i32,
    /// The Linux thread id (gettid) of the thread that made it.
    pub thread_id: u32,
    /// Wall-clock time when it was made, in ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// When it was made, on a clock that orders readings across threads
    /// and is never stepped ([`crate::clock::now_and_key`]): the built-in
    /// queue merges its lanes by it.
    pub order_key: i64,
    /// A value the program attached (a pointer, for C), never read here.
    pub user: usize,
    /// The source line, 0 when unknown.
    pub line: u32,
    logger_len: u32,
    message_len: u32,
    file_len: u32,
    func_len: u32,
    /// Each field: its key's offset and length in the text, and its value.
    fields: Vec<(u32, u32, Slot)>,
    text: Text,
    /// Bytes of `text` in use.
    text_len: u32,
    /// The format of a message still to be formatted ([`LogRecord::fill_deferred`]),
    /// whose arguments are in `args` (and the bytes of its strings in
    /// `arg_text`); `None` once the message is text.
    deferred: Option<&'static Format>,
    args: Vec<Captured>,
    arg_text: Vec<u8>,
}

/// One argument of a deferred message, as the record keeps it.
#[derive(Debug, Clone, Copy)]
enum Captured {
    Int(i64),
    Double(f64),
    /// A string's offset and length in `arg_text`, or NULL.
    Str(Option<(u32, u32)>),
    Ptr(usize),
}

/// The bytes of deferred string arguments a recycled record keeps room for.
const KEEP_ARG_TEXT: usize = 4096;

/// Arguments and string bytes a record makes room for the first time it
/// defers a message: enough for most calls, so that they cost no
/// allocation once the pool is warm. Larger calls grow it (kept up to
/// [`KEEP_ARG_TEXT`] bytes).
const ARGS_ROOM: usize = 8;
/// Field slots a new pool record makes room for (a call's and the
/// context's; more grow it).
const FIELDS_ROOM: usize = 32;
const ARG_TEXT_ROOM: usize = 128;

/// Cuts `text` to `max` bytes, the last of which are [`CUT_MARKER`].
fn cut(text: &[u8], max: usize) -> (&[u8], &'static [u8]) {
    if text.len() > max {
        (&text[..max - CUT_MARKER.len()], CUT_MARKER)
    } else {
        (text, b"")
    }
}

/// Fields a record is made with read once onto the stack; more are found
/// again by index.
const STACK_FIELDS: usize = 16;

/// The most fields a record considers: a call's and the context's.
const MAX_FIELDS_IN_RECORD: usize = 2 * crate::fields::MAX_FIELDS;
const _: () = assert!(MAX_FIELDS_IN_RECORD <= 128); // the mask is a u128

const NO_FIELD: Field<'static> = Field {
    key: b"",
    value: Value::Bool(false),
};

/// The `i`th of the fields of `a` followed by those of `b`.
fn nth<'a>(a: &'a dyn FieldList, b: &'a dyn FieldList, i: usize) -> Field<'a> {
    if i < a.count() {
        a.field(i)
    } else {
        b.field(i - a.count())
    }
}

impl LogRecord {
    /// Makes a record stamped with the current time and thread, carrying
    /// the calling thread's context fields. An empty logger name becomes
    /// [`ROOT_LOGGER`].
    pub fn new(level: i32, logger: &[u8], message: &[u8], user: usize) -> LogRecord {
        let mut record = LogRecord::empty();
        record.fill(level, logger, message, user);
        record
    }

    /// A record with fields and a source location (see
    /// [`LogRecord::fill_call`]; an allocation that fails leaves it empty).
    pub fn with(
        level: i32,
        logger: &[u8],
        message: &[u8],
        user: usize,
        source: &Source,
        fields: &dyn FieldList,
    ) -> LogRecord {
        let mut record = LogRecord::empty();
        let _ = record.fill_call(
            &Call {
                level,
                logger,
                user,
                source,
                fields,
            },
            message,
        );
        record
    }

    fn empty() -> LogRecord {
        LogRecord {
            level: 0,
            thread_id: 0,
            timestamp_ns: 0,
            order_key: 0,
            user: 0,
            line: 0,
            logger_len: 0,
            message_len: 0,
            file_len: 0,
            func_len: 0,
            fields: Vec::new(),
            text: Text::Inline([0; INLINE_TEXT]),
            text_len: 0,
            deferred: None,
            args: Vec::new(),
            arg_text: Vec::new(),
        }
    }

    /// An empty record with room for a common call's captured arguments
    /// and fields already made: a record is reused for every kind of call
    /// (in a lane's slot, through the pool), so making its buffers now,
    /// once, keeps a later call of another kind from allocating.
    fn with_room() -> Option<Box<LogRecord>> {
        let mut record = LogRecord::empty();
        record.args.try_reserve_exact(ARGS_ROOM).ok()?;
        record.arg_text.try_reserve_exact(ARG_TEXT_ROOM).ok()?;
        record.fields.try_reserve_exact(FIELDS_ROOM).ok()?;
        let layout = std::alloc::Layout::new::<LogRecord>();
        // SAFETY: a LogRecord has a nonzero size.
        let boxed = unsafe { std::alloc::alloc(layout) }.cast::<LogRecord>();
        if boxed.is_null() {
            return None;
        }
        // SAFETY: fresh memory for one LogRecord from the global allocator
        // with its layout, as `Box::from_raw` expects.
        unsafe {
            boxed.write(record);
            Some(Box::from_raw(boxed))
        }
    }

    /// Makes this record anew, reusing its storage (an allocation that
    /// fails leaves it empty).
    pub fn fill(&mut self, level: i32, logger: &[u8], message: &[u8], user: usize) {
        if self
            .fill_call(&Call::plain(level, logger, user), message)
            .is_err()
        {
            let _ = self.fill_call(&Call::plain(level, logger, user), b"");
        }
    }

    /// Makes this record anew, reusing its storage: `fields` (already
    /// checked with [`crate::fields::check`]) then the calling thread's
    /// context fields, each key once (its first value kept). A string value
    /// is cut like a message; logger, file and function names past [`MAX_SOURCE`]
    /// bytes are cut.
    ///
    /// [`NoMem`] when the room for the text (message, fields) or the
    /// fields could not be allocated: the record is then left as it was,
    /// to be passed over (its caller drops it and counts the drop).
    pub fn fill_call(&mut self, call: &Call, message: &[u8]) -> Result<(), NoMem> {
        crate::fields::with_context(|context| self.build(call, message, context))
    }

    fn build(&mut self, call: &Call, message: &[u8], context: &dyn FieldList) -> Result<(), NoMem> {
        let Call {
            level,
            logger,
            user,
            source,
            fields,
        } = *call;
        let logger = if logger.is_empty() {
            ROOT_LOGGER
        } else {
            logger
        };
        // Cut like a source name: the text's offsets are 32-bit.
        let logger = &logger[..logger.len().min(MAX_SOURCE)];
        let message = cut(message, MAX_MESSAGE);
        let file = &source.file[..source.file.len().min(MAX_SOURCE)];
        let func = &source.func[..source.func.len().min(MAX_SOURCE)];
        let message_len = message.0.len() + message.1.len();
        // The fields kept: each key's first occurrence. The usual few are
        // read once (a C field's key costs a strlen) onto the stack; past
        // that, a mask of the kept ones (no allocation either way).
        let all = (fields.count() + context.count()).min(MAX_FIELDS_IN_RECORD);
        // (Made only when there are fields: most records have none.)
        let mut stack = None;
        let mut n = 0;
        let mut mask: u128 = 0;
        if (1..=STACK_FIELDS).contains(&all) {
            let stack = stack.insert([NO_FIELD; STACK_FIELDS]);
            for i in 0..all {
                let f = nth(fields, context, i);
                if !stack[..n].iter().any(|k| k.key == f.key) {
                    stack[n] = f;
                    n += 1;
                }
            }
        } else if all > STACK_FIELDS {
            for i in 0..all {
                let key = nth(fields, context, i).key;
                if !(0..i).any(|j| mask & (1 << j) != 0 && nth(fields, context, j).key == key) {
                    mask |= 1 << i;
                }
            }
        }
        let small = all <= STACK_FIELDS;
        let each_kept = |f: &mut dyn FnMut(Field)| {
            if small {
                if let Some(stack) = &stack {
                    stack[..n].iter().for_each(|k| f(*k));
                }
            } else {
                (0..all)
                    .filter(|&i| mask & (1 << i) != 0)
                    .for_each(|i| f(nth(fields, context, i)));
            }
        };
        let mut total = logger.len() + message_len + file.len() + func.len() + 4;
        if all > 0 {
            each_kept(&mut |f| {
                total += f.key.len() + 1;
                if let Value::Str(s) = f.value {
                    let (s, marker) = cut(s, MAX_MESSAGE);
                    total += s.len() + marker.len() + 1;
                }
            });
        }
        // What the caller sized is allocated first, fallibly: nothing of
        // the record changes when it fails.
        let heap = match (&self.text, total <= INLINE_TEXT) {
            (Text::Heap(buf), false) if buf.len() == total => None,
            (_, false) => Some(zeroed(total)?),
            _ => None,
        };
        if all > self.fields.capacity() {
            self.fields
                .try_reserve(all - self.fields.len())
                .map_err(|_| NoMem)?;
        }
        self.level = level;
        self.thread_id = current_thread_id();
        (self.timestamp_ns, self.order_key) = crate::clock::now_and_key();
        self.user = user;
        self.line = source.line;
        self.logger_len = logger.len() as u32;
        self.message_len = message_len as u32;
        self.file_len = file.len() as u32;
        self.func_len = func.len() as u32;
        match (&self.text, total <= INLINE_TEXT, heap) {
            (_, _, Some(heap)) => self.text = Text::Heap(heap),
            (Text::Inline(_), true, None) => {}
            (_, true, None) => self.text = Text::Inline([0; INLINE_TEXT]),
            (_, false, None) => {}
        }
        let buf: &mut [u8] = match &mut self.text {
            Text::Inline(buf) => buf,
            Text::Heap(buf) => buf,
        };
        let mut at = 0;
        let mut put = |parts: &[&[u8]]| {
            let start = at;
            for part in parts.iter().filter(|p| !p.is_empty()) {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            buf[at] = 0;
            at += 1;
            (start as u32, (at - 1 - start) as u32)
        };
        put(&[logger]);
        put(&[message.0, message.1]);
        put(&[file]);
        put(&[func]);
        self.fields.clear();
        self.deferred = None;
        self.text_len = total as u32;
        if all == 0 {
            return Ok(());
        }
        let slots = &mut self.fields;
        each_kept(&mut |f| {
            let (key, key_len) = put(&[f.key]);
            let slot = match f.value {
                Value::Str(s) => {
                    let (s, marker) = cut(s, MAX_MESSAGE);
                    let (off, len) = put(&[s, marker]);
                    Slot::Str(off, len)
                }
                Value::Int(v) => Slot::Int(v),
                Value::Uint(v) => Slot::Uint(v),
                Value::Double(v) => Slot::Double(v),
                Value::Bool(v) => Slot::Bool(v),
            };
            slots.push((key, key_len, slot));
        });
        Ok(())
    }

    /// Makes this record anew as [`LogRecord::fill_call`] does, with its
    /// message still to be formatted: `format` with `args` (which must
    /// match `format.args()`), formatted later by
    /// [`LogRecord::materialize`]. String arguments are copied now (the
    /// caller may change them once the call returns), each cut like a
    /// message.
    ///
    /// [`NoMem`] as for [`LogRecord::fill_call`], or when the room for the
    /// arguments could not be allocated.
    pub fn fill_deferred(
        &mut self,
        call: &Call,
        format: &'static Format,
        args: &[Arg<'_>],
    ) -> Result<(), NoMem> {
        // Room for the arguments (at least the usual call's, made the first
        // time this record defers: a recycled record then costs no
        // allocation for it again), fallibly, first.
        let text: usize = args
            .iter()
            .map(|arg| match arg {
                Arg::Str(Some(text)) => {
                    let (text, marker) = cut(text, MAX_MESSAGE);
                    text.len() + marker.len()
                }
                _ => 0,
            })
            .sum();
        self.args.clear();
        self.arg_text.clear();
        self.args
            .try_reserve(ARGS_ROOM.max(args.len()))
            .map_err(|_| NoMem)?;
        self.arg_text
            .try_reserve(ARG_TEXT_ROOM.max(text))
            .map_err(|_| NoMem)?;
        self.fill_call(call, b"")?;
        for arg in args {
            let kept = match *arg {
                Arg::Int(v) => Captured::Int(v),
                Arg::Double(v) => Captured::Double(v),
                Arg::Ptr(v) => Captured::Ptr(v),
                Arg::Str(None) => Captured::Str(None),
                Arg::Str(Some(text)) => {
                    let (text, marker) = cut(text, MAX_MESSAGE);
                    let start = self.arg_text.len();
                    self.arg_text.extend_from_slice(text);
                    self.arg_text.extend_from_slice(marker);
                    Captured::Str(Some((start as u32, (self.arg_text.len() - start) as u32)))
                }
            };
            self.args.push(kept);
        }
        self.deferred = Some(format);
        Ok(())
    }

    /// True while the message is still to be formatted.
    pub fn is_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Formats a deferred message (see [`LogRecord::fill_deferred`]) into
    /// the record's text, using `scratch` as room to format in; nothing to
    /// do for a record whose message is text already. A message longer than
    /// [`MAX_MESSAGE`] is cut as a message given as text would be.
    pub fn materialize(&mut self, scratch: &mut Vec<u8>) {
        let Some(format) = self.deferred.take() else {
            return;
        };
        let (args, n) = self.deferred_args();
        scratch.clear();
        // The room the message can need, made fallibly first: out of
        // memory, the record keeps its place with a marker for a message.
        let room = format.max_len(&args[..n]).unwrap_or(0);
        if scratch.try_reserve(room).is_err() {
            let _ = self.set_message(b"", NOT_FORMATTED);
            return;
        }
        // The kinds matched when the record was made: fill_deferred's
        // caller checked them against the format.
        let _ = format.format(&args[..n], scratch);
        let (text, marker) = cut(scratch, MAX_MESSAGE);
        if self.set_message(text, marker).is_err() {
            let _ = self.set_message(b"", NOT_FORMATTED);
        }
    }

    /// A deferred message's arguments, as the formatter takes them, and
    /// how many there are.
    fn deferred_args(&self) -> ([Arg<'_>; crate::deferred::MAX_ARGS], usize) {
        let mut args = [Arg::Int(0); crate::deferred::MAX_ARGS];
        let n = self.args.len().min(args.len());
        for (slot, kept) in args.iter_mut().zip(&self.args) {
            *slot = match *kept {
                Captured::Int(v) => Arg::Int(v),
                Captured::Double(v) => Arg::Double(v),
                Captured::Ptr(v) => Arg::Ptr(v),
                Captured::Str(None) => Arg::Str(None),
                Captured::Str(Some((start, len))) => {
                    Arg::Str(Some(&self.arg_text[start as usize..(start + len) as usize]))
                }
            };
        }
        (args, n)
    }

    /// The message as the crash flush writes it, in a signal handler: the
    /// text, or a deferred message formatted into `room` without letting
    /// it grow (no allocation); one that could need more room than `room`
    /// has is written as its format string, marked ` [not formatted at the
    /// crash]`.
    pub fn crash_message<'a>(&'a self, room: &'a mut Vec<u8>) -> &'a [u8] {
        let Some(format) = self.deferred else {
            return self.message();
        };
        const MARK: &[u8] = b" [not formatted at the crash]";
        let (args, n) = self.deferred_args();
        room.clear();
        let fits = format
            .max_len(&args[..n])
            .is_some_and(|most| most <= room.capacity());
        if fits && format.format(&args[..n], room).is_ok() {
            let end = room.len().min(MAX_MESSAGE);
            return &room[..end];
        }
        room.clear();
        let text = format.text();
        let keep = text.len().min(room.capacity().saturating_sub(MARK.len()));
        room.extend_from_slice(&text[..keep]);
        room.extend_from_slice(&MARK[..MARK.len().min(room.capacity() - room.len())]);
        room
    }

    /// Puts `text` and `marker` as the message of a record made with an
    /// empty one, moving what follows it (file, function, fields) along.
    fn set_message(&mut self, text: &[u8], marker: &[u8]) -> Result<(), NoMem> {
        let m = text.len() + marker.len();
        if m == 0 {
            return Ok(());
        }
        let start = self.message_start();
        let used = self.text_len as usize;
        let total = used + m;
        match &mut self.text {
            Text::Inline(buf) if total <= INLINE_TEXT => {
                buf.copy_within(start..used, start + m);
                buf[start..start + text.len()].copy_from_slice(text);
                buf[start + text.len()..start + m].copy_from_slice(marker);
            }
            _ => {
                let mut buf = zeroed(total)?;
                let old = self.text();
                buf[..start].copy_from_slice(&old[..start]);
                buf[start..start + text.len()].copy_from_slice(text);
                buf[start + text.len()..start + m].copy_from_slice(marker);
                buf[start + m..].copy_from_slice(&old[start..used]);
                self.text = Text::Heap(buf);
            }
        }
        let m32 = m as u32;
        for (key, _, slot) in &mut self.fields {
            *key += m32;
            if let Slot::Str(off, _) = slot {
                *off += m32;
            }
        }
        self.message_len = m32;
        self.text_len = total as u32;
        Ok(())
    }

    #[inline]
    fn text(&self) -> &[u8] {
        match &self.text {
            Text::Inline(buf) => buf,
            Text::Heap(buf) => buf,
        }
    }

    /// `len` bytes at `start`, and the NUL after them.
    #[inline]
    fn with_nul(&self, start: usize, len: u32) -> &[u8] {
        &self.text()[start..start + len as usize + 1]
    }

    #[inline]
    fn message_start(&self) -> usize {
        self.logger_len as usize + 1
    }

    #[inline]
    fn file_start(&self) -> usize {
        self.message_start() + self.message_len as usize + 1
    }

    #[inline]
    fn func_start(&self) -> usize {
        self.file_start() + self.file_len as usize + 1
    }

    /// The logger name, without its NUL.
    #[inline]
    pub fn logger(&self) -> &[u8] {
        &self.text()[..self.logger_len as usize]
    }

    /// The logger name followed by its NUL.
    #[inline]
    pub fn logger_with_nul(&self) -> &[u8] {
        self.with_nul(0, self.logger_len)
    }

    /// The message, without its NUL.
    #[inline]
    pub fn message(&self) -> &[u8] {
        let start = self.message_start();
        &self.text()[start..start + self.message_len as usize]
    }

    /// The message followed by its NUL.
    #[inline]
    pub fn message_with_nul(&self) -> &[u8] {
        self.with_nul(self.message_start(), self.message_len)
    }

    /// The source file followed by its NUL (only the NUL when unknown).
    #[inline]
    pub fn file_with_nul(&self) -> &[u8] {
        self.with_nul(self.file_start(), self.file_len)
    }

    /// The function followed by its NUL (only the NUL when unknown).
    #[inline]
    pub fn func_with_nul(&self) -> &[u8] {
        self.with_nul(self.func_start(), self.func_len)
    }

    /// The source file, without its NUL.
    #[inline]
    pub fn file(&self) -> &[u8] {
        let f = self.file_with_nul();
        &f[..f.len() - 1]
    }

    /// The function, without its NUL.
    #[inline]
    pub fn func(&self) -> &[u8] {
        let f = self.func_with_nul();
        &f[..f.len() - 1]
    }

    /// Field `i`'s key and string value, each followed by its NUL (the
    /// value only for strings).
    #[inline]
    pub fn field_with_nuls(&self, i: usize) -> (&[u8], Option<&[u8]>) {
        let (key, key_len, slot) = self.fields[i];
        let value = match slot {
            Slot::Str(off, len) => Some(self.with_nul(off as usize, len)),
            _ => None,
        };
        (self.with_nul(key as usize, key_len), value)
    }

    /// True when the text lives inside the record (no heap allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.text, Text::Inline(_))
    }
}

impl FieldList for LogRecord {
    #[inline]
    fn count(&self) -> usize {
        self.fields.len()
    }

    #[inline]
    fn field(&self, i: usize) -> Field<'_> {
        let (key, key_len, slot) = self.fields[i];
        let text = self.text();
        let bytes = |off: u32, len: u32| &text[off as usize..(off + len) as usize];
        Field {
            key: bytes(key, key_len),
            value: match slot {
                Slot::Str(off, len) => Value::Str(bytes(off, len)),
                Slot::Int(v) => Value::Int(v),
                Slot::Uint(v) => Value::Uint(v),
                Slot::Double(v) => Value::Double(v),
                Slot::Bool(v) => Value::Bool(v),
            },
        }
    }
}

/// Recycles boxed records between the listener and the producers, so that
/// once the pool has warmed up no record costs a heap allocation.
pub struct RecordPool {
    tx: Sender<Box<LogRecord>>,
    rx: Receiver<Box<LogRecord>>,
}

impl RecordPool {
    /// A pool keeping at most `keep` spare records.
    pub fn new(keep: usize) -> RecordPool {
        let (tx, rx) = bounded(keep.max(1));
        RecordPool { tx, rx }
    }

    /// A spare record, or a new empty one when none is spare; `None` when
    /// a new one could not be allocated.
    pub fn try_take(&self) -> Option<Box<LogRecord>> {
        match self.rx.try_recv() {
            Ok(record) => {
                crate::tsan::acquire(&*record as *const LogRecord as *const ());
                Some(record)
            }
            Err(_) => LogRecord::with_room(),
        }
    }

    /// [`RecordPool::try_take`] where running out of memory aborts (a
    /// record of a known small size).
    pub fn take(&self) -> Box<LogRecord> {
        self.try_take().unwrap_or_else(|| {
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<LogRecord>())
        })
    }

    /// A record made from a spare one, or newly allocated when none is
    /// spare.
    pub fn make(
        &self,
        level: i32,
        logger: &[u8],
        message: &[u8],
        user: usize,
    ) -> Result<Box<LogRecord>, NoMem> {
        self.make_with(&Call::plain(level, logger, user), message)
    }

    /// [`RecordPool::make`] for any call (source location, fields).
    pub fn make_with(&self, call: &Call, message: &[u8]) -> Result<Box<LogRecord>, NoMem> {
        let mut record = self.take();
        record.fill_call(call, message)?;
        Ok(record)
    }

    /// A record with its message still to be formatted (see
    /// [`LogRecord::fill_deferred`]), from a spare one when there is one.
    pub fn make_deferred(
        &self,
        call: &Call,
        format: &'static Format,
        args: &[Arg<'_>],
    ) -> Result<Box<LogRecord>, NoMem> {
        let mut record = self.take();
        record.fill_deferred(call, format, args)?;
        Ok(record)
    }

    /// Takes a record back for reuse; dropped when the pool is full. A
    /// record holding a heap buffer is dropped too, so the pool never
    /// hoards large buffers.
    pub fn recycle(&self, record: Box<LogRecord>) {
        if record.is_inline()
            && record.fields.capacity() <= KEEP_FIELDS
            && record.arg_text.capacity() <= KEEP_ARG_TEXT
            && record.args.capacity() <= crate::deferred::MAX_ARGS
        {
            crate::tsan::release(&*record as *const LogRecord as *const ());
            let _ = self.tx.try_send(record);
        }
    }

    /// Spare records held now.
    pub fn spare(&self) -> usize {
        self.rx.len()
    }
}

thread_local! {
    /// This thread's id, once asked; 0 before.
    static THREAD_ID: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's Linux thread id, cached per thread.
pub fn current_thread_id() -> u32 {
    THREAD_ID.with(|id| match id.get() {
        0 => {
            // SAFETY: gettid has no preconditions and cannot fail.
            let tid = unsafe { libc::gettid() } as u32;
            id.set(tid);
            tid
        }
        tid => tid,
    })
}

/// Forgets the cached thread id of the calling thread (after a fork, the
/// child's thread has a new one).
pub fn forget_thread_id() {
    THREAD_ID.with(|id| id.set(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_record_is_inline_and_nul_terminated() {
        let r = LogRecord::new(level::INFO, b"app", b"hello 42", 7);
        assert!(r.is_inline());
        assert_eq!(r.logger(), b"app");
        assert_eq!(r.message(), b"hello 42");
        assert_eq!(r.logger_with_nul(), b"app\0");
        assert_eq!(r.message_with_nul(), b"hello 42\0");
        assert_eq!(r.user, 7);
        assert_eq!(r.thread_id, current_thread_id());
        assert!(r.timestamp_ns > 1_600_000_000_000_000_000);
    }

    #[test]
    fn long_message_is_kept_whole_on_the_heap() {
        let msg = vec![b'x'; 5000];
        let r = LogRecord::new(level::ERROR, b"", &msg, 0);
        assert!(!r.is_inline());
        assert_eq!(r.logger(), ROOT_LOGGER);
        assert_eq!(r.message(), &msg[..]);
    }

    #[test]
    fn huge_message_is_cut_with_a_marker() {
        let msg = vec![b'y'; MAX_MESSAGE + 10];
        let r = LogRecord::new(level::ERROR, b"a", &msg, 0);
        assert_eq!(r.message().len(), MAX_MESSAGE);
        assert!(r.message().ends_with(CUT_MARKER));
        assert_eq!(r.message_with_nul().last(), Some(&0));
    }

    #[test]
    fn exact_fit_boundary() {
        // logger 1 + NUL + message + NUL + two empty source names (their
        // NULs) == INLINE_TEXT stays inline.
        let msg = vec![b'z'; INLINE_TEXT - 5];
        assert!(LogRecord::new(0, b"a", &msg, 0).is_inline());
        let msg = vec![b'z'; INLINE_TEXT - 4];
        assert!(!LogRecord::new(0, b"a", &msg, 0).is_inline());
    }

    #[test]
    fn pool_reuses_records() {
        let pool = RecordPool::new(2);
        let a = pool.make(10, b"a", b"first", 0).unwrap();
        let addr = &*a as *const LogRecord;
        pool.recycle(a);
        assert_eq!(pool.spare(), 1);
        let b = pool.make(20, b"bb", b"second", 1).unwrap();
        assert_eq!(&*b as *const LogRecord, addr);
        assert_eq!(
            (b.level, b.logger(), b.message()),
            (20, &b"bb"[..], &b"second"[..])
        );
        // Heap-backed records are not kept.
        let big = pool.make(0, b"x", &[b'q'; 500], 0).unwrap();
        pool.recycle(big);
        assert_eq!(pool.spare(), 0);
        // A reused record can switch between inline and heap text.
        let mut r = LogRecord::new(0, b"x", &[b'q'; 500], 0);
        r.fill(1, b"y", b"short", 0);
        assert!(r.is_inline());
        assert_eq!(r.message(), b"short");
        r.fill(1, b"y", &[b'w'; 300], 0);
        assert_eq!(r.message(), &[b'w'; 300][..]);
    }

    #[test]
    fn fields_and_source_live_in_the_record() {
        let given = [
            Field {
                key: b"user",
                value: Value::Str(b"bob"),
            },
            Field {
                key: b"n",
                value: Value::Int(-3),
            },
            Field {
                key: b"user",
                value: Value::Str(b"second value ignored"),
            },
        ];
        crate::fields::context_set(Field {
            key: b"req",
            value: Value::Uint(7),
        })
        .unwrap();
        crate::fields::context_set(Field {
            key: b"n",
            value: Value::Bool(true),
        })
        .unwrap();
        let src = Source {
            file: b"main.c",
            line: 42,
            func: b"main",
        };
        let pool = RecordPool::new(1);
        let r = pool
            .make_with(
                &Call {
                    level: 20,
                    logger: b"app",
                    user: 0,
                    source: &src,
                    fields: &given,
                },
                b"hi",
            )
            .unwrap();
        crate::fields::context_clear();
        assert!(r.is_inline());
        assert_eq!(
            (r.file(), r.line, r.func()),
            (&b"main.c"[..], 42, &b"main"[..])
        );
        assert_eq!(r.file_with_nul(), b"main.c\0");
        let got: Vec<_> = crate::fields::iter(&*r).collect();
        assert_eq!(
            got,
            vec![
                given[0],
                given[1],
                Field {
                    key: b"req",
                    value: Value::Uint(7)
                }
            ]
        );
        assert_eq!(r.field_with_nuls(0), (&b"user\0"[..], Some(&b"bob\0"[..])));
        // Recycled, the record keeps its field slots: no allocation.
        let slots = r.fields.as_ptr();
        pool.recycle(r);
        let r = pool
            .make_with(
                &Call {
                    level: 20,
                    logger: b"app",
                    user: 0,
                    source: &src,
                    fields: &[given[0]],
                },
                b"again",
            )
            .unwrap();
        assert_eq!((r.count(), r.fields.as_ptr()), (1, slots));
        let r = LogRecord::new(20, b"app", b"plain", 0);
        assert_eq!((r.count(), r.file(), r.line), (0, &b""[..], 0));
    }

    #[test]
    fn level_names_are_pythons() {
        assert_eq!(level_name(30), Some(c"WARNING"));
        assert_eq!(level_name(31), None);
    }
}
