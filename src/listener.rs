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
//! runs [`monitor`] until it takes the sentinel off the queue, or until
//! `dequeue` reports [`Dequeued::Empty`]. [`Listener::stop`] puts the sentinel
//! behind every record already queued and waits for the thread, so every
//! record put before the stop is handled by the time it returns.
//!
//! Every step a Python subclass could override (`dequeue`, `prepare`,
//! `handle`, `enqueue_sentinel`, …) is an optional slot of [`Hooks`]; an
//! empty slot is Python's default behaviour, so a plain listener uses
//! [`Hooks::default`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use crate::output::SinkCounts;

mod sentinels;
use sentinels::{Sentinels, Taken};

/// What one `dequeue` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Dequeued<R> {
    /// A record, now owned by the listener until it is done with it.
    Record(R),
    /// The sentinel: the listener stops after acknowledging it.
    Sentinel,
    /// Nothing to take. Ends the monitor loop cleanly (Python's `queue.Empty`).
    Empty,
    /// A flush barrier put by [`Listener::flush`]: every handler is flushed,
    /// then the flush that put it returns.
    Marker(u64),
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

/// Errors of the listener's control functions.
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
    /// or flush returned (see [`Listener::handler_stats`]).
    Lost(u64),
}

/// A queue's counters, as read by [`Queue::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items queued now.
    pub depth: u64,
    /// The most items seen queued (by the listener, before a take).
    pub high_water: u64,
    /// Records the queue dropped (overflow policies).
    pub dropped: u64,
}

/// The queue-like object a listener takes records from.
///
/// Implementations are shared between producers and the listener thread.
pub trait Queue<R>: Send + Sync {
    /// Takes one record. With `block`, waits until there is one.
    fn dequeue(&self, block: bool) -> Dequeued<R>;
    /// Tries once, without blocking, to put a sentinel addressed to the
    /// listener with id `listener` (see [`Listener::id`]). A queue shared
    /// by several listeners gives each sentinel to its own listener; a
    /// queue that cannot may let any listener take it.
    fn enqueue_sentinel(&self, listener: u64) -> SentinelPut;
    /// Acknowledges a dequeued record (`Some`) or the sentinel (`None`).
    fn task_done(&self, _record: Option<&R>) {}
    /// False when `task_done` does nothing, so the listener can skip it.
    fn has_task_done(&self) -> bool {
        true
    }
    /// [`Queue::dequeue`], calling `idle` when a blocking take finds the
    /// queue empty and is about to wait: the end of a batch. The default
    /// never calls it.
    fn dequeue_idle(&self, block: bool, _idle: &mut dyn FnMut()) -> Dequeued<R> {
        self.dequeue(block)
    }
    /// Sentinels addressed to `listener` that something other than a
    /// listener (the program's own get) took off the queue since the last
    /// call, so that its stop stops counting on them. The default knows of
    /// none.
    fn take_vanished_sentinels(&self, _listener: u64) -> usize {
        0
    }
    /// The listener with this id no longer exists: its sentinels and
    /// markers still queued are to be dropped when taken.
    fn forget_listener(&self, _listener: u64) {}
    /// True when [`Queue::dequeue_idle`] reports the ends of batches.
    fn reports_batches(&self) -> bool {
        false
    }
    /// Puts flush marker `id` of listener `listener` behind every queued
    /// record, waiting for room until `deadline`. `id` must be unique in
    /// the process (the listener takes them from one counter): a queue may
    /// know a marker's listener by its id alone. The default cannot
    /// ([`Error::Unsupported`]).
    fn enqueue_marker(
        &self,
        _listener: u64,
        _id: u64,
        _deadline: Option<Instant>,
    ) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
    /// The queue's counters; zeros when it keeps none.
    fn stats(&self) -> QueueStats {
        QueueStats::default()
    }
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
    /// each flush barrier ([`Listener::flush`]).
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
    /// The listener is being closed ([`Listener::close`]), after its last
    /// flush: the handler's last chance to deliver what it holds, within its
    /// own bound, or count it lost.
    fn close(&self) {}
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
    fn counts(&self) -> Option<SinkCounts> {
        (**self).counts()
    }
    fn close(&self) {
        (**self).close()
    }
}

/// Where a failure happened, as told to [`Hooks::on_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `dequeue` returned [`Dequeued::Error`].
    Dequeue,
    /// `prepare` failed; no handler saw the record.
    Prepare,
    /// The `handle` override failed.
    Handle,
    /// The handler at this index failed.
    Handler(usize),
}

