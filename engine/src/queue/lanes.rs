//! Per-thread lanes: the built-in queue's records without a shared line.
//!
//! With lanes, each thread that puts on a queue writes into a lane of its
//! own: a single-producer, single-consumer FIFO of slots, in segments of
//! [`SEGMENT`] slots. A put fills the next slot in place (a built-in record
//! reuses the buffers the slot kept) and publishes it with one release
//! store of the lane's tail; no read-modify-write on a line another
//! producer touches. Sentinels and flush barriers ride in the lane of the
//! thread that puts them, so a thread's own records and control items keep
//! their order exactly.
//!
//! **Order across lanes.** Each control item (sentinel, barrier) takes a
//! number from the queue's control counter, `controls`, and each record
//! notes how many numbers were taken when it was put (its *fence*). The
//! consumer keeps the count of control items it took, `c`:
//! - a record is taken only when its fence is at most `c` (every control
//!   item put before it is taken first);
//! - control item number `c` is taken only when no record with a fence of
//!   at most `c` is published in any lane, looked at after the control item
//!   was seen (every record put before it, on any thread, comes first);
//! - among the records that may be taken, the one with the smallest merge
//!   key goes first (the time it was logged, on a clock that is never
//!   stepped; within a lane the order is the lane's).
//!
//! A thread takes a number only once the queue admitted its item, so a
//! number taken is always pushed at once: the consumer never waits for a
//! gap.
//!
//! **Consumers.** Everything a consumer does happens under the queue's
//! drain lock, so several listeners and a program's gets may share the
//! queue; with one listener the lock is only ever taken by it.
//!
//! **Sleeping.** A consumer that finds nothing counts itself in `sleepers`,
//! looks again, and sleeps on the queue's channel; a producer that sees a
//! sleeper after its store sends one wake item through that channel (a
//! Dekker pair of sequentially consistent fences); a consumer that takes a
//! control item, or a record with more queued, passes the wake on.
//!
//! **Capacity.** Shared by the lanes and exact: a bounded queue's producer
//! admits each item with a compare-and-swap of `reserved` against `taken`
//! (which only consumers write). A producer that waits for room counts
//! itself in `blocked` and sleeps on `room`; the consumer that frees room
//! wakes it.
//!
//! **Life.** A thread's lanes are closed by a pthread key's destructor
//! when it exits; the consumer forgets a closed lane once it is empty, and
//! its segments go to the depot. A thread without its cache (no pthread
//! key) puts through the queue's shared *orphan* lane, one producer at a
//! time. A put or take that interrupts the same thread inside the lanes (a
//! signal handler) is refused. `docs/lanes.md` says why each choice.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

/// Slots per segment of a lane.
pub const SEGMENT: usize = 128;

/// A sentinel or a flush barrier, as a lane carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// A sentinel addressed to the listener with this id.
    Sentinel(u64),
    /// The flush barrier with this id.
    Barrier(u64),
}

/// What a consumer took off a lane.
pub(super) enum Taken<R> {
    Record(R),
    Control(Control),
}

/// One line each: the producer writing the next slot never shares a cache
/// line with the consumer reading this one.
#[repr(align(64))]
struct Slot<R> {
    /// A record's merge key (when it was logged: `clock::now_and_key`).
    key: i64,
    /// A record: the control numbers taken before it was put. A control
    /// item: its number.
    fence: u64,
    /// A control item, or `None` for a record (in `value`).
    control: Option<Control>,
    /// A record the drop-oldest policy took out from behind a control
    /// item: the consumer passes over it.
    dead: bool,
    /// The record; kept (with whatever it owns) when the slot is reused.
    value: R,
}

struct Segment<R> {
    slots: Box<[UnsafeCell<Slot<R>>]>,
    next: AtomicPtr<Segment<R>>,
}

impl<R> Segment<R> {
    /// A new segment of blank slots; `None` when the memory could not be
    /// allocated (a put then fails with [`Refused::NoMem`]).
    fn try_new(blank: fn() -> R) -> Option<*mut Segment<R>> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(SEGMENT).ok()?;
        slots.extend((0..SEGMENT).map(|_| {
            UnsafeCell::new(Slot {
                key: 0,
                fence: 0,
                control: None,
                dead: false,
                value: blank(),
            })
        }));
        let layout = std::alloc::Layout::new::<Segment<R>>();
        // SAFETY: a segment's layout has a nonzero size.
        let seg = unsafe { std::alloc::alloc(layout) }.cast::<Segment<R>>();
        if seg.is_null() {
            return None;
        }
        // SAFETY: fresh memory for one Segment, from the global allocator
        // with Segment's layout, as `Box::from_raw` later expects.
        unsafe {
            seg.write(Segment {
                slots: slots.into_boxed_slice(),
                next: AtomicPtr::new(ptr::null_mut()),
            })
        };
        Some(seg)
    }
}

/// A locked mutex; ThreadSanitizer is told (it cannot see std's futex
/// locks, and the data they guard is reallocated by several threads).
struct Locked<'a, T> {
    guard: MutexGuard<'a, T>,
    mutex: *const (),
}

/// Locks `mutex` (a poisoned one too: every step under these locks
/// leaves the data consistent).
fn lock<T>(mutex: &Mutex<T>) -> Locked<'_, T> {
    let guard = mutex.lock().unwrap_or_else(PoisonError::into_inner);
    Locked::held(guard, mutex)
}

/// Tries `mutex` until `give_up` says so (a spin, then yields): for the
/// crash flush, which must not wait for a lock a stopped thread may hold.
fn try_until<'a, T>(mutex: &'a Mutex<T>, give_up: &dyn Fn() -> bool) -> Option<Locked<'a, T>> {
    let mut spins = 0u32;
    loop {
        match mutex.try_lock() {
            Ok(guard) => return Some(Locked::held(guard, mutex)),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                return Some(Locked::held(p.into_inner(), mutex))
            }
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        if give_up() {
            return None;
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            // sched_yield: async-signal-safe.
            std::thread::yield_now();
        }
    }
}

impl<'a, T> Locked<'a, T> {
    fn held(guard: MutexGuard<'a, T>, mutex: &'a Mutex<T>) -> Locked<'a, T> {
        let mutex = mutex as *const Mutex<T> as *const ();
        crate::tsan::acquire(mutex);
        Locked { guard, mutex }
    }
}

impl<T> std::ops::Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        // Before the guard (a field) unlocks.
        crate::tsan::release(self.mutex);
    }
}

/// Keeps what it holds on a cache line pair of its own.
#[repr(align(128))]
struct Padded<T>(T);

/// The producer's end: touched only by the lane's producer.
struct ProducerEnd<R> {
    seg: *mut Segment<R>,
    /// The count of items in segments before `seg`.
    base: u64,
    /// Items pushed (a copy of `tail`).
    tail: u64,
    /// The queue's count of items taken, as this producer last read it.
    taken_seen: u64,
}

/// The consumer's end: touched only under the queue's drain lock.
struct ConsumerEnd<R> {
    seg: *mut Segment<R>,
    base: u64,
    /// Items taken (a copy of `head`).
    head: u64,
    /// The producer's tail as last read.
    tail_seen: u64,
    /// Records evicted from behind control items and not passed over yet.
    dead: u64,
    /// The crash flush takes nothing published after it began: the tail
    /// then (`u64::MAX` outside a crash flush).
    crash_end: u64,
}

/// One thread's lane on one queue.
pub(super) struct Lane<R> {
    tail: Padded<AtomicU64>,
    producer: Padded<UnsafeCell<ProducerEnd<R>>>,
    head: Padded<AtomicU64>,
    consumer: Padded<UnsafeCell<ConsumerEnd<R>>>,
    /// The producer thread exited: nothing more will be pushed.
    closed: AtomicBool,
    /// The queue is gone: a thread's cache may forget the lane.
    gone: AtomicBool,
    /// Segments the consumer left, for the producer to reuse (at most
    /// [`LANE_SPARE`]; more go to the depot).
    spare: Mutex<Vec<SegmentPtr<R>>>,
    depot: Arc<Depot<R>>,
}

/// Spare segments a lane keeps for itself.
const LANE_SPARE: usize = 2;

