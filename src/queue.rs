//! The built-in queue: a FIFO on crossbeam-channel, bounded or unbounded.
//!
//! Records and the sentinel share one channel, so the sentinel lands behind
//! every record put before it. The sentinel is a variant of its own: no
//! record value can be mistaken for it.
//!
//! Several listeners may share one queue. Each sentinel and flush marker is
//! addressed to the listener that put it: when another listener's thread
//! takes it, the queue holds it for its listener, which takes it before
//! anything else at its next take (and is woken for it if asleep). It was
//! at the head of the queue when taken, so its listener still meets it
//! behind every record put before it. Those of a listener that no longer
//! exists are dropped when taken.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, unbounded, Receiver, Select, SendTimeoutError, Sender, TrySendError,
};

use crate::listener::{
    current_listener, on_listener_thread, Dequeued, Error, Queue, QueueStats, SentinelPut,
};

/// The largest capacity a bounded queue may have. The slots are allocated
/// up front, so a larger request is refused instead of risking an abort on
/// allocation failure.
pub const MAX_CAPACITY: usize = 1 << 24;

enum Item<R> {
    Record(R),
    /// A sentinel, addressed to the listener with this id.
    Sentinel(u64),
    /// A flush barrier, by its id (unique in the process; the book knows
    /// whose it is): its listener flushes its handlers when it takes it.
    /// Ids, not owners, ride in the channel, to keep its slots small.
    Marker(u64),
}

/// A sentinel or flush marker held for its listener.
#[derive(Debug, Clone, Copy)]
enum Control {
    Sentinel,
    Marker(u64),
}

/// Where one listener's sentinels and flush markers are.
#[derive(Default)]
struct Addressee {
    /// How many are in the channel now.
    queued: usize,
    /// Taken off the channel by another thread, waiting for this
    /// listener's next take, oldest first.
    held: VecDeque<Control>,
    /// Sentinels a program's get took, not yet reported to the listener.
    vanished: usize,
    /// The listener no longer exists: its items are dropped when taken.
    gone: bool,
    /// Wakes the listener's thread, asleep on an empty channel, when an
    /// item is held for it.
    wake: Option<(Sender<()>, Receiver<()>)>,
}

/// The addressees of a queue, by listener id.
#[derive(Default)]
struct Book {
    listeners: HashMap<u64, Addressee>,
    /// The listener of each flush marker in the channel, by marker id.
    markers: HashMap<u64, u64>,
}

/// What a waiting take produced.
enum Slept<R> {
    Item(Item<R>),
    /// An item was held for this thread's listener: look in the book.
    Woken,
    TimedOut,
}

/// How long a take may wait.
enum Wait<'a> {
    /// Not at all.
    No,
    /// Until the deadline (`None`: for ever).
    Until(Option<Instant>),
    /// For ever, telling `idle` and looking again for [`IDLE_SPIN`] before
    /// sleeping (the listener's take).
    Spin(&'a mut dyn FnMut()),
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
    /// Who each sentinel and marker is for, and what was held for whom.
    book: Mutex<Book>,
    /// Bumped (under the book's lock) each time an item is held for a
    /// listener: a listener's thread looks in the book only when this
    /// changed since it last looked, so an item held for another listener
    /// costs the others nothing per record.
    held_version: AtomicU64,
}