/// The `dequeue` slot of [`Hooks`]: takes the next record from `queue`
/// (which it may ask, as Python's `super().dequeue` would), same contract
/// as [`Queue::dequeue`].
pub type DequeueHook<R> = Box<dyn Fn(&dyn Queue<R>, bool) -> Dequeued<R> + Send + Sync>;
/// The `prepare` slot of [`Hooks`]: `Ok(None)` keeps the record,
/// `Ok(Some(new))` replaces it (the new one goes to the `release` slot
/// after dispatch), `Err(code)` skips it.
pub type PrepareHook<R> = Box<dyn Fn(&R) -> Result<Option<R>, i32> + Send + Sync>;
/// The `handle` slot of [`Hooks`]: replaces the dispatch to the handlers;
/// `Err(code)` counts a failure ([`Stage::Handle`]).
pub type HandleHook<R> = Box<dyn Fn(&R) -> Result<(), i32> + Send + Sync>;
/// The `enqueue_sentinel` slot of [`Hooks`]: tries once to put a sentinel
/// for listener `listener` (see [`Queue::enqueue_sentinel`]).
pub type EnqueueSentinelHook<R> = Box<dyn Fn(&dyn Queue<R>, u64) -> SentinelPut + Send + Sync>;
/// The `record_level` slot of [`Hooks`]: the record's level for
/// `respect_handler_level`; `None` passes every handler.
pub type RecordLevelHook<R> = Box<dyn Fn(&R) -> Option<i32> + Send + Sync>;
/// The `release` and `done` slots of [`Hooks`]: take a record back.
pub type TakeBackHook<R> = Box<dyn Fn(R) + Send + Sync>;
/// The `on_error` slot of [`Hooks`]: told of a failure, the record involved
/// (none for [`Stage::Dequeue`]) and the code.
pub type OnErrorHook<R> = Box<dyn Fn(Stage, Option<&R>, i32) + Send + Sync>;

/// The overridable steps of a listener, one slot each, as a Python subclass
/// overrides `QueueListener` methods (and as C's `ql_hooks`, slot for
/// slot). `None` is Python's behaviour; the listener calls a slot only when
/// it is `Some`, so what is set is what runs: there is nothing else to keep
/// in agreement.
///
/// A record's life, in order: `dequeue` → `prepare` (exactly once) →
/// `handle` or the handlers → `release` (only for a record `prepare`
/// replaced) → the queue's `task_done` → `done`.
///
/// Every slot runs on the listener thread, except `enqueue_sentinel`, which
/// runs on the thread that stops the listener. Fill the slots you need and
/// leave the rest to [`Hooks::default`]:
///
/// ```
/// use queue_listener::Hooks;
/// let hooks: Hooks<u32> = Hooks {
///     prepare: Some(Box::new(|record: &u32| Ok(Some(record * 2)))),
///     ..Hooks::default()
/// };
/// # let _ = hooks;
/// ```
pub struct Hooks<R> {
    /// Takes the next record. `None`: the queue's own `dequeue` (the
    /// built-in queue then also reports batch ends to the handlers).
    pub dequeue: Option<DequeueHook<R>>,
    /// Prepares a record once, before any handler sees it. `None`: the
    /// record as it is.
    pub prepare: Option<PrepareHook<R>>,
    /// Replaces the dispatch to the handlers. `None`: every handler, in
    /// order (filtered by level with `respect_handler_level`).
    pub handle: Option<HandleHook<R>>,
    /// Puts one sentinel. `None`: the queue's own `enqueue_sentinel`.
    pub enqueue_sentinel: Option<EnqueueSentinelHook<R>>,
    /// The record's level, read only with `respect_handler_level`. `None`:
    /// no level known, every handler gets the record.
    pub record_level: Option<RecordLevelHook<R>>,
    /// Takes back a record `prepare` made, after every handler saw it.
    /// `None`: it is dropped.
    pub release: Option<TakeBackHook<R>>,
    /// Takes back a dequeued record after `task_done`: the last step of its
    /// life. `None`: it is dropped.
    pub done: Option<TakeBackHook<R>>,
    /// Told of every failure; the listener goes on after it. `None`: the
    /// failure is only counted.
    pub on_error: Option<OnErrorHook<R>>,
}

/// Python's behaviour for every step: every slot `None`.
impl<R> Default for Hooks<R> {
    fn default() -> Self {
        Hooks {
            dequeue: None,
            prepare: None,
            handle: None,
            enqueue_sentinel: None,
            record_level: None,
            release: None,
            done: None,
            on_error: None,
        }
    }
}

