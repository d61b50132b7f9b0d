//! The listener engine: the whole life of a record, in safe Rust.
//!
//! ```text
//! producer ──put──▶ Queue ──dequeue──▶ monitor loop ──prepare (once)──▶ dispatch
//!                                           │                              │
//!                                           │        handler 0, 1, … (level filter when
//!                                           │        respect_handler_level is on)
//!                                           ▼
//!                     release(prepared) ─▶ task_done(record) ─▶ done(record)
//! ```
//!
//! A [`Listener`] owns one thread at a time, named `ql-listener`. The thread
//! runs `life::monitor` until it takes the sentinel off the queue, or until
//! `dequeue` reports [`Dequeued::Empty`]. [`Listener::stop`] puts the sentinel
//! behind every record already queued and waits for the thread, so every
//! record put before the stop is handled by the time it returns.
//!
//! Every step a Python subclass could override (`dequeue`, `prepare`,
//! `handle`, `enqueue_sentinel`, …) is an optional slot of [`Hooks`]; an
//! empty slot is Python's default behaviour, so a plain listener uses
//! [`Hooks::default`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use crate::protocol::{Dequeued, Error, Handler, Queue, QueueStats, SentinelPut, SinkCounts};
use crate::threads;

mod control;
mod hooks;
mod life;
#[cfg(test)]
mod regressions;
mod sentinels;
mod source;

use control::{Control, Phase, Run};
pub use hooks::{
    DequeueHook, EnqueueSentinelHook, HandleHook, Hooks, OnErrorHook, PrepareHook, RecordLevelHook,
    Stage, TakeBackHook,
};
use sentinels::Sentinels;
use source::Attached;
pub use source::Source;

/// Counters of a listener, as read by [`Listener::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records dequeued and prepared successfully, then dispatched.
    pub handled: u64,
    /// Failures of handlers and of the `handle` override.
    pub handler_errors: u64,
    /// Failures of `prepare` (those records reached no handler).
    pub prepare_errors: u64,
    /// `dequeue` calls that reported an error.
    pub dequeue_errors: u64,
    /// Batches taken off the queue: runs of records ended by finding the
    /// queue empty (counted only for queues that report it).
    pub batches: u64,
    /// The queue's own counters.
    pub queue: QueueStats,
}

/// One handler's counters, as read by [`Listener::handler_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Records given to the handler's `handle`.
    pub received: u64,
    /// Its failures: nonzero returns of `handle`, and failures its counts
    /// showed after a batch end or a flush.
    pub errors: u64,
    /// The handler's own account, if it keeps one ([`Handler::counts`]).
    pub sink: Option<SinkCounts>,
}

#[derive(Default)]
struct HandlerCounters {
    received: AtomicU64,
    errors: AtomicU64,
    /// `deferred_errors` of the handler's counts already reported.
    deferred_seen: AtomicU64,
}

#[derive(Default)]
struct Counters {
    handled: AtomicU64,
    handler_errors: AtomicU64,
    prepare_errors: AtomicU64,
    dequeue_errors: AtomicU64,
    batches: AtomicU64,
}

impl Counters {
    /// Adds one. Only the listener thread writes the counters (one thread at
    /// a time; a join orders one run's thread before the next), so a load
    /// and a store do, without the cost of an atomic read-modify-write.
    fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

struct Shared<R> {
    /// Unique among listeners, never 0: tells a listener's own thread.
    id: u64,
    /// The source, as this listener sees it.
    queue: Attached<R>,
    hooks: Hooks<R>,
    handlers: Vec<Box<dyn Handler<R>>>,
    /// One per handler.
    handler_counters: Vec<HandlerCounters>,
    /// Records the handlers had counted lost when a stop or flush last
    /// returned.
    lost_seen: AtomicU64,
    respect_handler_level: bool,
    control: Mutex<Control>,
    changed: Condvar,
    counters: Counters,
    /// [`threads::fork_generation`] when the listener was made: a listener from an
    /// older generation was inherited across `fork` and has no thread here.
    generation: u64,
    /// False when the records come through a `dequeue` slot that cannot
    /// hand a flush barrier on ([`Listener::refusing_barriers`]).
    barriers: bool,
    /// Between the listener's thread and the crash flush ([`crate::crash`]).
    gate: crate::crash::Gate,
}

static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

/// A `QueueListener`: a queue, a list of handlers, the hooks, and at most
/// one running thread.
pub struct Listener<R: Send + 'static> {
    shared: Arc<Shared<R>>,
}

