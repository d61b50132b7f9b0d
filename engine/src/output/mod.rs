//! The output layer every built-in sink shares: a record becomes exactly
//! one framed unit (a line), which is written whole or counted lost, never
//! torn and never glued to another.
//!
//! ```text
//! handle ─▶ format (escaped) ─▶ Frames ─(policy)─▶ Target::write ─▶ fd / FILE * / file
//!                                 │                     │ failed
//!                                 │                     ▼
//!                                 │   kept for a retry (at most RETRY_LIMIT bytes,
//!                                 │   the oldest whole frames dropped past it), or
//!                                 ▼   dropped at a final flush: counted lost
//!                       received = written + lost + pending
//! ```
//!
//! * [`format`](mod@format): patterns, time, escaping, colour.
//! * [`structured`]: JSON Lines and logfmt.
//! * [`frames`]: the held records and the counters.
//! * [`sys`]: `write(2)` with `EINTR`, `EAGAIN` and signal handling.
//! * [`stream`]: fds and `FILE *` streams the program owns.
//! * [`file`](mod@file): files, append-safe writes, rotation.
//! * [`journald`]: journal entries over journald's native socket.
//! * [`syslog`]: syslog messages (RFC 5424, RFC 3164); [`net`]: their
//!   delivery (unix datagram, UDP, TCP, TLS, RELP) on a thread of the sink.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub mod file;
pub mod format;
pub mod frames;
pub mod journald;
pub mod net;
pub mod stream;
pub mod structured;
pub mod sys;
pub mod syslog;

pub use format::{color_wanted, LocalClock, Pattern, RecordView, Style, DEFAULT_PATTERN};
pub use frames::{Counters, Frames, SinkCounts};

/// When held lines are written out.
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

/// Held bytes past which lines are written out whatever the policy.
pub const BUFFER_LIMIT: usize = 1 << 20;

/// Bytes kept for a retry while writes fail; past it the oldest whole
/// records not yet started are dropped and counted lost.
pub const RETRY_LIMIT: usize = 4 << 20;

/// How long a write may wait for a pipe, socket or device to take data,
/// without progress, by default.
pub const DEFAULT_STALL: Duration = Duration::from_secs(5);

/// Where the time for time-based rotation comes from.
pub trait Clock: Send {
    /// Now, in ns since the Unix epoch.
    fn now_ns(&self) -> i64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    }
}

