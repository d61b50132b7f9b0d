//! The built-in queue: a FIFO on crossbeam-channel, bounded or unbounded.
//!
//! Records and the sentinel share one channel, so the sentinel lands behind
//! every record put before it. The sentinel is a variant of its own: no
//! record value can be mistaken for it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, unbounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError,
    TrySendError,
};

use crate::listener::{on_listener_thread, Dequeued, Error, Queue, QueueStats, SentinelPut};

/// The largest capacity a bounded queue may have. The slots are allocated
/// up front, so a larger request is refused instead of risking an abort on
/// allocation failure.
pub const MAX_CAPACITY: usize = 1 << 24;

enum Item<R> {
    Record(R),
    Sentinel,
    /// A flush barrier: the listener flushes its handlers when it takes it.
    Marker(u64),
}

/// What a put does when a bounded queue is full. Explicit calls
/// (`put_nowait`, `put_timeout`) ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for room (lossless). On a listener thread: refuse at once.
    Block,
    /// Wait for room at most this long, then refuse the record.
    BlockFor(Duration),
    /// Refuse the new record at once.
    DropNewest,
    /// Make room by dropping the oldest record. Never waits.
    DropOldest,
}

/// Called with each record [`Overflow::DropOldest`] evicts.
pub type EvictFn<R> = Box<dyn Fn(R) + Send + Sync>;
/// Makes the "N records dropped" record the listener reports.
pub type ReportFn<R> = Box<dyn Fn(u64) -> R + Send + Sync>;

/// How to build a [`ChannelQueue`].
pub struct Options<R> {
    /// Most items held (records, sentinels, flush markers); 0: unbounded.
    pub capacity: usize,
    /// What a put does on a full queue.
    pub overflow: Overflow,
    /// Takes each evicted record (else it is simply dropped).
    pub evicted: Option<EvictFn<R>>,
    /// When set, the listener takes one record made by this function, with
    /// the number of records dropped since the last report, before the next
    /// item, once drops have happened.
    pub report: Option<ReportFn<R>>,
}

impl<R> Options<R> {
    /// A lossless queue of this capacity.
    pub fn new(capacity: usize) -> Self {
        Options {
            capacity,
            overflow: Overflow::Block,
            evicted: None,
            report: None,
        }
    }
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
    /// A flush marker was taken off the queue (its flush never completes).
    Marker,
}

/// A multi-producer FIFO queue of records, with room for the sentinel.
pub struct ChannelQueue<R> {
    tx: Sender<Item<R>>,
    rx: Receiver<Item<R>>,
    overflow: Overflow,
    evicted: Option<EvictFn<R>>,
    report: Option<ReportFn<R>>,
    /// Records dropped since the queue was made.
    dropped: AtomicU64,
    /// Drops not yet reported by a report record.
    unreported: AtomicU64,
    /// The most items the listener saw queued, before any take.
    high_water: AtomicUsize,
    /// Sentinels taken by `get*` (not by a listener) and not yet reported.
    vanished: AtomicUsize,
}

impl<R: Send> ChannelQueue<R> {
    /// A lossless queue holding at most `capacity` items (records, sentinels
    /// and flush markers); 0 means unbounded. `None` when `capacity` exceeds
    /// [`MAX_CAPACITY`].
    pub fn new(capacity: usize) -> Option<Self> {
        Self::with_options(Options::new(capacity))
    }

    /// A queue as `options` say; `None` when the capacity exceeds
    /// [`MAX_CAPACITY`].
    pub fn with_options(options: Options<R>) -> Option<Self> {
        let (tx, rx) = match options.capacity {
            0 => unbounded(),
            c if c <= MAX_CAPACITY => bounded(c),
            _ => return None,
        };
        Some(ChannelQueue {
            tx,
            rx,
            overflow: options.overflow,
            evicted: options.evicted,
            report: options.report,
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
            vanished: AtomicUsize::new(0),
        })
    }

    /// Counts one dropped record (the caller dropped it because a put
    /// refused it).
    pub fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if self.report.is_some() {
            self.unreported.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped since the queue was made.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Puts a record as the queue's overflow policy says.
    ///
    /// [`Overflow::Block`] waits for room; [`Overflow::BlockFor`] waits at
    /// most its time ([`PutError::Timeout`]); [`Overflow::DropNewest`] gives
    /// [`PutError::Full`] at once; [`Overflow::DropOldest`] drops the oldest
    /// records until the new one fits. On a listener thread, a put that
    /// would wait gives [`PutError::WouldDeadlock`] at once. A refused record
    /// comes back to the caller, who decides whether it is a drop.
    pub fn offer(&self, record: R) -> Result<(), PutError<R>> {
        match self.overflow {
            Overflow::Block => self.put(record),
            Overflow::BlockFor(wait) => self.put_timeout(record, wait),
            Overflow::DropNewest => self.put_nowait(record),
            Overflow::DropOldest => {
                self.put_evicting(Item::Record(record));
                Ok(())
            }
        }
    }

    /// Puts `item`, dropping the oldest records while the queue is full.
    /// A sentinel or marker taken out to make room is put back behind.
    fn put_evicting(&self, item: Item<R>) {
        let mut pending = vec![item];
        while let Some(mut item) = pending.pop() {
            loop {
                match self.tx.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                        item = back;
                        match self.rx.try_recv() {
                            Ok(Item::Record(old)) => {
                                self.count_drop();
                                if let Some(evicted) = &self.evicted {
                                    evicted(old);
                                }
                            }
                            Ok(control) => pending.insert(0, control),
                            // Another thread made room meanwhile: retry.
                            Err(_) => {}
                        }
                    }
                }
            }
        }
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