thread_local! {
    /// The queue (address), listener and `held_version` this thread last
    /// looked in the book at.
    static SEEN: Cell<(usize, u64, u64)> = const { Cell::new((0, 0, 0)) };
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
            book: Mutex::new(Book::default()),
            held_version: AtomicU64::new(0),
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

    /// Takes the oldest record or sentinel, waiting for one.
    ///
    /// Flush markers are passed over (held for their listener). On a
    /// listener thread, sentinels addressed to other listeners are passed
    /// over too (held for them); elsewhere a sentinel is removed and
    /// reported, and its listener's stop puts another.
    pub fn get(&self) -> Result<R, GetError> {
        self.get_with(Wait::Until(None), GetError::Timeout)
    }

    /// Takes the oldest record or sentinel if there is one (as
    /// [`ChannelQueue::get`]).
    pub fn get_nowait(&self) -> Result<R, GetError> {
        self.get_with(Wait::No, GetError::Empty)
    }

    /// Takes the oldest record or sentinel, waiting at most `timeout` (as
    /// [`ChannelQueue::get`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, GetError> {
        // A deadline too far to represent waits for ever.
        self.get_with(
            Wait::Until(Instant::now().checked_add(timeout)),
            GetError::Timeout,
        )
    }

    fn get_with(&self, mut wait: Wait<'_>, none: GetError) -> Result<R, GetError> {
        loop {
            match self.take(&mut wait) {
                Some(Item::Record(r)) => return Ok(r),
                Some(Item::Sentinel(_)) => return Err(GetError::Sentinel),
                // Only this listener's own marker, taken by its own thread
                // through a `dequeue` hook, comes back: a hook cannot hand
                // a marker on (flush refuses such listeners), so drop it.
                Some(Item::Marker(_)) => {}
                None => return Err(none),
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
        // Justified: the put paths only ever send `Item::Record` and get
        // back what they sent.
        Item::Sentinel(_) | Item::Marker(_) => {
            unreachable!("only records are put through this path")
        }
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
    /// Takes the next item the calling thread may see, waiting as `wait`
    /// says; `None` when nothing came in time.
    ///
    /// Items held for this thread's listener come first. A sentinel or
    /// marker addressed to another listener is held for it and passed over;
    /// one whose listener is gone is dropped. Off listener threads a
    /// sentinel is returned, and counted as vanished for its listener.
    #[inline]
    fn take(&self, wait: &mut Wait<'_>) -> Option<Item<R>> {
        // The common case, kept short: nothing new held, a record ready.
        if !self.new_holds() {
            if let Ok(item) = self.rx.try_recv() {
                if let Item::Record(_) = item {
                    return Some(item);
                }
                return self.take_slow(Some(item), wait);
            }
        }
        self.take_slow(None, wait)
    }

    /// [`ChannelQueue::take`], once the common case did not apply; `first`
    /// is an item already taken off the channel.
    #[inline(never)]
    fn take_slow(&self, mut first: Option<Item<R>>, wait: &mut Wait<'_>) -> Option<Item<R>> {
        let mut woken = false;
        loop {
            let item = match first.take() {
                Some(item) => item,
                None => {
                    if woken || self.new_holds() {
                        if let Some(item) = self.take_held(current_listener()) {
                            return Some(item);
                        }
                    }
                    let slept = match wait {
                        Wait::No => self.rx.try_recv().map_or(Slept::TimedOut, Slept::Item),
                        Wait::Until(deadline) => self.sleep_take(*deadline),
                        Wait::Spin(idle) => self.spin_take(&mut **idle),
                    };
                    match slept {
                        Slept::Item(item) => item,
                        Slept::Woken => {
                            woken = true;
                            continue;
                        }
                        Slept::TimedOut => return None,
                    }
                }
            };
            woken = false;
            match item {
                Item::Record(_) => return Some(item),
                Item::Sentinel(owner) => {
                    if self.arrived(owner, Control::Sentinel) {
                        return Some(item);
                    }
                }
                Item::Marker(id) => {
                    if self.arrived(0, Control::Marker(id)) {
                        return Some(item);
                    }
                }
            }
        }
    }

    /// A blocking take for the listener: when the queue is empty, tells
    /// `idle`, then looks again for up to [`IDLE_SPIN`] before sleeping.
    fn spin_take(&self, idle: &mut dyn FnMut()) -> Slept<R> {
        if let Ok(item) = self.rx.try_recv() {
            return Slept::Item(item);
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
                return Slept::Item(item);
            }
            if self.new_holds() {
                return Slept::Woken;
            }
            if start.elapsed() >= IDLE_SPIN {
                return self.sleep_take(None);
            }
            pauses = (pauses * 2).min(SPIN_PAUSES_MAX);
        }
    }

    /// Waits for an item until `deadline` (`None`: for ever). A listener's
    /// thread also wakes when an item is held for its listener.
    fn sleep_take(&self, deadline: Option<Instant>) -> Slept<R> {
        let me = current_listener();
        let wake = if me == 0 {
            None
        } else {
            match self.wake_for(me) {
                Some(wake) => Some(wake),
                None => return Slept::Woken,
            }
        };
        let Some(wake) = wake else {
            // Never disconnected: `self` holds a sender.
            let got = match deadline {
                Some(deadline) => self.rx.recv_deadline(deadline).ok(),
                None => self.rx.recv().ok(),
            };
            return got.map_or(Slept::TimedOut, Slept::Item);
        };
        let mut select = Select::new();
        let data = select.recv(&self.rx);
        select.recv(&wake);
        let op = match deadline {
            Some(deadline) => match select.select_deadline(deadline) {
                Ok(op) => op,
                Err(_) => return Slept::TimedOut,
            },
            None => select.select(),
        };
        if op.index() == data {
            op.recv(&self.rx).map_or(Slept::TimedOut, Slept::Item)
        } else {
            let _ = op.recv(&wake);
            Slept::Woken
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // The book is consistent after every step: a panic elsewhere while
        // it was locked leaves nothing half done.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The receiver that wakes listener `me`'s thread, or `None` when an
    /// item is already held for it (take it instead of sleeping).
    fn wake_for(&self, me: u64) -> Option<Receiver<()>> {
        let mut book = self.book();
        let addressee = book.listeners.entry(me).or_default();
        if !addressee.held.is_empty() {
            return None;
        }
        let (_, rx) = addressee.wake.get_or_insert_with(|| bounded(1));
        Some(rx.clone())
    }

    /// True when an item may have been held for some listener since this
    /// thread last looked in the book (on a listener's thread only).
    #[inline]
    fn new_holds(&self) -> bool {
        let version = self.held_version.load(Ordering::Relaxed);
        if version == 0 {
            return false;
        }
        let me = current_listener();
        me != 0 && SEEN.with(|seen| seen.get() != (self as *const Self as usize, me, version))
    }

    /// The item held for listener `me` to take first, if any: its first
    /// marker, else its oldest sentinel.
    ///
    /// Markers go first: two items of one listener taken by two threads
    /// can be booked in either order, and a marker served early is still
    /// served after every record before it (it was at the head of the
    /// queue when taken), while a sentinel served first would end the run
    /// and leave the marker's flush unserved.
    fn take_held(&self, me: u64) -> Option<Item<R>> {
        if me == 0 {
            return None;
        }
        let version = self.held_version.load(Ordering::Relaxed);
        let mut book = self.book();
        let control = book.listeners.get_mut(&me).and_then(|addressee| {
            let held = &mut addressee.held;
            let first = held
                .iter()
                .position(|c| matches!(c, Control::Marker(_)))
                .unwrap_or(0);
            held.remove(first)
        });
        if book.listeners.get(&me).is_none_or(|a| a.held.is_empty()) {
            // Nothing more for this thread up to `version`.
            SEEN.with(|seen| seen.set((self as *const Self as usize, me, version)));
        }
        Some(match control? {
            Control::Sentinel => Item::Sentinel(me),
            Control::Marker(id) => Item::Marker(id),
        })
    }

    /// Books `control`, addressed to `owner`, as taken off the channel by
    /// this thread. True when the caller gets it: it is the caller's own,
    /// or a sentinel taken by a program's get (then counted as vanished).
    /// Otherwise it is held for its listener, or dropped when the listener
    /// is gone.
    fn arrived(&self, owner: u64, control: Control) -> bool {
        let me = current_listener();
        let mut book = self.book();
        let owner = match control {
            Control::Sentinel => owner,
            Control::Marker(id) => match book.markers.remove(&id) {
                Some(owner) => owner,
                None => return false,
            },
        };
        let Some(addressee) = book.listeners.get_mut(&owner) else {
            // Never booked: nobody can be waiting for it.
            return owner == me && me != 0;
        };
        addressee.queued = addressee.queued.saturating_sub(1);
        let mine = if owner == me {
            true
        } else if addressee.gone {
            false
        } else if me == 0 && matches!(control, Control::Sentinel) {
            addressee.vanished += 1;
            true
        } else {
            addressee.held.push_back(control);
            self.held_version.fetch_add(1, Ordering::Relaxed);
            if let Some((wake, _)) = &addressee.wake {
                // Full means a wake is already pending.
                let _ = wake.try_send(());
            }
            false
        };
        if addressee.gone && addressee.queued == 0 {
            book.listeners.remove(&owner);
        }
        mine
    }

    /// Counts one more item of `owner` in the channel, before it is sent.
    /// A marker's id is booked with it.
    fn booked(&self, owner: u64, marker: Option<u64>) {
        let mut book = self.book();
        book.listeners.entry(owner).or_default().queued += 1;
        if let Some(id) = marker {
            book.markers.insert(id, owner);
        }
    }

    /// Takes back [`ChannelQueue::booked`] after a send that failed.
    fn unbooked(&self, owner: u64, marker: Option<u64>) {
        let mut book = self.book();
        if let Some(id) = marker {
            book.markers.remove(&id);
        }
        if let Some(addressee) = book.listeners.get_mut(&owner) {
            addressee.queued = addressee.queued.saturating_sub(1);
            if addressee.gone && addressee.queued == 0 {
                book.listeners.remove(&owner);
            }
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
        let mut wait = if block { Wait::Spin(idle) } else { Wait::No };
        match self.take(&mut wait) {
            Some(Item::Record(r)) => Dequeued::Record(r),
            Some(Item::Sentinel(_)) => Dequeued::Sentinel,
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

    fn take_vanished_sentinels(&self, listener: u64) -> usize {
        match self.book().listeners.get_mut(&listener) {
            Some(addressee) => std::mem::take(&mut addressee.vanished),
            None => 0,
        }
    }

    fn enqueue_sentinel(&self, listener: u64) -> SentinelPut {
        // Booked first: a thread may take it as soon as it is in.
        self.booked(listener, None);
        let put = match self.tx.try_send(Item::Sentinel(listener)) {
            Ok(()) => return SentinelPut::Ok,
            Err(TrySendError::Full(_)) => SentinelPut::Full,
            Err(TrySendError::Disconnected(_)) => SentinelPut::Error,
        };
        self.unbooked(listener, None);
        put
    }

    fn enqueue_marker(
        &self,
        listener: u64,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let item = || Item::Marker(id);
        // Never evicts, whatever the policy: the barrier exists to see the
        // records before it handled, not to drop them.
        self.booked(listener, Some(id));
        let failed = match self.tx.try_send(item()) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) if on_listener_thread() => Error::WouldDeadlock,
            Err(TrySendError::Full(_)) => {
                let sent = match deadline {
                    Some(deadline) => self.tx.send_deadline(item(), deadline),
                    None => self
                        .tx
                        .send(item())
                        .map_err(|e| SendTimeoutError::Disconnected(e.0)),
                };
                match sent {
                    Ok(()) => return Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => Error::Timeout,
                    Err(SendTimeoutError::Disconnected(_)) => Error::Queue,
                }
            }
            Err(TrySendError::Disconnected(_)) => Error::Queue,
        };
        self.unbooked(listener, Some(id));
        Err(failed)
    }

    fn forget_listener(&self, listener: u64) {
        let mut book = self.book();
        let Some(addressee) = book.listeners.get_mut(&listener) else {
            return;
        };
        if addressee.queued == 0 {
            book.listeners.remove(&listener);
        } else {
            // Items still in the channel are dropped as they are taken.
            *addressee = Addressee {
                queued: addressee.queued,
                gone: true,
                ..Addressee::default()
            };
        }
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.rx.len() as u64,
            high_water: self.high_water.load(Ordering::Relaxed) as u64,
            dropped: self.dropped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::as_listener_thread;

    /// Two items of listener 7, a marker then a sentinel, taken by two
    /// other threads that book them in the other order: 7 is served the
    /// marker first (its flush completes), then the sentinel.
    #[test]
    fn a_held_marker_is_served_before_a_held_sentinel() {
        let q = ChannelQueue::<u32>::new(0).unwrap();
        q.booked(7, None);
        q.booked(7, Some(1));
        // The sentinel, by listener 9's thread: held for 7.
        assert!(!as_listener_thread(9, || q.arrived(7, Control::Sentinel)));
        // The marker, by a program's get: held for 7.
        assert!(!q.arrived(7, Control::Marker(1)));
        // Neither is another listener's to take.
        assert_eq!(as_listener_thread(9, || q.dequeue(false)), Dequeued::Empty);
        assert_eq!(q.get_nowait(), Err(GetError::Empty));
        as_listener_thread(7, || {
            assert_eq!(q.dequeue(false), Dequeued::Marker(1));
            assert_eq!(q.dequeue(false), Dequeued::Sentinel);
            assert_eq!(q.dequeue(false), Dequeued::Empty);
        });
    }

    /// What is held for a listener that is then forgotten is dropped, and
    /// what it still has in the channel is dropped when taken, by anyone.
    #[test]
    fn a_forgotten_listeners_items_are_dropped() {
        let q = ChannelQueue::<u32>::new(0).unwrap();
        assert_eq!(q.enqueue_sentinel(7), SentinelPut::Ok);
        q.put(1).unwrap();
        assert_eq!(q.enqueue_sentinel(7), SentinelPut::Ok);
        as_listener_thread(9, || {
            // 9 takes 7's first sentinel (held for 7), then record 1.
            assert_eq!(q.dequeue(false), Dequeued::Record(1));
        });
        q.forget_listener(7);
        assert!(q.book().listeners.contains_key(&7), "one still queued");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get_nowait(), Err(GetError::Empty));
        assert_eq!(q.len(), 0);
        assert!(
            q.book().listeners.is_empty(),
            "the entry goes with the last"
        );
        as_listener_thread(7, || assert_eq!(q.dequeue(false), Dequeued::Empty));
    }
}
