//! Property-based tests of the listener against a model (proptest).
//!
//! Random operation sequences — new, start, stop, stop with a timeout,
//! enqueue_sentinel, flush, put / put_nowait / put_timeout, get_nowait, free,
//! and "blocked" steps that hold the handler inside a record — run against
//! two targets: the engine (`ChannelQueue` + `Listener` with a Rust handler)
//! and the same thing through the C ABI (`ql_queue_*`, `ql_listener_*`, a C
//! handler), called from Rust.
//!
//! * **Sequential** cases run on one thread and are checked exactly against
//!   a model of the documented state machine: every call's result, which
//!   records were handled and in which order, what is left on the queue, and
//!   the listener's `handled` counter. After every step the test waits until
//!   the listener has taken all it can (the model says how much), so the
//!   outcome of the next step is determined.
//! * **Concurrent** cases run one sequence per thread (2–3 threads, a
//!   barrier at the start) and are checked against invariants: each result is
//!   one the documentation allows; no record is handled twice; records of one
//!   producer are handled in their order; a refused record is never handled;
//!   a flush that returned Ok saw every record its thread put before it
//!   handled; at the end handled + left on the queue == put-Ok exactly. When
//!   a single thread controls the listener (start / stop / sentinels), every
//!   record put before a stop that returned Ok on a running listener is
//!   handled when that stop returns, and start / flush results are checked
//!   against that thread's view of the state.
//!
//! Every case runs under a watchdog: a call that hangs fails the case with
//! its operations printed. Case counts: `QL_MODEL_CASES` (default 128
//! sequential, 64 concurrent). Failing inputs are printed by proptest after shrinking; no
//! regression file is written.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

use queue_listener::ffi::listener::{
    ql_enqueue_sentinel, ql_handler, ql_listener, ql_listener_flush, ql_listener_free,
    ql_listener_new_with_queue, ql_listener_stats, ql_start, ql_stats, ql_stop, ql_stop_timeout,
};
use queue_listener::ffi::queue::{
    ql_queue, ql_queue_free, ql_queue_get_nowait, ql_queue_len, ql_queue_new, ql_queue_put,
    ql_queue_put_nowait, ql_queue_put_timeout,
};
use queue_listener::ffi::{
    QL_ERR_ALREADY_STARTED, QL_ERR_EMPTY, QL_ERR_FULL, QL_ERR_NOT_RUNNING, QL_ERR_QUEUE,
    QL_ERR_SENTINEL, QL_ERR_TIMEOUT, QL_ERR_WOULD_DEADLOCK, QL_OK,
};
use queue_listener::queue::{GetError, PutError};
use queue_listener::{ChannelQueue, Dequeued, Error, Handler, Hooks, Listener, Queue, SentinelPut};

// ---------------------------------------------------------------------------
// The handler's log, shared by both targets.

/// Records with this bit make the handler wait at the gate (while it is
/// closed) after logging them.
const GATE: u64 = 1 << 62;
/// The most a gated handler waits, so a failing case cannot leave a thread
/// stuck forever.
const GATE_BOUND: Duration = Duration::from_secs(20);
/// How long a step may take to reach the state the model predicts.
const SETTLE_BOUND: Duration = Duration::from_millis(1500);
/// Sequential cases stop with this deadline (the same code path as an
/// unbounded stop), so a stop that would hang fails its step at once and
/// shrinking stays fast. Concurrent cases use the unbounded forms.
const STOP_BOUND_MS: u64 = 1500;

#[derive(Default)]
struct LogState {
    seen: Vec<u64>,
    /// Calls of the handler's `flush`: at each flush barrier, and when a
    /// loop has ended (after the listener marked it ended).
    flushes: u64,
    gate_closed: bool,
}

/// Every record any handler saw, in order.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handler: never panics (it may run behind `extern "C"`).
    fn handle(&self, record: u64) {
        let mut s = self.lock();
        s.seen.push(record);
        self.changed.notify_all();
        if record & GATE != 0 {
            let deadline = Instant::now() + GATE_BOUND;
            while s.gate_closed {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = self
                    .changed
                    .wait_timeout(s, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }

    fn flush(&self) {
        self.lock().flushes += 1;
        self.changed.notify_all();
    }

    fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    fn set_gate(&self, closed: bool) {
        self.lock().gate_closed = closed;
        self.changed.notify_all();
    }

    fn len(&self) -> usize {
        self.lock().seen.len()
    }

    fn seen(&self) -> Vec<u64> {
        self.lock().seen.clone()
    }

    /// Waits until the handler was flushed `n` times; false after `bound`.
    fn wait_flushes(&self, n: u64, bound: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, bound, |s| s.flushes < n)
            .unwrap_or_else(PoisonError::into_inner);
        s.flushes >= n
    }

    /// Waits until `n` records were seen; false after `bound`.
    fn wait_len(&self, n: usize, bound: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, bound, |s| s.seen.len() < n)
            .unwrap_or_else(PoisonError::into_inner);
        s.seen.len() >= n
    }
}

// ---------------------------------------------------------------------------
// The system under test: a queue and at most one listener on it.

/// What a call returned, in terms common to both targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Res {
    Ok,
    AlreadyStarted,
    WouldDeadlock,
    Full,
    Timeout,
    NotRunning,
    Queue,
    /// A refused put gave back another record than the one put.
    WrongRecord,
    Other(i32),
}

/// What a get produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Rec(u64),
    Sentinel,
    Empty,
}

fn res_of(r: Result<(), Error>) -> Res {
    match r {
        Ok(()) => Res::Ok,
        Err(Error::AlreadyStarted) => Res::AlreadyStarted,
        Err(Error::WouldDeadlock) => Res::WouldDeadlock,
        Err(Error::Full) => Res::Full,
        Err(Error::Timeout) => Res::Timeout,
        Err(Error::NotRunning) => Res::NotRunning,
        Err(Error::Queue) => Res::Queue,
        Err(other) => Res::Other(match other {
            Error::Thread => -110,
            Error::Panicked => -111,
            Error::Unsupported => -113,
            Error::Forked => -114,
            Error::Lost(_) => -115,
            _ => -199,
        }),
    }
}

fn res_of_put(r: Result<(), PutError<u64>>, record: u64) -> Res {
    match r {
        Ok(()) => Res::Ok,
        Err(PutError::Full(back)) if back == record => Res::Full,
        Err(PutError::Timeout(back)) if back == record => Res::Timeout,
        Err(PutError::WouldDeadlock(back)) if back == record => Res::WouldDeadlock,
        Err(_) => Res::WrongRecord,
    }
}

fn res_of_status(s: i32) -> Res {
    match s {
        QL_OK => Res::Ok,
        QL_ERR_ALREADY_STARTED => Res::AlreadyStarted,
        QL_ERR_WOULD_DEADLOCK => Res::WouldDeadlock,
        QL_ERR_FULL => Res::Full,
        QL_ERR_TIMEOUT => Res::Timeout,
        QL_ERR_NOT_RUNNING => Res::NotRunning,
        QL_ERR_QUEUE => Res::Queue,
        other => Res::Other(other),
    }
}

