//! The engine through its Rust API: the listener state machine and the
//! monitor loop, with Rust queues, hooks and handlers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{listener_on, listener_with, Log, ToSource, WAIT_BOUND};
use queue_listener::{
    ChannelQueue, Dequeued, Error, Handler, Hooks, Listener, Queue, Source, Stage,
};

#[test]
fn stop_returns_after_every_earlier_record_is_handled() {
    let queue = Arc::new(ChannelQueue::new(0).unwrap());
    let collect = Arc::new(Log::default());
    let listener = listener_on(&queue, vec![Box::new(collect.clone())]);
    listener.start().unwrap();
    for i in 0..10_000 {
        queue.put(i).unwrap();
    }
    listener.stop().unwrap();
    assert_eq!(collect.seen(), (0..10_000).collect::<Vec<_>>());
    assert_eq!(queue.len(), 0, "the sentinel was consumed");
    assert_eq!(listener.stats().handled, 10_000);
}

#[test]
fn stop_when_idle_or_twice_enqueues_nothing() {
    let queue = Arc::new(ChannelQueue::<u32>::new(4).unwrap());
    let listener = listener_on(&queue, vec![]);
    listener.stop().unwrap();
    assert_eq!(queue.len(), 0);
    listener.start().unwrap();
    listener.stop().unwrap();
    listener.stop().unwrap();
    assert_eq!(queue.len(), 0);
}

#[test]
fn start_twice_is_refused() {
    let queue = Arc::new(ChannelQueue::<u32>::new(0).unwrap());
    let listener = listener_on(&queue, vec![]);
    listener.start().unwrap();
    assert_eq!(listener.start(), Err(Error::AlreadyStarted));
    listener.stop().unwrap();
    listener.start().unwrap();
    listener.stop().unwrap();
}

/// A handler that stops its own listener from the listener thread.
struct StopSelf {
    listener: Mutex<Option<Arc<Listener<u32>>>>,
    result: Mutex<Option<Result<(), Error>>>,
}

impl Handler<u32> for StopSelf {
    fn level(&self) -> i32 {
        0
    }
    fn handle(&self, _: &u32) -> Result<(), i32> {
        let listener = self.listener.lock().unwrap().clone().unwrap();
        *self.result.lock().unwrap() = Some(listener.stop());
        Ok(())
    }
}

#[test]
fn stop_from_the_listener_thread_would_deadlock() {
    let queue = Arc::new(ChannelQueue::new(0).unwrap());
    let stopper = Arc::new(StopSelf {
        listener: Mutex::new(None),
        result: Mutex::new(None),
    });
    let listener = Arc::new(listener_on(&queue, vec![Box::new(stopper.clone())]));
    *stopper.listener.lock().unwrap() = Some(listener.clone());
    listener.start().unwrap();
    queue.put(1).unwrap();
    // The stop's sentinel is behind record 1, so the handler ran first.
    listener.stop().unwrap();
    assert_eq!(
        *stopper.result.lock().unwrap(),
        Some(Err(Error::WouldDeadlock))
    );
    assert_eq!(queue.len(), 0, "the refused stop put no sentinel");
    stopper.listener.lock().unwrap().take();
}

/// A handler that drops its own listener (the only handle) at record 2.
struct DropSelf {
    listener: Mutex<Option<Listener<u32>>>,
    collect: Arc<Log<u32>>,
}

impl Handler<u32> for DropSelf {
    fn level(&self) -> i32 {
        0
    }
    fn handle(&self, record: &u32) -> Result<(), i32> {
        self.collect.handle(record)?;
        if *record == 2 {
            drop(self.listener.lock().unwrap().take());
        }
        Ok(())
    }
    fn flush(&self) {
        self.collect.flush();
    }
}

/// Dropped from its own thread, a listener cannot wait for itself: it puts
/// its sentinel, so the thread ends after the records queued before the
/// drop (nothing else could ever stop it), and records put after it stay.
#[test]
fn a_listener_dropped_from_its_own_thread_ends_at_its_sentinel() {
    let queue = Arc::new(ChannelQueue::new(0).unwrap());
    let collect = Arc::new(Log::default());
    let handler = Arc::new(DropSelf {
        listener: Mutex::new(None),
        collect: collect.clone(),
    });
    let listener = listener_on(&queue, vec![Box::new(handler.clone())]);
    for r in 1..=3 {
        queue.put(r).unwrap();
    }
    {
        // Started under the lock: the handler gets it only after this.
        let mut slot = handler.listener.lock().unwrap();
        slot.insert(listener).start().unwrap();
    }
    drop(handler);
    assert!(collect.wait_flushes(1, WAIT_BOUND));
    assert_eq!(collect.seen(), vec![1, 2, 3]);
    queue.put(4).unwrap();
    assert_eq!(queue.len(), 1, "record 4 waits: the thread has ended");
}

