//! The listener's sentinel accounting: how many of the sentinels addressed
//! to it are on their way, still being put, or left over from a run that
//! ended before reaching them. Every change to those counts is a method
//! here, named for the event that causes it; the caller holds the control
//! lock around each call.

/// What the listener thread does with a sentinel it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    /// The sentinel is the current run's: the loop ends.
    End,
    /// A stale sentinel (left by an earlier run, or by a stop that timed
    /// out): acknowledged and skipped; the loop goes on.
    Skip,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sentinels {
    /// Sentinels put (or being put) for the current or next run, not yet
    /// taken by a listener thread. Counted before the put, so the thread can
    /// never take a sentinel the count does not know of yet.
    pending: usize,
    /// Of `pending`, those whose put has not returned yet. A join leaves
    /// them pending: a put that completes after the join is for the next
    /// run.
    inflight: usize,
    /// Sentinels addressed to a run whose thread was joined before it took
    /// them (its loop ended on an empty queue or a queue error), or put by
    /// a stop that timed out before the thread reached them. The thread
    /// acknowledges and skips this many, so they cannot end a run early.
    stale: usize,
    /// A stop timed out while the loop was already ending: the next stop
    /// that joins the thread runs the loop again for the records put since.
    resume_after_join: bool,
}

impl Sentinels {
    /// True when no sentinel is on its way: a stop must put its own.
    pub(super) fn none_pending(&self) -> bool {
        self.pending == 0
    }

    /// A put is about to start. Counted first: the thread may take the
    /// sentinel as soon as it is in.
    pub(super) fn put_started(&mut self) {
        self.pending += 1;
        self.inflight += 1;
    }

    /// The put returned; `ok` when the sentinel is on the queue. A failed
    /// put no longer counts (a stop counting on it must put its own).
    pub(super) fn put_returned(&mut self, ok: bool) {
        self.inflight -= 1;
        if !ok {
            self.pending = self.pending.saturating_sub(1);
        }
    }

    /// The listener thread took a sentinel addressed to it (after
    /// [`Sentinels::vanished`] for what the program took itself). Stale
    /// ones are skipped first: they are older than the pending ones.
    pub(super) fn taken(&mut self) -> Taken {
        if self.stale > 0 {
            self.stale -= 1;
            Taken::Skip
        } else {
            self.pending = self.pending.saturating_sub(1);
            Taken::End
        }
    }

    /// The program took `n` sentinels addressed to this listener off the
    /// queue itself (its own get). A get takes the oldest first, and stale
    /// sentinels are older than the pending ones, so stale ones go first.
    pub(super) fn vanished(&mut self, n: usize) {
        let from_stale = n.min(self.stale);
        self.stale -= from_stale;
        self.pending = self.pending.saturating_sub(n - from_stale);
    }

    /// A stop's deadline passed. `ours`: the stop put the sentinel the
    /// thread would end at; `loop_done`: the thread's loop has already
    /// ended. A sentinel of ours the thread has not reached becomes stale
    /// (skipped when reached: the listener stays usable). If the loop has
    /// already ended, the next stop that joins runs it again.
    pub(super) fn stop_timed_out(&mut self, ours: bool, loop_done: bool) {
        if ours && !loop_done && self.pending > 0 {
            self.pending -= 1;
            self.stale += 1;
        }
        if loop_done {
            self.resume_after_join = true;
        }
    }

