//! The vocabulary the listener and its queues share: what a `dequeue`
//! gives, what a sentinel put gives, the queue and handler traits, the
//! errors. At the bottom of the engine: the built-in queue
//! ([`crate::queue`]) and the listener ([`crate::listener`]) both use it,
//! and it uses neither.

use std::sync::Arc;

pub use crate::output::SinkCounts;

/// What one `dequeue` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Dequeued<R> {
    /// A record, now owned by the listener until it is done with it.
    Record(R),
    /// The sentinel: the listener stops after acknowledging it.
    Sentinel,
    /// Nothing to take. Ends the monitor loop cleanly (Python's `queue.Empty`).
    Empty,
    /// A flush barrier put by [`crate::Listener::flush`], by its id:
    /// every handler is flushed, then the flush that put it returns. Only
    /// the built-in queue carries them.
    Barrier(u64),
    /// The queue failed. Counted and reported; the loop goes on, unless a
    /// stop was requested, in which case it ends.
    Error,
}

/// What one attempt to put the sentinel produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentinelPut {
    /// The sentinel is on the queue.
    Ok,
    /// The queue is full; the attempt can be repeated later.
    Full,
    /// The queue failed.
    Error,
}

/// Errors of the listener's control functions (and of the built-in
/// queue's flush barriers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `start` on a listener whose thread is running or being stopped.
    AlreadyStarted,
    /// `stop` (or a drop) from the listener's own thread.
    WouldDeadlock,
    /// The queue had no room.
    Full,
    /// The deadline passed.
    Timeout,
    /// The queue reported an error.
    Queue,
    /// The operating system refused to create the thread.
    Thread,
    /// The listener thread panicked (only possible with Rust handlers or hooks).
    Panicked,
    /// The listener is not running, so the call cannot be served.
    NotRunning,
    /// The queue does not support the call (a flush barrier on a queue that
    /// cannot carry one).
    Unsupported,
    /// The listener was inherited from a parent process across `fork`: its
    /// thread does not exist here and it cannot run again.
    Forked,
    /// The call did its work (the listener stopped, or the flush completed),
    /// but handlers counted this many records lost since the previous stop
    /// or flush returned (see [`crate::Listener::handler_stats`]).
    Lost(u64),
}

/// A queue's counters, as read by [`crate::Listener::stats`] (the
/// built-in queue keeps them; a program's queue reads as zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items queued now.
    pub depth: u64,
    /// The most items seen queued (by the listener, before a take).
    pub high_water: u64,
    /// Records the queue dropped (overflow policies).
    pub dropped: u64,
}

/// A queue a listener takes records from: Python's protocol, three
/// methods, and nothing else.
///
/// Implementations are shared between producers and the listener thread.
/// The built-in queue ([`crate::ChannelQueue`]) does not go through this
/// trait: a listener reaches it as [`crate::listener::Source::BuiltIn`],
/// which also gives it addressed sentinels, flush barriers, batch ends and
/// counters.
pub trait Queue<R>: Send + Sync {
    /// Takes one record. With `block`, waits until there is one.
    fn dequeue(&self, block: bool) -> Dequeued<R>;
    /// Tries once, without blocking, to put the sentinel. On a queue that
    /// several listeners share, any of them may take it.
    fn enqueue_sentinel(&self) -> SentinelPut;
    /// Acknowledges a dequeued record (`Some`) or the sentinel (`None`).
    /// The default does nothing.
    fn task_done(&self, _record: Option<&R>) {}
}

/// One handler in a listener's handler list.
///
/// Called only from the listener thread, one call at a time.
pub trait Handler<R>: Send + Sync {
    /// The handler's level; 0 passes every record.
    fn level(&self) -> i32;
    /// Handles one prepared record; `Err(code)` is counted and reported.
    fn handle(&self, record: &R) -> Result<(), i32>;
    /// Flushes buffered output. Called when the monitor loop ends and at
    /// each flush barrier ([`crate::Listener::flush`]).
    fn flush(&self) {}
    /// The listener found its queue empty after taking records and is about
    /// to wait: the end of a batch.
    fn batch_end(&self) {}
    /// The handler's own account of its records, for a handler that keeps
    /// one (the built-in sinks). May be called from any thread at any time.
    /// After each `batch_end` and `flush`, the listener counts and reports
    /// the failures it shows that no `handle` call returned
    /// ([`SinkCounts::deferred_errors`]).
    fn counts(&self) -> Option<SinkCounts> {
        None
    }
    /// The listener is being closed ([`crate::Listener::close`]), after its last
    /// flush: the handler's last chance to deliver what it holds, within its
    /// own bound, or count it lost.
    fn close(&self) {}
    /// The crash flush begins ([`crate::crash`], in a fatal signal's
    /// handler): writes what the handler holds, async-signal-safe, and
    /// says whether it can write records that way. `false` (the default):
    /// skipped.
    fn crash_begin(&self, _give_up: &dyn Fn() -> bool) -> bool {
        false
    }
    /// The crash flush's `handle`, async-signal-safe, formatting in
    /// `scratch` (whose room it never grows). Called after `crash_begin`,
    /// whatever it said: a handler that said no does nothing.
    fn crash_handle(
        &self,
        _record: &R,
        _scratch: &mut crate::crash::Scratch,
        _give_up: &dyn Fn() -> bool,
    ) {
    }
}

/// A shared handler is a handler: the caller keeps a reference to read it.
impl<R, H: Handler<R> + ?Sized> Handler<R> for Arc<H> {
    fn level(&self) -> i32 {
        (**self).level()
    }
    fn handle(&self, record: &R) -> Result<(), i32> {
        (**self).handle(record)
    }
    fn flush(&self) {
        (**self).flush()
    }
    fn batch_end(&self) {
        (**self).batch_end()
    }
    fn crash_begin(&self, give_up: &dyn Fn() -> bool) -> bool {
        (**self).crash_begin(give_up)
    }
    fn crash_handle(
        &self,
        record: &R,
        scratch: &mut crate::crash::Scratch,
        give_up: &dyn Fn() -> bool,
    ) {
        (**self).crash_handle(record, scratch, give_up)
    }
    fn counts(&self) -> Option<SinkCounts> {
        (**self).counts()
    }
    fn close(&self) {
        (**self).close()
    }
}