#[test]
fn stop_timeout_on_a_full_queue_leaves_the_listener_running() {
    let queue = Arc::new(ChannelQueue::new(2).unwrap());
    let gate = Arc::new(Log::default());
    gate.set_gate(true);
    let listener = listener_on(&queue, vec![Box::new(gate.clone())]);
    listener.start().unwrap();
    queue.put(1).unwrap();
    assert!(gate.wait_len(1, WAIT_BOUND));
    queue.put(2).unwrap();
    queue.put(3).unwrap();
    assert_eq!(
        listener.stop_timeout(Duration::from_millis(30)),
        Err(Error::Timeout)
    );
    assert!(listener.is_running());
    assert_eq!(queue.len(), 2, "no sentinel got in");
    gate.set_gate(false);
    listener.stop().unwrap();
    assert_eq!(listener.stats().handled, 3);
}

#[test]
fn concurrent_stops_all_return_after_one_join() {
    let queue = Arc::new(ChannelQueue::new(0).unwrap());
    let gate = Arc::new(Log::default());
    gate.set_gate(true);
    let listener = Arc::new(listener_on(&queue, vec![Box::new(gate.clone())]));
    listener.start().unwrap();
    queue.put(1).unwrap();
    assert!(gate.wait_len(1, WAIT_BOUND));
    let barrier = Arc::new(Barrier::new(5));
    let stoppers: Vec<_> = (0..4)
        .map(|_| {
            let (l, b) = (listener.clone(), barrier.clone());
            thread::spawn(move || {
                b.wait();
                l.stop()
            })
        })
        .collect();
    barrier.wait();
    gate.set_gate(false);
    for s in stoppers {
        assert_eq!(s.join().unwrap(), Ok(()));
    }
    assert!(!listener.is_running());
    assert_eq!(queue.len(), 0, "exactly one sentinel was put and taken");
}

/// A queue that reports empty when it has nothing, like a non-blocking get.
struct Draining(Mutex<Vec<u32>>, AtomicUsize);

impl Queue<u32> for Draining {
    fn dequeue(&self, _block: bool) -> Dequeued<u32> {
        match self.0.lock().unwrap().pop() {
            Some(r) => Dequeued::Record(r),
            None => Dequeued::Empty,
        }
    }
    fn enqueue_sentinel(&self) -> queue_listener::SentinelPut {
        self.1.fetch_add(1, Ordering::SeqCst);
        queue_listener::SentinelPut::Ok
    }
}

impl ToSource<u32> for Arc<Draining> {
    fn to_source(&self) -> Source<u32> {
        Source::custom(self.clone())
    }
}

#[test]
fn empty_ends_the_loop_and_stop_puts_no_sentinel() {
    let queue = Arc::new(Draining(Mutex::new(vec![3, 2, 1]), AtomicUsize::new(0)));
    let collect = Arc::new(Log::default());
    let listener = listener_on(&queue, vec![Box::new(collect.clone())]);
    listener.start().unwrap();
    // Handlers are flushed once the loop has ended: no sentinel is needed.
    assert!(collect.wait_flushes(1, WAIT_BOUND));
    listener.stop().unwrap();
    assert_eq!(queue.1.load(Ordering::SeqCst), 0);
    // Restart: the queue is empty, the loop ends again, still no sentinel.
    listener.start().unwrap();
    assert!(collect.wait_flushes(2, WAIT_BOUND));
    listener.stop().unwrap();
    assert_eq!(queue.1.load(Ordering::SeqCst), 0);
    assert_eq!(collect.seen(), vec![1, 2, 3]);
}

/// What the hooks of `LevelHooks::hooks` saw.
struct LevelHooks {
    prepared: AtomicUsize,
    released: Mutex<Vec<u32>>,
    errors: Mutex<Vec<(Stage, i32)>>,
}

