//! Regressions that must look at the listener's own state: the rest are
//! in `tests/regressions.rs`.

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Error, Hooks, Listener, Queue, Run, SentinelPut};
use crate::queue::ChannelQueue;

/// An `enqueue_sentinel` hook that, on a thread named "gated", waits at a
/// gate, then refuses the sentinel (Full).
#[derive(Default)]
struct RefusingGate {
    /// (at the gate, open)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl RefusingGate {
    fn put(&self, queue: &dyn Queue<u64>) -> SentinelPut {
        if thread::current().name() != Some("gated") {
            return queue.enqueue_sentinel();
        }
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        drop(self.changed.wait_while(state, |s| !s.1).unwrap());
        SentinelPut::Full
    }
}

/// `enqueue_sentinel` counts its sentinel before putting it. A stop that
/// starts meanwhile sees the count, puts no sentinel of its own and waits
/// for the thread to end. When the put then fails (a full queue; or a queue
/// error), the count goes back down but the stop was never told: it waited
/// for ever on a queue with room (`ql_stop` hung; the bounded form timed
/// out). Documented as allowed: `ql_enqueue_sentinel` and `ql_stop` "may be
/// called from any thread, concurrently". With the built-in queue the window
/// is a few instructions wide; a hook or a program's queue whose
/// `enqueue_sentinel` takes time widens it.
#[test]
fn a_failed_enqueue_sentinel_does_not_strand_a_concurrent_stop() {
    let gate = Arc::new(RefusingGate::default());
    let hooks = {
        let gate = Arc::clone(&gate);
        Hooks {
            enqueue_sentinel: Some(Box::new(move |queue: &dyn Queue<u64>| gate.put(queue))),
            ..Hooks::default()
        }
    };
    let queue = Arc::new(ChannelQueue::<u64>::new(0).unwrap());
    let listener = Arc::new(Listener::new(queue, vec![], hooks, false));
    listener.start().unwrap();
    let l = Arc::clone(&listener);
    let refused = thread::Builder::new()
        .name("gated".into())
        .spawn(move || l.enqueue_sentinel())
        .unwrap();
    // The count is up before the put, so once the put is at the gate.
    drop(
        gate.changed
            .wait_while(gate.state.lock().unwrap(), |s| !s.0)
            .unwrap(),
    );
    let l = Arc::clone(&listener);
    let stop = thread::spawn(move || l.stop_timeout(Duration::from_secs(5)));
    // The stop took the run over, saw the sentinel on its way and waits
    // for it: it decides that under the same lock it took the run with.
    let bound = Instant::now() + Duration::from_secs(5);
    while !matches!(listener.shared.lock().run, Run::Stopping) {
        assert!(Instant::now() < bound, "the stop never started");
        thread::yield_now();
    }
    gate.state.lock().unwrap().1 = true;
    gate.changed.notify_all();
    assert_eq!(refused.join().unwrap(), Err(Error::Full));
    let stopped = stop.join().unwrap();
    if stopped.is_err() && listener.stop_timeout(Duration::from_secs(2)).is_err() {
        // Still stranded: dropping it would wait for ever.
        std::mem::forget(listener);
    }
    assert_eq!(stopped, Ok(()), "the stop must put its own sentinel");
}