/// Where frames go.
pub trait Target: Send {
    /// Writes frames from the front until none is left (`Ok`) or a write
    /// fails (`Err(errno)`; the frames not written stay, the head possibly
    /// partly written).
    fn write(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32>;
    /// The head frame was dropped after part of it went out: the next
    /// frame must start on a line of its own.
    fn fragment_left(&mut self) {}
    /// The file descriptor the crash flush may write lines to with
    /// `write(2)`, or `None` when the target cannot be written from a
    /// signal handler (a `FILE *` with its own buffer).
    fn crash_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// A built-in sink, as the handler glue drives it (on the listener thread,
/// one call at a time). Every sink keeps the account of [`Counters`]:
/// `received == written + lost + pending`.
pub trait Sink: Send {
    /// Takes one record. `Err(errno)` when delivering it (or what was held)
    /// failed in this call.
    fn handle(&mut self, record: &RecordView) -> Result<(), i32>;
    /// The listener found its queue empty.
    fn batch_end(&mut self);
    /// A flush barrier, a stop or a free: everything held is delivered, or
    /// counted lost (a sink with a delivery thread of its own may keep what
    /// it could not deliver pending, and deliver it later).
    fn flush(&mut self);
    /// The handler's end (its listener is being freed, after its last
    /// flush): what is still pending is delivered within the sink's bound,
    /// or counted lost, so that the listener can report the loss. Dropping
    /// a sink that was not closed does the same.
    fn close(&mut self) {}
    /// The crash flush begins (a fatal signal's handler; see
    /// [`crate::crash`]): writes out what the sink holds, async-signal-safe,
    /// and says whether [`Sink::crash_handle`] can write records. `false`
    /// (the default): the sink is skipped.
    fn crash_begin(&mut self, _give_up: &dyn Fn() -> bool) -> bool {
        false
    }
    /// The crash flush's `handle`: writes one record at once, formatting
    /// into `line` (whose room it never grows), async-signal-safe.
    fn crash_handle(
        &mut self,
        _record: &RecordView,
        _line: &mut Vec<u8>,
        _give_up: &dyn Fn() -> bool,
    ) {
    }
}

impl Sink for LineHandler {
    fn handle(&mut self, record: &RecordView) -> Result<(), i32> {
        LineHandler::handle(self, record)
    }
    fn batch_end(&mut self) {
        LineHandler::batch_end(self)
    }
    fn flush(&mut self) {
        LineHandler::flush(self)
    }
    fn crash_begin(&mut self, give_up: &dyn Fn() -> bool) -> bool {
        LineHandler::crash_begin(self, give_up)
    }
    fn crash_handle(
        &mut self,
        record: &RecordView,
        line: &mut Vec<u8>,
        give_up: &dyn Fn() -> bool,
    ) {
        LineHandler::crash_handle(self, record, line, give_up)
    }
}

/// Why lines are being written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// In `handle`: a failure is returned for the record being handled.
    Handle,
    /// At the end of a batch: failed lines are kept for a retry.
    Batch,
    /// A flush (a barrier, a stop, a free): what cannot be written now is
    /// counted lost.
    Final,
}

/// A formatting sink: pattern, held frames, flush policy and target.
pub struct LineHandler {
    pattern: Pattern,
    clock: LocalClock,
    policy: FlushPolicy,
    frames: Frames,
    target: Box<dyn Target>,
    counters: Arc<Counters>,
    /// The last write failed: until a write at a batch end or a flush
    /// succeeds, records are only held (within [`RETRY_LIMIT`]), so a
    /// stalled reader costs one `write_timeout` per batch, not per record.
    failing: bool,
    /// The crash flush may write lines here (its `crash_begin` wrote what
    /// was held): the fd and its kind.
    crash: Option<(std::os::fd::RawFd, sys::Kind)>,
}

impl LineHandler {
    /// A sink writing `pattern` lines to `target`, counting in `counters`
    /// (shared with the target and with readers of the counts).
    pub fn new(
        pattern: Pattern,
        policy: FlushPolicy,
        target: Box<dyn Target>,
        counters: Arc<Counters>,
    ) -> LineHandler {
        LineHandler {
            pattern,
            clock: LocalClock::new(),
            policy,
            frames: Frames::default(),
            target,
            counters,
            failing: false,
            crash: None,
        }
    }

    /// Formats one record. `Err(errno)` when a write made in this call
    /// failed (the record is held for a retry, or counted lost).
    pub fn handle(&mut self, record: &RecordView) -> Result<(), i32> {
        Counters::add(&self.counters.received, 1);
        // The line's room, made fallibly (a long message, out of memory):
        // the record is then counted lost, and the process goes on.
        if !self.frames.try_room(self.pattern.max_line_len(record)) {
            Counters::add(&self.counters.lost, 1);
            self.counters
                .last_errno
                .store(libc::ENOMEM, Ordering::Relaxed);
            return Err(libc::ENOMEM);
        }
        let (pattern, clock) = (&self.pattern, &mut self.clock);
        self.frames
            .push(|buf| pattern.write_line(clock, record, buf));
        if self.policy == FlushPolicy::EveryRecord || self.frames.bytes() >= BUFFER_LIMIT {
            if self.failing {
                self.frames.trim(RETRY_LIMIT, &self.counters);
                return Ok(());
            }
            return self.write_out(When::Handle);
        }
        Ok(())
    }

    /// The end of a batch: the batch policy writes; lines held after a
    /// failure are retried.
    pub fn batch_end(&mut self) {
        // Lines held after a failure are retried at every batch end,
        // whatever the policy.
        if self.policy == FlushPolicy::Batch
            || (self.policy == FlushPolicy::EveryRecord && !self.frames.is_empty())
            || (self.failing && !self.frames.is_empty())
        {
            let _ = self.write_out(When::Batch);
        }
    }

    /// An explicit flush: every held line is written, or counted lost.
    pub fn flush(&mut self) {
        let _ = self.write_out(When::Final);
    }