/// A queue and at most one listener on it. Listener calls return `None`
/// when there is no listener. Every listener call holds the slot's read lock
/// for its whole duration, so `new_listener` / `free_listener` (write lock)
/// never overlap another call on the listener, as `ql_listener_free`
/// requires, and two listeners never consume the queue at once.
trait Sut: Send + Sync {
    /// Frees the current listener (if any; its result is returned) and makes
    /// a new idle one.
    fn new_listener(&self) -> Option<Res>;
    fn free_listener(&self) -> Option<Res>;
    fn start(&self) -> Option<Res>;
    fn stop(&self) -> Option<Res>;
    fn stop_timeout(&self, ms: u64) -> Option<Res>;
    fn enqueue_sentinel(&self) -> Option<Res>;
    fn flush(&self, ms: u64) -> Option<Res>;
    /// The current listener's `handled` counter.
    fn handled(&self) -> Option<u64>;
    fn put(&self, record: u64) -> Res;
    fn put_nowait(&self, record: u64) -> Res;
    fn put_timeout(&self, record: u64, ms: u64) -> Res;
    fn get_nowait(&self) -> Got;
    fn len(&self) -> usize;
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

struct LogHandler(Arc<Log>);

impl Handler<u64> for LogHandler {
    fn level(&self) -> i32 {
        0
    }
    fn handle(&self, record: &u64) -> Result<(), i32> {
        self.0.handle(*record);
        Ok(())
    }
    fn flush(&self) {
        self.0.flush();
    }
}

/// The engine, used directly.
struct EngineSut {
    queue: Arc<ChannelQueue<u64>>,
    log: Arc<Log>,
    listener: RwLock<Option<Listener<u64>>>,
}

impl EngineSut {
    fn new(capacity: usize, log: Arc<Log>) -> Self {
        EngineSut {
            queue: Arc::new(ChannelQueue::new(capacity).expect("capacity")),
            log,
            listener: RwLock::new(None),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Listener<u64>) -> T) -> Option<T> {
        read(&self.listener).as_ref().map(f)
    }
}

impl Sut for EngineSut {
    fn new_listener(&self) -> Option<Res> {
        let mut slot = write(&self.listener);
        // Dropping a listener stops it; the drop reports nothing.
        let old = slot.take().map(|old| {
            drop(old);
            Res::Ok
        });
        let queue: Arc<dyn Queue<u64>> = self.queue.clone();
        *slot = Some(Listener::new(
            queue,
            vec![Box::new(LogHandler(self.log.clone()))],
            Hooks::default(),
            false,
        ));
        old
    }
    fn free_listener(&self) -> Option<Res> {
        // Dropped under the write lock: at most one listener exists at a
        // time (a new one could otherwise run beside the one being freed).
        let mut slot = write(&self.listener);
        drop(slot.take()?);
        Some(Res::Ok)
    }
    fn start(&self) -> Option<Res> {
        self.with(|l| res_of(l.start()))
    }
    fn stop(&self) -> Option<Res> {
        self.with(|l| res_of(l.stop()))
    }
    fn stop_timeout(&self, ms: u64) -> Option<Res> {
        self.with(|l| res_of(l.stop_timeout(Duration::from_millis(ms))))
    }
    fn enqueue_sentinel(&self) -> Option<Res> {
        self.with(|l| res_of(l.enqueue_sentinel()))
    }
    fn flush(&self, ms: u64) -> Option<Res> {
        self.with(|l| res_of(l.flush(Some(Duration::from_millis(ms)))))
    }
    fn handled(&self) -> Option<u64> {
        self.with(|l| l.stats().handled)
    }
    fn put(&self, record: u64) -> Res {
        res_of_put(self.queue.put(record), record)
    }
    fn put_nowait(&self, record: u64) -> Res {
        res_of_put(self.queue.put_nowait(record), record)
    }
    fn put_timeout(&self, record: u64, ms: u64) -> Res {
        res_of_put(
            self.queue.put_timeout(record, Duration::from_millis(ms)),
            record,
        )
    }
    fn get_nowait(&self) -> Got {
        match self.queue.get_nowait() {
            Ok(r) => Got::Rec(r),
            Err(GetError::Sentinel) => Got::Sentinel,
            Err(_) => Got::Empty,
        }
    }
    fn len(&self) -> usize {
        self.queue.len()
    }
}

struct QueuePtr(*mut ql_queue);
struct ListenerPtr(*mut ql_listener);
// SAFETY: the C API allows every ql_queue_* call but ql_queue_free from any
// thread; the queue is freed once, in `Drop`, when no other call can run.
unsafe impl Send for QueuePtr {}
// SAFETY: as above.
unsafe impl Sync for QueuePtr {}
// SAFETY: listener calls run under the slot's read lock, ql_listener_free
// under its write lock, so free never overlaps another call.
unsafe impl Send for ListenerPtr {}
// SAFETY: as above.
unsafe impl Sync for ListenerPtr {}

/// The same, through the C ABI.
struct FfiSut {
    queue: QueuePtr,
    log: Arc<Log>,
    listener: RwLock<Option<ListenerPtr>>,
}

unsafe extern "C" fn c_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
    // SAFETY: ctx is the `Arc<Log>` given in `c_handler`, alive until destroy.
    let log = unsafe { &*ctx.cast::<Log>() };
    log.handle(record as usize as u64);
    0
}

unsafe extern "C" fn c_flush(ctx: *mut c_void) {
    // SAFETY: as in `c_handle`.
    unsafe { &*ctx.cast::<Log>() }.flush();
}

unsafe extern "C" fn c_destroy(ctx: *mut c_void) {
    // SAFETY: made by `Arc::into_raw` in `c_handler`; destroy runs once.
    drop(unsafe { Arc::from_raw(ctx.cast::<Log>().cast_const()) });
}

fn c_handler(log: &Arc<Log>) -> ql_handler {
    ql_handler {
        ctx: Arc::into_raw(log.clone()).cast_mut().cast(),
        level: 0,
        handle: Some(c_handle),
        flush: Some(c_flush),
        destroy: Some(c_destroy),
        batch_end: None,
    }
}

fn as_ptr(record: u64) -> *mut c_void {
    record as usize as *mut c_void
}

impl FfiSut {
    fn new(capacity: usize, log: Arc<Log>) -> Self {
        let mut queue = ptr::null_mut();
        // SAFETY: a valid out-pointer.
        let s = unsafe { ql_queue_new(capacity, &mut queue) };
        assert_eq!(s, QL_OK, "ql_queue_new");
        FfiSut {
            queue: QueuePtr(queue),
            log,
            listener: RwLock::new(None),
        }
    }

    fn with<T>(&self, f: impl FnOnce(*const ql_listener) -> T) -> Option<T> {
        read(&self.listener).as_ref().map(|l| f(l.0))
    }
}

impl Drop for FfiSut {
    fn drop(&mut self) {
        if let Some(l) = write(&self.listener).take() {
            // SAFETY: live, and no other call is in progress (we own self).
            unsafe { ql_listener_free(l.0) };
        }
        // SAFETY: the queue from `new`, freed once.
        unsafe { ql_queue_free(self.queue.0) };
    }
}