impl<R> Hooks<R> {
    /// Puts one sentinel through the `enqueue_sentinel` slot, or the queue.
    fn enqueue_sentinel_on(&self, queue: &dyn Queue<R>, listener: u64) -> SentinelPut {
        match &self.enqueue_sentinel {
            Some(put) => put(queue, listener),
            None => queue.enqueue_sentinel(listener),
        }
    }

    /// Tells the `on_error` slot, if any.
    #[inline]
    fn error(&self, stage: Stage, record: Option<&R>, code: i32) {
        if let Some(on_error) = &self.on_error {
            on_error(stage, record, code);
        }
    }
}

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

/// Who holds the listener thread's join handle.
enum Run {
    /// No thread (never started, or joined).
    Idle,
    /// A thread runs; nobody is stopping it.
    Running(JoinHandle<()>),
    /// A thread is in `stop` and holds the join handle. While so, a
    /// dequeue-error backoff ends early and the loop ends (the sentinel may
    /// never come through).
    Stopping,
}

/// How far the current run's thread has got (the last run's, once joined;
/// `Looping` before the first start). Only the thread moves it forward;
/// [`Shared::spawn_run`] sets it back to `Looping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The monitor loop takes from the queue.
    Looping,
    /// The loop takes no more; the thread flushes the handlers.
    /// `by_error`: it ended on a queue error while a stop was waiting, so
    /// records may remain on the queue.
    LoopEnded { by_error: bool },
    /// The thread has finished all its work and is about to return (it
    /// released the lock for the last time).
    ThreadEnded { by_error: bool, panicked: bool },
}

impl Phase {
    /// The loop will dequeue no more (the thread may still be flushing).
    fn loop_ended(self) -> bool {
        self != Phase::Looping
    }

    /// The thread has done all its work; a join returns at once.
    fn thread_ended(self) -> bool {
        matches!(self, Phase::ThreadEnded { .. })
    }

    /// The phase once the thread returns or unwinds (`panicked`) from
    /// this one. A loop that never ended (a panic in it) ended by no error.
    fn at_thread_end(self, panicked: bool) -> Phase {
        let by_error = self == Phase::LoopEnded { by_error: true };
        Phase::ThreadEnded { by_error, panicked }
    }
}

struct Control {
    run: Run,
    thread: Phase,
    /// Sentinels on their way, being put, or stale; and whether the loop
    /// must run again after a join. Every change is one of its methods.
    sentinels: Sentinels,
    /// Flush markers this listener put and has not taken yet.
    markers: Vec<u64>,
}

impl Control {
    /// A stop is under way (it holds the join handle).
    fn stopping(&self) -> bool {
        matches!(self.run, Run::Stopping)
    }
}

struct Shared<R> {
    /// Unique among listeners, never 0: tells a listener's own thread.
    id: u64,
    queue: Arc<dyn Queue<R>>,
    hooks: Hooks<R>,
    handlers: Vec<Box<dyn Handler<R>>>,
    /// One per handler.
    handler_counters: Vec<HandlerCounters>,
    /// Records the handlers had counted lost when a stop or flush last
    /// returned.
    lost_seen: AtomicU64,
    respect_handler_level: bool,
    /// `queue.has_task_done()`, read once.
    task_done: bool,
    control: Mutex<Control>,
    changed: Condvar,
    counters: Counters,
    /// [`fork_generation`] when the listener was made: a listener from an
    /// older generation was inherited across `fork` and has no thread here.
    generation: u64,
}

thread_local! {
    /// The id of the listener whose thread this is; 0 elsewhere.
    static THIS_LISTENER: Cell<u64> = const { Cell::new(0) };
}

static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

/// Flush marker ids, unique in the process.
static NEXT_MARKER: AtomicU64 = AtomicU64::new(1);

/// How often a waiting stop checks that the sentinel it counts on is still
/// on its way.
const SENTINEL_CHECK: Duration = Duration::from_millis(50);

/// How many times this process is a `fork` child of a process that used
/// the library (0 in the original process).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation: objects made in an older one were inherited
/// from a parent process.
pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// To be called in a `fork` child, on the thread that forked, before
/// anything else: from now on every existing listener and queue counts as
/// inherited (their threads do not exist here), and the thread forgets the
/// per-thread state it had in the parent.
pub fn note_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    THIS_LISTENER.with(|this| this.set(0));
    crate::record::forget_thread_id();
}

/// True on any listener thread. A put that would block there could wait for
/// itself, so the built-in queue refuses it instead.
pub fn on_listener_thread() -> bool {
    current_listener() != 0
}

/// The id of the listener whose thread calls ([`Listener::id`]); 0 on any
/// other thread.
pub fn current_listener() -> u64 {
    THIS_LISTENER.with(Cell::get)
}