impl<R: Send + 'static> Listener<R> {
    /// Makes an idle listener. Nothing runs until [`Listener::start`].
    pub fn new(
        source: impl Into<Source<R>>,
        handlers: Vec<Box<dyn Handler<R>>>,
        hooks: Hooks<R>,
        respect_handler_level: bool,
    ) -> Self {
        let id = NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed);
        Listener {
            shared: Arc::new(Shared {
                id,
                queue: Attached {
                    source: source.into(),
                    listener: id,
                },
                hooks,
                handler_counters: handlers
                    .iter()
                    .map(|_| HandlerCounters::default())
                    .collect(),
                lost_seen: AtomicU64::new(0),
                handlers,
                respect_handler_level,
                control: Mutex::new(Control {
                    run: Run::Idle,
                    thread: Phase::Looping,
                    sentinels: Sentinels::default(),
                    barriers: Vec::new(),
                }),
                changed: Condvar::new(),
                counters: Counters::default(),
                generation: threads::fork_generation(),
                barriers: true,
                gate: crate::crash::Gate::new(),
            }),
        }
    }

    /// The same listener, whose [`Listener::flush`] gives
    /// [`Error::Unsupported`]: for a `dequeue` slot that cannot hand a
    /// flush barrier on (C's `ql_dequeue_result` has no value for one), so
    /// that a flush fails at once instead of waiting for a barrier that
    /// never comes back. Call it right after [`Listener::new`].
    pub fn refusing_barriers(mut self) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.barriers = false;
        }
        self
    }

    /// Starts the listener thread.
    ///
    /// Fails with [`Error::AlreadyStarted`] while a thread runs or is being
    /// stopped, and from the listener's own thread. A thread whose loop
    /// already ended by itself (the queue reported empty, or it took a
    /// sentinel from [`Listener::enqueue_sentinel`]) is joined first, after
    /// its handlers' `flush` returns, so start needs no stop in between.
    pub fn start(&self) -> Result<(), Error> {
        let shared = &*self.shared;
        if self.is_inherited() {
            return Err(Error::Forked);
        }
        if self.is_listener_thread() {
            return Err(Error::AlreadyStarted);
        }
        let mut ctl = shared.lock();
        loop {
            match std::mem::replace(&mut ctl.run, Run::Idle) {
                Run::Idle => break,
                Run::Running(handle) if ctl.thread.thread_ended() => {
                    // The thread has released the lock for the last time.
                    let _ = handle.join();
                    shared.absorb_vanished(&mut ctl);
                    // A resume asked for by a timed-out stop is moot: this
                    // start runs the loop again anyway.
                    let _ = ctl.sentinels.run_joined();
                    break;
                }
                Run::Running(handle) if ctl.thread.loop_ended() => {
                    // Ended by itself and still flushing: wait for it.
                    ctl.run = Run::Running(handle);
                    ctl = shared.wait(ctl, None).unwrap_or_else(|| shared.lock());
                }
                running => {
                    ctl.run = running;
                    return Err(Error::AlreadyStarted);
                }
            }
        }
        ctl.run = Run::Running(self.shared.spawn_run(&mut ctl)?);
        Ok(())
    }

    /// Stops the listener, waiting as long as it takes.
    ///
    /// Puts the sentinel behind every queued record (retrying while the
    /// queue is full), waits until the thread has handled everything before
    /// it, and joins the thread. A listener that is not running is left
    /// alone: `Ok`, nothing enqueued. Concurrent stops all return once the
    /// thread is joined, by one of them.
    ///
    /// Errors: [`Error::WouldDeadlock`] from the listener's own thread, or
    /// from another listener's thread when this one's thread waits (along
    /// a chain of stops and flushes) for it ([`crate::threads::wait_for_listener`]);
    /// [`Error::Queue`] when putting the sentinel failed (still running), or
    /// when the queue kept failing during the stop, so the loop ended without
    /// reaching the sentinel (the thread is joined, but records may remain on
    /// the queue); [`Error::Panicked`] when the thread panicked (joined).
    pub fn stop(&self) -> Result<(), Error> {
        self.shared.with_losses(self.stop_until(None))
    }

    /// Stops the listener (as [`Listener::stop`]), then closes every
    /// handler ([`Handler::close`]): the end of the listener, before it is
    /// dropped. [`Error::Lost`] when records were lost since the previous
    /// stop or flush returned, those the handlers counted lost while
    /// closing included. On any other error nothing is closed (the listener
    /// may still run). Calling it again closes again (a no-op for the
    /// built-in sinks).
    pub fn close(&self) -> Result<(), Error> {
        let stopped = self.stop();
        if let Err(e) = &stopped {
            if !matches!(e, Error::Lost(_) | Error::Panicked) {
                return stopped;
            }
        }
        if self.is_inherited() {
            // The parent's: its handlers are the parent's to close (and
            // its crash gate may have been copied held by the parent's
            // thread, which does not exist here).
            return stopped;
        }
        crate::crash::unregister(self.shared.id);
        // A crash flush that read the registry before may be writing with
        // the handlers: closing waits for it (it ends the process, or lets
        // go when the program's handler lets the process live).
        self.shared.gate.enter();
        for handler in self.shared.handlers.iter() {
            handler.close();
        }
        self.shared.gate.leave();
        match (stopped, self.shared.with_losses(Ok(()))) {
            (Err(Error::Lost(a)), Err(Error::Lost(b))) => Err(Error::Lost(a + b)),
            (Err(Error::Lost(a)), _) => Err(Error::Lost(a)),
            (_, Err(e)) => Err(e),
            (other, Ok(())) => other,
        }
    }

    /// Opts in to the crash flush ([`crate::crash`]): on a fatal signal
    /// (and SIGTERM / SIGINT when `signals` asks), what the listener's
    /// built-in sinks hold and every record its queue holds are written
    /// before the process dies. Again on a registered listener: only the
    /// signals are added. Unregistered when the listener is closed.
    ///
    /// Errors: [`Error::Unsupported`] for a program's queue or a `dequeue`
    /// slot (records the flush cannot take), [`Error::Forked`] for a
    /// listener inherited across `fork`, [`Error::Full`] when
    /// [`crate::crash::MAX_LISTENERS`] listeners are registered already.
    pub fn flush_on_crash(&self, signals: crate::crash::Signals) -> Result<(), Error> {
        if self.is_inherited() {
            return Err(Error::Forked);
        }
        if !self.shared.queue.crash_drainable() || self.shared.hooks.dequeue.is_some() {
            return Err(Error::Unsupported);
        }
        let target: Arc<dyn crate::crash::Flushable> = self.shared.clone();
        crate::crash::register(target, signals).map_err(|_| Error::Full)
    }

    /// [`Listener::stop`] with a deadline. On [`Error::Timeout`] the listener
    /// is still running and usable: a sentinel this call already put is
    /// skipped when the thread reaches it, and a later stop puts its own.
    /// (If the thread had already taken it, the loop is ending; a later stop
    /// joins it.)
    pub fn stop_timeout(&self, timeout: Duration) -> Result<(), Error> {
        self.shared
            .with_losses(self.stop_until(Instant::now().checked_add(timeout)))
    }

    /// Puts one sentinel without blocking, as Python's
    /// `QueueListener.enqueue_sentinel`. The thread ends when it reaches it;
    /// records behind it wait for the next start.
    pub fn enqueue_sentinel(&self) -> Result<(), Error> {
        let shared = &*self.shared;
        if self.is_inherited() {
            return Err(Error::Forked);
        }
        // Count it first: the thread may take it as soon as it is in.
        {
            shared.lock().sentinels.put_started();
        }
        let put = shared.hooks.enqueue_sentinel_on(&shared.queue);
        let mut ctl = shared.lock();
        ctl.sentinels.put_returned(put == SentinelPut::Ok);
        let failed = match put {
            SentinelPut::Ok => return Ok(()),
            SentinelPut::Full => Error::Full,
            SentinelPut::Error => Error::Queue,
        };
        // A stop counting on this sentinel must put its own.
        shared.changed.notify_all();
        Err(failed)
    }

    /// True from a successful start until the thread is joined.
    pub fn is_running(&self) -> bool {
        !matches!(self.shared.lock().run, Run::Idle)
    }

    /// True in a `fork` child for a listener the parent made.
    pub fn is_inherited(&self) -> bool {
        self.shared.generation != threads::fork_generation_checked()
    }

    /// A handle that can stop this listener later, from anywhere, without
    /// keeping it alive (for draining at exit).
    pub fn stopper(&self) -> Stopper {
        let weak = Arc::downgrade(&self.shared);
        let watch = weak.clone();
        Stopper {
            id: self.shared.id,
            stop: Box::new(move |timeout| match weak.upgrade() {
                Some(shared) => shared.stop_until(Instant::now().checked_add(timeout)),
                None => Ok(()),
            }),
            gone: Box::new(move || watch.strong_count() == 0),
        }
    }

    /// The listener's id: unique in the process, never 0. Sentinels and
    /// flush barriers on the built-in queue are addressed with it.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// True when called from this listener's own thread.
    pub fn is_listener_thread(&self) -> bool {
        threads::current_listener() == self.shared.id
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            handled: c.handled.load(Ordering::Relaxed),
            handler_errors: c.handler_errors.load(Ordering::Relaxed),
            prepare_errors: c.prepare_errors.load(Ordering::Relaxed),
            dequeue_errors: c.dequeue_errors.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            queue: self.shared.queue.stats(),
        }
    }

    /// A flush barrier: returns once every record queued before the call
    /// has been handled and every handler's `flush` has run, without waiting
    /// for records put after it (producers may go on putting).
    ///
    /// Puts a barrier behind the queued records (waiting for room on a full
    /// queue, within the deadline, while the loop goes on) and waits until
    /// the listener takes it.
    /// Errors: [`Error::NotRunning`] when no thread runs (records would
    /// never be handled), [`Error::WouldDeadlock`] from the listener's own
    /// thread or to break a cycle of waits (as for `stop`), [`Error::Unsupported`] for a program's queue (only the
    /// built-in queue carries barriers), [`Error::Timeout`] past the
    /// deadline (a barrier already put
    /// is served later and harms nothing).
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.shared.with_losses(self.shared.flush_until(timeout))
    }

    /// One handler's counters (`None` past the last handler). Any thread,
    /// any time; while the listener runs, the fields of one snapshot may be
    /// a record apart.
    pub fn handler_stats(&self, index: usize) -> Option<HandlerStats> {
        let shared = &*self.shared;
        let counters = shared.handler_counters.get(index)?;
        Some(HandlerStats {
            received: counters.received.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            sink: shared.handlers[index].counts(),
        })
    }

    /// The number of handlers.
    pub fn handler_count(&self) -> usize {
        self.shared.handlers.len()
    }

    fn stop_until(&self, deadline: Option<Instant>) -> Result<(), Error> {
        self.shared.stop_until(deadline)
    }
}