impl Sut for FfiSut {
    fn new_listener(&self) -> Option<Res> {
        let mut slot = write(&self.listener);
        let old = slot.take().map(|old| {
            // SAFETY: live; the write lock excludes every other call.
            res_of_status(unsafe { ql_listener_free(old.0) })
        });
        let handler = c_handler(&self.log);
        let mut out = ptr::null_mut();
        // SAFETY: valid queue, one handler, NULL hooks, valid out-pointer.
        let s = unsafe {
            ql_listener_new_with_queue(self.queue.0, &handler, 1, ptr::null(), false, &mut out)
        };
        assert_eq!(s, QL_OK, "ql_listener_new_with_queue");
        *slot = Some(ListenerPtr(out));
        old
    }
    fn free_listener(&self) -> Option<Res> {
        // Freed under the write lock: at most one listener exists at a time
        // (a new one could otherwise run beside the one being freed).
        let mut slot = write(&self.listener);
        let old = slot.take()?;
        // SAFETY: live; the write lock excludes every other call.
        Some(res_of_status(unsafe { ql_listener_free(old.0) }))
    }
    fn start(&self) -> Option<Res> {
        // SAFETY (all listener calls below): live while the read lock is held.
        self.with(|l| res_of_status(unsafe { ql_start(l) }))
    }
    fn stop(&self) -> Option<Res> {
        self.with(|l| res_of_status(unsafe { ql_stop(l) }))
    }
    fn stop_timeout(&self, ms: u64) -> Option<Res> {
        self.with(|l| res_of_status(unsafe { ql_stop_timeout(l, ms) }))
    }
    fn enqueue_sentinel(&self) -> Option<Res> {
        self.with(|l| res_of_status(unsafe { ql_enqueue_sentinel(l) }))
    }
    fn flush(&self, ms: u64) -> Option<Res> {
        self.with(|l| res_of_status(unsafe { ql_listener_flush(l, ms) }))
    }
    fn handled(&self) -> Option<u64> {
        self.with(|l| {
            let mut stats = ql_stats::default();
            // SAFETY: live listener, valid out-pointer.
            let s = unsafe { ql_listener_stats(l, &mut stats) };
            if s == QL_OK {
                stats.handled
            } else {
                u64::MAX
            }
        })
    }
    // SAFETY (queue calls below): the queue lives as long as self.
    fn put(&self, record: u64) -> Res {
        res_of_status(unsafe { ql_queue_put(self.queue.0, as_ptr(record)) })
    }
    fn put_nowait(&self, record: u64) -> Res {
        res_of_status(unsafe { ql_queue_put_nowait(self.queue.0, as_ptr(record)) })
    }
    fn put_timeout(&self, record: u64, ms: u64) -> Res {
        res_of_status(unsafe { ql_queue_put_timeout(self.queue.0, as_ptr(record), ms) })
    }
    fn get_nowait(&self) -> Got {
        let mut out = ptr::null_mut();
        match unsafe { ql_queue_get_nowait(self.queue.0, &mut out) } {
            QL_OK => Got::Rec(out as usize as u64),
            QL_ERR_SENTINEL => Got::Sentinel,
            QL_ERR_EMPTY => Got::Empty,
            other => Got::Rec(u64::MAX - other as u64),
        }
    }
    fn len(&self) -> usize {
        let mut len = usize::MAX;
        unsafe { ql_queue_len(self.queue.0, &mut len) };
        len
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Engine,
    Ffi,
}

fn make_sut(target: Target, capacity: usize, log: Arc<Log>) -> Box<dyn Sut> {
    match target {
        Target::Engine => Box::new(EngineSut::new(capacity, log)),
        Target::Ffi => Box::new(FfiSut::new(capacity, log)),
    }
}

// ---------------------------------------------------------------------------
// The watchdog.

/// Runs `case` on its own thread and waits at most `bound` for it. A case
/// that does not finish in time fails as a hang; its thread is left behind.
fn watchdog(
    what: String,
    bound: Duration,
    case: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), TestCaseError> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("model-case".into())
        .spawn(move || {
            let out =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)).unwrap_or_else(|p| {
                    Err(format!(
                        "panicked: {}",
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    ))
                });
            let _ = tx.send(out);
        })
        .expect("spawn");
    match rx.recv_timeout(bound) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(TestCaseError::fail(format!("{message}\ncase: {what}"))),
        Err(_) => Err(TestCaseError::fail(format!(
            "HANG: the case did not finish within {bound:?}\ncase: {what}"
        ))),
    }
}

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("QL_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        // A hang costs a watchdog period per shrinking step: stop in time.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

fn expect(step: usize, what: &str, got: Res, allowed: &[Res]) -> Result<(), String> {
    if allowed.contains(&got) {
        Ok(())
    } else {
        Err(format!(
            "step {step}: {what} returned {got:?}, expected one of {allowed:?}"
        ))
    }
}

// ---------------------------------------------------------------------------
// Sequential cases: an exact model.

/// What the handler is doing while a `Blocked` step holds it at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockedAction {
    /// Must time out: the handler cannot reach the sentinel.
    StopTimeout(u64),
    /// Must time out: the handler cannot reach the barrier.
    Flush(u64),
    PutNowait,
    EnqueueSentinel,
    /// Must be refused: the thread runs.
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Frees the listener (if any) and makes a new one on the same queue.
    New,
    Free,
    Start,
    Stop,
    StopTimeout(u64),
    EnqueueSentinel,
    Flush(u64),
    Put,
    PutNowait,
    PutTimeout(u64),
    GetNowait,
    /// With a running listener: the handler is held inside a record; with
    /// `fill` the queue is filled up behind it; then `action`; then the
    /// handler is let go.
    Blocked {
        fill: bool,
        action: BlockedAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Rec(u64),
    /// A sentinel put by listener `owner` for its run `run`.
    Sent {
        owner: u32,
        run: u32,
    },
    /// A flush barrier put by listener `owner`.
    Marker {
        owner: u32,
    },
}

#[derive(Debug, Clone)]
struct ModelListener {
    id: u32,
    /// Runs started so far (the current or last run's number).
    run: u32,
    /// Started and not joined yet.
    active: bool,
    /// Its loop took its sentinel (still `active` until joined).
    loop_ended: bool,
    /// Its `handled` counter.
    handled: u64,
}

/// The documented behaviour, for one thread driving one queue and at most
/// one listener at a time.
#[derive(Debug, Clone, Default)]
struct Model {
    capacity: usize,
    queue: VecDeque<Item>,
    listener: Option<ModelListener>,
    /// Every record handled, in order.
    handled: Vec<u64>,
    /// Records taken back with get_nowait.
    taken: Vec<u64>,
    /// Records put with an Ok result.
    put_ok: Vec<u64>,
    /// The handler is held at the gate: nothing is taken off the queue.
    blocked: bool,
    /// Barriers of the listener that a get passed over: held by the queue
    /// for the listener's next take, ahead of the queue.
    held: VecDeque<Item>,
    /// Calls of the handler's `flush`: barriers served and loops ended.
    flushes: u64,
    next_listener: u32,
}

impl Model {
    fn full(&self) -> bool {
        self.capacity != 0 && self.queue.len() >= self.capacity
    }

    /// True when a listener thread is taking records off the queue.
    fn consuming(&self) -> bool {
        self.listener
            .as_ref()
            .is_some_and(|l| l.active && !l.loop_ended)
    }

    /// Lets the listener take everything it will take: held barriers
    /// first, then records are handled, barriers served, stale sentinels
    /// skipped, until its sentinel.
    ///
    /// Sentinels from earlier runs of the same listener that the run never
    /// reached are skipped by later runs (documented). Sentinels and
    /// barriers are addressed to the listener that put them: those of a
    /// listener that no longer exists are dropped when taken.
    fn settle(&mut self) {
        if self.blocked || !self.consuming() {
            return;
        }
        let l = self.listener.as_mut().expect("consuming");
        while let Some(item) = self.held.pop_front().or_else(|| self.queue.pop_front()) {
            match item {
                Item::Rec(r) => {
                    self.handled.push(r);
                    l.handled += 1;
                }
                Item::Marker { owner } => {
                    if owner == l.id {
                        self.flushes += 1;
                    }
                }
                Item::Sent { owner, run } => {
                    if owner != l.id || run < l.run {
                        continue; // another's: dropped; stale: skipped
                    }
                    l.loop_ended = true;
                    self.flushes += 1;
                    break;
                }
            }
        }
    }

    /// The live listener's id, if there is one.
    fn live(&self) -> Option<u32> {
        self.listener.as_ref().map(|l| l.id)
    }

    /// A stop that returns Ok (the handler is free).
    fn stop(&mut self) {
        let Some(l) = self.listener.as_mut() else {
            return;
        };
        if !l.active {
            return;
        }
        if !l.loop_ended {
            let item = Item::Sent {
                owner: l.id,
                run: l.run,
            };
            self.queue.push_back(item);
            self.settle();
        }
        let l = self.listener.as_mut().expect("listener");
        debug_assert!(l.loop_ended);
        l.active = false;
        l.loop_ended = false;
    }

    fn sentinel_item(&self) -> Item {
        let l = self.listener.as_ref().expect("listener");
        Item::Sent {
            owner: l.id,
            // Put while idle: for the next run.
            run: if l.active { l.run } else { l.run + 1 },
        }
    }
}

struct SeqRun {
    sut: Box<dyn Sut>,
    log: Arc<Log>,
    m: Model,
    next_record: u64,
    step: usize,
}

impl SeqRun {
    fn record(&mut self) -> u64 {
        self.next_record += 1;
        self.next_record
    }

    fn exists(&self, got: Option<Res>, what: &str) -> Result<Option<Res>, String> {
        match (got.is_some(), self.m.listener.is_some()) {
            (a, b) if a == b => Ok(got),
            _ => Err(format!(
                "step {}: {what}: listener existence differs from the model",
                self.step
            )),
        }
    }

    /// Waits until the system reaches the model's state, then compares.
    fn settle(&mut self) -> Result<(), String> {
        self.m.settle();
        let want_seen = self.m.handled.len();
        let want_len = self.m.queue.len();
        let want_handled = self.m.listener.as_ref().map(|l| l.handled);
        let want_flushes = self.m.flushes;
        let deadline = Instant::now() + SETTLE_BOUND;
        let mut pause = Duration::from_micros(20);
        loop {
            // The flush count tells when a loop has ended: the queue's
            // length alone does not (the sentinel is off the queue before
            // the listener marks its loop ended).
            let reached = self.log.len() == want_seen
                && self.log.flushes() == want_flushes
                && self.sut.len() == want_len
                && (self.m.blocked || self.sut.handled() == want_handled);
            if reached || Instant::now() >= deadline {
                break;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
        let seen = self.log.seen();
        if seen != self.m.handled {
            return Err(format!(
                "step {}: handled records differ\n  model:  {:?}\n  actual: {:?}",
                self.step, self.m.handled, seen
            ));
        }
        let flushes = self.log.flushes();
        if flushes != want_flushes {
            return Err(format!(
                "step {}: handler flushed {flushes} times, model {want_flushes}",
                self.step
            ));
        }
        let len = self.sut.len();
        if len != want_len {
            return Err(format!(
                "step {}: queue length {len}, model {want_len} ({:?})",
                self.step, self.m.queue
            ));
        }
        if !self.m.blocked {
            let handled = self.sut.handled();
            if handled != want_handled {
                return Err(format!(
                    "step {}: handled counter {handled:?}, model {want_handled:?}",
                    self.step
                ));
            }
        }
        Ok(())
    }

    /// Stops (bounded) before a free, which would wait without bound.
    fn stop_before_free(&mut self) -> Result<(), String> {
        let got = self.sut.stop_timeout(STOP_BOUND_MS);
        if let Some(got) = self.exists(got, "stop (before free)")? {
            expect(self.step, "stop (before free)", got, &[Res::Ok])?;
            self.m.stop();
        }
        Ok(())
    }

    fn free(&mut self, got: Option<Res>) -> Result<(), String> {
        let got = self.exists(got, "free")?;
        if let Some(got) = got {
            expect(self.step, "free", got, &[Res::Ok])?;
            self.m.stop();
            self.m.listener = None;
            self.m.held.clear();
        }
        Ok(())
    }

    fn new_listener(&mut self) -> Result<(), String> {
        self.stop_before_free()?;
        let old = self.sut.new_listener();
        self.free(old)?;
        self.m.next_listener += 1;
        self.m.listener = Some(ModelListener {
            id: self.m.next_listener,
            run: 0,
            active: false,
            loop_ended: false,
            handled: 0,
        });
        Ok(())
    }

    fn put_ok(&mut self, r: u64) {
        self.m.put_ok.push(r);
        self.m.queue.push_back(Item::Rec(r));
    }

    fn apply(&mut self, op: Op) -> Result<(), String> {
        let step = self.step;
        match op {
            Op::New => self.new_listener()?,
            Op::Free => {
                self.stop_before_free()?;
                let got = self.sut.free_listener();
                self.free(got)?;
            }
            Op::Start => {
                if let Some(got) = self.exists(self.sut.start(), "start")? {
                    let l = self.m.listener.as_mut().expect("listener");
                    let want = if l.active && !l.loop_ended {
                        Res::AlreadyStarted
                    } else {
                        Res::Ok
                    };
                    expect(step, "start", got, &[want])?;
                    if got == Res::Ok {
                        l.run += 1;
                        l.active = true;
                        l.loop_ended = false;
                    }
                }
            }
            Op::Stop => {
                let got = self.sut.stop_timeout(STOP_BOUND_MS);
                if let Some(got) = self.exists(got, "stop")? {
                    expect(step, "stop", got, &[Res::Ok])?;
                    self.m.stop();
                }
            }
            Op::StopTimeout(ms) => {
                // On a listener that is taking records, a short deadline
                // races the thread to its sentinel: whether the loop ends
                // or goes on (the sentinel then skipped) is not determined.
                // The concurrent property and
                // `a_stop_that_timed_out_while_handlers_flush_...` cover it.
                let ms = if self.m.consuming() { ms.max(5000) } else { ms };
                let got = self.sut.stop_timeout(ms);
                if let Some(got) = self.exists(got, "stop_timeout")? {
                    let l = self.m.listener.as_mut().expect("listener");
                    // A short deadline may pass before the thread is done
                    // (its loop has ended; it is flushing the handlers).
                    let allowed: &[Res] = if l.active && ms < 1000 {
                        &[Res::Ok, Res::Timeout]
                    } else {
                        &[Res::Ok]
                    };
                    expect(step, "stop_timeout", got, allowed)?;
                    if got == Res::Ok {
                        self.m.stop();
                    }
                }
            }
            Op::EnqueueSentinel => {
                let got = self.sut.enqueue_sentinel();
                if let Some(got) = self.exists(got, "enqueue_sentinel")? {
                    if self.m.full() {
                        expect(step, "enqueue_sentinel (full)", got, &[Res::Full])?;
                    } else {
                        expect(step, "enqueue_sentinel", got, &[Res::Ok])?;
                        let item = self.m.sentinel_item();
                        self.m.queue.push_back(item);
                    }
                }
            }
            Op::Flush(ms) => {
                if let Some(got) = self.exists(self.sut.flush(ms), "flush")? {
                    let allowed: &[Res] = if !self.m.consuming() {
                        &[Res::NotRunning]
                    } else if ms < 1000 {
                        &[Res::Ok, Res::Timeout]
                    } else {
                        &[Res::Ok]
                    };
                    expect(step, "flush", got, allowed)?;
                    if self.m.consuming() {
                        // Its barrier is served (now, or after a timeout).
                        let owner = self.m.live().expect("listener");
                        self.m.queue.push_back(Item::Marker { owner });
                    }
                }
            }
            Op::Put => {
                let r = self.record();
                if self.m.full() && !self.m.consuming() {
                    // A blocking put would wait forever: nothing takes
                    // records off. Check the bounded form instead.
                    let got = self.sut.put_timeout(r, 2);
                    expect(step, "put (full, nobody consuming)", got, &[Res::Timeout])?;
                } else {
                    expect(step, "put", self.sut.put(r), &[Res::Ok])?;
                    self.put_ok(r);
                }
            }
            Op::PutNowait => {
                let r = self.record();
                let got = self.sut.put_nowait(r);
                if self.m.full() {
                    expect(step, "put_nowait (full)", got, &[Res::Full])?;
                } else {
                    expect(step, "put_nowait", got, &[Res::Ok])?;
                    self.put_ok(r);
                }
            }
            Op::PutTimeout(ms) => {
                let r = self.record();
                let got = self.sut.put_timeout(r, ms);
                if self.m.full() {
                    expect(step, "put_timeout (full)", got, &[Res::Timeout])?;
                } else {
                    expect(step, "put_timeout", got, &[Res::Ok])?;
                    self.put_ok(r);
                }
            }
            Op::GetNowait => {
                let got = self.sut.get_nowait();
                // A barrier of the live listener is held for it; the
                // sentinels and barriers of freed listeners are dropped.
                let live = self.m.live();
                let want = loop {
                    match self.m.queue.pop_front() {
                        Some(Item::Marker { owner }) => {
                            if Some(owner) == live {
                                self.m.held.push_back(Item::Marker { owner });
                            }
                        }
                        Some(Item::Rec(r)) => break Got::Rec(r),
                        Some(Item::Sent { owner, .. }) if Some(owner) == live => {
                            break Got::Sentinel
                        }
                        Some(Item::Sent { .. }) => {}
                        None => break Got::Empty,
                    }
                };
                if got != want {
                    return Err(format!(
                        "step {step}: get_nowait gave {got:?}, model {want:?}"
                    ));
                }
                if let Got::Rec(r) = got {
                    self.m.taken.push(r);
                }
            }
            Op::Blocked { fill, action } => {
                if self.m.consuming() {
                    self.blocked(fill, action)?;
                }
            }
        }
        self.settle()
    }

    fn blocked(&mut self, fill: bool, action: BlockedAction) -> Result<(), String> {
        let step = self.step;
        self.log.set_gate(true);
        let gate = GATE | self.record();
        expect(step, "put (gate record)", self.sut.put(gate), &[Res::Ok])?;
        self.put_ok(gate);
        self.m.settle();
        self.m.blocked = true;
        if !self.log.wait_len(self.m.handled.len(), SETTLE_BOUND) {
            self.log.set_gate(false);
            return Err(format!("step {step}: the gate record was never handled"));
        }
        let result = self.blocked_action(fill, action);
        self.log.set_gate(false);
        self.m.blocked = false;
        result
    }

    fn blocked_action(&mut self, fill: bool, action: BlockedAction) -> Result<(), String> {
        let step = self.step;
        if fill {
            for _ in 0..self.m.capacity {
                let r = self.record();
                expect(
                    step,
                    "put_nowait (filling)",
                    self.sut.put_nowait(r),
                    &[Res::Ok],
                )?;
                self.put_ok(r);
            }
        }
        let l = self.m.listener.as_ref().expect("listener");
        let (id, run) = (l.id, l.run);
        match action {
            BlockedAction::StopTimeout(ms) => {
                let got = self.sut.stop_timeout(ms).expect("listener");
                expect(step, "stop_timeout (handler held)", got, &[Res::Timeout])?;
                if !self.m.full() {
                    // Its sentinel went in; documented: the thread skips it
                    // and goes on, and a later stop puts its own.
                    let stale = run - 1;
                    self.m.queue.push_back(Item::Sent {
                        owner: id,
                        run: stale,
                    });
                }
            }
            BlockedAction::Flush(ms) => {
                let got = self.sut.flush(ms).expect("listener");
                expect(step, "flush (handler held)", got, &[Res::Timeout])?;
                if !self.m.full() {
                    self.m.queue.push_back(Item::Marker { owner: id });
                }
            }
            BlockedAction::PutNowait => {
                let r = self.record();
                let got = self.sut.put_nowait(r);
                if self.m.full() {
                    expect(step, "put_nowait (full, handler held)", got, &[Res::Full])?;
                } else {
                    expect(step, "put_nowait (handler held)", got, &[Res::Ok])?;
                    self.put_ok(r);
                }
            }
            BlockedAction::EnqueueSentinel => {
                let got = self.sut.enqueue_sentinel().expect("listener");
                if self.m.full() {
                    expect(step, "enqueue_sentinel (full)", got, &[Res::Full])?;
                } else {
                    expect(step, "enqueue_sentinel (handler held)", got, &[Res::Ok])?;
                    self.m.queue.push_back(Item::Sent { owner: id, run });
                }
            }
            BlockedAction::Start => {
                let got = self.sut.start().expect("listener");
                expect(step, "start (handler held)", got, &[Res::AlreadyStarted])?;
            }
        }
        Ok(())
    }

    /// Frees the listener, drains the queue and checks that every record
    /// put was handled, taken back or left on the queue, exactly once.
    fn finish(&mut self) -> Result<(), String> {
        self.step += 1;
        self.stop_before_free()?;
        let got = self.sut.free_listener();
        self.free(got)?;
        self.settle()?;
        let mut drained = Vec::new();
        loop {
            match self.sut.get_nowait() {
                Got::Rec(r) => drained.push(Item::Rec(r)),
                Got::Sentinel => drained.push(Item::Sent { owner: 0, run: 0 }),
                Got::Empty => break,
            }
        }
        // Every listener is freed: their sentinels and barriers are dropped.
        let model_left: Vec<Item> = self
            .m
            .queue
            .iter()
            .filter(|i| matches!(i, Item::Rec(_)))
            .copied()
            .collect();
        if drained != model_left {
            return Err(format!(
                "at the end: left on the queue {drained:?}, model {model_left:?}"
            ));
        }
        let left = drained.iter().filter_map(|i| match i {
            Item::Rec(r) => Some(*r),
            _ => None,
        });
        conservation(
            &self.m.put_ok,
            &self.log.seen(),
            left.chain(self.m.taken.iter().copied()),
        )
    }
}

/// handled + left (or taken back) == put-Ok, each record exactly once.
fn conservation(
    put_ok: &[u64],
    handled: &[u64],
    left: impl Iterator<Item = u64>,
) -> Result<(), String> {
    let mut count: HashMap<u64, i64> = put_ok.iter().map(|r| (*r, 1)).collect();
    for r in handled.iter().copied().chain(left) {
        *count.entry(r).or_insert(0) -= 1;
    }
    let wrong: Vec<_> = count.into_iter().filter(|(_, c)| *c != 0).collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "records not accounted for exactly once (record, put-Ok minus seen): {wrong:?}"
        ))
    }
}

