//! The built-in handlers' machinery: a line formatter, an output buffer
//! with a flush policy, and the places lines go (a file descriptor, a C
//! `FILE *`, a file with size-based rotation).
//!
//! Every write is of whole lines: the buffer only ever holds complete lines,
//! and each `write(2)` (or `fwrite`) takes whole lines only, so records from
//! several handlers or processes appending to one file never interleave
//! inside a line (files are opened with `O_APPEND`; on a pipe, chunks stay
//! within `PIPE_BUF`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use crate::record::{level_name, LogRecord};

/// What a handler reads of a record.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// The level.
    pub level: i32,
    /// The producing thread's id.
    pub thread_id: u32,
    /// Wall-clock time, ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// The logger name.
    pub logger: &'a [u8],
    /// The message.
    pub message: &'a [u8],
}

impl<'a> From<&'a LogRecord> for RecordView<'a> {
    fn from(r: &'a LogRecord) -> Self {
        RecordView {
            level: r.level,
            thread_id: r.thread_id,
            timestamp_ns: r.timestamp_ns,
            logger: r.logger(),
            message: r.message(),
        }
    }
}

/// The default line pattern.
pub const DEFAULT_PATTERN: &str = "{time} {level} [{thread}] {logger}: {message}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Time,
    Level,
    LevelNo,
    Thread,
    Logger,
    Message,
}

/// A compiled line pattern.
///
/// Fields: `{time}` (local time, ISO 8601 with milliseconds and UTC offset:
/// `2026-11-24T21:31:05.123+01:00`), `{level}` (Python's level name, or
/// `Level N`), `{levelno}`, `{thread}` (the thread id), `{logger}`,
/// `{message}`. `{{` and `}}` write braces. A line ends with `\n`.
#[derive(Debug, Clone)]
pub struct Pattern {
    pieces: Vec<Piece>,
}

impl Pattern {
    /// Compiles a pattern; `Err` names the first unknown field.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = pattern;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                text.push(c);
                rest = &rest[2..];
                continue;
            }
            if c == '{' {
                let Some(end) = rest.find('}') else {
                    return Err(format!("unclosed field in pattern: {rest}"));
                };
                let piece = match &rest[1..end] {
                    "time" => Piece::Time,
                    "level" => Piece::Level,
                    "levelno" => Piece::LevelNo,
                    "thread" => Piece::Thread,
                    "logger" => Piece::Logger,
                    "message" => Piece::Message,
                    other => return Err(format!("unknown field {{{other}}}")),
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
                rest = &rest[end + 1..];
                continue;
            }
            if c == '}' {
                return Err("a lone '}' in pattern (write '}}')".into());
            }
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Pattern { pieces })
    }

    /// Appends the record's line, with its `\n`, to `out`.
    pub fn write_line(&self, clock: &mut LocalClock, record: &RecordView, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Time => clock.write_iso8601(record.timestamp_ns, out),
                Piece::Level => match level_name(record.level) {
                    Some(name) => out.extend_from_slice(name.to_bytes()),
                    None => {
                        let _ = write!(out, "Level {}", record.level);
                    }
                },
                Piece::LevelNo => {
                    let _ = write!(out, "{}", record.level);
                }
                Piece::Thread => {
                    let _ = write!(out, "{}", record.thread_id);
                }
                Piece::Logger => out.extend_from_slice(record.logger),
                Piece::Message => out.extend_from_slice(record.message),
            }
        }
        out.push(b'\n');
    }
}

/// Local time formatting, with the date-time part cached per second.
#[derive(Default)]
pub struct LocalClock {
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    prefix: String,
    /// `+HH:MM` of `second`.
    offset: String,
}

impl LocalClock {
    /// Appends `2026-11-24T21:31:05.123+01:00` for `ns` since the epoch.
    pub fn write_iso8601(&mut self, ns: i64, out: &mut Vec<u8>) {
        let second = ns.div_euclid(1_000_000_000);
        let millis = ns.rem_euclid(1_000_000_000) / 1_000_000;
        if self.second != Some(second) {
            self.set_second(second);
        }
        out.extend_from_slice(self.prefix.as_bytes());
        let _ = write!(out, ".{millis:03}");
        out.extend_from_slice(self.offset.as_bytes());
    }

