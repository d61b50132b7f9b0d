//! Regression tests: plain reproducers of defects the properties of
//! `tests/model.rs` found (or that were found beside them), each saying
//! what it guards. Each runs under a watchdog (`common::bounded`, 30 s), so
//! a defect that hangs fails its test instead of stalling the suite.

mod common;

use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use common::{
    bounded, gate_bit, listener_on, listener_with, logging_listener, Log, GATE, SETTLE_BOUND,
};
use queue_listener::ffi::handlers::ql_handler;
use queue_listener::ffi::listener::{
    ql_listener_free, ql_listener_new_with_queue, ql_start, ql_stop, ql_stop_timeout,
};
use queue_listener::ffi::queue::{ql_queue_free, ql_queue_get_nowait, ql_queue_new, ql_queue_put};
use queue_listener::ffi::{QL_ERR_TIMEOUT, QL_OK};
use queue_listener::queue::GetError;
use queue_listener::{ChannelQueue, Error, Hooks, Listener, Queue, SentinelPut};

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
    listener_on(queue, vec![])
}

fn as_ptr(record: u64) -> *mut c_void {
    record as usize as *mut c_void
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

/// A gate for the `enqueue_sentinel` hook: a call on a thread named
/// "gated" waits at the gate, then puts the sentinel on the listener's
/// queue; calls on other threads go straight in. It tells when the gated
/// call reached the gate.
#[derive(Default)]
struct SentinelGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    open: bool,
    at_gate: bool,
}

impl SentinelGate {
    /// Hooks whose `enqueue_sentinel` goes through this gate.
    fn hooks(self: &Arc<Self>) -> Hooks<u64> {
        let gate = Arc::clone(self);
        Hooks {
            enqueue_sentinel: Some(Box::new(move |queue: &dyn Queue<u64>| gate.put(queue))),
            ..Hooks::default()
        }
    }
    fn put(&self, queue: &dyn Queue<u64>) -> SentinelPut {
        if thread::current().name() == Some("gated") {
            let mut state = self.state.lock().unwrap();
            state.at_gate = true;
            self.changed.notify_all();
            drop(self.changed.wait_while(state, |s| !s.open).unwrap());
        }
        queue.enqueue_sentinel()
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

// `a_failed_enqueue_sentinel_does_not_strand_a_concurrent_stop` lives in
// `engine/src/listener/regressions.rs`: it must see the stop waiting, which only
// the listener's own state shows.

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
                    "ql_stop_timeout gave {timed_out:?}, the later ql_stop {stopped:?}; \
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
        let log = Arc::new(Log::gating(gate_bit));
        let listener = |log: &Arc<Log<u64>>| logging_listener(&queue, log);
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
        let log = Arc::new(Log::gating(gate_bit));
        let listener = Arc::new(logging_listener(&queue, &log));
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
        let queue = Arc::new(ChannelQueue::new(0).unwrap());
        let gate = Arc::new(SentinelGate::default());
        let log = Arc::new(Log::gating(gate_bit));
        let listener = Arc::new(listener_with(
            &queue,
            vec![Box::new(log.clone())],
            gate.hooks(),
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
        gate.wait_until(|s| s.at_gate);
        // Joins the first run, then starts the second.
        listener.start().unwrap();
        gate.open();
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
