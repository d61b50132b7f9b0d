//! The overridable steps of a listener: one optional slot per step a
//! Python subclass of `QueueListener` could override, mirroring C's
//! `ql_hooks` slot for slot.

use crate::protocol::{Dequeued, Queue, SentinelPut};

/// Where a failure happened, as told to [`Hooks::on_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `dequeue` returned [`Dequeued::Error`].
    Dequeue,
    /// `prepare` failed; no handler saw the record.
    Prepare,
    /// The `handle` override failed.
    Handle,
    /// The handler at this index failed.
    Handler(usize),
}

/// The `dequeue` slot of [`Hooks`]: takes the next record from `queue`
/// (which it may ask, as Python's `super().dequeue` would), same contract
/// as [`Queue::dequeue`].
pub type DequeueHook<R> = Box<dyn Fn(&dyn Queue<R>, bool) -> Dequeued<R> + Send + Sync>;
/// The `prepare` slot of [`Hooks`]: `Ok(None)` keeps the record,
/// `Ok(Some(new))` replaces it (the new one goes to the `release` slot
/// after dispatch), `Err(code)` skips it.
pub type PrepareHook<R> = Box<dyn Fn(&R) -> Result<Option<R>, i32> + Send + Sync>;
/// The `handle` slot of [`Hooks`]: replaces the dispatch to the handlers;
/// `Err(code)` counts a failure ([`Stage::Handle`]).
pub type HandleHook<R> = Box<dyn Fn(&R) -> Result<(), i32> + Send + Sync>;
/// The `enqueue_sentinel` slot of [`Hooks`]: tries once to put a sentinel
/// on `queue` (which it may ask, as Python's `super().enqueue_sentinel`
/// would; on the built-in queue that sentinel is addressed to this
/// listener), same contract as [`Queue::enqueue_sentinel`].
pub type EnqueueSentinelHook<R> = Box<dyn Fn(&dyn Queue<R>) -> SentinelPut + Send + Sync>;
/// The `record_level` slot of [`Hooks`]: the record's level for
/// `respect_handler_level`; `None` passes every handler.
pub type RecordLevelHook<R> = Box<dyn Fn(&R) -> Option<i32> + Send + Sync>;
/// The `release` and `done` slots of [`Hooks`]: take a record back.
pub type TakeBackHook<R> = Box<dyn Fn(R) + Send + Sync>;
/// The `on_error` slot of [`Hooks`]: told of a failure, the record involved
/// (none for [`Stage::Dequeue`]) and the code.
pub type OnErrorHook<R> = Box<dyn Fn(Stage, Option<&R>, i32) + Send + Sync>;

/// The overridable steps of a listener, one slot each, as a Python subclass
/// overrides `QueueListener` methods (and as C's `ql_hooks`, slot for
/// slot). `None` is Python's behaviour; the listener calls a slot only when
/// it is `Some`, so what is set is what runs: there is nothing else to keep
/// in agreement.
///
/// A record's life, in order: `dequeue` → `prepare` (exactly once) →
/// `handle` or the handlers → `release` (only for a record `prepare`
/// replaced) → the queue's `task_done` → `done`.
///
/// Every slot runs on the listener thread, except `enqueue_sentinel`, which
/// runs on the thread that stops the listener. Fill the slots you need and
/// leave the rest to [`Hooks::default`]:
///
/// ```
/// use queue_listener_engine::Hooks;
/// let hooks: Hooks<u32> = Hooks {
///     prepare: Some(Box::new(|record: &u32| Ok(Some(record * 2)))),
///     ..Hooks::default()
/// };
/// # let _ = hooks;
/// ```
pub struct Hooks<R> {
    /// Takes the next record. `None`: the queue's own `dequeue` (the
    /// built-in queue then also reports batch ends to the handlers).
    pub dequeue: Option<DequeueHook<R>>,
    /// Prepares a record once, before any handler sees it. `None`: the
    /// record as it is.
    pub prepare: Option<PrepareHook<R>>,
    /// Replaces the dispatch to the handlers. `None`: every handler, in
    /// order (filtered by level with `respect_handler_level`).
    pub handle: Option<HandleHook<R>>,
    /// Puts one sentinel. `None`: the queue's own `enqueue_sentinel`.
    pub enqueue_sentinel: Option<EnqueueSentinelHook<R>>,
    /// The record's level, read only with `respect_handler_level`. `None`:
    /// no level known, every handler gets the record.
    pub record_level: Option<RecordLevelHook<R>>,
    /// Takes back a record `prepare` made, after every handler saw it.
    /// `None`: it is dropped.
    pub release: Option<TakeBackHook<R>>,
    /// Takes back a dequeued record after `task_done`: the last step of its
    /// life. `None`: it is dropped.
    pub done: Option<TakeBackHook<R>>,
    /// Told of every failure; the listener goes on after it. `None`: the
    /// failure is only counted.
    pub on_error: Option<OnErrorHook<R>>,
}

/// Python's behaviour for every step: every slot `None`.
impl<R> Default for Hooks<R> {
    fn default() -> Self {
        Hooks {
            dequeue: None,
            prepare: None,
            handle: None,
            enqueue_sentinel: None,
            record_level: None,
            release: None,
            done: None,
            on_error: None,
        }
    }
}

impl<R> Hooks<R> {
    /// Puts one sentinel through the `enqueue_sentinel` slot, or the queue.
    pub(super) fn enqueue_sentinel_on(&self, queue: &dyn Queue<R>) -> SentinelPut {
        match &self.enqueue_sentinel {
            Some(put) => put(queue),
            None => queue.enqueue_sentinel(),
        }
    }

    /// Tells the `on_error` slot, if any.
    #[inline]
    pub(super) fn error(&self, stage: Stage, record: Option<&R>, code: i32) {
        if let Some(on_error) = &self.on_error {
            on_error(stage, record, code);
        }
    }
}