/// The queue's spare segments, shared by its lanes: a lane that grows
/// takes them (with the records their slots keep) before allocating, and
/// the lanes of exited threads end here. At most `keep`; more are freed.
struct Depot<R> {
    segments: Mutex<Vec<SegmentPtr<R>>>,
    keep: usize,
    blank: fn() -> R,
}

impl<R> Depot<R> {
    fn try_take(&self) -> Option<*mut Segment<R>> {
        let spare = lock(&self.segments).pop();
        match spare {
            Some(SegmentPtr(seg)) => {
                crate::tsan::acquire(seg as *const ());
                Some(seg)
            }
            None => Segment::try_new(self.blank),
        }
    }

    /// A lane's first segment: out of memory aborts, as any small
    /// bookkeeping allocation of a new thread's lane does (README, "Out of
    /// memory").
    fn take(&self) -> *mut Segment<R> {
        self.try_take().unwrap_or_else(|| {
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<Segment<R>>())
        })
    }

    /// Keeps `seg` (no longer linked or used by anyone) or frees it.
    fn give(&self, seg: *mut Segment<R>) {
        crate::tsan::release(seg as *const ());
        let mut segments = lock(&self.segments);
        if segments.len() < self.keep {
            segments.push(SegmentPtr(seg));
        } else {
            drop(segments);
            // SAFETY: the caller gives up a segment nobody else uses.
            drop(unsafe { Box::from_raw(seg) });
        }
    }
}

impl<R> Depot<R> {
    /// Frees every spare segment.
    fn clear(&self) {
        let mut segments = lock(&self.segments);
        for SegmentPtr(seg) in segments.drain(..) {
            // SAFETY: the depot owns its segments.
            drop(unsafe { Box::from_raw(seg) });
        }
    }
}

impl<R> Drop for Depot<R> {
    fn drop(&mut self) {
        let segments = self
            .segments
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for SegmentPtr(seg) in segments.drain(..) {
            // SAFETY: the depot owns its segments.
            drop(unsafe { Box::from_raw(seg) });
        }
    }
}

struct SegmentPtr<R>(*mut Segment<R>);
// SAFETY: a segment in the spare list belongs to nobody else; it is moved
// between the consumer and the producer under the list's lock.
unsafe impl<R: Send> Send for SegmentPtr<R> {}

// SAFETY: the producer end is used by one thread at a time (the lane's
// owner, or the orphan lane's lock holder), the consumer end under the
// queue's drain lock; slots pass between them with release/acquire stores
// of `tail` and `head`. `R` itself crosses threads, so it must be `Send`.
unsafe impl<R: Send> Send for Lane<R> {}
// SAFETY: as above.
unsafe impl<R: Send> Sync for Lane<R> {}

impl<R> Lane<R> {
    fn new(depot: Arc<Depot<R>>) -> Lane<R> {
        let seg = depot.take();
        // SAFETY: a segment from the depot is nobody else's.
        unsafe { (*seg).next.store(ptr::null_mut(), Ordering::Relaxed) };
        Lane {
            tail: Padded(AtomicU64::new(0)),
            producer: Padded(UnsafeCell::new(ProducerEnd {
                seg,
                base: 0,
                tail: 0,
                taken_seen: 0,
            })),
            head: Padded(AtomicU64::new(0)),
            consumer: Padded(UnsafeCell::new(ConsumerEnd {
                seg,
                base: 0,
                head: 0,
                tail_seen: 0,
                dead: 0,
                crash_end: u64::MAX,
            })),
            closed: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            spare: Mutex::new(Vec::new()),
            depot,
        }
    }

    /// Items in the lane now (any thread; a snapshot).
    fn len(&self) -> u64 {
        let head = self.head.0.load(Ordering::Acquire);
        self.tail.0.load(Ordering::Acquire).saturating_sub(head)
    }

    /// Producer: fills the next slot with `write` and publishes it (the
    /// lane grows by a segment when needed; the queue's capacity is
    /// counted by [`Lanes`]).
    ///
    /// # Safety
    /// Only the lane's producer calls it.
    unsafe fn push(&self, write: impl FnOnce(&mut Slot<R>) -> bool) -> Result<(), Refused> {
        // SAFETY: the caller is the producer.
        if !unsafe { self.has_slot() } {
            return Err(Refused::NoMem);
        }
        // SAFETY: the producer end is the caller's alone.
        let p = unsafe { &mut *self.producer.0.get() };
        // SAFETY: slots from `head` to `tail` are the consumer's; this one
        // (at `tail`) is the producer's until published.
        let slot = unsafe { &mut *(*p.seg).slots[(p.tail - p.base) as usize].get() };
        if !write(slot) {
            // Not made: the slot stays the producer's, for its next push.
            return Err(Refused::NoMem);
        }
        p.tail += 1;
        crate::tsan::release(self as *const Lane<R> as *const ());
        self.tail.0.store(p.tail, Ordering::Release);
        Ok(())
    }

    /// Producer: makes sure the next push has a slot, linking a segment
    /// in if the current one is full; false when none could be had (out of
    /// memory).
    ///
    /// # Safety
    /// Only the lane's producer calls it.
    unsafe fn has_slot(&self) -> bool {
        // SAFETY: the producer end is the caller's alone.
        let p = unsafe { &mut *self.producer.0.get() };
        if p.tail - p.base < SEGMENT as u64 {
            return true;
        }
        let Some(next) = self.spare_segment() else {
            return false;
        };
        // SAFETY: `p.seg` is the producer's current segment, alive until
        // the consumer leaves it (after this link is published).
        unsafe { (*p.seg).next.store(next, Ordering::Release) };
        p.seg = next;
        p.base = p.tail;
        true
    }

    /// A segment for the producer: the lane's spare one, the depot's, or
    /// a new one.
    fn spare_segment(&self) -> Option<*mut Segment<R>> {
        let spare = lock(&self.spare).pop();
        let seg = match spare {
            Some(SegmentPtr(seg)) => seg,
            None => self.depot.try_take()?,
        };
        crate::tsan::acquire(seg as *const ());
        // SAFETY: a spare segment is nobody else's.
        unsafe { (*seg).next.store(ptr::null_mut(), Ordering::Relaxed) };
        Some(seg)
    }

