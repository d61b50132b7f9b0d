//! The built-in queue: a FIFO, bounded or unbounded.
//!
//! Without lanes (the generic queue of the engine's tests), records and the
//! sentinel share one crossbeam channel, so the sentinel lands behind every
//! record put before it. With lanes (`ChannelQueue::with_lanes`, the queue
//! of C; `lanes.rs`), each putting thread has a FIFO of its own and the
//! channel only carries wake items. The sentinel is a variant of its own:
//! no record value can be mistaken for it. Sentinels and flush barriers are
//! addressed to their listener (`addressed.rs`), so several listeners may
//! share one queue.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, unbounded, Receiver, Select, SendTimeoutError, Sender, TrySendError,
};

use crate::crash::Gate;
use crate::protocol::{Dequeued, QueueStats};
use crate::threads::{current_listener, on_listener_thread};

mod addressed;
mod lanes;
use addressed::{Book, Held};
pub(crate) use lanes::forget_after_fork;
use lanes::{Control, Lanes, Refused, Taken, WhenFull};
pub use lanes::{LaneHooks, PutInFn, TakeOutFn, SEGMENT};

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
    Barrier(u64),
    /// With lanes: look at the lanes again (the channel carries only these).
    Wake,
}

/// What a waiting take produced.
enum Slept<R> {
    Item(Item<R>),
    /// With lanes: woken by a producer; look again.
    Again,
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
    /// sleeping (the listener's take); the listener's crash gate, if any,
    /// is let go of while it sleeps.
    Spin(&'a mut dyn FnMut(), Option<&'a Gate>),
}

/// What [`ChannelQueue::put`] does when a bounded queue is full. The
/// explicit calls (`put_wait`, `put_nowait`, `put_timeout`) ignore it.
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
    /// Most items held (records, sentinels, flush barriers); 0: unbounded.
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
    /// Out of memory: the record could not be made (an allocation its
    /// size needed failed), or the queue could not grow to hold it.
    NoMem(R),
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
    /// Called on each record a taker gets (the listener's take and the
    /// program's gets), before anyone sees it.
    taken: Option<fn(&mut R)>,
    /// Who each sentinel and barrier is for, and what was held for whom.
    book: Mutex<Book>,
    /// Bumped (under the book's lock) each time an item is held for a
    /// listener: a listener's thread looks in the book only when this
    /// changed since it last looked, so an item held for another listener
    /// costs the others nothing per record.
    held_version: AtomicU64,
    /// With lanes ([`ChannelQueue::with_lanes`]): the items, one lane per
    /// putting thread; the channel then carries only wake items.
    lanes: Option<Lanes<R>>,
    /// The capacity asked for (0: unbounded).
    capacity: usize,
}