    fn set_second(&mut self, second: i64) {
        let t = second as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value to be overwritten.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is
        // thread-safe.
        let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
        self.second = Some(second);
        if !ok {
            self.prefix = format!("@{second}");
            self.offset.clear();
            return;
        }
        self.prefix = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            tm.tm_year as i64 + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        );
        let off = tm.tm_gmtoff;
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.abs();
        self.offset = format!("{sign}{:02}:{:02}", off / 3600, (off % 3600) / 60);
    }
}

/// When buffered lines are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After every record.
    EveryRecord,
    /// At the end of each batch the listener takes off the queue (and on
    /// every flush).
    Batch,
    /// Only on an explicit flush (a flush barrier or the end of the
    /// listener loop), or when the buffer passes [`BUFFER_LIMIT`].
    Explicit,
}

/// Buffered bytes past which lines are written out whatever the policy.
pub const BUFFER_LIMIT: usize = 1 << 20;

/// Lines kept while writes fail, past which the oldest are dropped.
pub const RETRY_LIMIT: usize = 4 << 20;

/// A write that failed after `written` bytes went out.
#[derive(Debug)]
pub struct WriteError {
    /// Bytes written before the failure (they must not be written again).
    pub written: usize,
    /// Why it failed.
    pub error: io::Error,
}

impl From<io::Error> for WriteError {
    fn from(error: io::Error) -> Self {
        WriteError { written: 0, error }
    }
}