    /// Consumer: the head slot, if one is published.
    ///
    /// # Safety
    /// Only under the queue's drain lock.
    // The consumer end is the drain lock holder's alone: the safety
    // contract makes the slot exclusive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn head_slot(&self, fresh: bool) -> Option<&mut Slot<R>> {
        // SAFETY: the caller's promise.
        unsafe { self.head_slot_for(fresh, false) }
    }

    /// [`Lane::head_slot`]; for the crash flush (`crash`), it reads the
    /// tail every time, never past `crash_end`, and never waits for a lock:
    /// a segment left behind goes to the spares if their lock is free and
    /// they have room, else it is leaked (the process is about to die).
    ///
    /// # Safety
    /// Only under the queue's drain lock.
    #[allow(clippy::mut_from_ref)]
    unsafe fn head_slot_for(&self, fresh: bool, crash: bool) -> Option<&mut Slot<R>> {
        // SAFETY: the consumer end is the drain lock holder's.
        let c = unsafe { &mut *self.consumer.0.get() };
        loop {
            if fresh || crash || c.head == c.tail_seen {
                // `crash_end` is the tail when a crash flush began (else
                // u64::MAX): the head never passes it.
                c.tail_seen = self.tail.0.load(Ordering::Acquire).min(c.crash_end);
                if c.head == c.tail_seen {
                    return None;
                }
                crate::tsan::acquire(self as *const Lane<R> as *const ());
            }
            if c.head - c.base == SEGMENT as u64 {
                // SAFETY: the producer linked the next segment before it
                // published the item at `head`.
                let next = unsafe { (*c.seg).next.load(Ordering::Acquire) };
                let old = std::mem::replace(&mut c.seg, next);
                c.base = c.head;
                if crash {
                    if let Ok(mut spare) = self.spare.try_lock() {
                        if spare.len() < spare.capacity() {
                            spare.push(SegmentPtr(old));
                        }
                    }
                } else {
                    crate::tsan::release(old as *const ());
                    let mut spare = lock(&self.spare);
                    if spare.len() < LANE_SPARE {
                        spare.push(SegmentPtr(old));
                    } else {
                        drop(spare);
                        self.depot.give(old);
                    }
                }
            }
            // SAFETY: the slot at `head` is published and the consumer's.
            let slot = unsafe { &mut *(*c.seg).slots[(c.head - c.base) as usize].get() };
            if !slot.dead {
                return Some(slot);
            }
            // Evicted from behind a control item (its room already given
            // back): pass over it.
            slot.dead = false;
            c.dead -= 1;
            c.head += 1;
            self.head.0.store(c.head, Ordering::Release);
        }
    }

    /// The crash flush begins (`Some`: nothing published after now is
    /// taken) or ends (`None`).
    ///
    /// # Safety
    /// Only under the queue's drain lock.
    unsafe fn crash_mark(&self, begin: bool) {
        // SAFETY: the consumer end is the drain lock holder's.
        let c = unsafe { &mut *self.consumer.0.get() };
        c.crash_end = if begin {
            self.tail.0.load(Ordering::Acquire)
        } else {
            u64::MAX
        };
    }

    /// Consumer: the first record (not a control item, not evicted) from
    /// the head.
    ///
    /// # Safety
    /// Only under the queue's drain lock.
    // The consumer end is the drain lock holder's alone: the safety
    // contract makes the slot exclusive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn first_record(&self) -> Option<&mut Slot<R>> {
        // SAFETY: under the drain lock (the caller's promise).
        unsafe { self.head_slot(true) }?;
        // SAFETY: the consumer end is the drain lock holder's.
        let c = unsafe { &*self.consumer.0.get() };
        let (mut seg, mut base) = (c.seg, c.base);
        for pos in c.head..c.tail_seen {
            if pos - base == SEGMENT as u64 {
                // SAFETY: published items are linked (see head_slot).
                seg = unsafe { (*seg).next.load(Ordering::Acquire) };
                base = pos;
            }
            // SAFETY: the slot at `pos` is published and the consumer's.
            let slot = unsafe { &mut *(*seg).slots[(pos - base) as usize].get() };
            if slot.control.is_none() && !slot.dead {
                return Some(slot);
            }
        }
        None
    }

    /// Consumer: items published and not taken, as last seen.
    ///
    /// # Safety
    /// Only under the queue's drain lock.
    unsafe fn seen(&self) -> u64 {
        // SAFETY: the consumer end is the drain lock holder's.
        let c = unsafe { &*self.consumer.0.get() };
        c.tail_seen - c.head - c.dead
    }

    /// Consumer: true when the lane was empty at its last look and has
    /// items now.
    ///
    /// # Safety
    /// Only under the queue's drain lock.
    unsafe fn filled_since(&self) -> bool {
        // SAFETY: the consumer end is the drain lock holder's.
        let c = unsafe { &mut *self.consumer.0.get() };
        c.head == c.tail_seen && {
            c.tail_seen = self.tail.0.load(Ordering::Acquire);
            crate::tsan::acquire(self as *const Lane<R> as *const ());
            c.head != c.tail_seen
        }
    }

    /// Consumer: one more record evicted from behind a control item.
    ///
    /// # Safety
    /// Only under the queue's drain lock.
    unsafe fn count_dead(&self) {
        // SAFETY: the consumer end is the drain lock holder's.
        unsafe { (*self.consumer.0.get()).dead += 1 };
    }

    /// Consumer: gives the head slot back to the producer (after
    /// [`Lane::head_slot`]).
    ///
    /// # Safety
    /// Only under the queue's drain lock, after `head_slot` gave a slot.
    unsafe fn advance(&self) {
        // SAFETY: the consumer end is the drain lock holder's.
        let c = unsafe { &mut *self.consumer.0.get() };
        c.head += 1;
        self.head.0.store(c.head, Ordering::Release);
    }
}

impl<R> Lane<R> {
    /// Frees the lane's segments (its queue is gone).
    ///
    /// # Safety
    /// Nobody puts into or takes from the lane any more.
    unsafe fn free_segments(&self) {
        // SAFETY: the consumer end is ours (the caller's promise).
        let c = unsafe { &mut *self.consumer.0.get() };
        let mut seg = std::mem::replace(&mut c.seg, ptr::null_mut());
        while !seg.is_null() {
            // SAFETY: the chain from the consumer's segment is the lane's.
            let boxed = unsafe { Box::from_raw(seg) };
            seg = boxed.next.load(Ordering::Relaxed);
        }
        let spare = std::mem::take(&mut *lock(&self.spare));
        for SegmentPtr(seg) in spare {
            // SAFETY: spare segments are the lane's alone.
            drop(unsafe { Box::from_raw(seg) });
        }
    }
}

impl<R> Drop for Lane<R> {
    /// The lane's segments go to the depot, with the records their slots
    /// keep, for the queue's other lanes.
    fn drop(&mut self) {
        crate::tsan::acquire(self as *const Lane<R> as *const ());
        let c = self.consumer.0.get_mut();
        let mut seg = c.seg;
        while !seg.is_null() {
            // SAFETY: the lane is the last owner of its segments: from the
            // consumer's, linked through `next`, to the producer's.
            let next = unsafe { (*seg).next.load(Ordering::Relaxed) };
            self.depot.give(seg);
            seg = next;
        }
        for SegmentPtr(seg) in self
            .spare
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            self.depot.give(seg);
        }
    }
}

/// Gives a slot's record to a consumer, leaving room for the next one.
pub type TakeOutFn<R> = Box<dyn Fn(&mut R) -> R + Send + Sync>;
/// Puts a whole record into a slot (a program's pointer record).
pub type PutInFn<R> = Box<dyn Fn(&mut R, R) + Send + Sync>;

/// How a queue's lanes make, fill and empty their slots.
pub struct LaneHooks<R> {
    /// What a new slot holds.
    pub blank: fn() -> R,
    /// Takes the record out of a slot for a consumer.
    pub take_out: TakeOutFn<R>,
    /// Puts a record made elsewhere into a slot.
    pub put_in: PutInFn<R>,
    /// A record's merge key, for records put whole.
    pub key: fn(&R) -> i64,
}

/// What a scan of the lanes' heads found.
struct Scan {
    /// The lane whose head record goes first, and its key.
    best: Option<(usize, i64)>,
    /// The lane whose head is the next control item.
    control: Option<usize>,
    /// Some lane is empty and its thread exited.
    empty_closed: bool,
    /// Some lane is empty.
    empty: bool,
    /// Items seen in all lanes.
    depth: u64,
}

/// The consumer's state: under the drain lock.
struct Drain<R> {
    lanes: Vec<Arc<Lane<R>>>,
    /// The registry version `lanes` is a copy of.
    version: u64,
    /// Control items taken.
    controls: u64,
}

/// The lanes of one queue.
pub(super) struct Lanes<R> {
    /// Unique in the process: a thread's cache knows the queue by it.
    id: u64,
    depot: Arc<Depot<R>>,
    hooks: LaneHooks<R>,
    /// Most items queued in all lanes together (`u64::MAX`: unbounded,
    /// and nothing is counted).
    cap: u64,
    /// Items admitted (a bounded queue's producers count them here, with a
    /// compare-and-swap against the capacity).
    reserved: Padded<AtomicU64>,
    /// Items taken or evicted (written under the drain lock).
    taken: Padded<AtomicU64>,
    /// Producers waiting for room.
    blocked: AtomicUsize,
    /// Waiting producers were woken and have not looked again yet.
    room_signaled: AtomicBool,
    registry: Mutex<Vec<Arc<Lane<R>>>>,
    version: AtomicU64,
    drain: Mutex<Drain<R>>,
    /// Control numbers taken.
    controls: Padded<AtomicU64>,
    /// Consumers about to sleep or asleep.
    sleepers: AtomicUsize,
    /// A wake item is on its way.
    wake_sent: AtomicBool,
    /// Producers waiting for room sleep here.
    room_lock: Mutex<()>,
    room: Condvar,
    /// For threads whose thread-locals are gone: one producer at a time.
    orphan: Mutex<Option<Arc<Lane<R>>>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why a lane put did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    Full,
    /// Drop-oldest on a queue full of sentinels and barriers: the new
    /// record itself is the one dropped (not written).
    DroppedItself,
    Timeout,
    WouldDeadlock,
    /// Out of memory: the record could not be made (its fill said so), or
    /// the lane could not grow by a segment.
    NoMem,
}

