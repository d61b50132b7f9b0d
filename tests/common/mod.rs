//! Helpers shared by the integration tests (`mod common;` in each test
//! file, cargo's convention: this directory is not a test of its own).
//!
//! * Bounded runs: [`run_bounded`] runs a body on its own thread and waits
//!   for it at most a bound; [`watchdog`] and [`checked`] turn a hang into a
//!   test failure (the hung thread is left behind).
//! * [`Log`]: a handler that logs every record it handles and its flushes,
//!   with a gate that can hold it inside a record (a latch the test opens).
//! * Listener builders: [`listener_with`], [`listener_on`],
//!   [`logging_listener`].
//! * [`lock`]: a mutex lock that ignores poisoning (a failed test must not
//!   turn every later lock into a second panic).

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::any::Any;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use queue_listener::{ChannelQueue, Handler, Hooks, Listener, Source};

/// Locks `m`, ignoring poisoning.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Bounded runs.

/// How a bounded run ended.
pub enum Run<T> {
    /// The body returned this (its thread has been joined).
    Done(T),
    /// The body panicked with this payload (its thread has been joined).
    Panicked(Box<dyn Any + Send>),
    /// The body was still running at the bound; its thread is left behind.
    Hung,
}

/// Runs `body` on a thread named `name` and waits at most `bound` for it.
/// Nothing the run made is kept once it returns `Done` or `Panicked` (the
/// fuzzer counts heap bytes around it).
pub fn run_bounded<T: Send + 'static>(
    name: &str,
    bound: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> Run<T> {
    let (tx, rx) = mpsc::channel();
    let runner = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let out = body();
            let _ = tx.send(out);
        })
        .expect("spawn");
    match rx.recv_timeout(bound) {
        Ok(out) => {
            let _ = runner.join();
            Run::Done(out)
        }
        // The body panicked: the sender went with its stack.
        Err(mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(panic) => Run::Panicked(panic),
            Ok(()) => unreachable!("the body returned without sending"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => Run::Hung,
    }
}

/// A panic's message, when it has one.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `body` under a watchdog: fails the test if it has not returned
/// within `bound` (the thread is then left behind); a panic of the body
/// fails the test with its own message.
pub fn watchdog(what: &str, bound: Duration, body: impl FnOnce() + Send + 'static) {
    match run_bounded("watchdog", bound, body) {
        Run::Done(()) => {}
        Run::Panicked(panic) => std::panic::resume_unwind(panic),
        Run::Hung => panic!("{what}: still running after {bound:?}"),
    }
}

/// Runs `case` under a watchdog on a thread named `name`: its error, its
/// panic or a hang as one message naming the case (`what`).
pub fn checked(
    name: &str,
    what: &str,
    bound: Duration,
    case: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    match run_bounded(name, bound, case) {
        Run::Done(Ok(())) => Ok(()),
        Run::Done(Err(message)) => Err(format!("{message}\ncase: {what}")),
        Run::Panicked(panic) => Err(format!(
            "panicked: {}\ncase: {what}",
            panic_message(&*panic)
        )),
        Run::Hung => Err(format!(
            "HANG: the case did not finish within {bound:?}\ncase: {what}"
        )),
    }
}

/// Runs `case` under a watchdog (30 s) as a plain test: panics with its
/// error, its panic's message, or a hang.
pub fn bounded(what: &str, case: impl FnOnce() -> Result<(), String> + Send + 'static) {
    if let Err(e) = checked("bounded", what, Duration::from_secs(30), case) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// A log of handled records, with a gate.

/// The most a record waits at a closed gate, so a failing test cannot leave
/// a thread stuck for ever.
pub const GATE_BOUND: Duration = Duration::from_secs(20);
/// How long a test waits for the listener to reach a state it must reach
/// soon (a record handled, a flush, a loop ended).
pub const SETTLE_BOUND: Duration = Duration::from_millis(1500);
/// The most a test waits for what must happen (a record handled, a loop
/// ended): only a defect reaches it.
pub const WAIT_BOUND: Duration = Duration::from_secs(20);
/// Records (u64) with this bit wait at the gate of a [`Log::gating`]
/// [`gate_bit`] log.
pub const GATE: u64 = 1 << 62;

/// Whether `record` has the [`GATE`] bit.
pub fn gate_bit(record: &u64) -> bool {
    record & GATE != 0
}

struct LogState<R> {
    seen: Vec<R>,
    /// Calls of the handler's `flush`: at each flush barrier, and when a
    /// loop has ended.
    flushes: u64,
    gate_closed: bool,
}

/// A handler that logs every record it handles, in order, and counts its
/// flushes. While its gate is closed, a record it gates waits inside
/// `handle` after being logged (at most [`GATE_BOUND`]), so a test can hold
/// the listener's thread inside a record: [`Log::wait_len`] tells when it
/// is there. Also usable behind C callbacks: no method panics.
pub struct Log<R> {
    state: Mutex<LogState<R>>,
    changed: Condvar,
    level: i32,
    gated: fn(&R) -> bool,
}

impl<R> Default for Log<R> {
    fn default() -> Self {
        Log::gating(|_| true)
    }
}

impl<R> Log<R> {
    /// A log at level 0 whose closed gate holds only the records `gated`
    /// picks (the default log: every record).
    pub fn gating(gated: fn(&R) -> bool) -> Self {
        Log {
            state: Mutex::new(LogState {
                seen: Vec::new(),
                flushes: 0,
                gate_closed: false,
            }),
            changed: Condvar::new(),
            level: 0,
            gated,
        }
    }

    /// A log with this handler level.
    pub fn with_level(level: i32) -> Self {
        Log {
            level,
            ..Log::default()
        }
    }

    fn state(&self) -> MutexGuard<'_, LogState<R>> {
        lock(&self.state)
    }

    /// Logs `record`, then waits at the gate if it is closed and gates it.
    pub fn log(&self, record: R) {
        let gated = (self.gated)(&record);
        let mut s = self.state();
        s.seen.push(record);
        self.changed.notify_all();
        if gated {
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

    /// Counts a flush.
    pub fn log_flush(&self) {
        self.state().flushes += 1;
        self.changed.notify_all();
    }

    pub fn flushes(&self) -> u64 {
        self.state().flushes
    }

    /// Closes (true) or opens (false) the gate.
    pub fn set_gate(&self, closed: bool) {
        self.state().gate_closed = closed;
        self.changed.notify_all();
    }

    /// How many records were logged.
    pub fn len(&self) -> usize {
        self.state().seen.len()
    }

    /// The records logged, in order.
    pub fn seen(&self) -> Vec<R>
    where
        R: Clone,
    {
        self.state().seen.clone()
    }

    /// Waits until the handler was flushed `n` times; false after `bound`.
    pub fn wait_flushes(&self, n: u64, bound: Duration) -> bool {
        let s = self.state();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, bound, |s| s.flushes < n)
            .unwrap_or_else(PoisonError::into_inner);
        s.flushes >= n
    }

    /// Waits until `n` records were logged (the `n`th one is held at a
    /// closed gate it gates); false after `bound`.
    pub fn wait_len(&self, n: usize, bound: Duration) -> bool {
        let s = self.state();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, bound, |s| s.seen.len() < n)
            .unwrap_or_else(PoisonError::into_inner);
        s.seen.len() >= n
    }
}

impl<R: Clone + Send> Handler<R> for Log<R> {
    fn level(&self) -> i32 {
        self.level
    }
    fn handle(&self, record: &R) -> Result<(), i32> {
        self.log(record.clone());
        Ok(())
    }
    fn flush(&self) {
        self.log_flush();
    }
}

// ---------------------------------------------------------------------------
// Listener builders.

/// A queue a test makes a listener on: the built-in queue, or a test's own
/// queue (which implements this trait as `Source::custom`).
pub trait ToSource<R> {
    fn to_source(&self) -> Source<R>;
}

impl<R> ToSource<R> for Arc<ChannelQueue<R>> {
    fn to_source(&self) -> Source<R> {
        Source::BuiltIn(self.clone())
    }
}

/// A listener on `queue` (any queue type) with these handlers and hooks.
pub fn listener_with<R: Send + 'static>(
    queue: &impl ToSource<R>,
    handlers: Vec<Box<dyn Handler<R>>>,
    hooks: Hooks<R>,
    respect_handler_level: bool,
) -> Listener<R> {
    Listener::new(queue.to_source(), handlers, hooks, respect_handler_level)
}

/// A listener on `queue` with these handlers, Python's default hooks, not
/// respecting handler levels.
pub fn listener_on<R: Send + 'static>(
    queue: &impl ToSource<R>,
    handlers: Vec<Box<dyn Handler<R>>>,
) -> Listener<R> {
    listener_with(queue, handlers, Hooks::default(), false)
}

/// A listener on `queue` whose one handler is `log`.
pub fn logging_listener<R: Clone + Send + Sync + 'static>(
    queue: &impl ToSource<R>,
    log: &Arc<Log<R>>,
) -> Listener<R> {
    listener_on(queue, vec![Box::new(log.clone())])
}