impl LevelHooks {
    /// Levels are the record values; prepare doubles them into new records.
    fn hooks(this: &Arc<LevelHooks>) -> Hooks<u32> {
        let (prepare, release, on_error) = (this.clone(), this.clone(), this.clone());
        Hooks {
            prepare: Some(Box::new(move |record| {
                prepare.prepared.fetch_add(1, Ordering::SeqCst);
                if *record == 13 {
                    return Err(-13);
                }
                Ok(Some(record * 2))
            })),
            record_level: Some(Box::new(|record| Some(*record as i32))),
            release: Some(Box::new(move |prepared| {
                release.released.lock().unwrap().push(prepared);
            })),
            on_error: Some(Box::new(move |stage, _record, code| {
                on_error.errors.lock().unwrap().push((stage, code));
            })),
            ..Hooks::default()
        }
    }
}

struct Failing;
impl Handler<u32> for Failing {
    fn level(&self) -> i32 {
        0
    }
    fn handle(&self, _: &u32) -> Result<(), i32> {
        Err(7)
    }
}

#[test]
fn prepare_once_levels_and_failures() {
    let queue = Arc::new(ChannelQueue::new(0).unwrap());
    let all = Arc::new(Log::default());
    let high = Arc::new(Log::with_level(40));
    let hooks = Arc::new(LevelHooks {
        prepared: AtomicUsize::new(0),
        released: Mutex::new(vec![]),
        errors: Mutex::new(vec![]),
    });
    let listener = listener_with(
        &queue,
        vec![
            Box::new(Failing),
            Box::new(all.clone()),
            Box::new(high.clone()),
        ],
        LevelHooks::hooks(&hooks),
        true,
    );
    listener.start().unwrap();
    for r in [10, 13, 20, 30] {
        queue.put(r).unwrap();
    }
    listener.stop().unwrap();
    assert_eq!(hooks.prepared.load(Ordering::SeqCst), 4);
    assert_eq!(all.seen(), vec![20, 40, 60]);
    assert_eq!(high.seen(), vec![40, 60]);
    assert_eq!(*hooks.released.lock().unwrap(), vec![20, 40, 60]);
    let errors = hooks.errors.lock().unwrap().clone();
    assert_eq!(
        errors,
        vec![
            (Stage::Handler(0), 7),
            (Stage::Prepare, -13),
            (Stage::Handler(0), 7),
            (Stage::Handler(0), 7)
        ]
    );
    let stats = listener.stats();
    assert_eq!(
        (stats.handled, stats.handler_errors, stats.prepare_errors),
        (3, 3, 1)
    );
}

