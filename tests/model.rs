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
//! regression file is written: a defect found here gets a plain test in
//! `tests/regressions.rs`.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

use common::{checked, gate_bit, logging_listener, Log, GATE, SETTLE_BOUND};
use queue_listener::ffi::handlers::ql_handler;
use queue_listener::ffi::listener::{
    ql_enqueue_sentinel, ql_listener, ql_listener_flush, ql_listener_free,
    ql_listener_new_with_queue, ql_listener_stats, ql_start, ql_stats, ql_stop, ql_stop_timeout,
};
use queue_listener::ffi::queue::{
    ql_queue, ql_queue_free, ql_queue_get_nowait, ql_queue_len, ql_queue_new, ql_queue_put,
    ql_queue_put_nowait, ql_queue_put_timeout,
};
use queue_listener::ffi::{
    ql_status, QL_ERR_ALREADY_STARTED, QL_ERR_EMPTY, QL_ERR_FULL, QL_ERR_NOT_RUNNING, QL_ERR_QUEUE,
    QL_ERR_SENTINEL, QL_ERR_TIMEOUT, QL_ERR_WOULD_DEADLOCK, QL_OK,
};
use queue_listener::queue::{GetError, PutError};
use queue_listener::{ChannelQueue, Error, Listener};

// ---------------------------------------------------------------------------
// The handler's log (`common::Log`, gating the records with the `GATE`
// bit), shared by both targets.

/// Sequential cases stop with this deadline (the same code path as an
/// unbounded stop), so a stop that would hang fails its step at once and
/// shrinking stays fast. Concurrent cases use the unbounded forms.
const STOP_BOUND_MS: u64 = 1500;

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

fn res_of_status(s: ql_status) -> Res {
    match s {
        QL_OK => Res::Ok,
        QL_ERR_ALREADY_STARTED => Res::AlreadyStarted,
        QL_ERR_WOULD_DEADLOCK => Res::WouldDeadlock,
        QL_ERR_FULL => Res::Full,
        QL_ERR_TIMEOUT => Res::Timeout,
        QL_ERR_NOT_RUNNING => Res::NotRunning,
        QL_ERR_QUEUE => Res::Queue,
        other => Res::Other(other.raw()),
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

/// The engine, used directly.
struct EngineSut {
    queue: Arc<ChannelQueue<u64>>,
    log: Arc<Log<u64>>,
    listener: RwLock<Option<Listener<u64>>>,
}

impl EngineSut {
    fn new(capacity: usize, log: Arc<Log<u64>>) -> Self {
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
        *slot = Some(logging_listener(&self.queue, &self.log));
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
    log: Arc<Log<u64>>,
    listener: RwLock<Option<ListenerPtr>>,
}

unsafe extern "C" fn c_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
    // SAFETY: ctx is the `Arc<Log<u64>>` given in `c_handler`, alive until destroy.
    let log = unsafe { &*ctx.cast::<Log<u64>>() };
    log.log(record as usize as u64);
    0
}

unsafe extern "C" fn c_flush(ctx: *mut c_void) {
    // SAFETY: as in `c_handle`.
    unsafe { &*ctx.cast::<Log<u64>>() }.log_flush();
}

unsafe extern "C" fn c_destroy(ctx: *mut c_void) {
    // SAFETY: made by `Arc::into_raw` in `c_handler`; destroy runs once.
    drop(unsafe { Arc::from_raw(ctx.cast::<Log<u64>>().cast_const()) });
}

fn c_handler(log: &Arc<Log<u64>>) -> ql_handler {
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
    fn new(capacity: usize, log: Arc<Log<u64>>) -> Self {
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
            other => Got::Rec(u64::MAX - other.raw() as u64),
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

fn make_sut(target: Target, capacity: usize, log: Arc<Log<u64>>) -> Box<dyn Sut> {
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
    checked("model-case", &what, bound, case).map_err(TestCaseError::fail)
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
    log: Arc<Log<u64>>,
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
    let log = Arc::new(Log::gating(gate_bit));
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
    log: Arc<Log<u64>>,
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
    let log = Arc::new(Log::gating(gate_bit));
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
