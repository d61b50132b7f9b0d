//! The built-in log record: level, wall-clock time, thread, logger name,
//! message and a user value, stored inline so a short record costs no heap
//! allocation.
//!
//! The logger name and the message are copied when the record is made, each
//! followed by a NUL byte so C code can use them as strings. Text that does
//! not fit in [`INLINE_TEXT`] bytes goes to the heap, whole; a message longer
//! than [`MAX_MESSAGE`] bytes is cut there and ends with [`CUT_MARKER`].

use std::cell::Cell;
use std::ffi::CStr;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender};

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

/// Bytes of logger name plus message (with their two NULs) kept inside the
/// record itself.
pub const INLINE_TEXT: usize = 96;

/// The longest message kept; a longer one is cut to this many bytes, the
/// last of which are [`CUT_MARKER`].
pub const MAX_MESSAGE: usize = 1 << 20;

/// Ends a message that was cut at [`MAX_MESSAGE`] bytes.
pub const CUT_MARKER: &[u8] = b"...[cut]";

/// The logger name used when none is given: Python's root logger.
pub const ROOT_LOGGER: &[u8] = b"root";

enum Text {
    Inline([u8; INLINE_TEXT]),
    Heap(Box<[u8]>),
}

/// One built-in record.
pub struct LogRecord {
    /// The record's level.
    pub level: i32,
    /// The Linux thread id (gettid) of the thread that made it.
    pub thread_id: u32,
    /// Wall-clock time when it was made, in ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// A value the program attached (a pointer, for C), never read here.
    pub user: usize,
    logger_len: u32,
    message_len: u32,
    text: Text,
}

impl LogRecord {
    /// Makes a record stamped with the current time and thread. An empty
    /// logger name becomes [`ROOT_LOGGER`].
    pub fn new(level: i32, logger: &[u8], message: &[u8], user: usize) -> LogRecord {
        let mut record = LogRecord {
            level,
            thread_id: 0,
            timestamp_ns: 0,
            user,
            logger_len: 0,
            message_len: 0,
            text: Text::Inline([0; INLINE_TEXT]),
        };
        record.fill(level, logger, message, user);
        record
    }

    /// Makes this record anew, reusing its storage.
    pub fn fill(&mut self, level: i32, logger: &[u8], message: &[u8], user: usize) {
        let logger = if logger.is_empty() {
            ROOT_LOGGER
        } else {
            logger
        };
        let logger = &logger[..logger.len().min(u32::MAX as usize)];
        let (message, cut) = if message.len() > MAX_MESSAGE {
            (&message[..MAX_MESSAGE - CUT_MARKER.len()], CUT_MARKER)
        } else {
            (message, &b""[..])
        };
        let message_len = message.len() + cut.len();
        let total = logger.len() + 1 + message_len + 1;
        self.level = level;
        self.thread_id = current_thread_id();
        self.timestamp_ns = now_ns();
        self.user = user;
        self.logger_len = logger.len() as u32;
        self.message_len = message_len as u32;
        match (&self.text, total <= INLINE_TEXT) {
            (Text::Inline(_), true) => {}
            (_, true) => self.text = Text::Inline([0; INLINE_TEXT]),
            (Text::Heap(buf), false) if buf.len() == total => {}
            (_, false) => self.text = Text::Heap(vec![0; total].into_boxed_slice()),
        }
        let buf: &mut [u8] = match &mut self.text {
            Text::Inline(buf) => buf,
            Text::Heap(buf) => buf,
        };
        let m = logger.len() + 1;
        buf[..logger.len()].copy_from_slice(logger);
        buf[logger.len()] = 0;
        buf[m..m + message.len()].copy_from_slice(message);
        buf[m + message.len()..m + message_len].copy_from_slice(cut);
        buf[m + message_len] = 0;
    }

    fn text(&self) -> &[u8] {
        match &self.text {
            Text::Inline(buf) => buf,
            Text::Heap(buf) => buf,
        }
    }

    /// The logger name, without its NUL.
    pub fn logger(&self) -> &[u8] {
        &self.text()[..self.logger_len as usize]
    }

    /// The logger name followed by its NUL.
    pub fn logger_with_nul(&self) -> &[u8] {
        &self.text()[..self.logger_len as usize + 1]
    }

    /// The message, without its NUL.
    pub fn message(&self) -> &[u8] {
        let start = self.logger_len as usize + 1;
        &self.text()[start..start + self.message_len as usize]
    }

    /// The message followed by its NUL.
    pub fn message_with_nul(&self) -> &[u8] {
        let start = self.logger_len as usize + 1;
        &self.text()[start..start + self.message_len as usize + 1]
    }

    /// True when the text lives inside the record (no heap allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.text, Text::Inline(_))
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

    /// A record made from a spare one, or newly allocated when none is
    /// spare.
    pub fn make(&self, level: i32, logger: &[u8], message: &[u8], user: usize) -> Box<LogRecord> {
        match self.rx.try_recv() {
            Ok(mut record) => {
                record.fill(level, logger, message, user);
                record
            }
            Err(_) => Box::new(LogRecord::new(level, logger, message, user)),
        }
    }

    /// Takes a record back for reuse; dropped when the pool is full. A
    /// record holding a heap buffer is dropped too, so the pool never
    /// hoards large buffers.
    pub fn recycle(&self, record: Box<LogRecord>) {
        if record.is_inline() {
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

/// Wall-clock time in ns since the Unix epoch (negative before it).
pub fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
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
        // logger 1 + NUL + message + NUL == INLINE_TEXT stays inline.
        let msg = vec![b'z'; INLINE_TEXT - 3];
        assert!(LogRecord::new(0, b"a", &msg, 0).is_inline());
        let msg = vec![b'z'; INLINE_TEXT - 2];
        assert!(!LogRecord::new(0, b"a", &msg, 0).is_inline());
    }

    #[test]
    fn pool_reuses_records() {
        let pool = RecordPool::new(2);
        let a = pool.make(10, b"a", b"first", 0);
        let addr = &*a as *const LogRecord;
        pool.recycle(a);
        assert_eq!(pool.spare(), 1);
        let b = pool.make(20, b"bb", b"second", 1);
        assert_eq!(&*b as *const LogRecord, addr);
        assert_eq!(
            (b.level, b.logger(), b.message()),
            (20, &b"bb"[..], &b"second"[..])
        );
        // Heap-backed records are not kept.
        let big = pool.make(0, b"x", &[b'q'; 500], 0);
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
    fn level_names_are_pythons() {
        assert_eq!(level_name(30), Some(c"WARNING"));
        assert_eq!(level_name(31), None);
    }
}