/// A handle that stops a listener if it still exists (see
/// [`Listener::stopper`]).
pub struct Stopper {
    /// The listener's id ([`Listener::id`]).
    id: u64,
    stop: Box<dyn Fn(Duration) -> Result<(), Error> + Send + Sync>,
    gone: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Stopper {
    /// The listener's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once the listener no longer exists (freed): stopping it is a
    /// no-op and the handle can be forgotten.
    pub fn is_gone(&self) -> bool {
        (self.gone)()
    }

    /// Stops the listener within `timeout`, if it still exists; `Ok` when
    /// it is gone.
    pub fn stop_within(&self, timeout: Duration) -> Result<(), Error> {
        (self.stop)(timeout)
    }
}

impl<R: Send + 'static> Drop for Listener<R> {
    /// Closes the listener ([`Listener::close`]: stops it, then closes
    /// every handler), the one end-of-life policy `ql_listener_free` uses
    /// too; here the result cannot be returned. From the listener's own
    /// thread this cannot wait: it puts the sentinel (when the queue has
    /// room), so the thread ends after the records queued before the drop,
    /// keeping the shared state alive until then. Nothing else could stop
    /// it any more.
    fn drop(&mut self) {
        if self.is_inherited() {
            // Inherited across fork: its handlers and queue belong to the
            // parent (freeing them could flush the parent's buffered lines
            // a second time, or wait on locks held by threads that do not
            // exist here). Leave them all as they are.
            std::mem::forget(Arc::clone(&self.shared));
            return;
        }
        if self.is_listener_thread() {
            crate::crash::unregister(self.shared.id);
            let _ = self.enqueue_sentinel();
            return;
        }
        let _ = self.close();
    }
}