/// Setting a slot is all it takes for the listener to call it: the
/// dequeue, handle, done and enqueue_sentinel slots each run, in a
/// record's order, and the handlers are left to the handle slot.
#[test]
fn every_slot_set_is_called() {
    #[derive(Default)]
    struct Seen {
        steps: Mutex<Vec<(&'static str, u32)>>,
        sentinels: AtomicUsize,
        errors: Mutex<Vec<(Stage, Option<u32>, i32)>>,
    }
    let seen = Arc::new(Seen::default());
    let (s1, s2, s3, s4, s5) = (
        seen.clone(),
        seen.clone(),
        seen.clone(),
        seen.clone(),
        seen.clone(),
    );
    let hooks = Hooks {
        dequeue: Some(Box::new(move |queue, block| {
            let dequeued = queue.dequeue(block);
            if let Dequeued::Record(r) = dequeued {
                s1.steps.lock().unwrap().push(("dequeue", r));
            }
            dequeued
        })),
        handle: Some(Box::new(move |r: &u32| {
            s2.steps.lock().unwrap().push(("handle", *r));
            if *r == 2 {
                Err(-2)
            } else {
                Ok(())
            }
        })),
        enqueue_sentinel: Some(Box::new(move |queue| {
            s3.sentinels.fetch_add(1, Ordering::SeqCst);
            queue.enqueue_sentinel()
        })),
        done: Some(Box::new(move |r| {
            s4.steps.lock().unwrap().push(("done", r));
        })),
        on_error: Some(Box::new(move |stage, r, code| {
            s5.errors.lock().unwrap().push((stage, r.copied(), code));
        })),
        ..Hooks::default()
    };
    let queue = Arc::new(ChannelQueue::new(0).unwrap());
    let collect = Arc::new(Log::default());
    let listener = listener_with(&queue, vec![Box::new(collect.clone())], hooks, false);
    listener.start().unwrap();
    for r in [1, 2] {
        queue.put(r).unwrap();
    }
    listener.stop().unwrap();
    assert_eq!(
        *seen.steps.lock().unwrap(),
        vec![
            ("dequeue", 1),
            ("handle", 1),
            ("done", 1),
            ("dequeue", 2),
            ("handle", 2),
            ("done", 2)
        ]
    );
    assert_eq!(seen.sentinels.load(Ordering::SeqCst), 1);
    assert_eq!(
        *seen.errors.lock().unwrap(),
        vec![(Stage::Handle, Some(2), -2)]
    );
    // The handle slot replaced the dispatch.
    assert!(collect.seen().is_empty());
    let stats = listener.stats();
    assert_eq!((stats.handled, stats.handler_errors), (2, 1));
}

#[test]
fn put_from_the_listener_thread_on_a_full_queue_is_refused() {
    struct PutBack(Arc<ChannelQueue<u32>>, Mutex<Vec<bool>>);
    impl Handler<u32> for PutBack {
        fn level(&self) -> i32 {
            0
        }
        fn handle(&self, r: &u32) -> Result<(), i32> {
            if *r == 0 {
                // Fill the queue, then one more: must not block.
                let mut refused = false;
                for i in 1..=3 {
                    refused |= self.0.put(i).is_err();
                }
                self.1.lock().unwrap().push(refused);
            }
            Ok(())
        }
    }
    let queue = Arc::new(ChannelQueue::new(2).unwrap());
    let h = Arc::new(PutBack(queue.clone(), Mutex::new(vec![])));
    let listener = listener_on(&queue, vec![Box::new(h.clone())]);
    listener.start().unwrap();
    queue.put(0).unwrap();
    listener.stop().unwrap();
    assert_eq!(*h.1.lock().unwrap(), vec![true]);
}

/// A handler that counts its `close` calls.
#[derive(Default)]
struct Closing(AtomicUsize);

impl Handler<u32> for Closing {
    fn level(&self) -> i32 {
        0
    }
    fn handle(&self, _record: &u32) -> Result<(), i32> {
        Ok(())
    }
    fn close(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Dropping a listener ends it as `close` (and `ql_listener_free`) does:
/// stopped, then every handler closed, once.
#[test]
fn drop_closes_the_handlers_after_the_stop() {
    let queue = Arc::new(ChannelQueue::new(0).unwrap());
    let closing = Arc::new(Closing::default());
    let listener = listener_on(&queue, vec![Box::new(closing.clone())]);
    listener.start().unwrap();
    queue.put(1).unwrap();
    drop(listener);
    assert_eq!(closing.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        queue.len(),
        0,
        "the record and the stop's sentinel were taken"
    );
}

/// A queue that counts its `task_done` calls.
struct CountingDone(Mutex<Vec<u32>>, AtomicUsize);

impl Queue<u32> for CountingDone {
    fn dequeue(&self, _block: bool) -> Dequeued<u32> {
        match self.0.lock().unwrap().pop() {
            Some(r) => Dequeued::Record(r),
            None => Dequeued::Empty,
        }
    }
    fn enqueue_sentinel(&self) -> queue_listener::SentinelPut {
        queue_listener::SentinelPut::Ok
    }
    fn task_done(&self, _record: Option<&u32>) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

/// `Source::custom` acknowledges every record; `custom_without_task_done`
/// (a queue whose `task_done` does nothing) never calls it.
#[test]
fn task_done_is_called_unless_the_source_says_it_does_nothing() {
    for (acknowledged, expect) in [(true, 3), (false, 0)] {
        let queue = Arc::new(CountingDone(Mutex::new(vec![3, 2, 1]), AtomicUsize::new(0)));
        let source = if acknowledged {
            Source::custom(queue.clone())
        } else {
            Source::custom_without_task_done(queue.clone())
        };
        let collect = Arc::new(Log::default());
        let listener = Listener::new(
            source,
            vec![Box::new(collect.clone())],
            Hooks::default(),
            false,
        );
        listener.start().unwrap();
        assert!(collect.wait_flushes(1, WAIT_BOUND));
        listener.stop().unwrap();
        assert_eq!(collect.seen(), vec![1, 2, 3]);
        assert_eq!(
            queue.1.load(Ordering::SeqCst),
            expect,
            "acknowledged: {acknowledged}"
        );
    }
}