fn run_sequential(target: Target, capacity: usize, ops: &[Op]) -> Result<(), String> {
    let log = Arc::new(Log::default());
    let mut run = SeqRun {
        sut: make_sut(target, capacity, log.clone()),
        log,
        m: Model {
            capacity,
            ..Model::default()
        },
        next_record: 0,
        step: 0,
    };
    run.new_listener()?;
    let mut result = Ok(());
    for (step, op) in ops.iter().enumerate() {
        run.step = step;
        result = run.apply(*op);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = run.finish();
    }
    if result.is_err() {
        // The system is in an unknown state: freeing it could hang.
        std::mem::forget(run);
    }
    result
}

fn short_ms() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), Just(5)]
}

fn op() -> impl Strategy<Value = Op> {
    let action = prop_oneof![
        short_ms().prop_map(BlockedAction::StopTimeout),
        short_ms().prop_map(BlockedAction::Flush),
        Just(BlockedAction::PutNowait),
        Just(BlockedAction::EnqueueSentinel),
        Just(BlockedAction::Start),
    ];
    prop_oneof![
        1 => Just(Op::New),
        1 => Just(Op::Free),
        5 => Just(Op::Start),
        3 => Just(Op::Stop),
        2 => prop_oneof![Just(0u64), Just(1), Just(5000)].prop_map(Op::StopTimeout),
        3 => Just(Op::EnqueueSentinel),
        2 => prop_oneof![Just(0u64), Just(5000)].prop_map(Op::Flush),
        6 => Just(Op::Put),
        3 => Just(Op::PutNowait),
        2 => prop_oneof![Just(0u64), Just(2)].prop_map(Op::PutTimeout),
        2 => Just(Op::GetNowait),
        2 => (any::<bool>(), action).prop_map(|(fill, action)| Op::Blocked { fill, action }),
    ]
}