    /// [`Sink::crash_begin`]: writes the held lines straight to the
    /// target's fd (none: the sink is skipped) and freezes the clock. A
    /// failed write skips the sink too (lines written after it would come
    /// before the held ones).
    pub fn crash_begin(&mut self, give_up: &dyn Fn() -> bool) -> bool {
        self.crash = None;
        let Some(fd) = self.target.crash_fd() else {
            return false;
        };
        let kind = sys::kind(fd);
        self.clock.freeze();
        while !self.frames.is_empty() {
            match sys::crash_write(fd, kind, self.frames.unwritten(), give_up) {
                Ok(n) => self.frames.advance(n, &self.counters),
                Err(e) => {
                    self.crash_failed(e);
                    return false;
                }
            }
        }
        self.crash = Some((fd, kind));
        true
    }

    fn crash_failed(&self, e: i32) {
        Counters::add(&self.counters.write_errors, 1);
        self.counters.last_errno.store(e, Ordering::Relaxed);
    }

    /// [`Sink::crash_handle`]: one line, written at once. A record whose
    /// line could need more than `line`'s room is written with its message
    /// cut to fit (the marker ` [cut at the crash]` follows it).
    pub fn crash_handle(
        &mut self,
        record: &RecordView,
        line: &mut Vec<u8>,
        give_up: &dyn Fn() -> bool,
    ) {
        let Some((fd, kind)) = self.crash else {
            return;
        };
        const CUT: &[u8] = b" [cut at the crash]";
        Counters::add(&self.counters.received, 1);
        line.clear();
        let room = line.capacity();
        let need = self.pattern.max_line_len(record);
        if need <= room {
            self.pattern.write_line(&mut self.clock, record, line);
        } else {
            // Each byte of the message may take up to 6 per occurrence:
            // cut until the bound fits.
            let mut keep = record.message.len();
            let mut view = *record;
            while keep > 0 && self.pattern.max_line_len(&view) + CUT.len() > room {
                keep /= 2;
                view.message = &record.message[..keep];
            }
            if self.pattern.max_line_len(&view) + CUT.len() > room {
                Counters::add(&self.counters.lost, 1);
                return;
            }
            self.pattern.write_line(&mut self.clock, &view, line);
            // Before the newline.
            line.pop();
            line.extend_from_slice(CUT);
            line.push(b'\n');
        }
        let mut at = 0;
        while at < line.len() {
            match sys::crash_write(fd, kind, &line[at..], give_up) {
                Ok(n) => at += n,
                Err(e) => {
                    self.crash_failed(e);
                    Counters::add(&self.counters.lost, 1);
                    // What follows could not start a line of its own.
                    self.crash = None;
                    return;
                }
            }
        }
        Counters::add(&self.counters.written, 1);
    }

    fn write_out(&mut self, when: When) -> Result<(), i32> {
        if self.frames.is_empty() {
            return Ok(());
        }
        let (target, frames, counters) = (&mut self.target, &mut self.frames, &*self.counters);
        let Err(e) = sys::without_write_signals(|| target.write(frames, counters)) else {
            self.failing = false;
            return Ok(());
        };
        self.failing = true;
        Counters::add(&counters.write_errors, 1);
        if when != When::Handle {
            Counters::add(&counters.deferred_errors, 1);
        }
        counters.last_errno.store(e, Ordering::Relaxed);
        match when {
            When::Final => {
                if frames.head_done() > 0 {
                    target.fragment_left();
                }
                frames.drop_all(counters);
            }
            When::Handle | When::Batch => frames.trim(RETRY_LIMIT, counters),
        }
        Err(e)
    }
}

impl Drop for LineHandler {
    /// Whatever is held is written, or counted lost.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::LogRecord;
    use std::sync::Mutex;

    /// A target that writes into memory, or fails with `fail` after
    /// taking `take` bytes.
    struct Memory {
        out: Arc<Mutex<Vec<u8>>>,
        fail: Arc<Mutex<Option<(i32, usize)>>>,
    }