/// Runs `f` as if on the thread of listener `id` (unit tests of the queue).
#[cfg(test)]
pub(crate) fn as_listener_thread<T>(id: u64, f: impl FnOnce() -> T) -> T {
    let before = THIS_LISTENER.with(|this| this.replace(id));
    let out = f();
    THIS_LISTENER.with(|this| this.set(before));
    out
}

/// A `QueueListener`: a queue, a list of handlers, the hooks, and at most
/// one running thread.
pub struct Listener<R: Send + 'static> {
    shared: Arc<Shared<R>>,
}

impl<R: Send + 'static> Listener<R> {
    /// Makes an idle listener. Nothing runs until [`Listener::start`].
    pub fn new(
        queue: Arc<dyn Queue<R>>,
        handlers: Vec<Box<dyn Handler<R>>>,
        hooks: Hooks<R>,
        respect_handler_level: bool,
    ) -> Self {
        let task_done = queue.has_task_done();
        Listener {
            shared: Arc::new(Shared {
                id: NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed),
                task_done,
                queue,
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
                    markers: Vec::new(),
                }),
                changed: Condvar::new(),
                counters: Counters::default(),
                generation: fork_generation(),
            }),
        }
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
    /// Errors: [`Error::WouldDeadlock`] from the listener's own thread;
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
        for handler in self.shared.handlers.iter() {
            handler.close();
        }
        match (stopped, self.shared.with_losses(Ok(()))) {
            (Err(Error::Lost(a)), Err(Error::Lost(b))) => Err(Error::Lost(a + b)),
            (Err(Error::Lost(a)), _) => Err(Error::Lost(a)),
            (_, Err(e)) => Err(e),
            (other, Ok(())) => other,
        }
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
        let put = shared.hooks.enqueue_sentinel_on(&*shared.queue, shared.id);
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
        self.shared.generation != fork_generation()
    }

    /// A handle that can stop this listener later, from anywhere, without
    /// keeping it alive (for draining at exit).
    pub fn stopper(&self) -> Stopper {
        let weak = Arc::downgrade(&self.shared);
        Stopper {
            stop: Box::new(move |timeout| match weak.upgrade() {
                Some(shared) => shared.stop_until(Instant::now().checked_add(timeout)),
                None => Ok(()),
            }),
        }
    }

    /// The listener's id: unique in the process, never 0. Sentinels and
    /// flush markers are addressed with it.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// True when called from this listener's own thread.
    pub fn is_listener_thread(&self) -> bool {
        THIS_LISTENER.with(Cell::get) == self.shared.id
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
    /// Puts a marker behind the queued records (waiting for room on a full
    /// queue, within the deadline, while the loop goes on) and waits until
    /// the listener takes it.
    /// Errors: [`Error::NotRunning`] when no thread runs (records would
    /// never be handled), [`Error::WouldDeadlock`] from the listener's own
    /// thread, [`Error::Unsupported`] for a queue that cannot carry a
    /// marker, [`Error::Timeout`] past the deadline (a marker already put
    /// is served later and harms nothing).
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.shared.with_losses(self.flush_until(timeout))
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

    fn flush_until(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let shared = &*self.shared;
        if self.is_listener_thread() {
            return Err(Error::WouldDeadlock);
        }
        if self.is_inherited() {
            return Err(Error::Forked);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        {
            let ctl = shared.lock();
            if matches!(ctl.run, Run::Idle) || ctl.thread.loop_ended() {
                return Err(Error::NotRunning);
            }
        }
        // Unique among all listeners: on a queue several listeners share,
        // a marker another listener takes never completes this flush.
        let id = NEXT_MARKER.fetch_add(1, Ordering::Relaxed);
        shared.lock().markers.push(id);
        let forget = |ctl: &mut Control| ctl.markers.retain(|&m| m != id);
        // On a full queue, wait for room in slices, looking between them
        // that the listener still takes records: if its loop ended
        // meanwhile, the queue may never make room.
        loop {
            let slice = Instant::now() + SENTINEL_CHECK;
            let until = deadline.map_or(slice, |d| d.min(slice));
            match shared.queue.enqueue_marker(shared.id, id, Some(until)) {
                Ok(()) => break,
                Err(Error::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => {
                    let mut ctl = shared.lock();
                    if matches!(ctl.run, Run::Idle) || ctl.thread.loop_ended() {
                        forget(&mut ctl);
                        return Err(Error::NotRunning);
                    }
                }
                Err(e) => {
                    forget(&mut shared.lock());
                    return Err(e);
                }
            }
        }
        let mut ctl = shared.lock();
        while ctl.markers.contains(&id) {
            if ctl.thread.loop_ended() {
                // The loop ended before reaching the marker.
                forget(&mut ctl);
                return Err(Error::NotRunning);
            }
            ctl = match shared.wait(ctl, deadline) {
                Some(guard) => guard,
                None => {
                    forget(&mut shared.lock());
                    return Err(Error::Timeout);
                }
            };
        }
        Ok(())
    }

    fn stop_until(&self, deadline: Option<Instant>) -> Result<(), Error> {
        self.shared.stop_until(deadline)
    }
}

/// A handle that stops a listener if it still exists (see
/// [`Listener::stopper`]).
pub struct Stopper {
    stop: Box<dyn Fn(Duration) -> Result<(), Error> + Send + Sync>,
}

impl Stopper {
    /// Stops the listener within `timeout`, if it still exists; `Ok` when
    /// it is gone.
    pub fn stop_within(&self, timeout: Duration) -> Result<(), Error> {
        (self.stop)(timeout)
    }
}

impl<R> Shared<R> {
    /// `Ok` becomes [`Error::Lost`] when the handlers counted records lost
    /// since the previous stop or flush returned. Other results keep the
    /// losses for the next call to report.
    fn with_losses(&self, result: Result<(), Error>) -> Result<(), Error> {
        result?;
        let total: u64 = self
            .handlers
            .iter()
            .filter_map(|h| h.counts())
            .map(|c| c.lost)
            .sum();
        let before = self.lost_seen.fetch_max(total, Ordering::Relaxed);
        match total.saturating_sub(before) {
            0 => Ok(()),
            n => Err(Error::Lost(n)),
        }
    }

    /// After a handler's `batch_end` or `flush`: counts and reports the
    /// failures its counts show that no `handle` returned.
    fn report_deferred(&self, index: usize) {
        let Some(counts) = self.handlers[index].counts() else {
            return;
        };
        let seen = &self.handler_counters[index].deferred_seen;
        let before = seen.load(Ordering::Relaxed);
        if counts.deferred_errors > before {
            let n = counts.deferred_errors - before;
            seen.store(counts.deferred_errors, Ordering::Relaxed);
            let c = &self.handler_counters[index].errors;
            c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            let c = &self.counters.handler_errors;
            c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            self.hooks
                .error(Stage::Handler(index), None, counts.last_errno);
        }
    }

    /// Flushes every handler, reporting what their flush could not write.
    fn flush_handlers(&self) {
        for (index, handler) in self.handlers.iter().enumerate() {
            handler.flush();
            self.report_deferred(index);
        }
    }
}

impl<R: Send + 'static> Shared<R> {
    /// Resets the per-run state and spawns a listener thread for a new run.
    fn spawn_run(self: &Arc<Self>, ctl: &mut Control) -> Result<JoinHandle<()>, Error> {
        ctl.thread = Phase::Looping;
        let shared = Arc::clone(self);
        thread::Builder::new()
            .name("ql-listener".into())
            .spawn(move || monitor(shared))
            .map_err(|_| Error::Thread)
    }

    /// Puts a stop's sentinel, unless one is already on its way or the loop
    /// has ended by itself (then a sentinel would be left behind), retrying
    /// while the queue is full until `deadline`. `Ok(true)` when this call
    /// put one.
    fn put_stop_sentinel<'a>(
        &'a self,
        mut ctl: MutexGuard<'a, Control>,
        backoff: &mut Duration,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, Control>, Result<bool, Error>) {
        while ctl.sentinels.none_pending() && !ctl.thread.loop_ended() {
            // Count it first: the thread may take it as soon as it is in.
            ctl.sentinels.put_started();
            drop(ctl);
            let put = self.hooks.enqueue_sentinel_on(&*self.queue, self.id);
            ctl = self.lock();
            ctl.sentinels.put_returned(put == SentinelPut::Ok);
            match put {
                SentinelPut::Ok => return (ctl, Ok(true)),
                SentinelPut::Error => return (ctl, Err(Error::Queue)),
                SentinelPut::Full => match self.wait_for(ctl, *backoff, deadline) {
                    Some(guard) => {
                        ctl = guard;
                        *backoff = (*backoff * 2).min(Duration::from_millis(5));
                    }
                    None => return (self.lock(), Err(Error::Timeout)),
                },
            }
        }
        (ctl, Ok(false))
    }

    /// A stop found the run's thread ended (`by_error`, `panicked`: its
    /// [`Phase::ThreadEnded`]): joins it, with the lock held throughout so
    /// the sentinels are settled as of the join. When a timed-out stop
    /// asked for it, runs the loop again instead (a new thread, until this
    /// stop's own sentinel): the records put after that stop are handled.
    fn join_ended_run(
        self: &Arc<Self>,
        ctl: &mut Control,
        handle: JoinHandle<()>,
        by_error: bool,
        panicked: bool,
    ) -> Joined {
        self.absorb_vanished(ctl);
        let resume = ctl.sentinels.run_joined();
        if resume && !panicked {
            let spawned = self.spawn_run(ctl);
            let _ = handle.join();
            return match spawned {
                Ok(new) => Joined::Again(new),
                Err(e) => {
                    ctl.run = Run::Idle;
                    self.changed.notify_all();
                    Joined::Stopped(Err(e))
                }
            };
        }
        let panicked = handle.join().is_err() || panicked;
        ctl.run = Run::Idle;
        self.changed.notify_all();
        Joined::Stopped(if panicked {
            Err(Error::Panicked)
        } else if by_error {
            Err(Error::Queue)
        } else {
            Ok(())
        })
    }

    fn stop_until(self: &Arc<Self>, deadline: Option<Instant>) -> Result<(), Error> {
        let shared = &**self;
        if THIS_LISTENER.with(Cell::get) == self.id {
            return Err(Error::WouldDeadlock);
        }
        if self.generation != fork_generation() {
            // Inherited across fork: its thread does not exist here.
            return Ok(());
        }
        let mut ctl = shared.lock();
        // Wait out a stop in progress in another thread; take over a run.
        let mut handle = loop {
            match std::mem::replace(&mut ctl.run, Run::Stopping) {
                Run::Running(handle) => break handle,
                Run::Idle => {
                    ctl.run = Run::Idle;
                    return Ok(());
                }
                Run::Stopping => {}
            }
            ctl = shared.wait(ctl, deadline).ok_or(Error::Timeout)?;
        };
        let mut backoff = Duration::from_micros(20);
        // Whether this call put the sentinel the thread will stop at.
        let mut ours = false;
        loop {
            let (guard, put) = self.put_stop_sentinel(ctl, &mut backoff, deadline);
            ctl = guard;
            match put {
                Ok(put) => ours |= put,
                Err(failed) => {
                    ctl.run = Run::Running(handle);
                    shared.changed.notify_all();
                    return Err(failed);
                }
            }
            if let Phase::ThreadEnded { by_error, panicked } = ctl.thread {
                match self.join_ended_run(&mut ctl, handle, by_error, panicked) {
                    Joined::Again(new) => {
                        handle = new;
                        ours = false;
                        continue;
                    }
                    Joined::Stopped(result) => return result,
                }
            }
            // Wait for the thread, looking again now and then: a sentinel
            // this stop counted on can vanish (a concurrent
            // ql_enqueue_sentinel that failed, or a program's get that took
            // it off the queue), and then this stop must put its own.
            match shared.wait_for(ctl, SENTINEL_CHECK, deadline) {
                Some(guard) => ctl = guard,
                None => {
                    ctl = shared.lock();
                    if ctl.thread.thread_ended() {
                        continue;
                    }
                    // Left running and usable: the sentinel this call
                    // put, if the thread has not reached it, is skipped
                    // when reached (the thread goes on with the records
                    // behind it), and a later stop puts its own.
                    // If the thread has already taken its sentinel it is
                    // ending: the next stop runs the loop again for the
                    // records put meanwhile.
                    let loop_ended = ctl.thread.loop_ended();
                    ctl.sentinels.stop_timed_out(ours, loop_ended);
                    ctl.run = Run::Running(handle);
                    shared.changed.notify_all();
                    return Err(Error::Timeout);
                }
            }
            // Sentinels the program took off the queue itself no longer
            // count (the loop above then puts a new one).
            shared.absorb_vanished(&mut ctl);
        }
    }
}

