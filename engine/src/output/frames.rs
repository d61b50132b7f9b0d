//! The records a sink holds, as framed units (a line each), and the
//! counters that account for every one of them.
//!
//! Every record handed to a sink is counted `received` once, and leaves
//! [`Frames`] exactly once: `written` (its last byte went out) or `lost`
//! (dropped whole, or dropped after only part of it went out). So
//! `received == written + lost + pending` at every moment the listener
//! thread is between calls, and `pending == 0` after a final flush.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// A sink's counters, read from any thread while the sink writes them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records handed to the sink.
    pub received: AtomicU64,
    /// Records written whole.
    pub written: AtomicU64,
    /// Records dropped, whole or after a part of them went out.
    pub lost: AtomicU64,
    /// Failed writes (each a system call that failed after its retries).
    pub write_errors: AtomicU64,
    /// The failed writes that no `handle` call returned: they happened at
    /// the end of a batch or in a flush, and the listener reports them.
    pub deferred_errors: AtomicU64,
    /// The errno of the last failed write, or 0.
    pub last_errno: AtomicI32,
    /// Lines found cut off at the end of a file when it was opened (a
    /// writer died inside a line); each was ended before the next record.
    pub torn_tails: AtomicU64,
    /// Rotations done.
    pub rotations: AtomicU64,
    /// Rotations (or reopens) that could not be done; the sink kept
    /// writing to the file it had.
    pub rotation_failures: AtomicU64,
    /// Times the file was reopened (moved or deleted under the sink, or
    /// asked for with a reopen request).
    pub reopens: AtomicU64,
    /// Rotated files that could not be compressed (they stay as they were).
    pub compress_failures: AtomicU64,
    /// RELP: messages sent again on a new connection because the old one
    /// ended before they were acknowledged (each may arrive twice).
    pub resent: AtomicU64,
}

impl Counters {
    /// Adds `n`. One thread writes at a time (the listener thread, then the
    /// thread freeing the handler after a join), so a load and a store do.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// A record handed to the sink that it cannot write at all (a record a
    /// program made, with a field the library would have refused): counted
    /// received and lost at once.
    pub fn refuse(&self) {
        Counters::add(&self.received, 1);
        Counters::add(&self.lost, 1);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> SinkCounts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let received = load(&self.received);
        let written = load(&self.written);
        let lost = load(&self.lost);
        SinkCounts {
            written,
            lost,
            pending: received.saturating_sub(written + lost),
            write_errors: load(&self.write_errors),
            deferred_errors: load(&self.deferred_errors),
            last_errno: self.last_errno.load(Ordering::Relaxed),
            torn_tails: load(&self.torn_tails),
            rotations: load(&self.rotations),
            rotation_failures: load(&self.rotation_failures),
            reopens: load(&self.reopens),
            compress_failures: load(&self.compress_failures),
            resent: load(&self.resent),
        }
    }
}

/// What a sink reports of itself (see [`Counters`] for each field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub written: u64,
    pub lost: u64,
    pub pending: u64,
    pub write_errors: u64,
    pub deferred_errors: u64,
    pub last_errno: i32,
    pub torn_tails: u64,
    pub rotations: u64,
    pub rotation_failures: u64,
    pub reopens: u64,
    pub compress_failures: u64,
    pub resent: u64,
}

/// Framed records waiting to be written, oldest first. The first one may
/// be partly written (`head_done` bytes of it went out).
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    lens: VecDeque<usize>,
    head_done: usize,
}

impl Frames {
    /// Makes room for a frame of up to `bytes` (and its length) without
    /// aborting when memory runs out: `false` then, and nothing changed.
    pub fn try_room(&mut self, bytes: usize) -> bool {
        self.buf.try_reserve(bytes).is_ok() && self.lens.try_reserve(1).is_ok()
    }