fn capacity() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), Just(1), Just(2), Just(3), Just(6)]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![Just(Target::Engine), Just(Target::Ffi)]
}

proptest! {
    #![proptest_config(config(128))]

    /// One thread, checked step by step against the model.
    #[test]
    fn sequential_operations_follow_the_model(
        target in target(),
        capacity in capacity(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let what = format!("target {target:?}, capacity {capacity}, ops {ops:?}");
        watchdog(what, Duration::from_secs(20), move || {
            run_sequential(target, capacity, &ops)
        })?;
    }
}

// ---------------------------------------------------------------------------
// Concurrent cases: invariants.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum COp {
    New,
    Free,
    Start,
    Stop,
    StopTimeout(u64),
    EnqueueSentinel,
    Flush(u64),
    Put,
    PutNowait,
    PutTimeout(u64),
    /// Sleeps this many tens of microseconds (0: yields).
    Pause(u8),
}

impl COp {
    fn controls(self) -> bool {
        matches!(
            self,
            COp::New
                | COp::Free
                | COp::Start
                | COp::Stop
                | COp::StopTimeout(_)
                | COp::EnqueueSentinel
        )
    }
}

/// What one thread saw.
#[derive(Debug, Default)]
struct Trace {
    /// Records put with Ok, with the tick after the put returned.
    put_ok: Vec<(u64, u64)>,
    refused: Vec<u64>,
    /// Flushes that returned Ok: how many of this thread's puts preceded
    /// them, and the log's length when they returned.
    flushes: Vec<(usize, usize)>,
    /// Controller only: stops that returned Ok on a running listener: the
    /// tick before which every put must be handled, and the log's length
    /// when the stop returned.
    stops: Vec<(u64, usize)>,
}

/// The controller's view of the listener, when it alone controls it.
#[derive(Debug, Default)]
struct ControlView {
    active: bool,
    /// The earliest tick at which a sentinel for the current run may have
    /// been put (enqueue_sentinel, or a stop that timed out).
    cutoff: Option<u64>,
    /// The same for sentinels put while idle (for the next run).
    idle_cutoff: Option<u64>,
    /// A sentinel of a freed listener may be on the queue: runs may then end
    /// early, and the strict checks are off.
    foreign: bool,
    /// This listener put a sentinel that may be on the queue.
    sentinels: bool,
}

fn min_tick(a: Option<u64>, b: u64) -> Option<u64> {
    Some(a.map_or(b, |a| a.min(b)))
}

struct Shared {
    sut: Box<dyn Sut>,
    log: Arc<Log>,
    tick: AtomicU64,
    capacity: usize,
}

impl Shared {
    fn tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::SeqCst)
    }
}

