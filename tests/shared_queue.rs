//! Several listeners on one built-in queue.
//!
//! Each sentinel and flush barrier is addressed to the listener that put
//! it. Another listener's thread that takes it holds it for its listener
//! (and wakes that listener's thread); a program's get returns a live
//! listener's sentinel (its stop then puts another) and holds a barrier for
//! its listener; what a freed listener left behind is dropped when taken.
//! Every test runs under a watchdog, so a hang fails it instead of stalling
//! the suite.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{logging_listener as listener, watchdog, Log, WAIT_BOUND};
use queue_listener::queue::GetError;
use queue_listener::ChannelQueue;

const BOUND: Duration = Duration::from_secs(60);

/// A sentinel put with `enqueue_sentinel` while its listener is idle is
/// taken by another listener running on the queue. It used to end that
/// listener's run instead, and the first listener's next stop, counting on
/// a sentinel that was gone, waited for ever.
#[test]
fn a_sentinel_another_listener_takes_still_reaches_its_own() {
    watchdog("sentinel taken by another listener", BOUND, || {
        let queue = Arc::new(ChannelQueue::new(0).unwrap());
        let (seen1, seen2) = (Arc::new(Log::default()), Arc::new(Log::default()));
        let first = listener(&queue, &seen1);
        let second = listener(&queue, &seen2);
        first.enqueue_sentinel().unwrap();
        second.start().unwrap();
        queue.put(1).unwrap();
        // The barrier is behind the sentinel and record 1: once it is
        // served, the second listener has taken all three.
        second.flush(None).unwrap();
        assert!(second.is_running(), "the other's sentinel ended its run");
        assert_eq!(seen2.seen(), vec![1]);
        assert_eq!(queue.len(), 0);
        second.stop().unwrap();
        // The first listener's run meets its sentinel first and ends;
        // record 2, put behind it, waits for the next run.
        queue.put(2).unwrap();
        first.start().unwrap();
        assert_eq!(first.stop_timeout(Duration::from_secs(20)), Ok(()));
        assert_eq!(seen1.seen(), Vec::<u64>::new());
        first.start().unwrap();
        first.stop().unwrap();
        assert_eq!(seen1.seen(), vec![2]);
    });
}

/// A freed listener's sentinel, left on the queue, is dropped when taken:
/// a program's get does not see it, and it is not counted against the next
/// listener's stop. It used to be counted as the next listener's vanished
/// sentinel, so that listener's stop returned Ok before a record put ahead
/// of its sentinel was handled.
#[test]
fn a_freed_listeners_sentinel_is_dropped_and_charged_to_nobody() {
    watchdog("freed listener's sentinel", BOUND, || {
        let queue = Arc::new(ChannelQueue::new(0).unwrap());
        let seen = Arc::new(Log::default());
        let first = listener(&queue, &seen);
        first.enqueue_sentinel().unwrap();
        drop(first);
        assert_eq!(queue.len(), 1, "the sentinel stays on the queue");
        assert_eq!(queue.get_nowait(), Err(GetError::Empty));
        assert_eq!(queue.len(), 0);

        let second = listener(&queue, &seen);
        second.start().unwrap();
        seen.set_gate(true);
        queue.put(1).unwrap();
        assert!(seen.wait_len(1, WAIT_BOUND));
        // Its sentinel goes in behind record 1, and is skipped when reached.
        assert!(second.stop_timeout(Duration::from_millis(5)).is_err());
        seen.set_gate(false);
        queue.put(2).unwrap();
        second.stop().unwrap();
        assert_eq!(seen.seen(), vec![1, 2], "record 2 was put before the stop");
    });
}