impl<R: Send + 'static> Drop for Listener<R> {
    /// Stops the listener first. From the listener's own thread this cannot
    /// wait: it puts the sentinel (when the queue has room), so the thread
    /// ends after the records queued before the drop, keeping the shared
    /// state alive until then. Nothing else could stop it any more.
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
            let _ = self.enqueue_sentinel();
            return;
        }
        let _ = self.stop();
    }
}

impl<R> Drop for Shared<R> {
    /// The listener and its thread are gone: the queue drops what is still
    /// addressed to it. (An inherited listener is never dropped.)
    fn drop(&mut self) {
        self.queue.forget_listener(self.id);
    }
}

impl<R> Shared<R> {
    /// Sentinels the program took off the queue itself (its own get) no
    /// longer count ([`Sentinels::vanished`]).
    fn absorb_vanished(&self, ctl: &mut Control) {
        let vanished = self.queue.take_vanished_sentinels(self.id);
        if vanished > 0 {
            ctl.sentinels.vanished(vanished);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a change of the control state; `None` once the deadline passed.
    fn wait<'a>(
        &'a self,
        guard: MutexGuard<'a, Control>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Control>> {
        match deadline {
            None => Some(
                self.changed
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
            ),
            Some(deadline) => {
                let left = deadline.checked_duration_since(Instant::now())?;
                let (guard, _) = self
                    .changed
                    .wait_timeout(guard, left)
                    .unwrap_or_else(PoisonError::into_inner);
                Some(guard)
            }
        }
    }

    /// Waits for a change or `pause`, whichever is first; `None` once the
    /// deadline passed.
    fn wait_for<'a>(
        &'a self,
        guard: MutexGuard<'a, Control>,
        pause: Duration,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Control>> {
        let now = Instant::now();
        let until = now + pause;
        let until = match deadline {
            Some(d) if d <= now => return None,
            Some(d) => d.min(until),
            None => until,
        };
        self.wait(guard, Some(until)).or_else(|| Some(self.lock()))
    }
}

/// What [`Shared::join_ended_run`] did.
enum Joined {
    /// Started the loop again on this new thread: the stop goes on.
    Again(JoinHandle<()>),
    /// Joined the thread: the stop's result.
    Stopped(Result<(), Error>),
}

/// Marks the thread as done when the monitor returns or unwinds, so a stop
/// never waits for a thread that is gone.
struct ThreadEnd<'a, R> {
    shared: &'a Shared<R>,
}