    /// A run's thread is joined (or about to be, having done all its work).
    /// Sentinels it never took can only end a later run early, so the next
    /// run skips them; those still being put stay pending (they go in after
    /// the join, so they are the next run's). Returns whether a timed-out
    /// stop asked for the loop to run again ([`Sentinels::stop_timed_out`]),
    /// and forgets that request.
    pub(super) fn run_joined(&mut self) -> bool {
        let settled = self.pending.saturating_sub(self.inflight);
        self.stale += settled;
        self.pending -= settled;
        std::mem::replace(&mut self.resume_after_join, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event, with the decision it must give where it gives one.
    #[derive(Debug, Clone, Copy)]
    enum Ev {
        /// `put_started`.
        Put,
        /// `put_returned(true)`.
        PutOk,
        /// `put_returned(false)`.
        PutFailed,
        /// `taken`, expecting the decision.
        Take(Taken),
        /// `vanished(n)`.
        Vanished(usize),
        /// `stop_timed_out(ours, loop_done)`.
        TimedOut { ours: bool, loop_done: bool },
        /// `run_joined`, expecting whether the loop must run again.
        Joined { resume: bool },
        /// `none_pending`, expecting its answer.
        NonePending(bool),
    }
    use Ev::*;

    const END: Ev = Take(Taken::End);
    const SKIP: Ev = Take(Taken::Skip);

    /// (name, events, expected (pending, inflight, stale) after them).
    type Row = (&'static str, &'static [Ev], (usize, usize, usize));

    const ROWS: &[Row] = &[
        ("nothing happened", &[NonePending(true)], (0, 0, 0)),
        (
            "a stop puts its sentinel and the thread ends at it",
            &[Put, NonePending(false), PutOk, END, NonePending(true)],
            (0, 0, 0),
        ),
        (
            "a put in flight already counts",
            &[Put, NonePending(false)],
            (1, 1, 0),
        ),
        (
            "a failed put no longer counts",
            &[Put, PutFailed, NonePending(true)],
            (0, 0, 0),
        ),
        (
            "two sentinels end two runs",
            &[Put, PutOk, Put, PutOk, END, NonePending(false), END],
            (0, 0, 0),
        ),
        (
            "a run that ended on an empty queue leaves its sentinel stale",
            &[
                Put,
                PutOk,
                Joined { resume: false },
                NonePending(true),
                Put,
                PutOk,
                SKIP,
                END,
            ],
            (0, 0, 0),
        ),
        (
            "a stop that timed out before the thread reached its sentinel",
            &[
                Put,
                PutOk,
                TimedOut {
                    ours: true,
                    loop_done: false,
                },
                NonePending(true),
                Put,
                PutOk,
                SKIP,
                END,
                Joined { resume: false },
            ],
            (0, 0, 0),
        ),
        (
            "a timed-out stop that counted on another's sentinel leaves it pending",
            &[
                Put,
                PutOk,
                TimedOut {
                    ours: false,
                    loop_done: false,
                },
                NonePending(false),
                END,
            ],
            (0, 0, 0),
        ),
        (
            "a timed-out stop whose sentinel vanished makes nothing stale",
            &[
                Put,
                PutOk,
                Vanished(1),
                TimedOut {
                    ours: true,
                    loop_done: false,
                },
            ],
            (0, 0, 0),
        ),
        (
            "more vanished than counted saturates",
            &[Put, PutOk, Vanished(3), NonePending(true)],
            (0, 0, 0),
        ),
        (
            "a vanished sentinel is a stale one first",
            &[
                Put,
                PutOk,
                Joined { resume: false },
                Put,
                PutOk,
                Vanished(1),
                END,
            ],
            (0, 0, 0),
        ),
        (
            "a sentinel the count does not know of ends the run",
            &[Put, PutOk, Put, PutOk, Vanished(1), END, END],
            (0, 0, 0),
        ),
        // tests/regressions.rs:
        // a_sentinel_taken_back_while_idle_does_not_hang_the_next_stop
        // ([EnqueueSentinel, GetNowait, Start, Stop]): the stop must see
        // that no sentinel is on its way.
        (
            "regression: a sentinel taken back while idle",
            &[Put, PutOk, Vanished(1), NonePending(true), Put, PutOk, END],
            (0, 0, 0),
        ),
        // a_stale_sentinel_taken_back_does_not_make_the_next_run_skip_the_stop
        // ([Start, EnqueueSentinel, EnqueueSentinel, Stop, GetNowait, Start,
        // Stop]): the taken-back sentinel was the stale one, so the next
        // stop's own ends the run.
        (
            "regression: a stale sentinel taken back",
            &[
                Put,
                PutOk,
                Put,
                PutOk,
                NonePending(false),
                END,
                Joined { resume: false },
                Put,
                PutOk,
                Vanished(1),
                END,
            ],
            (0, 0, 0),
        ),
        // a_failed_enqueue_sentinel_does_not_strand_a_concurrent_stop: the
        // stop saw the put in flight and put none; when it fails, the stop
        // must put its own.
        (
            "regression: a failed enqueue_sentinel under a concurrent stop",
            &[
                Put,
                NonePending(false),
                PutFailed,
                NonePending(true),
                Put,
                PutOk,
                END,
            ],
            (0, 0, 0),
        ),
        // a_stop_that_timed_out_while_handlers_flush_leaves_the_listener_usable:
        // the thread took the stop's sentinel and is flushing when the
        // deadline passes; the next stop runs the loop again, to its own
        // sentinel.
        (
            "regression: a stop that timed out while handlers flush",
            &[
                Put,
                PutOk,
                END,
                TimedOut {
                    ours: true,
                    loop_done: true,
                },
                Joined { resume: true },
                NonePending(true),
                Put,
                PutOk,
                END,
                Joined { resume: false },
            ],
            (0, 0, 0),
        ),
        // a_sentinel_put_during_a_restart_is_the_new_runs: a put in flight
        // when start joins the old run is the new run's and ends it.
        (
            "regression: a sentinel put during a restart",
            &[
                Put,
                Joined { resume: false },
                NonePending(false),
                PutOk,
                END,
            ],
            (0, 0, 0),
        ),
        (
            "a join settles the puts that returned, not those in flight",
            &[Put, PutOk, Put, Joined { resume: false }],
            (1, 1, 1),
        ),
    ];

    #[test]
    fn sentinel_accounting_follows_the_table() {
        for &(name, events, (pending, inflight, stale)) in ROWS {
            let mut s = Sentinels::default();
            for (step, &ev) in events.iter().enumerate() {
                let at = format!("{name}: event {step} ({ev:?}) in {s:?}");
                match ev {
                    Put => s.put_started(),
                    PutOk => s.put_returned(true),
                    PutFailed => s.put_returned(false),
                    Take(want) => assert_eq!(s.taken(), want, "{at}"),
                    Vanished(n) => s.vanished(n),
                    TimedOut { ours, loop_done } => s.stop_timed_out(ours, loop_done),
                    Joined { resume } => assert_eq!(s.run_joined(), resume, "{at}"),
                    NonePending(want) => assert_eq!(s.none_pending(), want, "{at}"),
                }
            }
            assert_eq!(
                (s.pending, s.inflight, s.stale),
                (pending, inflight, stale),
                "{name}: counts at the end ({s:?})"
            );
            assert!(!s.resume_after_join, "{name}: a resume left asked for");
        }
    }
}