/// A program's get that takes a running listener's flush barrier holds it
/// for the listener: the flush still completes. It used to be passed over
/// and lost, and a flush without a deadline waited for ever.
#[test]
fn a_barrier_a_get_takes_still_completes_its_flush() {
    watchdog("barrier taken by a get", BOUND, || {
        let queue = Arc::new(ChannelQueue::new(0).unwrap());
        let seen = Arc::new(Log::default());
        let l = Arc::new(listener(&queue, &seen));
        l.start().unwrap();
        seen.set_gate(true);
        queue.put(1).unwrap();
        assert!(seen.wait_len(1, WAIT_BOUND));
        let flusher = {
            let l = l.clone();
            thread::spawn(move || l.flush(None))
        };
        // The barrier is the only item on the queue once it is in.
        while queue.is_empty() {
            thread::yield_now();
        }
        assert_eq!(queue.get_nowait(), Err(GetError::Empty));
        seen.set_gate(false);
        assert_eq!(flusher.join().unwrap(), Ok(()));
        assert_eq!(seen.flushes(), 1);
        l.stop().unwrap();
    });
}

/// Two listeners run on one queue while four producers put; both are then
/// stopped, at the same time, or one after the other, many times over.
/// Every stop returns (the sentinel one listener's thread takes for the
/// other is held and that thread woken, even asleep), and every record is
/// handled exactly once by one of the two.
#[test]
fn listeners_sharing_a_queue_stop_each_other_never() {
    watchdog("two listeners, one queue", BOUND, || {
        for capacity in [0, 8] {
            let queue = Arc::new(ChannelQueue::new(capacity).unwrap());
            let (seen1, seen2) = (Arc::new(Log::default()), Arc::new(Log::default()));
            let first = Arc::new(listener(&queue, &seen1));
            let second = Arc::new(listener(&queue, &seen2));
            let mut next = 0u64;
            for round in 0..300 {
                first.start().unwrap();
                second.start().unwrap();
                let producers: Vec<_> = (0..4)
                    .map(|p| {
                        let queue = queue.clone();
                        let base = next + p * 10;
                        thread::spawn(move || {
                            for r in base..base + 10 {
                                queue.put(r).unwrap();
                            }
                        })
                    })
                    .collect();
                next += 40;
                for p in producers {
                    p.join().unwrap();
                }
                if round % 3 == 0 {
                    // Together.
                    let start = Arc::new(Barrier::new(2));
                    let stops: Vec<_> = [first.clone(), second.clone()]
                        .into_iter()
                        .map(|l| {
                            let start = start.clone();
                            thread::spawn(move || {
                                start.wait();
                                l.stop()
                            })
                        })
                        .collect();
                    for s in stops {
                        assert_eq!(s.join().unwrap(), Ok(()), "round {round}");
                    }
                } else {
                    // One after the other: the other's thread is running,
                    // and may be asleep on the empty queue, or take the
                    // sentinel.
                    let (a, b) = if round % 3 == 1 {
                        (&first, &second)
                    } else {
                        (&second, &first)
                    };
                    assert_eq!(a.stop(), Ok(()), "round {round}");
                    assert!(b.is_running());
                    assert_eq!(b.stop(), Ok(()), "round {round}");
                }
                assert_eq!(queue.len(), 0, "round {round}: nothing is left");
            }
            let mut all = seen1.seen();
            all.extend(seen2.seen());
            let unique: HashSet<u64> = all.iter().copied().collect();
            assert_eq!(all.len(), next as usize, "capacity {capacity}");
            assert_eq!(unique.len(), all.len(), "each record once");
        }
    });
}

/// A stop of one listener while the other listener's thread sleeps on the
/// empty queue: whichever thread the sentinel wakes, the stop returns.
#[test]
fn a_sentinel_taken_by_a_sleeping_neighbour_wakes_its_listener() {
    watchdog("sleeping neighbour", BOUND, || {
        let queue = Arc::new(ChannelQueue::<u64>::new(0).unwrap());
        let seen = Arc::new(Log::default());
        for _ in 0..200 {
            let first = listener(&queue, &seen);
            let second = listener(&queue, &seen);
            first.start().unwrap();
            second.start().unwrap();
            // Both threads have served their barriers and gone on to an
            // empty queue (they sleep after a short spin).
            first.flush(None).unwrap();
            second.flush(None).unwrap();
            assert_eq!(first.stop_timeout(Duration::from_secs(10)), Ok(()));
            assert!(second.is_running());
            assert_eq!(second.stop_timeout(Duration::from_secs(10)), Ok(()));
        }
    });
}