impl<R> Drop for ThreadEnd<'_, R> {
    fn drop(&mut self) {
        let mut ctl = self.shared.lock();
        ctl.thread = ctl.thread.at_thread_end(thread::panicking());
        self.shared.changed.notify_all();
    }
}

/// The listener thread: Python's `QueueListener._monitor`.
fn monitor<R: Send + 'static>(shared: Arc<Shared<R>>) {
    THIS_LISTENER.with(|this| this.set(shared.id));
    // A handler writing to a closed pipe or past RLIMIT_FSIZE gets EPIPE /
    // EFBIG, and the process lives on.
    crate::output::sys::block_write_signals_for_thread();
    let _end = ThreadEnd { shared: &shared };
    let mut backoff = Duration::from_millis(1);
    // The loop ended on a queue error while a stop was waiting.
    let mut ended_by_error = false;
    // The slots the loop calls for every record, read once.
    let dequeue_hook = shared.hooks.dequeue.as_deref();
    let done_hook = shared.hooks.done.as_deref();
    let plain = shared.hooks.prepare.is_none() && shared.hooks.handle.is_none();
    let in_batch = Cell::new(false);
    let mut batch_end = || {
        if in_batch.replace(false) {
            Counters::bump(&shared.counters.batches);
            for (index, handler) in shared.handlers.iter().enumerate() {
                handler.batch_end();
                shared.report_deferred(index);
            }
        }
    };
    loop {
        let dequeued = if let Some(dequeue) = dequeue_hook {
            dequeue(&*shared.queue, true)
        } else {
            shared.queue.dequeue_idle(true, &mut batch_end)
        };
        match dequeued {
            Dequeued::Record(record) => {
                in_batch.set(true);
                backoff = Duration::from_millis(1);
                shared.handle(&record, plain);
                if shared.task_done {
                    shared.queue.task_done(Some(&record));
                }
                if let Some(done) = done_hook {
                    done(record);
                }
            }
            Dequeued::Sentinel => {
                let taken = {
                    let mut ctl = shared.lock();
                    shared.absorb_vanished(&mut ctl);
                    ctl.sentinels.taken()
                };
                if shared.task_done {
                    shared.queue.task_done(None);
                }
                if taken == Taken::End {
                    break;
                }
            }
            Dequeued::Empty => break,
            Dequeued::Marker(id) => {
                shared.flush_handlers();
                let mut ctl = shared.lock();
                // Serves this listener's own marker only.
                ctl.markers.retain(|&m| m != id);
                shared.changed.notify_all();
            }
            Dequeued::Error => {
                Counters::bump(&shared.counters.dequeue_errors);
                shared.hooks.error(Stage::Dequeue, None, 0);
                // Back off so a broken queue does not spin; a stop ends the
                // loop, since the sentinel may never come through.
                let ctl = shared.lock();
                let (ctl, _) = shared
                    .changed
                    .wait_timeout_while(ctl, backoff, |c| !c.stopping())
                    .unwrap_or_else(PoisonError::into_inner);
                if ctl.stopping() {
                    ended_by_error = true;
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
        }
    }
    // The loop's last batch ends here (for queues that have batches).
    if shared.queue.reports_batches() && dequeue_hook.is_none() {
        batch_end();
    }
    // No more dequeues from here on: a stop now needs no sentinel.
    shared.lock().thread = Phase::LoopEnded {
        by_error: ended_by_error,
    };
    shared.changed.notify_all();
    shared.flush_handlers();
}

impl<R> Shared<R> {
    /// Python's `QueueListener.handle`: prepare once, then dispatch.
    /// `plain`: neither the `prepare` nor the `handle` slot is set (read
    /// once, before the loop).
    #[inline]
    fn handle(&self, record: &R, plain: bool) {
        if plain {
            self.dispatch(record);
            Counters::bump(&self.counters.handled);
            return;
        }
        let prepared = match &self.hooks.prepare {
            Some(prepare) => prepare(record),
            None => Ok(None),
        };
        let replaced = match prepared {
            Ok(replaced) => replaced,
            Err(code) => {
                Counters::bump(&self.counters.prepare_errors);
                self.hooks.error(Stage::Prepare, Some(record), code);
                return;
            }
        };
        let prepared = replaced.as_ref().unwrap_or(record);
        match &self.hooks.handle {
            None => self.dispatch(prepared),
            Some(handle) => {
                if let Err(code) = handle(prepared) {
                    Counters::bump(&self.counters.handler_errors);
                    self.hooks.error(Stage::Handle, Some(prepared), code);
                }
            }
        }
        Counters::bump(&self.counters.handled);
        if let (Some(replaced), Some(release)) = (replaced, &self.hooks.release) {
            release(replaced);
        }
    }

    /// Hands the prepared record to every handler in order. With
    /// `respect_handler_level`, a handler gets it only when the record's
    /// level is at least the handler's; a handler at level 0 gets all.
    #[inline]
    fn dispatch(&self, record: &R) {
        let level = if self.respect_handler_level {
            self.hooks
                .record_level
                .as_ref()
                .and_then(|level| level(record))
        } else {
            None
        };
        for (index, handler) in self.handlers.iter().enumerate() {
            if let Some(level) = level {
                let wanted = handler.level();
                if wanted != 0 && level < wanted {
                    continue;
                }
            }
            Counters::bump(&self.handler_counters[index].received);
            if let Err(code) = handler.handle(record) {
                self.handler_failed(index, record, code);
            }
        }
    }

    #[cold]
    fn handler_failed(&self, index: usize, record: &R, code: i32) {
        Counters::bump(&self.counters.handler_errors);
        Counters::bump(&self.handler_counters[index].errors);
        self.hooks.error(Stage::Handler(index), Some(record), code);
    }
}

#[cfg(test)]
mod tests {
    use super::Phase::{self, *};

    #[test]
    fn a_run_ends_in_phases() {
        // (phase, loop_ended, thread_ended, panicked, at_thread_end(panicked))
        let rows: &[(Phase, bool, bool, bool, Phase)] = &[
            (
                Looping,
                false,
                false,
                false,
                ThreadEnded {
                    by_error: false,
                    panicked: false,
                },
            ),
            (
                Looping,
                false,
                false,
                true,
                ThreadEnded {
                    by_error: false,
                    panicked: true,
                },
            ),
            (
                LoopEnded { by_error: false },
                true,
                false,
                false,
                ThreadEnded {
                    by_error: false,
                    panicked: false,
                },
            ),
            (
                LoopEnded { by_error: true },
                true,
                false,
                false,
                ThreadEnded {
                    by_error: true,
                    panicked: false,
                },
            ),
            (
                LoopEnded { by_error: true },
                true,
                false,
                true,
                ThreadEnded {
                    by_error: true,
                    panicked: true,
                },
            ),
        ];
        for &(phase, loop_ended, thread_ended, panicked, end) in rows {
            assert_eq!(phase.loop_ended(), loop_ended, "{phase:?}");
            assert_eq!(phase.thread_ended(), thread_ended, "{phase:?}");
            assert_eq!(
                phase.at_thread_end(panicked),
                end,
                "{phase:?}, panicked {panicked}"
            );
        }
        let ended = ThreadEnded {
            by_error: true,
            panicked: true,
        };
        assert!(ended.loop_ended() && ended.thread_ended());
    }
}