fn run_thread(
    shared: &Shared,
    index: usize,
    ops: &[COp],
    controller: bool,
    barrier: &Barrier,
) -> Result<Trace, String> {
    let mut trace = Trace::default();
    let mut view = ControlView::default();
    let mut seq = 0u64;
    let sut = &*shared.sut;
    barrier.wait();
    for (step, op) in ops.iter().copied().enumerate() {
        let what = format!("thread {index} step {step} {op:?}");
        let check = |got: Option<Res>, allowed: &[Res]| match got {
            Some(got) if !allowed.contains(&got) => Err(format!(
                "{what}: returned {got:?}, expected one of {allowed:?}"
            )),
            _ => Ok(()),
        };
        let strict = controller && !view.foreign;
        match op {
            COp::New | COp::Free => {
                let start = shared.tick();
                let got = if op == COp::New {
                    sut.new_listener()
                } else {
                    sut.free_listener()
                };
                check(got, &[Res::Ok])?;
                if controller {
                    if got.is_some() && view.active && !view.foreign {
                        let cutoff = view.cutoff.map_or(start, |c| c.min(start));
                        trace.stops.push((cutoff, shared.log.len()));
                    }
                    // Sentinels it left behind may end the next one's runs.
                    view = ControlView {
                        foreign: view.foreign || view.sentinels,
                        ..ControlView::default()
                    };
                }
            }
            COp::Start => {
                let got = sut.start();
                if controller {
                    if !view.active {
                        check(got, &[Res::Ok])?;
                    } else if view.cutoff.is_none() && strict {
                        check(got, &[Res::AlreadyStarted])?;
                    }
                    if got == Some(Res::Ok) {
                        view.cutoff = if view.active {
                            None // the last run's unreached sentinels are skipped
                        } else {
                            view.idle_cutoff.take()
                        };
                        view.active = true;
                    }
                }
                check(got, &[Res::Ok, Res::AlreadyStarted])?;
            }
            COp::Stop | COp::StopTimeout(_) => {
                let start = shared.tick();
                let got = match op {
                    COp::StopTimeout(ms) => sut.stop_timeout(ms),
                    _ => sut.stop(),
                };
                match op {
                    COp::StopTimeout(_) => check(got, &[Res::Ok, Res::Timeout])?,
                    _ => check(got, &[Res::Ok])?,
                }
                if controller && got.is_some() {
                    if got == Some(Res::Ok) {
                        if view.active && !view.foreign {
                            let cutoff = view.cutoff.map_or(start, |c| c.min(start));
                            trace.stops.push((cutoff, shared.log.len()));
                        }
                        view.active = false;
                        view.cutoff = None;
                    } else if view.active {
                        view.cutoff = min_tick(view.cutoff, start);
                        view.sentinels = true;
                    } else {
                        return Err(format!("{what}: timed out on an idle listener"));
                    }
                }
            }
            COp::EnqueueSentinel => {
                let start = shared.tick();
                let got = sut.enqueue_sentinel();
                check(got, &[Res::Ok, Res::Full])?;
                if shared.capacity == 0 {
                    check(got, &[Res::Ok])?;
                }
                if controller && got == Some(Res::Ok) {
                    view.sentinels = true;
                    if view.active {
                        view.cutoff = min_tick(view.cutoff, start);
                    } else {
                        view.idle_cutoff = min_tick(view.idle_cutoff, start);
                    }
                }
            }
            COp::Flush(ms) => {
                let puts = trace.put_ok.len();
                let got = sut.flush(ms);
                if controller && !view.active {
                    check(got, &[Res::NotRunning])?;
                } else if controller && view.cutoff.is_none() && strict && ms >= 1000 {
                    check(got, &[Res::Ok])?;
                }
                check(got, &[Res::Ok, Res::Timeout, Res::NotRunning])?;
                if got == Some(Res::Ok) {
                    trace.flushes.push((puts, shared.log.len()));
                }
            }
            COp::Put | COp::PutNowait | COp::PutTimeout(_) => {
                seq += 1;
                let r = ((index as u64 + 1) << 32) | seq;
                let (got, allowed): (Res, &[Res]) = match op {
                    COp::Put if shared.capacity == 0 => (sut.put(r), &[Res::Ok]),
                    // A blocking put on a bounded queue could wait for ever
                    // (no thread may be running): bounded instead.
                    COp::Put => (sut.put_timeout(r, 20), &[Res::Ok, Res::Timeout]),
                    COp::PutNowait => (sut.put_nowait(r), &[Res::Ok, Res::Full]),
                    COp::PutTimeout(ms) => (sut.put_timeout(r, ms), &[Res::Ok, Res::Timeout]),
                    _ => unreachable!(),
                };
                check(Some(got), allowed)?;
                if shared.capacity == 0 {
                    check(Some(got), &[Res::Ok])?;
                }
                if got == Res::Ok {
                    trace.put_ok.push((r, shared.tick()));
                } else {
                    trace.refused.push(r);
                }
            }
            COp::Pause(0) => thread::yield_now(),
            COp::Pause(n) => thread::sleep(Duration::from_micros(10 * u64::from(n))),
        }
    }
    Ok(trace)
}

fn run_concurrent(
    target: Target,
    capacity: usize,
    controller: bool,
    threads: Vec<Vec<COp>>,
) -> Result<(), String> {
    let log = Arc::new(Log::default());
    let shared = Arc::new(Shared {
        sut: make_sut(target, capacity, log.clone()),
        log: log.clone(),
        tick: AtomicU64::new(1),
        capacity,
    });
    shared.sut.new_listener();
    let barrier = Arc::new(Barrier::new(threads.len()));
    let handles: Vec<_> = threads
        .iter()
        .cloned()
        .enumerate()
        .map(|(index, ops)| {
            let (shared, barrier) = (shared.clone(), barrier.clone());
            thread::spawn(move || {
                run_thread(&shared, index, &ops, controller && index == 0, &barrier)
            })
        })
        .collect();
    let mut traces = Vec::new();
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(trace)) => traces.push(trace),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some("a thread panicked".to_string())),
        }
    }
    if let Some(e) = failure {
        std::mem::forget(shared);
        return Err(e);
    }
    // The end: stop and free (every put is over), then drain.
    if let Some(got) = shared.sut.free_listener() {
        if got != Res::Ok {
            std::mem::forget(shared);
            return Err(format!("final free returned {got:?}"));
        }
    }
    let mut left = Vec::new();
    loop {
        match shared.sut.get_nowait() {
            Got::Rec(r) => left.push(r),
            Got::Sentinel => {}
            Got::Empty => break,
        }
    }
    let seen = log.seen();
    check_concurrent(&traces, &seen, &left)
}

fn check_concurrent(traces: &[Trace], seen: &[u64], left: &[u64]) -> Result<(), String> {
    let mut once = HashSet::new();
    for r in seen {
        if !once.insert(*r) {
            return Err(format!("record {r:#x} handled twice"));
        }
    }
    let refused: HashSet<u64> = traces.iter().flat_map(|t| t.refused.clone()).collect();
    if let Some(r) = seen.iter().chain(left).find(|r| refused.contains(r)) {
        return Err(format!("record {r:#x} was refused, yet handled or queued"));
    }
    // Per-producer order, in what was handled and in what is left.
    for (what, list) in [("handled", seen), ("left", left)] {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for r in list {
            let (producer, seq) = (r >> 32, r & 0xffff_ffff);
            if let Some(prev) = last.insert(producer, seq) {
                if prev >= seq {
                    return Err(format!(
                        "{what}: producer {producer} record {seq} after record {prev}"
                    ));
                }
            }
        }
    }
    let put_ok: Vec<u64> = traces
        .iter()
        .flat_map(|t| t.put_ok.iter().map(|(r, _)| *r))
        .collect();
    conservation(&put_ok, seen, left.iter().copied())?;
    // A flush that returned Ok saw its thread's earlier records handled.
    for (index, t) in traces.iter().enumerate() {
        for &(puts, len) in &t.flushes {
            let prefix: HashSet<u64> = seen[..len].iter().copied().collect();
            if let Some((r, _)) = t.put_ok[..puts].iter().find(|(r, _)| !prefix.contains(r)) {
                return Err(format!(
                    "thread {index}: a flush returned Ok before record {r:#x}, put earlier, was handled"
                ));
            }
        }
    }
    // A stop that returned Ok on a running listener saw every record put
    // before it (and before any sentinel of that run) handled.
    for &(cutoff, len) in traces.iter().flat_map(|t| t.stops.iter()) {
        let prefix: HashSet<u64> = seen[..len].iter().copied().collect();
        let missing: Vec<u64> = traces
            .iter()
            .flat_map(|t| t.put_ok.iter())
            .filter(|(r, tick)| *tick < cutoff && !prefix.contains(r))
            .map(|(r, _)| *r)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "a stop returned Ok before records put earlier were handled: {missing:x?}"
            ));
        }
    }
    Ok(())
}

fn control_op() -> impl Strategy<Value = COp> {
    prop_oneof![
        1 => Just(COp::New),
        1 => Just(COp::Free),
        4 => Just(COp::Start),
        3 => Just(COp::Stop),
        2 => prop_oneof![Just(0u64), Just(1), Just(50)].prop_map(COp::StopTimeout),
        2 => Just(COp::EnqueueSentinel),
    ]
}

fn producer_op() -> impl Strategy<Value = COp> {
    prop_oneof![
        6 => Just(COp::Put),
        3 => Just(COp::PutNowait),
        2 => prop_oneof![Just(0u64), Just(2)].prop_map(COp::PutTimeout),
        2 => prop_oneof![Just(0u64), Just(5), Just(5000)].prop_map(COp::Flush),
        3 => (0u8..20).prop_map(COp::Pause),
    ]
}

fn any_op() -> impl Strategy<Value = COp> {
    prop_oneof![2 => control_op(), 3 => producer_op()]
}

fn concurrent_case() -> impl Strategy<Value = (Target, usize, bool, Vec<Vec<COp>>)> {
    (target(), capacity(), any::<bool>(), 2usize..=3).prop_flat_map(
        |(target, capacity, controller, n)| {
            let threads: Vec<BoxedStrategy<Vec<COp>>> = (0..n)
                .map(|i| {
                    if controller && i > 0 {
                        prop::collection::vec(producer_op(), 1..30).boxed()
                    } else {
                        prop::collection::vec(any_op(), 1..30).boxed()
                    }
                })
                .collect();
            (Just(target), Just(capacity), Just(controller), threads)
        },
    )
}