    impl Target for Memory {
        fn write(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
            if let Some((e, take)) = *self.fail.lock().unwrap() {
                let bytes = frames.unwritten()[..take.min(frames.bytes())].to_vec();
                self.out.lock().unwrap().extend_from_slice(&bytes);
                frames.advance(bytes.len(), counters);
                return Err(e);
            }
            self.out
                .lock()
                .unwrap()
                .extend_from_slice(frames.unwritten());
            let n = frames.bytes();
            frames.advance(n, counters);
            Ok(())
        }
    }

    type Written = Arc<Mutex<Vec<u8>>>;
    /// `Some((errno, bytes taken first))` makes writes fail.
    type Failure = Arc<Mutex<Option<(i32, usize)>>>;

    fn sink(policy: FlushPolicy) -> (LineHandler, Written, Failure) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(Mutex::new(None));
        let target = Memory {
            out: Arc::clone(&out),
            fail: Arc::clone(&fail),
        };
        let h = LineHandler::new(
            Pattern::parse("{message}").unwrap(),
            policy,
            Box::new(target),
            Arc::default(),
        );
        (h, out, fail)
    }

    fn rec(msg: &str) -> LogRecord {
        LogRecord::new(30, b"app", msg.as_bytes(), 0)
    }

    fn balanced(h: &LineHandler) -> SinkCounts {
        let c = h.counters.snapshot();
        let received = h.counters.received.load(Ordering::Relaxed);
        assert_eq!(received, c.written + c.lost + c.pending, "{c:?}");
        c
    }

    #[test]
    fn batch_policy_writes_at_batch_end_only() {
        let (mut h, out, _) = sink(FlushPolicy::Batch);
        h.handle(&(&rec("a")).into()).unwrap();
        h.handle(&(&rec("b")).into()).unwrap();
        assert!(out.lock().unwrap().is_empty());
        assert_eq!(balanced(&h).pending, 2);
        h.batch_end();
        assert_eq!(&*out.lock().unwrap(), b"a\nb\n");
        assert_eq!(balanced(&h).written, 2);
    }

    #[test]
    fn a_failure_is_reported_with_its_record_and_retried() {
        let (mut h, out, fail) = sink(FlushPolicy::EveryRecord);
        *fail.lock().unwrap() = Some((libc::ENOSPC, 0));
        assert_eq!(h.handle(&(&rec("a")).into()), Err(libc::ENOSPC));
        let c = balanced(&h);
        assert_eq!(
            (c.pending, c.lost, c.write_errors, c.deferred_errors),
            (1, 0, 1, 0)
        );
        // While failing, records are held without a write each (a stalled
        // reader would cost a write timeout per record)...
        h.handle(&(&rec("b")).into()).unwrap();
        assert_eq!(balanced(&h).write_errors, 1);
        // ...and retried at the end of the batch.
        *fail.lock().unwrap() = None;
        h.batch_end();
        h.handle(&(&rec("c")).into()).unwrap();
        assert_eq!(&*out.lock().unwrap(), b"a\nb\nc\n");
        assert_eq!(balanced(&h).written, 3);
    }

    #[test]
    fn a_final_flush_counts_what_it_cannot_write() {
        let (mut h, _, fail) = sink(FlushPolicy::Batch);
        for m in ["a", "b", "c"] {
            h.handle(&(&rec(m)).into()).unwrap();
        }
        *fail.lock().unwrap() = Some((libc::EIO, 3)); // "a\nb": one whole, one started
        h.batch_end();
        let c = balanced(&h);
        assert_eq!((c.written, c.pending, c.deferred_errors), (1, 2, 1));
        *fail.lock().unwrap() = Some((libc::EIO, 0));
        h.flush();
        let c = balanced(&h);
        assert_eq!(
            (c.written, c.lost, c.pending, c.deferred_errors),
            (1, 2, 0, 2)
        );
        assert_eq!(c.last_errno, libc::EIO);
    }

    #[test]
    fn records_held_at_drop_are_counted() {
        let (mut h, _, fail) = sink(FlushPolicy::Explicit);
        h.handle(&(&rec("a")).into()).unwrap();
        *fail.lock().unwrap() = Some((libc::EPIPE, 0));
        let counters = Arc::clone(&h.counters);
        drop(h);
        assert_eq!(counters.lost.load(Ordering::Relaxed), 1);
    }
}
