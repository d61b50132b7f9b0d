//! The built-in queue: a FIFO on crossbeam-channel, bounded or unbounded.
//!
//! Records and the sentinel share one channel, so the sentinel lands behind
//! every record put before it. The sentinel is a variant of its own: no
//! record value can be mistaken for it.

use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, unbounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError,
    TrySendError,
};

use crate::listener::{on_listener_thread, Dequeued, Queue, SentinelPut};

/// The largest capacity a bounded queue may have. The slots are allocated
/// up front, so a larger request is refused instead of risking an abort on
/// allocation failure.
pub const MAX_CAPACITY: usize = 1 << 24;

enum Item<R> {
    Record(R),
    Sentinel,
}

/// Why a put did not happen. The record comes back to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum PutError<R> {
    /// The queue is full.
    Full(R),
    /// The deadline passed first.
    Timeout(R),
    /// The caller is a listener thread and the queue is full: waiting could
    /// wait for itself.
    WouldDeadlock(R),
}

/// What a get produced, other than a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetError {
    /// Nothing was queued (non-blocking get).
    Empty,
    /// Nothing came before the deadline.
    Timeout,
    /// A sentinel was taken off the queue.
    Sentinel,
}

/// A multi-producer FIFO queue of records, with room for the sentinel.
pub struct ChannelQueue<R> {
    tx: Sender<Item<R>>,
    rx: Receiver<Item<R>>,
}

impl<R: Send> ChannelQueue<R> {
    /// A queue holding at most `capacity` items (records and sentinels);
    /// 0 means unbounded. `None` when `capacity` exceeds [`MAX_CAPACITY`].
    pub fn new(capacity: usize) -> Option<Self> {
        let (tx, rx) = match capacity {
            0 => unbounded(),
            c if c <= MAX_CAPACITY => bounded(c),
            _ => return None,
        };
        Some(ChannelQueue { tx, rx })
    }

    /// Puts a record, waiting for room. On a listener thread a full queue
    /// gives [`PutError::WouldDeadlock`] instead of waiting.
    pub fn put(&self, record: R) -> Result<(), PutError<R>> {
        match self.put_nowait(record) {
            Err(PutError::Full(record)) if on_listener_thread() => {
                Err(PutError::WouldDeadlock(record))
            }
            Err(PutError::Full(record)) => {
                // Senders and receiver live as long as `self`: never
                // disconnected, so the send only returns once it is done.
                self.tx
                    .send(Item::Record(record))
                    .map_err(|e| PutError::Full(into_record(e.0)))
            }
            other => other,
        }
    }

    /// Puts a record if there is room now.
    pub fn put_nowait(&self, record: R) -> Result<(), PutError<R>> {
        match self.tx.try_send(Item::Record(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                Err(PutError::Full(into_record(item)))
            }
        }
    }

    /// Puts a record, waiting at most `timeout` for room.
    pub fn put_timeout(&self, record: R, timeout: Duration) -> Result<(), PutError<R>> {
        match self.put_nowait(record) {
            Err(PutError::Full(record)) if on_listener_thread() => {
                Err(PutError::WouldDeadlock(record))
            }
            Err(PutError::Full(record)) => {
                let item = Item::Record(record);
                let sent = match Instant::now().checked_add(timeout) {
                    Some(deadline) => self.tx.send_deadline(item, deadline),
                    None => self
                        .tx
                        .send(item)
                        .map_err(|e| SendTimeoutError::Disconnected(e.0)),
                };
                sent.map_err(|e| match e {
                    SendTimeoutError::Timeout(item) | SendTimeoutError::Disconnected(item) => {
                        PutError::Timeout(into_record(item))
                    }
                })
            }
            other => other,
        }
    }

    /// Takes the oldest item, waiting for one.
    pub fn get(&self) -> Result<R, GetError> {
        // Never disconnected: `self` holds a sender.
        self.rx
            .recv()
            .map_err(|_| GetError::Empty)
            .and_then(from_item)
    }

    /// Takes the oldest item if there is one.
    pub fn get_nowait(&self) -> Result<R, GetError> {
        match self.rx.try_recv() {
            Ok(item) => from_item(item),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Err(GetError::Empty),
        }
    }

    /// Takes the oldest item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, GetError> {
        match self.rx.recv_timeout(timeout) {
            Ok(item) => from_item(item),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                Err(GetError::Timeout)
            }
        }
    }

    /// Items queued now (records and sentinels).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The capacity given at creation (0: unbounded).
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(0)
    }
}

fn into_record<R>(item: Item<R>) -> R {
    match item {
        Item::Record(r) => r,
        Item::Sentinel => unreachable!("only records are put through this path"),
    }
}

fn from_item<R>(item: Item<R>) -> Result<R, GetError> {
    match item {
        Item::Record(r) => Ok(r),
        Item::Sentinel => Err(GetError::Sentinel),
    }
}

/// How long a blocking dequeue keeps looking for a record before it sleeps.
/// A producer that finds the listener awake puts without a system call; one
/// that finds it asleep pays a futex wake (microseconds). After its last
/// record the listener therefore stays awake this long, then sleeps until a
/// put wakes it: an idle listener uses no CPU.
pub const IDLE_SPIN: Duration = Duration::from_micros(100);
const SPIN_PAUSES_MIN: u32 = 32;
const SPIN_PAUSES_MAX: u32 = 1024;

impl<R: Send> ChannelQueue<R> {
    /// A blocking take that spins for up to [`IDLE_SPIN`] before sleeping.
    fn recv_spinning(&self) -> Option<Item<R>> {
        if let Ok(item) = self.rx.try_recv() {
            return Some(item);
        }
        // Look again after a pause that doubles: a listener polling a queue
        // that producers are writing would pull the same cache lines back
        // and forth with every put, and make each put slower.
        let start = Instant::now();
        let mut pauses = SPIN_PAUSES_MIN;
        loop {
            for _ in 0..pauses {
                std::hint::spin_loop();
            }
            if let Ok(item) = self.rx.try_recv() {
                return Some(item);
            }
            if start.elapsed() >= IDLE_SPIN {
                return self.rx.recv().ok();
            }
            pauses = (pauses * 2).min(SPIN_PAUSES_MAX);
        }
    }
}

impl<R: Send> Queue<R> for ChannelQueue<R> {
    fn dequeue(&self, block: bool) -> Dequeued<R> {
        let item = if block {
            self.recv_spinning()
        } else {
            self.rx.try_recv().ok()
        };
        match item {
            Some(Item::Record(r)) => Dequeued::Record(r),
            Some(Item::Sentinel) => Dequeued::Sentinel,
            None => Dequeued::Empty,
        }
    }

    fn has_task_done(&self) -> bool {
        false
    }

    fn enqueue_sentinel(&self) -> SentinelPut {
        match self.tx.try_send(Item::Sentinel) {
            Ok(()) => SentinelPut::Ok,
            Err(TrySendError::Full(_)) => SentinelPut::Full,
            Err(TrySendError::Disconnected(_)) => SentinelPut::Error,
        }
    }
}