proptest! {
    #![proptest_config(config(64))]

    /// 2–3 threads at once, checked against invariants.
    #[test]
    fn concurrent_operations_keep_the_invariants(
        (target, capacity, controller, threads) in concurrent_case(),
    ) {
        debug_assert!(!controller || threads[1..].iter().flatten().all(|op| !op.controls()));
        let what = format!(
            "target {target:?}, capacity {capacity}, controller {controller}, threads {threads:?}"
        );
        watchdog(what, Duration::from_secs(30), move || {
            run_concurrent(target, capacity, controller, threads)
        })?;
    }
}

// ---------------------------------------------------------------------------
// Reproducers of defects the properties found (see each test).

/// Runs `f` under a watchdog as a plain test.
fn bounded(what: &str, f: impl FnOnce() -> Result<(), String> + Send + 'static) {
    if let Err(e) = watchdog(what.to_string(), Duration::from_secs(30), f) {
        panic!("{e}");
    }
}

/// Gets a listener that a defect left running stopped, if sentinels the
/// count knows of can do it; else leaks it (dropping it would hang).
fn unstick(listener: Listener<u64>) {
    for _ in 0..4 {
        let _ = listener.enqueue_sentinel();
        if listener.stop_timeout(Duration::from_secs(1)).is_ok() {
            return;
        }
    }
    std::mem::forget(listener);
}

fn plain_listener(queue: &Arc<ChannelQueue<u64>>) -> Listener<u64> {
    let q: Arc<dyn Queue<u64>> = queue.clone();
    Listener::new(q, vec![], Hooks::default(), false)
}

/// A sentinel put while the listener is idle is taken back with
/// `get_nowait` (the documented way to drain a queue no listener runs on).
/// The listener still counts it as on its way, so the next stop puts no
/// sentinel and waits for ever (`ql_stop` hangs; here the bounded form
/// times out). Found by `sequential_operations_follow_the_model`; shrunk:
/// `[EnqueueSentinel, GetNowait, Start, Stop]`.
#[test]
fn a_sentinel_taken_back_while_idle_does_not_hang_the_next_stop() {
    bounded("idle sentinel taken back", || {
        let queue = Arc::new(ChannelQueue::new(0).unwrap());
        let listener = plain_listener(&queue);
        listener.enqueue_sentinel().unwrap();
        assert_eq!(queue.get_nowait(), Err(GetError::Sentinel));
        listener.start().unwrap();
        let stopped = listener.stop_timeout(Duration::from_secs(2));
        unstick(listener);
        if stopped != Ok(()) {
            return Err(format!(
                "stop after the sentinel was taken back: {stopped:?}"
            ));
        }
        Ok(())
    });
}

/// A sentinel that a run never reached is stale (the next run skips it).
/// When the program takes it off the queue with `get_nowait` before the
/// next run, the listener still skips "one stale sentinel": the next stop's
/// own sentinel. That run never ends, so the stop hangs. Shrunk:
/// `[Start, EnqueueSentinel, EnqueueSentinel, Stop, GetNowait, Start, Stop]`.
#[test]
fn a_stale_sentinel_taken_back_does_not_make_the_next_run_skip_the_stop() {
    bounded("stale sentinel taken back", || {
        let queue = Arc::new(ChannelQueue::new(0).unwrap());
        let listener = plain_listener(&queue);
        listener.start().unwrap();
        listener.enqueue_sentinel().unwrap();
        while listener.flush(Some(Duration::from_millis(10))) != Err(Error::NotRunning) {}
        // The loop ended on the first sentinel; this one is for the same
        // run, never reached: stale once the run is joined.
        listener.enqueue_sentinel().unwrap();
        listener.stop().unwrap();
        assert_eq!(queue.get_nowait(), Err(GetError::Sentinel));
        listener.start().unwrap();
        let stopped = listener.stop_timeout(Duration::from_secs(2));
        unstick(listener);
        if stopped != Ok(()) {
            return Err(format!(
                "stop after a stale sentinel was taken back: {stopped:?}"
            ));
        }
        Ok(())
    });
}

/// A queue whose `enqueue_sentinel`, called on a thread named "gated",
/// waits at a gate, then refuses (Full) when `refuse` is set, else puts the
/// sentinel; calls on other threads go straight in. It tells when the gated
/// call reached the gate, and how often a waiting stop looked for vanished
/// sentinels (which it does only while it waits).
struct GatedSentinel {
    inner: ChannelQueue<u64>,
    refuse: bool,
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    open: bool,
    at_gate: bool,
    checks: usize,
}

impl GatedSentinel {
    fn new(refuse: bool) -> Self {
        GatedSentinel {
            inner: ChannelQueue::new(0).unwrap(),
            refuse,
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        }
    }
    fn wait_until(&self, what: impl Fn(&GateState) -> bool) {
        let state = self.state.lock().unwrap();
        drop(self.changed.wait_while(state, |s| !what(s)).unwrap());
    }
    fn open(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }
}

impl Queue<u64> for GatedSentinel {
    fn dequeue(&self, block: bool) -> Dequeued<u64> {
        self.inner.dequeue(block)
    }
    fn enqueue_sentinel(&self, listener: u64) -> SentinelPut {
        if thread::current().name() != Some("gated") {
            return self.inner.enqueue_sentinel(listener);
        }
        let mut state = self.state.lock().unwrap();
        state.at_gate = true;
        self.changed.notify_all();
        drop(self.changed.wait_while(state, |s| !s.open).unwrap());
        if self.refuse {
            SentinelPut::Full
        } else {
            self.inner.enqueue_sentinel(listener)
        }
    }
    fn take_vanished_sentinels(&self, listener: u64) -> usize {
        self.state.lock().unwrap().checks += 1;
        self.changed.notify_all();
        self.inner.take_vanished_sentinels(listener)
    }
}

/// `enqueue_sentinel` counts its sentinel before putting it. A stop that
/// starts meanwhile sees the count, puts no sentinel of its own and waits
/// for the thread to end. When the put then fails (a full queue; or a queue
/// error), the count goes back down but the stop is never told: it waits
/// for ever on a queue with room (`ql_stop` hangs; the bounded form times
/// out). Documented as allowed: `ql_enqueue_sentinel` and `ql_stop` "may be
/// called from any thread, concurrently". With the built-in queue the window
/// is a few instructions wide; a vtable queue whose `enqueue_sentinel` takes
/// time widens it.
#[test]
fn a_failed_enqueue_sentinel_does_not_strand_a_concurrent_stop() {
    bounded("enqueue_sentinel refused during a stop", || {
        let queue = Arc::new(GatedSentinel::new(true));
        let q: Arc<dyn Queue<u64>> = queue.clone();
        let listener = Arc::new(Listener::new(q, vec![], Hooks::default(), false));
        listener.start().unwrap();
        let l = listener.clone();
        let refused = thread::Builder::new()
            .name("gated".into())
            .spawn(move || l.enqueue_sentinel())
            .unwrap();
        // The count is up before the put, so once the put is at the gate.
        queue.wait_until(|s| s.at_gate);
        let l = listener.clone();
        let stop = thread::spawn(move || l.stop_timeout(Duration::from_secs(2)));
        // The stop counts on that sentinel and waits: it looks for
        // vanished sentinels only while waiting.
        queue.wait_until(|s| s.checks >= 1);
        queue.open();
        let put = refused.join().unwrap();
        let stopped = stop.join().unwrap();
        if stopped.is_err() {
            let _ = listener.stop_timeout(Duration::from_secs(2));
        }
        if put != Err(Error::Full) || stopped != Ok(()) {
            return Err(format!(
                "enqueue_sentinel {put:?}, then the concurrent stop returned {stopped:?}"
            ));
        }
        Ok(())
    });
}

/// A handler whose `flush` waits at a gate (bounded), counting handled
/// records: C callbacks over this context.
#[derive(Default)]
struct SlowFlush {
    handled: Mutex<Vec<usize>>,
    open: Mutex<bool>,
    changed: Condvar,
}

unsafe extern "C" fn slow_flush_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
    // SAFETY: ctx is the test's `SlowFlush`, alive for the whole test.
    let this = unsafe { &*ctx.cast::<SlowFlush>() };
    this.handled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(record as usize);
    0
}

unsafe extern "C" fn slow_flush_flush(ctx: *mut c_void) {
    // SAFETY: as above.
    let this = unsafe { &*ctx.cast::<SlowFlush>() };
    let open = this.open.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = this
        .changed
        .wait_timeout_while(open, Duration::from_secs(5), |o| !*o);
}