    /// Appends one frame made by `fill`, which appends its bytes to the
    /// buffer it is given.
    pub fn push(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        let before = self.buf.len();
        fill(&mut self.buf);
        self.lens.push_back(self.buf.len() - before);
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Bytes held, the part of the head already written excluded.
    pub fn bytes(&self) -> usize {
        self.buf.len() - self.head_done
    }

    /// Bytes of the head frame already written (0: it is whole).
    pub fn head_done(&self) -> usize {
        self.head_done
    }

    /// The length of the head frame.
    pub fn head_len(&self) -> Option<usize> {
        self.lens.front().copied()
    }

    /// Everything not yet written.
    pub fn unwritten(&self) -> &[u8] {
        &self.buf[self.head_done..]
    }

    /// The unwritten bytes of the frames starting at the head, taking whole
    /// frames while they fit in `limit` bytes, and always at least the rest
    /// of the head frame.
    pub fn chunk(&self, limit: usize) -> &[u8] {
        let mut end = 0;
        for (i, &len) in self.lens.iter().enumerate() {
            let next = end + len;
            if i > 0 && next - self.head_done > limit {
                break;
            }
            end = next;
        }
        &self.buf[self.head_done..end]
    }

    /// `n` more bytes went out: frames that are now complete count as
    /// written.
    pub fn advance(&mut self, mut n: usize, counters: &Counters) {
        let mut done = 0u64;
        let mut consumed = 0;
        while n > 0 {
            let Some(&len) = self.lens.front() else {
                break;
            };
            let rest = len - self.head_done;
            if n >= rest {
                n -= rest;
                consumed += len;
                self.lens.pop_front();
                self.head_done = 0;
                done += 1;
            } else {
                self.head_done += n;
                n = 0;
            }
        }
        self.buf.drain(..consumed);
        Counters::add(&counters.written, done);
    }

    /// Drops the head frame (partly written or not) and counts it lost.
    pub fn drop_head(&mut self, counters: &Counters) {
        if let Some(len) = self.lens.pop_front() {
            self.buf.drain(..len);
            self.head_done = 0;
            Counters::add(&counters.lost, 1);
        }
    }

    /// Drops, as lost, every frame of which any of the next `n` unwritten
    /// bytes went somewhere that cannot say what it kept.
    pub fn drop_touched(&mut self, mut n: usize, counters: &Counters) {
        while n > 0 && !self.is_empty() {
            let rest = self.lens[0] - self.head_done;
            n = n.saturating_sub(rest);
            self.drop_head(counters);
        }
    }

    /// Forgets that part of the head frame was written (it was taken back
    /// out of the file): the whole frame goes out again.
    pub fn rewind_head(&mut self) {
        self.head_done = 0;
    }

    /// Drops every frame and counts each lost.
    pub fn drop_all(&mut self, counters: &Counters) {
        Counters::add(&counters.lost, self.lens.len() as u64);
        self.lens.clear();
        self.buf.clear();
        self.head_done = 0;
    }

    /// Drops the oldest whole frames not yet started until at most `limit`
    /// bytes are held, counting each lost. A partly written head frame is
    /// kept: it is never cut short by this bound.
    pub fn trim(&mut self, limit: usize, counters: &Counters) {
        if self.buf.len() <= limit {
            return;
        }
        let keep_head = self.head_done > 0;
        let first = usize::from(keep_head);
        let start: usize = if keep_head { self.lens[0] } else { 0 };
        let mut cut = 0;
        let mut dropped = 0;
        while self.lens.len() > first && self.buf.len() - cut > limit {
            let len = self.lens.remove(first).expect("index checked");
            cut += len;
            dropped += 1;
        }
        self.buf.drain(start..start + cut);
        Counters::add(&counters.lost, dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(lines: &[&str]) -> Frames {
        let mut f = Frames::default();
        for l in lines {
            f.push(|b| b.extend_from_slice(l.as_bytes()));
        }
        f
    }

    #[test]
    fn advance_counts_whole_frames_only() {
        let c = Counters::default();
        let mut f = frames(&["aaa\n", "bb\n", "c\n"]);
        f.advance(5, &c);
        assert_eq!(c.written.load(Ordering::Relaxed), 1);
        assert_eq!(f.head_done(), 1);
        assert_eq!(f.unwritten(), b"b\nc\n");
        f.advance(4, &c);
        assert_eq!(c.written.load(Ordering::Relaxed), 3);
        assert!(f.is_empty());
    }

    #[test]
    fn chunk_takes_whole_frames_within_the_limit() {
        let f = frames(&["aaa\n", "bb\n", "c\n"]);
        assert_eq!(f.chunk(7), b"aaa\nbb\n");
        assert_eq!(f.chunk(2), b"aaa\n"); // the head always
        assert_eq!(f.chunk(100), b"aaa\nbb\nc\n");
    }

    #[test]
    fn trim_keeps_a_started_head_and_drops_whole_frames() {
        let c = Counters::default();
        let mut f = frames(&["head\n", "x1\n", "x2\n", "tail\n"]);
        f.advance(2, &c);
        f.trim(10, &c);
        assert_eq!(f.unwritten(), b"ad\ntail\n");
        assert_eq!(c.lost.load(Ordering::Relaxed), 2);
        f.drop_all(&c);
        assert_eq!(c.lost.load(Ordering::Relaxed), 4);
        assert_eq!(f.bytes(), 0);
    }
}