impl<R> ChannelQueue<R> {
    /// A lossless queue holding at most `capacity` items (records, sentinels
    /// and flush barriers); 0 means unbounded. `None` when `capacity` exceeds
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
        Some(Self::made(options, tx, rx))
    }

    /// A queue as `options` say, with per-thread lanes (see `lanes.rs`):
    /// each putting thread writes into a FIFO of its own, the capacity
    /// stays the queue's, and takers merge the lanes. Nothing is allocated
    /// for the capacity up front. `None` when the capacity exceeds
    /// [`MAX_CAPACITY`].
    pub fn with_lanes(options: Options<R>, hooks: LaneHooks<R>) -> Option<Self>
    where
        R: Send + 'static,
    {
        if options.capacity > MAX_CAPACITY {
            return None;
        }
        // Only wake items ride in the channel, one at a time.
        let (tx, rx) = bounded(1);
        let mut queue = Self::made(options, tx, rx);
        queue.lanes = Some(Lanes::new(hooks, queue.capacity));
        Some(queue)
    }

    fn made(options: Options<R>, tx: Sender<Item<R>>, rx: Receiver<Item<R>>) -> Self {
        ChannelQueue {
            tx,
            rx,
            overflow: options.overflow,
            evicted: options.evicted,
            report: options.report,
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
            taken: None,
            book: Mutex::new(Book::default()),
            held_version: AtomicU64::new(0),
            lanes: None,
            capacity: options.capacity,
        }
    }

    /// The same queue, calling `taken` on each record as it is taken off
    /// (by a listener or a get), before anyone sees it: the built-in queue
    /// formats a deferred message there.
    pub fn with_taken(mut self, taken: fn(&mut R)) -> Self {
        self.taken = Some(taken);
        self
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

    /// Puts a record as the queue's overflow policy says (what C's
    /// `ql_queue_put` does).
    ///
    /// [`Overflow::Block`] waits for room; [`Overflow::BlockFor`] waits at
    /// most its time ([`PutError::Timeout`]); [`Overflow::DropNewest`] gives
    /// [`PutError::Full`] at once; [`Overflow::DropOldest`] drops the oldest
    /// records until the new one fits. On a listener thread, a put that
    /// would wait gives [`PutError::WouldDeadlock`] at once. A refused record
    /// comes back to the caller, who decides whether it is a drop.
    pub fn put(&self, record: R) -> Result<(), PutError<R>> {
        if self.lanes.is_some() {
            return self.lane_put_record(record, self.when_full());
        }
        match self.overflow {
            Overflow::Block => self.put_wait(record),
            Overflow::BlockFor(wait) => self.put_timeout(record, wait),
            Overflow::DropNewest => self.put_nowait(record),
            Overflow::DropOldest => {
                self.put_evicting(Item::Record(record));
                Ok(())
            }
        }
    }

    /// Puts `item`, dropping the oldest records while the queue is full.
    /// A sentinel or barrier taken out to make room is put back behind.
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

    /// Puts a record, waiting for room whatever the overflow policy. On a
    /// listener thread a full queue gives [`PutError::WouldDeadlock`]
    /// instead of waiting.
    pub fn put_wait(&self, record: R) -> Result<(), PutError<R>> {
        if self.lanes.is_some() {
            return self.lane_put_record(record, WhenFull::Wait(None));
        }
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
        if self.lanes.is_some() {
            return self.lane_put_record(record, WhenFull::Refuse);
        }
        match self.tx.try_send(Item::Record(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                Err(PutError::Full(into_record(item)))
            }
        }
    }

    /// Puts a record, waiting at most `timeout` for room.
    pub fn put_timeout(&self, record: R, timeout: Duration) -> Result<(), PutError<R>> {
        if self.lanes.is_some() {
            let deadline = Instant::now().checked_add(timeout);
            return self.lane_put_record(record, WhenFull::Wait(deadline));
        }
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
    /// Flush barriers are passed over (held for their listener). On a
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
                Some(Item::Record(mut r)) => {
                    if let Some(taken) = self.taken {
                        taken(&mut r);
                    }
                    return Ok(r);
                }
                Some(Item::Sentinel(_)) => return Err(GetError::Sentinel),
                // Only this listener's own barrier, taken by its own thread
                // through a `dequeue` hook, comes back: a hook cannot hand
                // a barrier on (flush refuses such listeners), so drop it.
                Some(Item::Barrier(_) | Item::Wake) => {}
                None => return Err(none),
            }
        }
    }

    /// Items queued now (records and sentinels).
    pub fn len(&self) -> usize {
        match &self.lanes {
            Some(lanes) => lanes.len(),
            None => self.rx.len(),
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity given at creation (0: unbounded), shared by all
    /// lanes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Lane puts.
impl<R> ChannelQueue<R> {
    /// What a full lane's put does under the queue's overflow policy.
    fn when_full(&self) -> WhenFull {
        match self.overflow {
            Overflow::Block => WhenFull::Wait(None),
            Overflow::BlockFor(wait) => WhenFull::Wait(Instant::now().checked_add(wait)),
            Overflow::DropNewest => WhenFull::Refuse,
            Overflow::DropOldest => WhenFull::Evict,
        }
    }

    /// Puts a record that `write` fills in place in a slot (returning its
    /// merge key, or `None` when it could not make the record: out of
    /// memory), as the overflow policy says. On a queue without lanes,
    /// `write` fills `blank()` and the record is put whole.
    #[inline]
    pub fn put_with(
        &self,
        blank: impl FnOnce() -> R,
        write: impl FnOnce(&mut R) -> Option<i64>,
    ) -> Result<(), PutError<()>>
    where
        R: Send + 'static,
    {
        let Some(lanes) = &self.lanes else {
            let mut record = blank();
            if write(&mut record).is_none() {
                return Err(PutError::NoMem(()));
            }
            return self.put(record).map_err(|e| match e {
                PutError::Full(_) => PutError::Full(()),
                PutError::Timeout(_) => PutError::Timeout(()),
                PutError::WouldDeadlock(_) => PutError::WouldDeadlock(()),
                PutError::NoMem(_) => PutError::NoMem(()),
            });
        };
        match self.lane_put(lanes, None, self.when_full(), write) {
            Ok(()) => Ok(()),
            Err(Refused::DroppedItself) => {
                self.count_drop();
                Ok(())
            }
            Err(Refused::Full) => Err(PutError::Full(())),
            Err(Refused::Timeout) => Err(PutError::Timeout(())),
            Err(Refused::WouldDeadlock) => Err(PutError::WouldDeadlock(())),
            Err(Refused::NoMem) => Err(PutError::NoMem(())),
        }
    }

    /// Puts a whole record into the calling thread's lane.
    fn lane_put_record(&self, record: R, full: WhenFull) -> Result<(), PutError<R>> {
        let Some(lanes) = &self.lanes else {
            return Err(PutError::Full(record));
        };
        let mut record = Some(record);
        let put = self.lane_put(lanes, None, full, |slot| {
            let record = record.take().expect("written once");
            let key = lanes.key(&record);
            lanes.put_in(slot, record);
            Some(key)
        });
        match (put, record) {
            (Ok(()), _) => Ok(()),
            (Err(Refused::DroppedItself), Some(record)) => {
                self.count_drop();
                if let Some(evicted) = &self.evicted {
                    evicted(record);
                }
                Ok(())
            }
            (Err(refused), Some(record)) => Err(match refused {
                Refused::DroppedItself | Refused::Full => PutError::Full(record),
                Refused::Timeout => PutError::Timeout(record),
                Refused::WouldDeadlock => PutError::WouldDeadlock(record),
                Refused::NoMem => PutError::NoMem(record),
            }),
            // Justified: a refused put never called `write`.
            (Err(_), None) => unreachable!("a refused put keeps its record"),
        }
    }

    /// Puts a record (`write`) or a control item into the calling
    /// thread's lane; wakes a sleeping taker.
    #[inline]
    fn lane_put(
        &self,
        lanes: &Lanes<R>,
        control: Option<Control>,
        full: WhenFull,
        write: impl FnOnce(&mut R) -> Option<i64>,
    ) -> Result<(), Refused> {
        let wake = lanes.put(control, full, write, &mut |old| {
            self.count_drop();
            if let Some(evicted) = &self.evicted {
                evicted(old);
            }
        })?;
        if wake {
            // Full: a wake item is already there.
            let _ = crate::tsan::unseen(|| self.tx.try_send(Item::Wake));
        }
        Ok(())
    }
}

impl<R> From<Taken<R>> for Item<R> {
    fn from(taken: Taken<R>) -> Item<R> {
        match taken {
            Taken::Record(record) => Item::Record(record),
            Taken::Control(Control::Sentinel(owner)) => Item::Sentinel(owner),
            Taken::Control(Control::Barrier(id)) => Item::Barrier(id),
        }
    }
}

fn into_record<R>(item: Item<R>) -> R {
    match item {
        Item::Record(r) => r,
        // Justified: the put paths only ever send `Item::Record` and get
        // back what they sent.
        Item::Sentinel(_) | Item::Barrier(_) | Item::Wake => {
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

impl<R> ChannelQueue<R> {
    /// Takes the next item the calling thread may see, waiting as `wait`
    /// says; `None` when nothing came in time.
    ///
    /// Items held for this thread's listener come first. A sentinel or
    /// barrier addressed to another listener is held for it and passed over;
    /// one whose listener is gone is dropped. Off listener threads a
    /// sentinel is returned, and counted as vanished for its listener.
    #[inline]
    fn take(&self, wait: &mut Wait<'_>) -> Option<Item<R>> {
        // The common case, kept short: nothing new held, a record ready.
        if !self.new_holds() {
            if let Some(item) = self.poll() {
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
                        Wait::No => self.poll().map_or(Slept::TimedOut, Slept::Item),
                        Wait::Until(deadline) => self.sleep_take(*deadline, None),
                        Wait::Spin(idle, gate) => self.spin_take(&mut **idle, *gate),
                    };
                    match slept {
                        Slept::Item(item) => item,
                        Slept::Woken => {
                            woken = true;
                            continue;
                        }
                        Slept::Again => continue,
                        Slept::TimedOut => return None,
                    }
                }
            };
            woken = false;
            match item {
                Item::Record(_) => return Some(item),
                Item::Sentinel(owner) => {
                    if self.arrived(owner, Held::Sentinel) {
                        return Some(item);
                    }
                }
                Item::Barrier(id) => {
                    if self.arrived(0, Held::Barrier(id)) {
                        return Some(item);
                    }
                }
                Item::Wake => {}
            }
        }
    }

    /// The next item without waiting: from the lanes, in their order, or
    /// from the channel.
    #[inline]
    fn poll(&self) -> Option<Item<R>> {
        let Some(lanes) = &self.lanes else {
            return self.rx.try_recv().ok();
        };
        let (taken, depth, wake) = lanes.next();
        self.raise_high_water(depth as usize);
        if wake {
            // Full: a wake item is already there.
            let _ = crate::tsan::unseen(|| self.tx.try_send(Item::Wake));
        }
        taken.map(Item::from)
    }

    /// A blocking take for the listener: when the queue is empty, tells
    /// `idle`, then looks again for up to [`IDLE_SPIN`] before sleeping.
    fn spin_take(&self, idle: &mut dyn FnMut(), gate: Option<&Gate>) -> Slept<R> {
        if let Some(item) = self.poll() {
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
            if let Some(item) = self.poll() {
                return Slept::Item(item);
            }
            if self.new_holds() {
                return Slept::Woken;
            }
            if start.elapsed() >= IDLE_SPIN {
                return self.sleep_take(None, gate);
            }
            pauses = (pauses * 2).min(SPIN_PAUSES_MAX);
        }
    }

    /// Waits for an item until `deadline` (`None`: for ever). A listener's
    /// thread also wakes when an item is held for its listener. With lanes,
    /// `gate` is let go of while the thread sleeps (it holds no record
    /// then) and taken again before it looks.
    fn sleep_take(&self, deadline: Option<Instant>, gate: Option<&Gate>) -> Slept<R> {
        let Some(lanes) = &self.lanes else {
            return self.sleep_on_channel(deadline);
        };
        let (taken, wake) = lanes.announce_sleep();
        if wake {
            let _ = crate::tsan::unseen(|| self.tx.try_send(Item::Wake));
        }
        if let Some(taken) = taken {
            return Slept::Item(Item::from(taken));
        }
        if let Some(gate) = gate {
            gate.leave();
        }
        let slept = crate::tsan::unseen(|| self.sleep_on_channel(deadline));
        if let Some(gate) = gate {
            gate.enter();
        }
        lanes.woke(matches!(slept, Slept::Item(Item::Wake)));
        match slept {
            Slept::Item(Item::Wake) => Slept::Again,
            other => other,
        }
    }

    /// Sleeps on the channel until an item comes, `deadline` passes, or
    /// (on a listener's thread) an item is held for its listener.
    fn sleep_on_channel(&self, deadline: Option<Instant>) -> Slept<R> {
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

    /// The listener's take: the next record, sentinel or flush barrier
    /// for the calling listener thread. With `block`, waits for one, and
    /// calls `idle` when it finds the queue empty and is about to wait
    /// (the end of a batch). First, once drops happened, the report record.
    #[inline]
    #[cfg(test)]
    pub(crate) fn dequeue_for(&self, block: bool, idle: &mut dyn FnMut()) -> Dequeued<R> {
        self.dequeue_gated(block, idle, None)
    }

    /// [`ChannelQueue::dequeue_for`] for a listener's thread holding its
    /// crash `gate`, which it lets go of while it sleeps.
    pub(crate) fn dequeue_gated(
        &self,
        block: bool,
        idle: &mut dyn FnMut(),
        gate: Option<&Gate>,
    ) -> Dequeued<R> {
        if let Some(report) = self.take_report() {
            return Dequeued::Record(report);
        }
        // The depth only grows between takes, so measuring it before each
        // take finds its peak (with lanes, the take measures it).
        if self.lanes.is_none() {
            self.sample_depth();
        }
        let mut wait = if block {
            Wait::Spin(idle, gate)
        } else {
            Wait::No
        };
        match self.take(&mut wait) {
            Some(Item::Record(mut r)) => {
                if let Some(taken) = self.taken {
                    taken(&mut r);
                }
                Dequeued::Record(r)
            }
            Some(Item::Sentinel(_)) => Dequeued::Sentinel,
            Some(Item::Barrier(id)) => Dequeued::Barrier(id),
            // `take` never gives a wake item.
            Some(Item::Wake) | None => Dequeued::Empty,
        }
    }

    /// The crash flush's take ([`crate::crash`]): every record queued now,
    /// in order, up to a waiting stop or flush, to `visit`, consumed in
    /// place. `None` without lanes, or when another thread held the
    /// queue's locks until `give_up`.
    pub(crate) fn crash_drain(
        &self,
        give_up: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&R),
    ) -> Option<u64> {
        self.lanes.as_ref()?.crash_drain(give_up, visit)
    }

    /// True when the queue has lanes (the crash flush can drain it).
    pub(crate) fn has_lanes(&self) -> bool {
        self.lanes.is_some()
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.len() as u64,
            high_water: self.high_water.load(Ordering::Relaxed) as u64,
            dropped: self.dropped(),
        }
    }

    /// Raises the high-water mark to the depth now, if higher.
    fn sample_depth(&self) {
        self.raise_high_water(self.rx.len());
    }

    fn raise_high_water(&self, queued: usize) {
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