/// `ql_stop_timeout` documents: on `QL_ERR_TIMEOUT` the listener "keeps
/// running and usable: a sentinel this call already queued is skipped ...
/// and a later `ql_stop` puts its own, so every record put before that
/// later stop is handled when it returns" (the README says the same). When
/// the thread has already taken that sentinel and is flushing the handlers
/// as the deadline passes (a slow `flush`: an fsync), the loop has ended
/// instead: a record put after the timed-out stop is then left on the queue
/// by a later `ql_stop` that returns `QL_OK`. (The engine's doc on
/// `Listener::stop_timeout` says so; the C API's and the README's do not.)
#[test]
fn a_stop_that_timed_out_while_handlers_flush_leaves_the_listener_usable() {
    bounded("stop_timeout during a slow flush", || {
        let ctx = Arc::new(SlowFlush::default());
        let mut queue = ptr::null_mut();
        // SAFETY: plain calls of the C API with valid arguments; the handler
        // ctx outlives the listener (the Arc is held to the end).
        unsafe {
            assert_eq!(ql_queue_new(0, &mut queue), QL_OK);
            let handler = ql_handler {
                ctx: Arc::as_ptr(&ctx).cast_mut().cast(),
                level: 0,
                handle: Some(slow_flush_handle),
                flush: Some(slow_flush_flush),
                destroy: None,
                batch_end: None,
            };
            let mut listener = ptr::null_mut();
            let made =
                ql_listener_new_with_queue(queue, &handler, 1, ptr::null(), false, &mut listener);
            assert_eq!(made, QL_OK);
            assert_eq!(ql_start(listener), QL_OK);
            let timed_out = ql_stop_timeout(listener, 100);
            assert_eq!(ql_queue_put(queue, as_ptr(7)), QL_OK);
            *ctx.open.lock().unwrap() = true;
            ctx.changed.notify_all();
            let stopped = ql_stop(listener);
            let handled = ctx.handled.lock().unwrap().clone();
            let mut left = 0usize;
            let mut record = ptr::null_mut();
            while ql_queue_get_nowait(queue, &mut record) == QL_OK {
                left += 1;
            }
            assert_eq!(ql_listener_free(listener), QL_OK);
            ql_queue_free(queue);
            if timed_out != QL_ERR_TIMEOUT || stopped != QL_OK || handled != [7] {
                return Err(format!(
                    "ql_stop_timeout gave {timed_out}, the later ql_stop {stopped}; \
                     records handled {handled:?}, left on the queue {left} (documented: [7], 0)"
                ));
            }
        }
        Ok(())
    });
}

/// Flush barriers were numbered per listener (1, 2, …) but travel on the
/// queue, which listeners share (one after another, or at once); they are
/// now numbered uniquely in the process and addressed to the listener that
/// put them, which is what this regression test guards. The bug: a barrier
/// a listener left behind — its loop ended before reaching it, the flush
/// that put it returned NotRunning or Timeout — is later taken by the next
/// listener on the queue, which then counts its own barrier of the same
/// number as served: its `flush` returns Ok at once, before the records put
/// ahead of it are handled. Found by `concurrent_operations_keep_the_invariants`
/// ("a flush returned Ok before record …, put earlier, was handled").
#[test]
fn a_barrier_left_by_another_listener_does_not_complete_a_flush() {
    bounded("stale flush barrier", || {
        let queue = Arc::new(ChannelQueue::new(0).unwrap());
        let log = Arc::new(Log::default());
        let listener = |log: &Arc<Log>| {
            let q: Arc<dyn Queue<u64>> = queue.clone();
            Listener::new(
                q,
                vec![Box::new(LogHandler(log.clone()))],
                Hooks::default(),
                false,
            )
        };
        // The first listener leaves its barrier 1 behind a sentinel.
        let first = listener(&log);
        first.start().unwrap();
        log.set_gate(true);
        queue.put(GATE | 1).unwrap();
        assert!(log.wait_len(1, SETTLE_BOUND));
        first.enqueue_sentinel().unwrap();
        assert_eq!(
            first.flush(Some(Duration::from_millis(20))),
            Err(Error::Timeout)
        );
        log.set_gate(false);
        first.stop().unwrap();
        drop(first);
        assert_eq!(queue.len(), 1, "barrier 1 is left on the queue");
        // The second listener takes it, then is held inside record 2 while
        // record 3 waits behind it.
        let second = listener(&log);
        second.start().unwrap();
        while !queue.is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        log.set_gate(true);
        queue.put(GATE | 2).unwrap();
        assert!(log.wait_len(2, SETTLE_BOUND));
        queue.put(3).unwrap();
        let flushed = second.flush(Some(Duration::from_millis(200)));
        let seen_then = log.seen();
        log.set_gate(false);
        second.stop().unwrap();
        if flushed == Ok(()) && !seen_then.contains(&3) {
            return Err(format!(
                "flush returned Ok while record 3, put before it, was unhandled (handled: {seen_then:x?})"
            ));
        }
        Ok(())
    });
}

/// A flush that waits for room on a full queue while the listener's loop
/// ends (at a sentinel), and a producer takes the room the loop's last take
/// made: the queue stays full with nobody taking from it. The flush used to
/// wait for room until its deadline (for ever without one); it returns
/// `NotRunning` once the loop has ended. (When the flush's barrier wins the
/// room instead, the result is the same: the loop ended before it.)
#[test]
fn a_flush_waiting_for_room_returns_when_the_loop_ends() {
    bounded("flush waiting for room", || {
        let queue = Arc::new(ChannelQueue::new(1).unwrap());
        let log = Arc::new(Log::default());
        let q: Arc<dyn Queue<u64>> = queue.clone();
        let listener = Arc::new(Listener::new(
            q,
            vec![Box::new(LogHandler(log.clone()))],
            Hooks::default(),
            false,
        ));
        listener.start().unwrap();
        log.set_gate(true);
        queue.put(GATE | 1).unwrap();
        assert!(log.wait_len(1, SETTLE_BOUND));
        // The thread is held inside record 1; the queue holds the sentinel.
        listener.enqueue_sentinel().unwrap();
        let producer = {
            let queue = queue.clone();
            thread::spawn(move || queue.put(2))
        };
        let flusher = {
            let l = listener.clone();
            thread::spawn(move || l.flush(None))
        };
        // Makes it likely both wait for room when the gate opens (the
        // result does not depend on it).
        thread::sleep(Duration::from_millis(20));
        log.set_gate(false);
        let flushed = flusher.join().unwrap();
        // Let the producer in if the barrier took the room (a get holds
        // the barrier for the listener).
        let _ = queue.get_nowait();
        producer.join().unwrap().unwrap();
        listener.stop().unwrap();
        if flushed != Err(Error::NotRunning) {
            return Err(format!("flush returned {flushed:?}, not NotRunning"));
        }
        Ok(())
    });
}

/// An `enqueue_sentinel` whose put is still in progress when `start` joins
/// the previous run (its loop had ended): the sentinel goes in after the
/// join, so it is the new run's, and the new run ends at it. The join used
/// to count it as left over from the old run, so the new run skipped it:
/// the call had no effect, and the miscount could later leave a stop
/// waiting for a sentinel that was gone (found by the concurrent property:
/// a `ql_listener_free` that never returned).
#[test]
fn a_sentinel_put_during_a_restart_is_the_new_runs() {
    bounded("sentinel put during a restart", || {
        let queue = Arc::new(GatedSentinel::new(false));
        let log = Arc::new(Log::default());
        let q: Arc<dyn Queue<u64>> = queue.clone();
        let listener = Arc::new(Listener::new(
            q,
            vec![Box::new(LogHandler(log.clone()))],
            Hooks::default(),
            false,
        ));
        listener.start().unwrap();
        // The first run ends at its sentinel (its handlers' flush tells).
        listener.enqueue_sentinel().unwrap();
        if !log.wait_flushes(1, SETTLE_BOUND) {
            return Err("the first run did not end at its sentinel".into());
        }
        // A second enqueue_sentinel counts its sentinel, then waits.
        let slow = {
            let l = listener.clone();
            thread::Builder::new()
                .name("gated".into())
                .spawn(move || l.enqueue_sentinel())
                .unwrap()
        };
        queue.wait_until(|s| s.at_gate);
        // Joins the first run, then starts the second.
        listener.start().unwrap();
        queue.open();
        slow.join().unwrap().unwrap();
        // The second run ends at that sentinel.
        let ended = log.wait_flushes(2, SETTLE_BOUND);
        let stopped = listener.stop_timeout(Duration::from_secs(5));
        if !ended {
            return Err("the new run skipped the sentinel".into());
        }
        if stopped != Ok(()) {
            return Err(format!("stop returned {stopped:?}"));
        }
        Ok(())
    });
}