    /// Takes the oldest record or sentinel, waiting for one. Flush markers
    /// are passed over (the flush that put one then runs into its deadline).
    pub fn get(&self) -> Result<R, GetError> {
        loop {
            // Never disconnected: `self` holds a sender.
            match self
                .rx
                .recv()
                .map_err(|_| GetError::Empty)
                .and_then(from_item)
            {
                Err(GetError::Marker) => continue,
                other => return self.note_sentinel(other),
            }
        }
    }

    /// Takes the oldest record or sentinel if there is one.
    pub fn get_nowait(&self) -> Result<R, GetError> {
        loop {
            match self.rx.try_recv() {
                Ok(item) => match from_item(item) {
                    Err(GetError::Marker) => continue,
                    other => return self.note_sentinel(other),
                },
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                    return Err(GetError::Empty)
                }
            }
        }
    }

    /// Takes the oldest record or sentinel, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, GetError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let got = match deadline {
                Some(deadline) => self.rx.recv_deadline(deadline),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(item) => match from_item(item) {
                    Err(GetError::Marker) => continue,
                    other => return self.note_sentinel(other),
                },
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err(GetError::Timeout)
                }
            }
        }
    }

    /// Counts a sentinel a get took, for the stop that counts on it.
    fn note_sentinel(&self, got: Result<R, GetError>) -> Result<R, GetError> {
        if let Err(GetError::Sentinel) = got {
            self.vanished.fetch_add(1, Ordering::Relaxed);
        }
        got
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
        // Justified: the put paths only ever send `Item::Record` and get
        // back what they sent.
        Item::Sentinel | Item::Marker(_) => unreachable!("only records are put through this path"),
    }
}

fn from_item<R>(item: Item<R>) -> Result<R, GetError> {
    match item {
        Item::Record(r) => Ok(r),
        Item::Sentinel => Err(GetError::Sentinel),
        Item::Marker(_) => Err(GetError::Marker),
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
    /// A blocking take: when the queue is empty, tells `idle`, then looks
    /// again for up to [`IDLE_SPIN`] before sleeping.
    fn take_blocking(&self, idle: &mut dyn FnMut()) -> Option<Item<R>> {
        if let Ok(item) = self.rx.try_recv() {
            return Some(item);
        }
        idle();
        // Look again after a pause that doubles: a listener polling a queue
        // that producers are writing would pull the same cache lines back
        // and forth with every put, and make each put slower.
        let start = Instant::now();
        let mut pauses = SPIN_PAUSES_MIN;
        loop {
            if pauses < SPIN_PAUSES_MAX {
                for _ in 0..pauses {
                    std::hint::spin_loop();
                }
            } else {
                // Still nothing: let a producer that waits for a core run
                // (more runnable threads than cores), instead of spinning.
                std::thread::yield_now();
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

    /// Raises the high-water mark to the depth now, if higher.
    fn sample_depth(&self) {
        let queued = self.rx.len();
        if queued > self.high_water.load(Ordering::Relaxed) {
            self.high_water.store(queued, Ordering::Relaxed);
        }
    }

    /// The report record, when drops happened since the last one.
    fn take_report(&self) -> Option<R> {
        let report = self.report.as_ref()?;
        if self.unreported.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.unreported.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some(report(n)),
        }
    }
}

impl<R: Send> Queue<R> for ChannelQueue<R> {
    fn dequeue(&self, block: bool) -> Dequeued<R> {
        self.dequeue_idle(block, &mut || {})
    }

    fn dequeue_idle(&self, block: bool, idle: &mut dyn FnMut()) -> Dequeued<R> {
        if let Some(report) = self.take_report() {
            return Dequeued::Record(report);
        }
        // The depth only grows between takes, so measuring it before each
        // take finds its peak.
        self.sample_depth();
        let item = if block {
            self.take_blocking(idle)
        } else {
            self.rx.try_recv().ok()
        };
        match item {
            Some(Item::Record(r)) => Dequeued::Record(r),
            Some(Item::Sentinel) => Dequeued::Sentinel,
            Some(Item::Marker(id)) => Dequeued::Marker(id),
            None => Dequeued::Empty,
        }
    }

    fn has_task_done(&self) -> bool {
        false
    }

    fn reports_batches(&self) -> bool {
        true
    }

    fn take_vanished_sentinels(&self) -> usize {
        if self.vanished.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.vanished.swap(0, Ordering::Relaxed)
    }

    fn enqueue_sentinel(&self) -> SentinelPut {
        match self.tx.try_send(Item::Sentinel) {
            Ok(()) => SentinelPut::Ok,
            Err(TrySendError::Full(_)) => SentinelPut::Full,
            Err(TrySendError::Disconnected(_)) => SentinelPut::Error,
        }
    }

    fn enqueue_marker(&self, id: u64, deadline: Option<Instant>) -> Result<(), Error> {
        // Never evicts, whatever the policy: the barrier exists to see the
        // records before it handled, not to drop them.
        match self.tx.try_send(Item::Marker(id)) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) if on_listener_thread() => return Err(Error::WouldDeadlock),
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return Err(Error::Queue),
        }
        let sent = match deadline {
            Some(deadline) => self.tx.send_deadline(Item::Marker(id), deadline),
            None => self
                .tx
                .send(Item::Marker(id))
                .map_err(|e| SendTimeoutError::Disconnected(e.0)),
        };
        sent.map_err(|e| match e {
            SendTimeoutError::Timeout(_) => Error::Timeout,
            SendTimeoutError::Disconnected(_) => Error::Queue,
        })
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.rx.len() as u64,
            high_water: self.high_water.load(Ordering::Relaxed) as u64,
            dropped: self.dropped(),
        }
    }
}