/// What [`Lanes::evict_oldest`] did.
enum Evicted<R> {
    Record(R),
    /// Only sentinels and barriers are queued.
    OnlyControls,
    /// No record to take now (room came back, or items are still being
    /// put).
    Nothing,
}

/// What a put on a full queue does.
#[derive(Debug, Clone, Copy)]
pub(super) enum WhenFull {
    Refuse,
    /// Wait until the deadline (`None`: for ever); on a listener thread
    /// refuse with [`Refused::WouldDeadlock`].
    Wait(Option<Instant>),
    /// Take the queue's oldest record out (the one a consumer would take
    /// next; given to the caller's `evicted`) to make room.
    Evict,
}

impl<R> Lanes<R> {
    pub(super) fn new(hooks: LaneHooks<R>, capacity: usize) -> Lanes<R> {
        // Spare segments for twice a full queue's worth of items (8192 for
        // an unbounded one): a lane that held a full queue and the lane
        // that follows it both keep theirs (and the records in them), so a
        // steady producer does not allocate a segment again.
        let items = 2 * if capacity == 0 {
            8192
        } else {
            capacity.min(1 << 16)
        };
        let depot = Arc::new(Depot {
            segments: Mutex::new(Vec::new()),
            keep: items / SEGMENT + 2,
            blank: hooks.blank,
        });
        Lanes {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            depot,
            hooks,
            cap: if capacity == 0 {
                u64::MAX
            } else {
                capacity as u64
            },
            reserved: Padded(AtomicU64::new(0)),
            taken: Padded(AtomicU64::new(0)),
            blocked: AtomicUsize::new(0),
            room_signaled: AtomicBool::new(false),
            registry: Mutex::new(Vec::new()),
            version: AtomicU64::new(0),
            drain: Mutex::new(Drain {
                lanes: Vec::new(),
                version: 0,
                controls: 0,
            }),
            controls: Padded(AtomicU64::new(0)),
            sleepers: AtomicUsize::new(0),
            wake_sent: AtomicBool::new(false),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
            orphan: Mutex::new(None),
        }
    }

