//! The listener's control machinery: starting and stopping its thread,
//! timeouts, flush barriers, and the state they share under one lock
//! ([`Control`]: who holds the join handle, how far the run got, and the
//! sentinels' accounting of [`super::sentinels`]). A record's own path is
//! in [`super::life`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::life::monitor;
use super::sentinels::Sentinels;
use super::Shared;
use crate::protocol::{Error, SentinelPut};
use crate::threads;

/// How often a waiting stop checks that the sentinel it counts on is still
/// on its way.
const SENTINEL_CHECK: Duration = Duration::from_millis(50);

/// Flush barrier ids, unique in the process.
static NEXT_BARRIER: AtomicU64 = AtomicU64::new(1);

/// Who holds the listener thread's join handle.
pub(super) enum Run {
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
pub(super) enum Phase {
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
    pub(super) fn loop_ended(self) -> bool {
        self != Phase::Looping
    }

    /// The thread has done all its work; a join returns at once.
    pub(super) fn thread_ended(self) -> bool {
        matches!(self, Phase::ThreadEnded { .. })
    }

    /// The phase once the thread returns or unwinds (`panicked`) from
    /// this one. A loop that never ended (a panic in it) ended by no error.
    pub(super) fn at_thread_end(self, panicked: bool) -> Phase {
        let by_error = self == Phase::LoopEnded { by_error: true };
        Phase::ThreadEnded { by_error, panicked }
    }
}

pub(super) struct Control {
    pub(super) run: Run,
    pub(super) thread: Phase,
    /// Sentinels on their way, being put, or stale; and whether the loop
    /// must run again after a join. Every change is one of its methods.
    pub(super) sentinels: Sentinels,
    /// Flush barriers this listener put and has not taken yet.
    pub(super) barriers: Vec<u64>,
}

impl Control {
    /// A stop is under way (it holds the join handle).
    pub(super) fn stopping(&self) -> bool {
        matches!(self.run, Run::Stopping)
    }
}

impl<R: Send + 'static> Shared<R> {
    /// Resets the per-run state and spawns a listener thread for a new run.
    pub(super) fn spawn_run(self: &Arc<Self>, ctl: &mut Control) -> Result<JoinHandle<()>, Error> {
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
            let put = self.hooks.enqueue_sentinel_on(&self.queue);
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

    pub(super) fn stop_until(self: &Arc<Self>, deadline: Option<Instant>) -> Result<(), Error> {
        let shared = &**self;
        if threads::current_listener() == self.id {
            return Err(Error::WouldDeadlock);
        }
        if self.generation != threads::fork_generation_checked() {
            // Inherited across fork: its thread does not exist here.
            return Ok(());
        }
        // From a handler of another listener: refused if this listener's
        // thread waits (along a chain) for that one.
        let _waiting = threads::wait_for_listener(self.id).map_err(|_| Error::WouldDeadlock)?;
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

impl<R> Shared<R> {
    /// Sentinels the program took off the queue itself (its own get) no
    /// longer count ([`Sentinels::vanished`]).
    pub(super) fn absorb_vanished(&self, ctl: &mut Control) {
        let vanished = self.queue.take_vanished_sentinels();
        if vanished > 0 {
            ctl.sentinels.vanished(vanished);
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a change of the control state; `None` once the deadline passed.
    pub(super) fn wait<'a>(
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
    pub(super) fn wait_for<'a>(
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

impl<R> Shared<R> {
    /// [`super::Listener::flush`], before the losses are added.
    pub(super) fn flush_until(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let shared = self;
        if threads::current_listener() == self.id {
            return Err(Error::WouldDeadlock);
        }
        if !self.barriers {
            return Err(Error::Unsupported);
        }
        if self.generation != threads::fork_generation_checked() {
            return Err(Error::Forked);
        }
        let _waiting = threads::wait_for_listener(self.id).map_err(|_| Error::WouldDeadlock)?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        {
            let ctl = shared.lock();
            if matches!(ctl.run, Run::Idle) || ctl.thread.loop_ended() {
                return Err(Error::NotRunning);
            }
        }
        // Unique among all listeners: on a queue several listeners share,
        // a barrier another listener takes never completes this flush.
        let id = NEXT_BARRIER.fetch_add(1, Ordering::Relaxed);
        shared.lock().barriers.push(id);
        let forget = |ctl: &mut Control| ctl.barriers.retain(|&b| b != id);
        // On a full queue, wait for room in slices, looking between them
        // that the listener still takes records: if its loop ended
        // meanwhile, the queue may never make room.
        loop {
            let slice = Instant::now() + SENTINEL_CHECK;
            let until = deadline.map_or(slice, |d| d.min(slice));
            match shared.queue.enqueue_barrier(id, Some(until)) {
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
        while ctl.barriers.contains(&id) {
            if ctl.thread.loop_ended() {
                // The loop ended before reaching the barrier.
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

    /// `Ok` becomes [`Error::Lost`] when the handlers counted records lost
    /// since the previous stop or flush returned. Other results keep the
    /// losses for the next call to report.
    pub(super) fn with_losses(&self, result: Result<(), Error>) -> Result<(), Error> {
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