/// Where whole lines go.
pub trait LineSink: Send {
    /// Writes `lines` (whole lines only), each `write(2)` of whole lines;
    /// on failure says how much went out.
    fn write_lines(&mut self, lines: &[u8]) -> Result<(), WriteError>;
    /// Pushes written data to the OS (and stdio buffers to the fd).
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `buf` to `fd` with as few `write(2)` calls as it takes, each
/// ending at a line boundary and, on a pipe, at most `PIPE_BUF` bytes.
fn write_fd(fd: RawFd, buf: &[u8], pipe: bool) -> Result<(), WriteError> {
    let mut rest = buf;
    while !rest.is_empty() {
        let mut chunk = rest;
        if pipe && chunk.len() > libc::PIPE_BUF {
            // The last line end within PIPE_BUF, or the whole first line.
            let window = &chunk[..libc::PIPE_BUF];
            let end = match window.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => chunk
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(chunk.len(), |i| i + 1),
            };
            chunk = &chunk[..end];
        }
        // SAFETY: `chunk` is valid for its length; `fd` is the caller's.
        let n = unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(WriteError {
                written: buf.len() - rest.len(),
                error,
            });
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

fn is_pipe(fd: RawFd) -> bool {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writing.
    unsafe { libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO }
}

/// A file descriptor the program owns (stderr by default); never closed.
pub struct FdSink {
    fd: RawFd,
    pipe: bool,
}

impl FdSink {
    /// Writes to `fd`, which must stay open while the handler lives.
    pub fn new(fd: RawFd) -> FdSink {
        FdSink {
            fd,
            pipe: is_pipe(fd),
        }
    }
}

impl LineSink for FdSink {
    fn write_lines(&mut self, lines: &[u8]) -> Result<(), WriteError> {
        write_fd(self.fd, lines, self.pipe)
    }
}

/// A C `FILE *` the program owns; never closed. Each batch of lines is one
/// `fwrite`, which holds the stream's lock, so lines never interleave with
/// other writes through the same `FILE *`.
pub struct StdioSink {
    stream: *mut libc::FILE,
}

// SAFETY: a FILE * may be used from any thread (stdio locks it per call);
// the program promises it stays open while the handler lives.
unsafe impl Send for StdioSink {}

impl StdioSink {
    /// # Safety
    /// `stream` must be a valid, open `FILE *` for as long as the sink lives.
    pub unsafe fn new(stream: *mut libc::FILE) -> StdioSink {
        StdioSink { stream }
    }
}

impl LineSink for StdioSink {
    fn write_lines(&mut self, lines: &[u8]) -> Result<(), WriteError> {
        // SAFETY: the stream is valid (constructor contract).
        let n = unsafe { libc::fwrite(lines.as_ptr().cast(), 1, lines.len(), self.stream) };
        if n == lines.len() {
            Ok(())
        } else {
            Err(WriteError {
                written: n,
                error: io::Error::last_os_error(),
            })
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        // SAFETY: as above.
        if unsafe { libc::fflush(self.stream) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// A file opened for appending, rotated by size as Python's
/// `RotatingFileHandler`: when a write would take it past `max_bytes`,
/// `path.N-1` becomes `path.N` ... `path` becomes `path.1`, the oldest
/// beyond `backups` is removed, and a new `path` is started. `max_bytes` 0
/// never rotates; `backups` 0 with `max_bytes` > 0 truncates instead (as
/// Python, which then keeps no backup).
pub struct FileSink {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    backups: u32,
}

impl FileSink {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, backups: u32) -> io::Result<FileSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(FileSink {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            backups,
        })
    }

    fn backup_name(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.backups > 0 {
            let _ = fs::remove_file(self.backup_name(self.backups));
            for n in (1..self.backups).rev() {
                let from = self.backup_name(n);
                if from.exists() {
                    fs::rename(&from, self.backup_name(n + 1))?;
                }
            }
            fs::rename(&self.path, self.backup_name(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        } else {
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }
}

impl LineSink for FileSink {
    fn write_lines(&mut self, lines: &[u8]) -> Result<(), WriteError> {
        if self.max_bytes == 0 {
            let written = write_fd(self.file.as_raw_fd(), lines, false);
            self.size += match &written {
                Ok(()) => lines.len(),
                Err(e) => e.written,
            } as u64;
            return written;
        }
        // Write line groups that fit in the current file, rotating between.
        let mut rest = lines;
        while !rest.is_empty() {
            let room = self.max_bytes.saturating_sub(self.size) as usize;
            let mut end = 0;
            for (i, &b) in rest.iter().enumerate() {
                if b == b'\n' {
                    if i + 1 > room {
                        break;
                    }
                    end = i + 1;
                }
            }
            let done = lines.len() - rest.len();
            if end == 0 {
                if self.size > 0 {
                    self.rotate().map_err(|error| WriteError {
                        written: done,
                        error,
                    })?;
                    continue;
                }
                // A single line longer than max_bytes: alone in its file.
                end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1);
            }
            if let Err(e) = write_fd(self.file.as_raw_fd(), &rest[..end], false) {
                self.size += e.written as u64;
                return Err(WriteError {
                    written: done + e.written,
                    error: e.error,
                });
            }
            self.size += end as u64;
            rest = &rest[end..];
        }
        Ok(())
    }
}

/// A formatting handler: pattern, buffer, flush policy and sink.
pub struct LineHandler {
    pattern: Pattern,
    clock: LocalClock,
    policy: FlushPolicy,
    buffer: Vec<u8>,
    sink: Box<dyn LineSink>,
    /// The last write error not yet reported through `handle`.
    pending_error: Option<i32>,
    /// Lines dropped because writes kept failing.
    lost_lines: u64,
}

impl LineHandler {
    /// A handler writing `pattern` lines to `sink`.
    pub fn new(pattern: Pattern, policy: FlushPolicy, sink: Box<dyn LineSink>) -> LineHandler {
        LineHandler {
            pattern,
            clock: LocalClock::default(),
            policy,
            buffer: Vec::with_capacity(4096),
            sink,
            pending_error: None,
            lost_lines: 0,
        }
    }

    /// Formats one record. Returns `Err(errno)` when a write failed since
    /// the last call (the lines stay buffered and are retried).
    pub fn handle(&mut self, record: &RecordView) -> Result<(), i32> {
        self.pattern
            .write_line(&mut self.clock, record, &mut self.buffer);
        if self.policy == FlushPolicy::EveryRecord || self.buffer.len() >= BUFFER_LIMIT {
            self.write_out(self.policy == FlushPolicy::EveryRecord);
        }
        match self.pending_error.take() {
            Some(code) => Err(code),
            None => Ok(()),
        }
    }

    /// The end of a batch.
    pub fn batch_end(&mut self) {
        if self.policy == FlushPolicy::Batch {
            self.write_out(true);
        }
    }

    /// An explicit flush: write everything and sync.
    pub fn flush(&mut self) {
        self.write_out(true);
    }

    /// Lines dropped because writes kept failing.
    pub fn lost_lines(&self) -> u64 {
        self.lost_lines
    }

    fn write_out(&mut self, sync: bool) {
        if !self.buffer.is_empty() {
            match self.sink.write_lines(&self.buffer) {
                Ok(()) => self.buffer.clear(),
                Err(e) => {
                    // What went out is never written again.
                    self.buffer.drain(..e.written.min(self.buffer.len()));
                    self.pending_error = Some(e.error.raw_os_error().unwrap_or(libc::EIO));
                    self.trim_after_failure();
                    return;
                }
            }
        }
        if sync {
            if let Err(e) = self.sink.sync() {
                self.pending_error = Some(e.raw_os_error().unwrap_or(libc::EIO));
            }
        }
    }

    /// Keeps at most [`RETRY_LIMIT`] bytes of whole lines, dropping (and
    /// counting) the oldest.
    fn trim_after_failure(&mut self) {
        if self.buffer.len() <= RETRY_LIMIT {
            return;
        }
        let excess = self.buffer.len() - RETRY_LIMIT;
        let cut = self.buffer[excess..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.buffer.len(), |i| excess + i + 1);
        self.lost_lines += self.buffer[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
        self.buffer.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Memory(Arc<Mutex<Vec<u8>>>, bool);
    impl LineSink for Memory {
        fn write_lines(&mut self, lines: &[u8]) -> Result<(), WriteError> {
            if self.1 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC).into());
            }
            self.0.lock().unwrap().extend_from_slice(lines);
            Ok(())
        }
    }

    fn record(msg: &str) -> LogRecord {
        LogRecord::new(30, b"app", msg.as_bytes(), 0)
    }

    #[test]
    fn pattern_fields_and_escapes() {
        let p = Pattern::parse("{{{level}}} {levelno} {logger}|{message}").unwrap();
        let mut out = Vec::new();
        let r = record("hi");
        p.write_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        assert_eq!(out, b"{WARNING} 30 app|hi\n");
        assert!(Pattern::parse("{nope}").is_err());
        assert!(Pattern::parse("{time").is_err());
        assert!(Pattern::parse("a } b").is_err());
    }

    #[test]
    fn time_is_iso8601_with_millis() {
        let mut out = Vec::new();
        LocalClock::default().write_iso8601(1_700_000_000_123_456_789, &mut out);
        let s = String::from_utf8(out).unwrap();
        // 2023-11-14T..:..:20.123+HH:MM in any time zone.
        assert_eq!(s.len(), "2023-11-14T22:13:20.123+00:00".len(), "{s}");
        assert_eq!(&s[19..23], ".123");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], "T");
    }

    #[test]
    fn batch_policy_writes_at_batch_end_only() {
        let mem = Arc::new(Mutex::new(Vec::new()));
        let mut h = LineHandler::new(
            Pattern::parse("{message}").unwrap(),
            FlushPolicy::Batch,
            Box::new(Memory(Arc::clone(&mem), false)),
        );
        h.handle(&(&record("a")).into()).unwrap();
        h.handle(&(&record("b")).into()).unwrap();
        assert!(mem.lock().unwrap().is_empty());
        h.batch_end();
        assert_eq!(&*mem.lock().unwrap(), b"a\nb\n");
    }

    #[test]
    fn failed_writes_are_reported_and_retried() {
        let mem = Arc::new(Mutex::new(Vec::new()));
        let mut h = LineHandler::new(
            Pattern::parse("{message}").unwrap(),
            FlushPolicy::EveryRecord,
            Box::new(Memory(Arc::clone(&mem), true)),
        );
        assert_eq!(h.handle(&(&record("a")).into()), Err(libc::ENOSPC));
        assert_eq!(h.lost_lines(), 0);
        h.sink = Box::new(Memory(Arc::clone(&mem), false));
        h.handle(&(&record("b")).into()).unwrap();
        assert_eq!(&*mem.lock().unwrap(), b"a\nb\n");
    }

    #[test]
    fn rotation_keeps_backups_and_whole_lines() {
        let dir = std::env::temp_dir().join(format!("ql-rot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.log");
        let mut sink = FileSink::open(&path, 10, 2).unwrap();
        for line in [
            "aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n",
        ] {
            sink.write_lines(line.as_bytes()).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "gggg\n");
        assert_eq!(
            fs::read_to_string(dir.join("app.log.1")).unwrap(),
            "eeee\nffff\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("app.log.2")).unwrap(),
            "cccc\ndddd\n"
        );
        assert!(!dir.join("app.log.3").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
