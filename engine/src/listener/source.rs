//! Where a listener takes its records from: the built-in queue or a
//! program's queue, as crossbeam-channel has its flavors.
//!
//! A program's queue speaks Python's protocol ([`Queue`]: `dequeue`,
//! `enqueue_sentinel`, `task_done`) and nothing more. The built-in queue
//! gives the listener more: sentinels and flush barriers addressed to it
//! (so several listeners can share the queue), the ends of batches, and
//! counters. [`Attached`] is one listener's view of its source, the only
//! place that tells the two apart.

use std::sync::Arc;
use std::time::Instant;

use crate::protocol::{Dequeued, Error, Queue, QueueStats, SentinelPut};
use crate::queue::ChannelQueue;

/// The queue a listener is made on.
pub enum Source<R> {
    /// The built-in queue.
    BuiltIn(Arc<ChannelQueue<R>>),
    /// A queue of the program's, through Python's protocol.
    Custom {
        /// The queue.
        queue: Arc<dyn Queue<R>>,
        /// False when its `task_done` does nothing: the listener then never
        /// calls it (a call through `dyn` per record saved).
        task_done: bool,
    },
}

impl<R> Source<R> {
    /// A program's queue.
    pub fn custom(queue: Arc<impl Queue<R> + 'static>) -> Self {
        Source::Custom {
            queue,
            task_done: true,
        }
    }

    /// A program's queue whose `task_done` does nothing, so that the
    /// listener need not call it.
    pub fn custom_without_task_done(queue: Arc<impl Queue<R> + 'static>) -> Self {
        Source::Custom {
            queue,
            task_done: false,
        }
    }
}

impl<R> From<Arc<ChannelQueue<R>>> for Source<R> {
    fn from(queue: Arc<ChannelQueue<R>>) -> Self {
        Source::BuiltIn(queue)
    }
}

impl<R> Clone for Source<R> {
    fn clone(&self) -> Self {
        match self {
            Source::BuiltIn(q) => Source::BuiltIn(Arc::clone(q)),
            Source::Custom { queue, task_done } => Source::Custom {
                queue: Arc::clone(queue),
                task_done: *task_done,
            },
        }
    }
}

/// One listener's view of its source: Python's protocol for its hooks
/// (with the built-in queue, its sentinels are addressed to this listener),
/// and the built-in queue's extras for the listener itself (nothing, or
/// [`Error::Unsupported`], on a program's queue).
pub(crate) struct Attached<R> {
    pub(crate) source: Source<R>,
    /// The listener's id: the address of its sentinels and barriers.
    pub(crate) listener: u64,
}

impl<R: Send> Queue<R> for Attached<R> {
    fn dequeue(&self, block: bool) -> Dequeued<R> {
        self.dequeue_idle(block, &mut || {}, None)
    }

    fn enqueue_sentinel(&self) -> SentinelPut {
        match &self.source {
            Source::BuiltIn(q) => q.enqueue_sentinel_for(self.listener),
            Source::Custom { queue, .. } => queue.enqueue_sentinel(),
        }
    }

    fn task_done(&self, record: Option<&R>) {
        if let Source::Custom {
            queue,
            task_done: true,
        } = &self.source
        {
            queue.task_done(record);
        }
    }
}

impl<R> Attached<R> {
    /// [`Queue::dequeue`], calling `idle` when the built-in queue finds
    /// itself empty and is about to wait: the end of a batch. A program's
    /// queue never calls it.
    #[inline]
    pub(crate) fn dequeue_idle(
        &self,
        block: bool,
        idle: &mut dyn FnMut(),
        gate: Option<&crate::crash::Gate>,
    ) -> Dequeued<R> {
        match &self.source {
            Source::BuiltIn(q) => q.dequeue_gated(block, idle, gate),
            Source::Custom { queue, .. } => queue.dequeue(block),
        }
    }

    /// The crash flush's take: `None` for a program's queue (never
    /// drained from a signal handler), else as
    /// [`crate::ChannelQueue::crash_drain`].
    pub(crate) fn crash_drain(
        &self,
        give_up: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&R),
    ) -> Option<u64> {
        match &self.source {
            Source::BuiltIn(q) => q.crash_drain(give_up, visit),
            Source::Custom { .. } => None,
        }
    }

    /// True when the crash flush can drain the queue (the built-in one,
    /// with lanes).
    pub(crate) fn crash_drainable(&self) -> bool {
        matches!(&self.source, Source::BuiltIn(q) if q.has_lanes())
    }

    /// True when [`Attached::dequeue_idle`] reports the ends of batches.
    pub(crate) fn reports_batches(&self) -> bool {
        matches!(self.source, Source::BuiltIn(_))
    }

    /// Puts flush barrier `id` behind every queued record, waiting for room
    /// until `deadline`. A program's queue cannot carry one.
    pub(crate) fn enqueue_barrier(&self, id: u64, deadline: Option<Instant>) -> Result<(), Error> {
        match &self.source {
            Source::BuiltIn(q) => q.enqueue_barrier(self.listener, id, deadline),
            Source::Custom { .. } => Err(Error::Unsupported),
        }
    }

    /// Sentinels of this listener that a program's get took off the
    /// built-in queue since the last call.
    pub(crate) fn take_vanished_sentinels(&self) -> usize {
        match &self.source {
            Source::BuiltIn(q) => q.take_vanished_sentinels(self.listener),
            Source::Custom { .. } => 0,
        }
    }

    /// The queue's counters; zeros for a program's queue.
    pub(crate) fn stats(&self) -> QueueStats {
        match &self.source {
            Source::BuiltIn(q) => q.stats(),
            Source::Custom { .. } => QueueStats::default(),
        }
    }
}

impl<R> Drop for Attached<R> {
    /// The listener is gone: the built-in queue drops what is still
    /// addressed to it. (An inherited listener is never dropped.)
    fn drop(&mut self) {
        if let Source::BuiltIn(q) = &self.source {
            q.forget_listener(self.listener);
        }
    }
}