    fn lock_drain(&self) -> Locked<'_, Drain<R>> {
        // Every step under the lock leaves the lanes consistent.
        lock(&self.drain)
    }

    fn register(&self) -> Arc<Lane<R>> {
        let lane = Arc::new(Lane::new(Arc::clone(&self.depot)));
        let mut registry = lock(&self.registry);
        registry.push(Arc::clone(&lane));
        self.version.fetch_add(1, Ordering::Release);
        lane
    }

    /// Puts one item into the calling thread's lane: a record that `write`
    /// fills in place (returning its merge key), or `control`. When the
    /// queue is full, does what `full` says; evicted records go to
    /// `evicted`.
    /// True when the put needs the caller to send a wake item.
    pub(super) fn put(
        &self,
        control: Option<Control>,
        full: WhenFull,
        write: impl FnOnce(&mut R) -> Option<i64>,
        evicted: &mut dyn FnMut(R),
    ) -> Result<bool, Refused> {
        // A put from a signal handler that interrupted this thread inside
        // the lanes (a put, or a take) could wait for a lock or a room the
        // interrupted code holds: refused.
        let Some(_inside) = Inside::enter() else {
            return Err(Refused::WouldDeadlock);
        };
        let mut write = Some(write);
        let mut put = |lane: &Lane<R>| {
            // SAFETY: `lane` is the calling thread's own and not in a push
            // (or the orphan lane, whose lock the caller holds): the
            // caller is its only producer.
            unsafe { self.put_in_lane(lane, control, full, &mut write, evicted) }
        };
        let found = LAST.try_with(|shortcut| {
            let (id, mut last) = shortcut.get();
            if id != self.id {
                last = with_cache(|cache| cache.lane_for(self) as *const ())?;
                shortcut.set((self.id, last));
            }
            // SAFETY: LAST points to a lane the cache holds until this
            // thread removes it (only when its queue is gone, and this
            // queue is alive); ids are unique, so it is a `Lane<R>`.
            let lane = unsafe { &*(last as *const Lane<R>) };
            Some(put(lane))
        });
        match found {
            Ok(Some(done)) => done,
            // No cache (thread-locals destroyed, or no pthread key): the
            // orphan lane, one producer at a time.
            _ => {
                let Ok(mut orphan) = (match self.orphan.try_lock() {
                    Ok(guard) => Ok(Locked::held(guard, &self.orphan)),
                    Err(std::sync::TryLockError::Poisoned(p)) => {
                        Ok(Locked::held(p.into_inner(), &self.orphan))
                    }
                    Err(std::sync::TryLockError::WouldBlock) => {
                        // Another thread holds it for one put (or this
                        // thread does, interrupted): wait, unless that
                        // would wait for itself.
                        if put_depth_is_nested() {
                            Err(())
                        } else {
                            Ok(lock(&self.orphan))
                        }
                    }
                }) else {
                    return Err(Refused::WouldDeadlock);
                };
                let lane = Arc::clone(orphan.get_or_insert_with(|| self.register()));
                let _nested = Nested::enter();
                let done = put(&lane);
                drop(orphan);
                done
            }
        }
    }

    /// [`Lanes::put`] into `lane`.
    ///
    /// # Safety
    /// The caller is `lane`'s producer.
    unsafe fn put_in_lane(
        &self,
        lane: &Lane<R>,
        control: Option<Control>,
        full: WhenFull,
        write: &mut Option<impl FnOnce(&mut R) -> Option<i64>>,
        evicted: &mut dyn FnMut(R),
    ) -> Result<bool, Refused> {
        // SAFETY (all calls on `lane` below): the caller is its producer.
        while !unsafe { self.reserve(lane) } {
            match full {
                WhenFull::Refuse => return Err(Refused::Full),
                WhenFull::Wait(_) if crate::threads::on_listener_thread() => {
                    return Err(Refused::WouldDeadlock)
                }
                WhenFull::Wait(deadline) => {
                    // Room usually comes back within microseconds: look
                    // again a few times (spinning, then yielding) before
                    // sleeping, as crossbeam's channels do.
                    if !self.room_soon() && !self.wait_room(deadline) {
                        return Err(Refused::Timeout);
                    }
                }
                WhenFull::Evict => match self.evict_oldest() {
                    Evicted::Record(old) => {
                        // The program's on_drop may put again.
                        let _outside = Inside::leave();
                        evicted(old);
                    }
                    // Only sentinels and barriers are queued: they stay,
                    // and the new record is the oldest record to drop.
                    Evicted::OnlyControls => return Err(Refused::DroppedItself),
                    // Room came back meanwhile, or items admitted by other
                    // threads are not published yet: look again.
                    Evicted::Nothing => std::thread::yield_now(),
                },
            }
        }
        // Room is reserved and only this thread fills the lane. A lane that
        // cannot grow (out of memory) gives the room back; past that the
        // put cannot fail, so a control number taken is always pushed.
        if !unsafe { lane.has_slot() } {
            self.unreserve();
            return Err(Refused::NoMem);
        }
        let mut panicked = None;
        let pushed = match control {
            Some(control) => {
                let number = self.controls.0.fetch_add(1, Ordering::SeqCst);
                unsafe {
                    lane.push(|slot| {
                        slot.dead = false;
                        slot.control = Some(control);
                        slot.fence = number;
                        true
                    })
                }
            }
            None => {
                let fence = self.controls.0.load(Ordering::SeqCst);
                let write = write.take();
                unsafe {
                    lane.push(|slot| {
                        slot.dead = false;
                        slot.control = None;
                        slot.fence = fence;
                        let Some(write) = write else {
                            return false;
                        };
                        // A fill that panics, or cannot make its record
                        // (out of memory), publishes nothing: the slot
                        // stays the producer's and the room goes back.
                        let value = AssertUnwindSafe(&mut slot.value);
                        match catch_unwind(AssertUnwindSafe(move || write(value.0))) {
                            Ok(Some(key)) => {
                                slot.key = key;
                                true
                            }
                            Ok(None) => false,
                            Err(payload) => {
                                panicked = Some(payload);
                                false
                            }
                        }
                    })
                }
            }
        };
        if pushed.is_err() {
            self.unreserve();
            if let Some(payload) = panicked {
                resume_unwind(payload);
            }
            return Err(Refused::NoMem);
        }
        // Dekker with a consumer going to sleep: it counts itself in
        // `sleepers`, then looks at the tails.
        fence(Ordering::SeqCst);
        Ok(self.sleepers.load(Ordering::Relaxed) != 0
            && !self.wake_sent.swap(true, Ordering::AcqRel))
    }

    /// Producer: admits one more item if the queue has room.
    ///
    /// # Safety
    /// The caller is `lane`'s producer.
    #[inline]
    unsafe fn reserve(&self, lane: &Lane<R>) -> bool {
        if self.cap == u64::MAX {
            return true;
        }
        // SAFETY: the producer end is the caller's alone.
        let p = unsafe { &mut *lane.producer.0.get() };
        let mut admitted = self.reserved.0.load(Ordering::Relaxed);
        loop {
            if admitted.saturating_sub(p.taken_seen) >= self.cap {
                p.taken_seen = self.taken.0.load(Ordering::SeqCst);
                if admitted.saturating_sub(p.taken_seen) >= self.cap {
                    return false;
                }
            }
            match self.reserved.0.compare_exchange_weak(
                admitted,
                admitted + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => admitted = now,
            }
        }
    }

    /// Producer: gives back the room [`Lanes::reserve`] admitted, for a put
    /// that did not happen; waiting producers look again.
    fn unreserve(&self) {
        if self.cap == u64::MAX {
            return;
        }
        self.reserved.0.fetch_sub(1, Ordering::SeqCst);
        if self.blocked.load(Ordering::SeqCst) != 0 {
            self.wake_producers();
        }
    }

    /// True when the queue has room now (any thread).
    fn has_room(&self) -> bool {
        let taken = self.taken.0.load(Ordering::SeqCst);
        self.reserved.0.load(Ordering::SeqCst).saturating_sub(taken) < self.cap
    }

    /// Consumer (under the drain lock): one item left the queue; wakes the
    /// producers waiting for room.
    fn release_room(&self) {
        if self.cap == u64::MAX {
            return;
        }
        // Only drain lock holders write it: no read-modify-write needed.
        let taken = self.taken.0.load(Ordering::Relaxed) + 1;
        // Sequentially consistent with the load of `blocked`: a producer
        // that counted itself and then read the old count is seen.
        self.taken.0.store(taken, Ordering::SeqCst);
        // One wake per round of waiting producers, not one per record: a
        // producer clears `room_signaled` before it looks for room again.
        if self.blocked.load(Ordering::SeqCst) != 0
            && !self.room_signaled.swap(true, Ordering::SeqCst)
        {
            self.wake_producers();
        }
    }

    /// True when room came back within a short spin-then-yield.
    fn room_soon(&self) -> bool {
        for step in 0..10u32 {
            if self.has_room() {
                return true;
            }
            if step < 6 {
                for _ in 0..1u32 << step {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
        self.has_room()
    }

    /// Waits until the queue may have room or `deadline` passes; false on
    /// timeout.
    fn wait_room(&self, deadline: Option<Instant>) -> bool {
        let mut guard = self
            .room_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.blocked.fetch_add(1, Ordering::SeqCst);
        let room = loop {
            self.room_signaled.store(false, Ordering::SeqCst);
            if self.has_room() {
                break true;
            }
            guard = match deadline {
                None => self
                    .room
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    self.room
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        };
        self.blocked.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        room
    }

    /// Takes the record a consumer would take next out of the queue (the
    /// drop-oldest policy; a producer, as consumer under the drain lock).
    /// `None` when no record may be taken now.
    fn evict_oldest(&self) -> Evicted<R> {
        let mut drain = self.lock_drain();
        let drain = &mut *drain;
        self.sync(drain);
        let mut oldest: Option<(&Lane<R>, i64)> = None;
        let mut published = 0;
        for lane in &drain.lanes {
            // SAFETY: under the drain lock.
            if let Some(slot) = unsafe { lane.first_record() } {
                if oldest.is_none_or(|(_, key)| slot.key < key) {
                    oldest = Some((lane, slot.key));
                }
            }
            // SAFETY: under the drain lock (first_record refreshed it).
            published += unsafe { lane.seen() };
        }
        let Some((lane, _)) = oldest else {
            // Everything admitted is published and none is a record: only
            // sentinels and barriers are queued.
            let admitted = self.len() as u64;
            return if !self.has_room() && published >= admitted {
                Evicted::OnlyControls
            } else {
                Evicted::Nothing
            };
        };
        // SAFETY: under the drain lock; found just above.
        let slot = unsafe { lane.first_record() }.expect("found above");
        let record = (self.hooks.take_out)(&mut slot.value);
        slot.dead = true;
        // SAFETY: under the drain lock.
        unsafe { lane.count_dead() };
        // A dead head is passed over at once.
        // SAFETY: under the drain lock.
        unsafe { lane.head_slot(false) };
        self.release_room();
        Evicted::Record(record)
    }

    /// What the lanes' heads hold, for the drain lock holder.
    fn scan(&self, drain: &Drain<R>, fresh: bool) -> Scan {
        let mut scan = Scan {
            best: None,
            control: None,
            empty_closed: false,
            empty: false,
            depth: 0,
        };
        for (i, lane) in drain.lanes.iter().enumerate() {
            let closed = lane.closed.load(Ordering::Acquire);
            // SAFETY: under the drain lock.
            let head = unsafe { lane.head_slot(fresh) };
            let Some(slot) = head else {
                scan.empty_closed |= closed;
                scan.empty = true;
                continue;
            };
            // SAFETY: under the drain lock.
            scan.depth += unsafe { lane.seen() };
            match slot.control {
                None if slot.fence <= drain.controls
                    && scan.best.is_none_or(|(_, key)| slot.key < key) =>
                {
                    scan.best = Some((i, slot.key));
                }
                Some(_) if slot.fence == drain.controls => scan.control = Some(i),
                _ => {}
            }
        }
        scan
    }

    /// Takes the record at `lane`'s head (seen by a scan, under the drain
    /// lock).
    fn take_record(&self, lane: &Lane<R>) -> R {
        // SAFETY: under the drain lock; the scan saw this slot.
        let slot = unsafe { lane.head_slot(false) }.expect("seen by the scan");
        let record = (self.hooks.take_out)(&mut slot.value);
        // SAFETY: as above.
        unsafe { lane.advance() };
        self.release_room();
        record
    }

    /// The next item a consumer may take, in order; `None` when none may
    /// be taken now. Also returns the depth seen (for the high-water mark)
    /// and whether sleeping consumers must be woken (a control item was
    /// taken: records behind it may be taken now).
    pub(super) fn next(&self) -> (Option<Taken<R>>, u64, bool) {
        // A take from a signal handler that interrupted this thread inside
        // the lanes finds nothing rather than wait for itself.
        let Some(_inside) = Inside::enter() else {
            return (None, 0, false);
        };
        let mut drain = self.lock_drain();
        let drain = &mut *drain;
        let mut confirmed = false;
        let mut rechecked = false;
        loop {
            self.sync(drain);
            let scan = self.scan(drain, confirmed);
            if let Some((i, _)) = scan.best {
                if scan.empty && !rechecked {
                    // A lane found empty before the chosen one was read may
                    // have a record put before the chosen one (that put
                    // happened before it): look at the empty lanes again.
                    rechecked = true;
                    // SAFETY: under the drain lock.
                    if drain
                        .lanes
                        .iter()
                        .any(|lane| unsafe { lane.filled_since() })
                    {
                        continue;
                    }
                }
                let record = self.take_record(&drain.lanes[i]);
                // More is queued and another consumer may be asleep (the
                // one wake item woke only one): pass the wake on.
                let wake = scan.depth > 1
                    && self.sleepers.load(Ordering::SeqCst) != 0
                    && !self.wake_sent.swap(true, Ordering::AcqRel);
                return (Some(Taken::Record(record)), scan.depth, wake);
            }
            if let Some(i) = scan.control {
                if !confirmed {
                    // Every record put before this control item must be
                    // seen: look at every lane again, after it.
                    confirmed = true;
                    continue;
                }
                let lane = &drain.lanes[i];
                // SAFETY: under the drain lock; the scan saw this slot.
                let slot = unsafe { lane.head_slot(false) }.expect("seen by the scan");
                let item = slot.control.take().expect("a control item");
                drain.controls += 1;
                // SAFETY: as above.
                unsafe { lane.advance() };
                self.release_room();
                // Records behind it may be taken now, by anyone: a sleeping
                // consumer (counted before its last look, made under this
                // lock) must look again.
                let wake = self.sleepers.load(Ordering::SeqCst) != 0
                    && !self.wake_sent.swap(true, Ordering::AcqRel);
                return (Some(Taken::Control(item)), scan.depth, wake);
            }
            if scan.empty_closed {
                self.forget_closed(drain);
            }
            return (None, scan.depth, false);
        }
    }

    /// The crash flush's take (a fatal signal's handler, [`crate::crash`]):
    /// hands `visit` every record queued now, in the order a consumer would
    /// take them, up to the first control item (a stop or flush still
    /// waiting keeps its place, and the records ordered after it stay), and
    /// consumes each in place: the slot keeps its record for its producer,
    /// as after any take. Returns how many records `visit` saw, or `None`
    /// when the drain lock or the lane registry stayed held by another
    /// thread until `deadline` passed.
    ///
    /// Records published after it began are left (producers on other
    /// threads go on while it runs), so it ends.
    ///
    /// Async-signal-safe as far as the lanes go: no allocation (a segment
    /// left behind goes to the lane's spares only when their lock is free,
    /// else it is leaked), no lock waited for (each is tried until
    /// `deadline`), producers waiting for room are woken only if their
    /// lock is free.
    pub(super) fn crash_drain(
        &self,
        deadline: &dyn Fn() -> bool,
        visit: &mut dyn FnMut(&R),
    ) -> Option<u64> {
        // No `Inside` guard: a put or take this thread was in when the
        // signal came holds at most a lock (tried here, not waited for)
        // and a slot not yet published (not read here).
        let drain = try_until(&self.drain, deadline)?;
        let registry = try_until(&self.registry, deadline)?;
        let controls = drain.controls;
        let mut seen = 0u64;
        for lane in registry.iter() {
            // SAFETY: under the drain lock.
            unsafe { lane.crash_mark(true) };
        }
        loop {
            // The head record with the least key among those put before
            // the next control item, as `scan` picks it (a consumer takes
            // every such record before the control item). None left: the
            // next item is a control item (or nothing), where this stops.
            let mut best: Option<(usize, i64)> = None;
            for (i, lane) in registry.iter().enumerate() {
                // SAFETY: under the drain lock.
                let Some(slot) = (unsafe { lane.head_slot_for(true, true) }) else {
                    continue;
                };
                if slot.control.is_none()
                    && slot.fence <= controls
                    && best.is_none_or(|(_, key)| slot.key < key)
                {
                    best = Some((i, slot.key));
                }
            }
            let Some((i, _)) = best else {
                break;
            };
            let lane = &registry[i];
            // SAFETY: under the drain lock; just seen.
            if let Some(slot) = unsafe { lane.head_slot_for(true, true) } {
                visit(&slot.value);
            }
            // SAFETY: as above.
            unsafe { lane.advance() };
            seen += 1;
            if self.cap != u64::MAX {
                let taken = self.taken.0.load(Ordering::Relaxed) + 1;
                self.taken.0.store(taken, Ordering::SeqCst);
            }
        }
        for lane in registry.iter() {
            // SAFETY: under the drain lock.
            unsafe { lane.crash_mark(false) };
        }
        if self.blocked.load(Ordering::SeqCst) != 0 {
            if let Ok(room) = self.room_lock.try_lock() {
                drop(room);
                self.room.notify_all();
            }
        }
        drop(registry);
        drop(drain);
        Some(seen)
    }

    /// Brings the consumer's copy of the registry up to date.
    fn sync(&self, drain: &mut Drain<R>) {
        let version = self.version.load(Ordering::Acquire);
        if version != drain.version {
            let registry = lock(&self.registry);
            drain.lanes.clone_from(&registry);
            drain.version = self.version.load(Ordering::Relaxed);
        }
    }

    /// Forgets the lanes whose thread exited, once they are empty.
    fn forget_closed(&self, drain: &mut Drain<R>) {
        let mut registry = lock(&self.registry);
        registry.retain(|lane| {
            // Closed is read first: every push happened before it.
            let done = lane.closed.load(Ordering::Acquire) && lane.len() == 0;
            if done {
                // The consumer's last writes to its slots happen before
                // the lane's drop, on whichever thread lets it go.
                crate::tsan::release(Arc::as_ptr(lane) as *const ());
            }
            !done
        });
        self.version.fetch_add(1, Ordering::Release);
        drain.lanes.clone_from(&registry);
        drain.version = self.version.load(Ordering::Relaxed);
    }

    fn wake_producers(&self) {
        drop(
            self.room_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.room.notify_all();
    }

    /// A consumer is about to sleep: counted, then looks once more. The
    /// item found, if any, is the caller's (no sleep then).
    pub(super) fn announce_sleep(&self) -> (Option<Taken<R>>, bool) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let (found, _, wake) = self.next();
        if found.is_some() {
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        (found, wake)
    }

    /// The consumer woke up (after [`Lanes::announce_sleep`] found nothing).
    pub(super) fn woke(&self, by_wake_item: bool) {
        if by_wake_item {
            self.wake_sent.store(false, Ordering::Release);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// A whole record's merge key.
    pub(super) fn key(&self, record: &R) -> i64 {
        (self.hooks.key)(record)
    }

    /// Puts `record` (made elsewhere) into a slot.
    pub(super) fn put_in(&self, slot: &mut R, record: R) {
        (self.hooks.put_in)(slot, record)
    }

    /// Items in every lane now.
    pub(super) fn len(&self) -> usize {
        if self.cap != u64::MAX {
            // Admitted and not taken (a record evicted from behind a
            // control item still has its slot, but is gone).
            let taken = self.taken.0.load(Ordering::SeqCst);
            return self.reserved.0.load(Ordering::SeqCst).saturating_sub(taken) as usize;
        }
        let registry = lock(&self.registry);
        registry.iter().map(|lane| lane.len() as usize).sum()
    }
}

impl<R> Drop for Lanes<R> {
    fn drop(&mut self) {
        // Threads' caches still hold their lanes; they forget them at
        // their next miss or when they exit. The records still queued go
        // now.
        let registry = self
            .registry
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for lane in registry.drain(..) {
            lane.gone.store(true, Ordering::Release);
            // SAFETY: the queue is being dropped: no consumer and (by the
            // API's contract) no producer use it any more.
            while let Some(slot) = unsafe { lane.head_slot(false) } {
                slot.value = (self.hooks.blank)();
                slot.control = None;
                unsafe { lane.advance() };
            }
            // Its memory goes now, not when the thread that cached it lets
            // it go: the producer (a thread with this lane cached) never
            // touches a freed queue's lane again.
            unsafe { lane.free_segments() };
        }
        self.depot.clear();
    }
}

/// A thread's lanes: dropped (the lanes closed) when the thread exits.
struct Cache(Vec<CachedLane>);

/// One lane of any record type, held by a thread's cache: an
/// `Arc<Lane<R>>` as a raw pointer, with the functions of its type.
struct CachedLane {
    queue: u64,
    lane: *const (),
    close: unsafe fn(*const ()),
    gone: unsafe fn(*const ()) -> bool,
    release: unsafe fn(*const ()),
}

/// # Safety
/// `lane` is a live `Lane<R>`.
unsafe fn close_lane<R>(lane: *const ()) {
    // SAFETY: as the caller promises.
    let lane = unsafe { &*(lane as *const Lane<R>) };
    // Release: every push of this thread happened before.
    lane.closed.store(true, Ordering::Release);
}

/// # Safety
/// `lane` is a live `Lane<R>`.
unsafe fn lane_gone<R>(lane: *const ()) -> bool {
    // SAFETY: as the caller promises.
    unsafe { &*(lane as *const Lane<R>) }
        .gone
        .load(Ordering::Acquire)
}

/// # Safety
/// `lane` came from `Arc::into_raw` of an `Arc<Lane<R>>`, released once.
unsafe fn release_lane<R>(lane: *const ()) {
    // SAFETY: as the caller promises.
    drop(unsafe { Arc::from_raw(lane as *const Lane<R>) });
}

impl Drop for CachedLane {
    fn drop(&mut self) {
        // SAFETY: the entry holds one reference, given back here once.
        unsafe { (self.release)(self.lane) }
    }
}

impl Cache {
    /// This thread's lane on `lanes`, made and registered on first use;
    /// alive as long as its entry, which only this thread removes.
    fn lane_for<R>(&mut self, lanes: &Lanes<R>) -> *const Lane<R> {
        if let Some(found) = self.0.iter().find(|c| c.queue == lanes.id) {
            // Ids are unique and each queue has one record type.
            return found.lane as *const Lane<R>;
        }
        // Lanes of queues that no longer exist go first.
        // SAFETY: every entry holds its lane alive.
        self.0.retain(|c| !unsafe { (c.gone)(c.lane) });
        let lane = Arc::into_raw(lanes.register());
        self.0.push(CachedLane {
            queue: lanes.id,
            lane: lane as *const (),
            close: close_lane::<R>,
            gone: lane_gone::<R>,
            release: release_lane::<R>,
        });
        lane
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = LAST.try_with(|last| last.set((0, ptr::null())));
        for cached in &self.0 {
            // SAFETY: the entry holds its lane alive.
            unsafe { (cached.close)(cached.lane) };
        }
    }
}

thread_local! {
    /// The queue id and lane this thread last put through: the common
    /// case, without a search. Points into a lane the thread's cache holds.
    static LAST: Cell<(u64, *const ())> = const { Cell::new((0, ptr::null())) };
    /// The thread is inside [`with_cache`] (a signal handler's put
    /// interrupting it must not touch the cache).
    static CACHE_BUSY: Cell<bool> = const { Cell::new(false) };
}

/// The key of the threads' caches. A pthread key, not a Rust thread-local:
/// its destructor also runs for a cache first made by a put from another
/// pthread key's destructor, after the thread's Rust thread-locals are
/// gone (a Rust thread-local made then would never be destroyed, and its
/// lanes never closed).
fn cache_key() -> Option<libc::pthread_key_t> {
    static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: a valid out-pointer; the destructor matches the values
        // set under this key (boxed caches).
        (unsafe { libc::pthread_key_create(&mut key, Some(drop_cache)) } == 0).then_some(key)
    })
}

/// Closes a thread's lanes as it exits.
///
/// # Safety
/// `cache` is a `Box<Cache>` set under [`cache_key`], given once.
unsafe extern "C" fn drop_cache(cache: *mut std::ffi::c_void) {
    // SAFETY: as the caller (the pthread key machinery) promises.
    drop(unsafe { Box::from_raw(cache as *mut Cache) });
}

/// Runs `f` on the calling thread's cache (made on first use); `None` when
/// there is none to be had (no key, or the thread is already inside).
fn with_cache<T>(f: impl FnOnce(&mut Cache) -> T) -> Option<T> {
    if CACHE_BUSY.try_with(Cell::get).unwrap_or(true) {
        return None;
    }
    let key = cache_key()?;
    // SAFETY: a key made by cache_key.
    let mut cache = unsafe { libc::pthread_getspecific(key) } as *mut Cache;
    if cache.is_null() {
        cache = Box::into_raw(Box::new(Cache(Vec::new())));
        // SAFETY: as above; the value is a boxed cache, as drop_cache takes.
        if unsafe { libc::pthread_setspecific(key, cache.cast()) } != 0 {
            // SAFETY: not given to the key: still ours.
            drop(unsafe { Box::from_raw(cache) });
            return None;
        }
    }
    CACHE_BUSY.set(true);
    // SAFETY: the thread's own cache; CACHE_BUSY keeps a nested call (a
    // signal handler's) out while it is borrowed.
    let out = f(unsafe { &mut *cache });
    CACHE_BUSY.set(false);
    Some(out)
}

thread_local! {
    /// This thread is inside a put or a take of some queue's lanes.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread inside the lanes while alive.
struct Inside;

impl Inside {
    /// `None` when the thread is already inside (a signal handler
    /// interrupting it).
    fn enter() -> Option<Inside> {
        match INSIDE.try_with(|inside| inside.replace(true)) {
            Ok(true) => None,
            _ => Some(Inside),
        }
    }

    /// Steps outside for a program's callback (`on_drop`), back inside
    /// when the returned guard goes.
    fn leave() -> Outside {
        let _ = INSIDE.try_with(|inside| inside.set(false));
        Outside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
    }
}

/// See [`Inside::leave`].
struct Outside;

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(true));
    }
}

thread_local! {
    /// Puts through the orphan lane this thread is inside (a signal
    /// handler's put interrupting one).
    static ORPHAN_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// True when this thread is already inside an orphan-lane put (or its
/// thread-locals are gone, when nothing can be known: then it waits).
fn put_depth_is_nested() -> bool {
    ORPHAN_DEPTH.try_with(|d| d.get() > 0).unwrap_or(false)
}

/// Marks this thread inside an orphan-lane put while alive.
struct Nested;

impl Nested {
    fn enter() -> Nested {
        let _ = ORPHAN_DEPTH.try_with(|d| d.set(d.get() + 1));
        Nested
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        let _ = ORPHAN_DEPTH.try_with(|d| d.set(d.get() - 1));
    }
}

/// In a `fork` child: the thread's lanes belong to the parent's queues,
/// which the child does not use; forget the shortcut to them.
pub(crate) fn forget_after_fork() {
    let _ = LAST.try_with(|last| last.set((0, ptr::null())));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lanes of numbers: a record's key is its value.
    fn lanes(capacity: usize) -> Lanes<u64> {
        Lanes::new(
            LaneHooks {
                blank: || 0,
                take_out: Box::new(|slot: &mut u64| std::mem::take(slot)),
                put_in: Box::new(|slot: &mut u64, value| *slot = value),
                key: |value| *value as i64,
            },
            capacity,
        )
    }

    fn put(lanes: &Lanes<u64>, value: u64, full: WhenFull) -> Result<bool, Refused> {
        lanes.put(
            None,
            full,
            |slot| {
                *slot = value;
                Some(value as i64)
            },
            &mut |_| {},
        )
    }

    fn control(lanes: &Lanes<u64>, id: u64) {
        lanes
            .put(
                Some(Control::Barrier(id)),
                WhenFull::Refuse,
                |_| Some(0),
                &mut |_| {},
            )
            .unwrap();
    }

    /// Everything a consumer may take now, as text.
    fn drain(lanes: &Lanes<u64>) -> Vec<String> {
        let mut out = Vec::new();
        while let (Some(taken), _, _) = lanes.next() {
            out.push(match taken {
                Taken::Record(value) => value.to_string(),
                Taken::Control(Control::Barrier(id)) => format!("b{id}"),
                Taken::Control(Control::Sentinel(id)) => format!("s{id}"),
            });
        }
        out
    }

    #[test]
    fn a_control_item_comes_after_every_record_put_before_it_on_any_thread() {
        let lanes = lanes(0);
        std::thread::scope(|s| {
            s.spawn(|| (10..13).for_each(|v| assert!(put(&lanes, v, WhenFull::Refuse).is_ok())));
        });
        put(&lanes, 5, WhenFull::Refuse).unwrap();
        control(&lanes, 1);
        // Put after the barrier (joined after it): behind it, although
        // its key is the smallest.
        std::thread::scope(|s| {
            s.spawn(|| put(&lanes, 1, WhenFull::Refuse).unwrap());
        });
        put(&lanes, 6, WhenFull::Refuse).unwrap();
        assert_eq!(drain(&lanes), ["5", "10", "11", "12", "b1", "1", "6"]);
    }

    #[test]
    fn the_crash_drain_takes_what_a_consumer_would_up_to_a_control_item() {
        let lanes = lanes(0);
        std::thread::scope(|s| {
            s.spawn(|| (10..12).for_each(|v| assert!(put(&lanes, v, WhenFull::Refuse).is_ok())));
        });
        put(&lanes, 5, WhenFull::Refuse).unwrap();
        control(&lanes, 1);
        put(&lanes, 6, WhenFull::Refuse).unwrap();
        let mut seen = Vec::new();
        let n = lanes.crash_drain(&|| false, &mut |v: &u64| seen.push(*v));
        // The records put before the barrier, on any lane, in key order;
        // the barrier and what follows it stay for the consumer.
        assert_eq!((n, seen), (Some(3), vec![5, 10, 11]));
        assert_eq!(drain(&lanes), ["b1", "6"]);
    }

    #[test]
    fn the_crash_drain_leaves_what_is_put_after_it_began() {
        let lanes = lanes(0);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            // Another producer, its lane made before the flush, going on
            // while the flush runs.
            let lanes = &lanes;
            s.spawn(move || {
                put(lanes, 0, WhenFull::Refuse).unwrap();
                done.send(()).unwrap();
                wait.recv().unwrap();
                put(lanes, 3, WhenFull::Refuse).unwrap();
                done.send(()).unwrap();
            });
            finished.recv().unwrap();
            put(lanes, 1, WhenFull::Refuse).unwrap();
            put(lanes, 2, WhenFull::Refuse).unwrap();
            let mut seen = Vec::new();
            let n = lanes.crash_drain(&|| false, &mut |v: &u64| {
                seen.push(*v);
                if *v == 1 {
                    go.send(()).unwrap();
                    finished.recv().unwrap();
                    put(lanes, 4, WhenFull::Refuse).unwrap();
                }
            });
            assert_eq!((n, seen), (Some(3), vec![0, 1, 2]));
        });
        assert_eq!(drain(&lanes), ["3", "4"]);
    }

    #[test]
    fn lanes_merge_by_key_and_keep_each_lane_in_order() {
        let lanes = lanes(0);
        // This thread's lane: 3, 1 (out of key order, kept in lane order).
        put(&lanes, 3, WhenFull::Refuse).unwrap();
        put(&lanes, 1, WhenFull::Refuse).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| [2, 4].map(|v| put(&lanes, v, WhenFull::Refuse).unwrap()));
        });
        assert_eq!(drain(&lanes), ["2", "3", "1", "4"]);
    }

    #[test]
    fn the_capacity_is_shared_by_every_lane_and_exact() {
        let lanes = lanes(2);
        put(&lanes, 1, WhenFull::Refuse).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| put(&lanes, 2, WhenFull::Refuse).unwrap());
        });
        assert_eq!(put(&lanes, 3, WhenFull::Refuse), Err(Refused::Full));
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(put(&lanes, 3, WhenFull::Refuse), Err(Refused::Full)));
        });
        assert_eq!(lanes.len(), 2);
        assert!(matches!(lanes.next().0, Some(Taken::Record(1))));
        put(&lanes, 4, WhenFull::Refuse).unwrap();
        assert_eq!(drain(&lanes), ["2", "4"]);
    }

    #[test]
    fn drop_oldest_evicts_from_behind_a_control_item_and_never_drops_one() {
        let lanes = lanes(2);
        control(&lanes, 7);
        put(&lanes, 1, WhenFull::Refuse).unwrap();
        let mut evicted = Vec::new();
        lanes
            .put(
                None,
                WhenFull::Evict,
                |slot| {
                    *slot = 2;
                    Some(2)
                },
                &mut |old| evicted.push(old),
            )
            .unwrap();
        assert_eq!(evicted, [1]);
        assert_eq!(lanes.len(), 2);
        assert_eq!(drain(&lanes), ["b7", "2"]);
        // Only control items queued: the new record is the one dropped.
        control(&lanes, 8);
        control(&lanes, 9);
        assert_eq!(put(&lanes, 3, WhenFull::Evict), Err(Refused::DroppedItself));
        assert_eq!(drain(&lanes), ["b8", "b9"]);
    }

    #[test]
    fn a_full_queue_makes_a_waiting_put_wait_for_room_and_times_out() {
        let lanes = lanes(1);
        put(&lanes, 1, WhenFull::Refuse).unwrap();
        let soon = Instant::now() + std::time::Duration::from_millis(20);
        assert_eq!(
            put(&lanes, 2, WhenFull::Wait(Some(soon))),
            Err(Refused::Timeout)
        );
        std::thread::scope(|s| {
            let waiter = s.spawn(|| put(&lanes, 3, WhenFull::Wait(None)));
            // Only a take lets it in (the wait is on the condition).
            while lanes.blocked.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            assert!(matches!(lanes.next().0, Some(Taken::Record(1))));
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(drain(&lanes), ["3"]);
    }

    #[test]
    fn lanes_of_exited_threads_are_forgotten_once_drained_and_their_segments_reused() {
        let lanes = lanes(0);
        for round in 0..2000u64 {
            std::thread::scope(|s| {
                // Joined for real (pthread_join): the thread's key
                // destructors, which close its lane, have run.
                s.spawn(|| {
                    for i in 0..3 {
                        put(&lanes, round * 10 + i, WhenFull::Refuse).unwrap();
                    }
                })
                .join()
                .unwrap();
            });
            assert_eq!(drain(&lanes).len(), 3);
        }
        // The last thread's lane is closed: one more look forgets it.
        assert!(lanes.next().0.is_none());
        assert_eq!(lanes.registry.lock().unwrap().len(), 0);
        assert!(lanes.depot.segments.lock().unwrap().len() <= lanes.depot.keep);
    }

    #[test]
    fn a_put_interrupting_a_put_on_the_same_thread_is_refused() {
        // The fill runs inside the put, as a signal handler would.
        let lanes = lanes(0);
        let mut nested = None;
        lanes
            .put(
                None,
                WhenFull::Refuse,
                |slot| {
                    nested = Some(put(&lanes, 2, WhenFull::Refuse));
                    *slot = 1;
                    Some(1)
                },
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(nested, Some(Err(Refused::WouldDeadlock)));
        assert_eq!(drain(&lanes), ["1"]);
        // Outside, puts work again.
        put(&lanes, 3, WhenFull::Refuse).unwrap();
        assert_eq!(drain(&lanes), ["3"]);
    }

    #[test]
    fn a_fill_that_cannot_make_its_record_is_refused_and_gives_its_room_back() {
        let lanes = lanes(1);
        assert_eq!(
            lanes.put(None, WhenFull::Refuse, |_| None, &mut |_| {}),
            Err(Refused::NoMem)
        );
        // Nothing was published and the room came back at once: without
        // any take, the queue (capacity 1) takes the next record.
        assert_eq!(lanes.len(), 0);
        put(&lanes, 4, WhenFull::Refuse).unwrap();
        assert_eq!(drain(&lanes), ["4"]);
    }

    #[test]
    fn a_fill_that_panics_gives_its_room_back() {
        let lanes = lanes(1);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lanes.put(None, WhenFull::Refuse, |_| panic!("fill"), &mut |_| {})
        }));
        assert!(caught.is_err());
        // Nothing was published and the room came back at once.
        assert_eq!(lanes.len(), 0);
        assert_eq!(drain(&lanes), Vec::<String>::new());
        put(&lanes, 4, WhenFull::Refuse).unwrap();
        assert_eq!(drain(&lanes), ["4"]);
    }

    #[test]
    fn a_long_lane_crosses_segments_in_order() {
        let lanes = lanes(0);
        let n = 10 * SEGMENT as u64 + 3;
        for v in 0..n {
            put(&lanes, v, WhenFull::Refuse).unwrap();
            if v % 300 == 0 {
                // Take some while the lane grows.
                for _ in 0..100 {
                    lanes.next();
                }
            }
        }
        let rest = drain(&lanes);
        assert_eq!(rest.last().map(String::as_str), Some(&*(n - 1).to_string()));
        let first: u64 = rest[0].parse().unwrap();
        let values: Vec<u64> = rest.iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(values, (first..n).collect::<Vec<_>>());
    }
}
