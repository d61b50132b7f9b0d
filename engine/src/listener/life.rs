//! A record's life, start to end, on the listener thread (Python's
//! `QueueListener._monitor` and `handle`):
//!
//! ```text
//! dequeue (or the dequeue slot) ─▶ prepare, once (the prepare slot)
//!   ─▶ dispatch to each handler whose level it passes (or the handle slot)
//!   ─▶ release (a record prepare made) ─▶ task_done ─▶ done (the done slot)
//! ```
//!
//! Around it: a batch ends when the built-in queue is found empty (every
//! handler's `batch_end`); a flush barrier flushes every handler; the
//! sentinel ends the loop when [`super::sentinels`] says it is the one a
//! stop waits for. Starting, stopping and the sentinels' accounting are
//! in [`super::control`].

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread;
use std::time::Duration;

use super::control::Phase;
use super::sentinels::Taken;
use super::{Counters, Shared, Stage};
use crate::protocol::{Dequeued, Queue};
use crate::threads;

/// Marks the thread as done when the monitor returns or unwinds, so a stop
/// never waits for a thread that is gone.
pub(super) struct ThreadEnd<'a, R> {
    pub(super) shared: &'a Shared<R>,
}

impl<R> Drop for ThreadEnd<'_, R> {
    fn drop(&mut self) {
        // Holding no record any more: a crash flush may take over.
        self.shared.gate.leave();
        let mut ctl = self.shared.lock();
        ctl.thread = ctl.thread.at_thread_end(thread::panicking());
        self.shared.changed.notify_all();
    }
}

/// The listener thread: Python's `QueueListener._monitor`.
pub(super) fn monitor<R: Send + 'static>(shared: Arc<Shared<R>>) {
    threads::become_listener_thread(shared.id);
    // A handler writing to a closed pipe or past RLIMIT_FSIZE gets EPIPE /
    // EFBIG, and the process lives on.
    crate::output::sys::block_write_signals_for_thread();
    crate::crash::block_async_signals_for_thread();
    shared.gate.enter();
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
        // Between two records the thread holds none: a crash flush that
        // waits may take over here (the thread then waits in `enter`).
        shared.gate.pass();
        let dequeued = if let Some(dequeue) = dequeue_hook {
            dequeue(&shared.queue, true)
        } else {
            shared
                .queue
                .dequeue_idle(true, &mut batch_end, Some(&shared.gate))
        };
        match dequeued {
            Dequeued::Record(record) => {
                in_batch.set(true);
                backoff = Duration::from_millis(1);
                shared.process(&record, plain);
                shared.queue.task_done(Some(&record));
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
                shared.queue.task_done(None);
                if taken == Taken::End {
                    break;
                }
            }
            Dequeued::Empty => break,
            Dequeued::Barrier(id) => {
                shared.flush_handlers();
                let mut ctl = shared.lock();
                // Serves this listener's own barrier only.
                ctl.barriers.retain(|&b| b != id);
                shared.changed.notify_all();
            }
            Dequeued::Error => {
                Counters::bump(&shared.counters.dequeue_errors);
                shared.hooks.error(Stage::Dequeue, None, 0);
                // Back off so a broken queue does not spin; a stop ends the
                // loop, since the sentinel may never come through.
                let ctl = shared.lock();
                shared.gate.leave();
                let (ctl, _) = shared
                    .changed
                    .wait_timeout_while(ctl, backoff, |c| !c.stopping())
                    .unwrap_or_else(PoisonError::into_inner);
                shared.gate.enter();
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
    /// Python's `QueueListener.handle`: prepare once, then dispatch (or
    /// the `handle` slot), then release what `prepare` made. `plain`:
    /// neither the `prepare` nor the `handle` slot is set (read once,
    /// before the loop).
    #[inline]
    fn process(&self, record: &R, plain: bool) {
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
        let level = self.level_of(record);
        for (index, handler) in self.handlers.iter().enumerate() {
            if !passes(level, handler.level()) {
                continue;
            }
            Counters::bump(&self.handler_counters[index].received);
            if let Err(code) = handler.handle(record) {
                self.handler_failed(index, record, code);
            }
        }
    }

    /// The record's level when handlers filter by it (`None`: every
    /// handler gets it).
    #[inline]
    fn level_of(&self, record: &R) -> Option<i32> {
        if self.respect_handler_level {
            self.hooks
                .record_level
                .as_ref()
                .and_then(|level| level(record))
        } else {
            None
        }
    }

    #[cold]
    fn handler_failed(&self, index: usize, record: &R, code: i32) {
        Counters::bump(&self.counters.handler_errors);
        Counters::bump(&self.handler_counters[index].errors);
        self.hooks.error(Stage::Handler(index), Some(record), code);
    }
}

/// True when a record at `level` (`None`: unknown, or not filtering) goes
/// to a handler at level `wanted` (0 takes every record).
#[inline]
fn passes(level: Option<i32>, wanted: i32) -> bool {
    level.is_none_or(|level| wanted == 0 || level >= wanted)
}

/// The crash flush of one listener, in a fatal signal's handler
/// ([`crate::crash`]): as the loop would go on, minus what cannot run
/// there. Waits (within the bound) for the thread to leave the record it
/// handles, unless the signal came on that thread (a handler crashed: the
/// record in hand went to the handlers before the crashing one). Then each
/// handler writes what it holds, and the queued records go, in order, to
/// each handler whose level they pass, without `prepare`: built-in sinks
/// write them, the other handlers skip them.
impl<R: Send + 'static> crate::crash::Flushable for Shared<R> {
    fn listener_id(&self) -> u64 {
        self.id
    }

    fn crash_flush(
        &self,
        scratch: &mut crate::crash::Scratch,
        claim_until: &dyn Fn() -> bool,
        give_up: &dyn Fn() -> bool,
    ) -> crate::crash::Flushed {
        use crate::crash::Flushed;
        // The listener's thread gets no signal but its own faults and
        // aborts (crash::block_async_signals_for_thread): here, a handler
        // (or the library on that thread) crashed.
        let own = threads::current_listener() == self.id;
        if !own && !self.gate.claim(claim_until) {
            return Flushed::Busy;
        }
        let mut writable = false;
        for handler in &self.handlers {
            writable |= handler.crash_begin(give_up);
        }
        if !writable {
            // Nothing could write what the queue holds: leave it there.
            return Flushed::Done;
        }
        let drained = self.queue.crash_drain(give_up, &mut |record| {
            let level = self.level_of(record);
            for handler in &self.handlers {
                if passes(level, handler.level()) {
                    handler.crash_handle(record, scratch, give_up);
                }
            }
        });
        match drained {
            Some(_) => Flushed::Done,
            None => Flushed::QueueBusy,
        }
    }

    fn crash_resume(&self) {
        self.gate.release();
    }
}

impl<R> Shared<R> {
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
