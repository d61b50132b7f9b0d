//! The built-in log queue: the channel queue that `ql_queue` wraps, with
//! what belongs to it beside the channel — its record pool, its level
//! threshold, the fork generation it was made in, the drop-counting rule of
//! a built-in record and the "N records dropped" report.
//!
//! The C view of its items (`ql_record`, the `WithPtr` trait) lives in
//! `src/ffi/record.rs`; this module never reads a program's pointer.

use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::Arc;

use crate::listener::TakeBackHook;
use crate::printf::{Arg, Format};
use crate::queue::{ChannelQueue, EvictFn, LaneHooks, Options, Overflow, PutError, ReportFn};
use crate::record::level::WARNING;
use crate::record::{Call, LogRecord, NoMem, RecordPool};
use crate::threads::fork_generation;

/// A record as the C side sees it: an opaque pointer the program owns.
///
/// The library never reads or frees what it points to; it only moves the
/// pointer from the queue to the hooks and handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord(pub *mut c_void);

// SAFETY: the pointer is moved between threads, never dereferenced by the
// library. The C API's documentation makes the program responsible for
// records being usable from the listener thread.
unsafe impl Send for RawRecord {}
// SAFETY: as above; `&RawRecord` only gives out the pointer value.
unsafe impl Sync for RawRecord {}

/// What the built-in queue carries: a program's pointer, or a built-in
/// record the library owns.
///
/// A built-in record is boxed, so an entry is two words and a queue of
/// program pointers moves no more than it needs; the boxes are recycled
/// through the queue's [`RecordPool`].
pub enum Entry {
    /// A program's record, never read.
    Ptr(RawRecord),
    /// A built-in record (`ql_log`).
    Log(Box<LogRecord>),
}

impl Entry {
    /// The level a handler's threshold is compared with: a built-in
    /// record's own; none for a program pointer, whose level is unknown
    /// (it goes to every handler).
    #[inline]
    pub fn level(&self) -> Option<i32> {
        match self {
            Entry::Log(record) => Some(record.level),
            Entry::Ptr(_) => None,
        }
    }
}

thread_local! {
    /// Room to format deferred messages in, on the thread that takes them.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Scratch room kept between records; a larger one is let go.
const KEEP_SCRATCH: usize = 1 << 16;

impl Entry {
    /// Formats a built-in record's deferred message (see
    /// [`LogRecord::fill_deferred`]) as it leaves the queue. On a thread
    /// whose thread-locals are already destroyed (a `ql_queue_get` in an
    /// `atexit` handler: glibc runs the main thread's TLS destructors
    /// first) it formats in a buffer of its own.
    pub fn materialize(&mut self) {
        if let Entry::Log(record) = self {
            if record.is_deferred() {
                let kept = SCRATCH.try_with(|scratch| {
                    // Busy only when a signal handler's get interrupted this
                    // thread's own formatting.
                    let Ok(mut scratch) = scratch.try_borrow_mut() else {
                        return false;
                    };
                    record.materialize(&mut scratch);
                    if scratch.capacity() > KEEP_SCRATCH {
                        *scratch = Vec::new();
                    }
                    true
                });
                if kept != Ok(true) {
                    // A get from a thread whose thread-locals are being
                    // destroyed, or whose scratch is in use: room of its
                    // own, this once.
                    record.materialize(&mut Vec::new());
                }
            }
        }
    }
}

/// The logger name of the "N records dropped" report.
const REPORT_LOGGER: &[u8] = b"queue_listener";

/// The record a queue with drop reports hands the listener once `n`
/// records were dropped: level WARNING, logger "queue_listener", message
/// "N records dropped".
fn drop_report(n: u64) -> Entry {
    let message = format!("{n} records dropped");
    Entry::Log(Box::new(LogRecord::new(
        WARNING,
        REPORT_LOGGER,
        message.as_bytes(),
        0,
    )))
}

/// How to make a [`LogQueue`].
pub struct LogOptions {
    /// Most items held; 0: unbounded.
    pub capacity: usize,
    /// What a put does on a full queue.
    pub overflow: Overflow,
    /// Takes each program pointer that [`Overflow::DropOldest`] evicts
    /// (an evicted built-in record is freed, counted by the queue).
    pub on_drop: Option<OnDropFn>,
    /// Report drops to the handlers as a WARNING record.
    pub report_drops: bool,
    /// The threshold of [`LogQueue::log`].
    pub level: i32,
}

/// The built-in queue: a [`ChannelQueue`] of [`Entry`], its record pool, its
/// level threshold and the fork generation it was made in.
pub struct LogQueue {
    queue: Arc<ChannelQueue<Entry>>,
    /// Spare built-in records, shared with the listeners on this queue.
    pool: Arc<RecordPool>,
    /// The threshold of [`LogQueue::log`]: records below it are skipped.
    level: AtomicI32,
    /// The fork generation it was made in (see [`LogQueue::is_inherited`]).
    generation: u64,
    /// Who has claimed the queue first: [`POINTERS`] once a program pointer
    /// was offered, [`LEVELS`] once a listener that must read every
    /// record's level was made on it (see [`LogQueue::admit_pointer`]).
    levels: AtomicU8,
}

/// [`LogQueue::levels`]: a program pointer record was offered.
const POINTERS: u8 = 1;
/// [`LogQueue::levels`]: a listener filters by level with no way to read a
/// program pointer's.
const LEVELS: u8 = 2;

/// Refused: a program pointer record on a queue whose listener filters by
/// level and cannot read a pointer's, or such a listener on a queue that
/// has taken pointers ([`LogQueue::admit_pointer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelUnknown;

impl LogQueue {
    /// A queue of `capacity` items (0: unbounded) with the default policy
    /// (block) and `level` as threshold; `None` for a capacity over
    /// [`crate::queue::MAX_CAPACITY`].
    pub fn new(capacity: usize, level: i32) -> Option<LogQueue> {
        LogQueue::wrap(Options::new(capacity), level)
    }

    /// A queue as `options` say; `None` for a capacity over
    /// [`crate::queue::MAX_CAPACITY`].
    pub fn with_options(options: LogOptions) -> Option<LogQueue> {
        let evicted = options.on_drop.map(|on_drop| {
            Box::new(move |entry: Entry| {
                if let Entry::Ptr(record) = entry {
                    on_drop(record);
                }
            }) as EvictFn<Entry>
        });
        let report = options
            .report_drops
            .then(|| Box::new(drop_report) as ReportFn<Entry>);
        LogQueue::wrap(
            Options {
                capacity: options.capacity,
                overflow: options.overflow,
                evicted,
                report,
            },
            options.level,
        )
    }

    fn wrap(options: Options<Entry>, level: i32) -> Option<LogQueue> {
        // Enough spares for a full queue, plus the records in handlers.
        let keep = match options.capacity {
            0 => 8192,
            capacity => capacity.min(1 << 16) + 64,
        };
        let pool = Arc::new(RecordPool::new(keep));
        let queue =
            ChannelQueue::with_lanes(options, lane_hooks(&pool))?.with_taken(Entry::materialize);
        // Records are stamped by crate::clock: calibrate it now (once per
        // process, about 2 ms) rather than in the first log call.
        crate::clock::warm_up();
        Some(LogQueue {
            queue: Arc::new(queue),
            pool,
            level: AtomicI32::new(level),
            generation: fork_generation(),
            levels: AtomicU8::new(0),
        })
    }

    /// The channel queue (shared with the listeners on it).
    #[inline]
    pub fn queue(&self) -> &Arc<ChannelQueue<Entry>> {
        &self.queue
    }

    /// The record pool (shared with the listeners on it).
    #[inline]
    pub fn pool(&self) -> &Arc<RecordPool> {
        &self.pool
    }

    /// True in a `fork` child for a queue the parent made.
    #[inline]
    pub fn is_inherited(&self) -> bool {
        self.generation != fork_generation()
    }

    /// Before a program pointer record is offered: refused when a listener
    /// on this queue filters by handler level with no `record_level` hook
    /// ([`LogQueue::require_levels`]), since it could only pass such a
    /// record to every handler whatever its level. The first admitted
    /// pointer marks the queue, for good; later ones only load.
    #[inline]
    pub fn admit_pointer(&self) -> Result<(), LevelUnknown> {
        self.claim(POINTERS, LEVELS)
    }

    /// For a listener made on this queue that filters by handler level and
    /// can read only built-in records' levels: refused once a program
    /// pointer record was admitted, else from now on, for the queue's life,
    /// pointer records are refused ([`LogQueue::admit_pointer`]). Exact
    /// under races: one of the two claims wins.
    pub fn require_levels(&self) -> Result<(), LevelUnknown> {
        self.claim(LEVELS, POINTERS)
    }

    /// Sets `mine` in [`LogQueue::levels`] unless `theirs` is set.
    fn claim(&self, mine: u8, theirs: u8) -> Result<(), LevelUnknown> {
        let mut state = self.levels.load(Ordering::Acquire);
        loop {
            if state & theirs != 0 {
                return Err(LevelUnknown);
            }
            if state & mine != 0 {
                return Ok(());
            }
            match self.levels.compare_exchange_weak(
                state,
                state | mine,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => state = now,
            }
        }
    }

    /// True when a record at `level` passes the threshold.
    #[inline]
    pub fn enabled(&self, level: i32) -> bool {
        level >= self.level.load(Ordering::Relaxed)
    }

    /// Sets the threshold, for calls that start after it.
    #[inline]
    pub fn set_level(&self, level: i32) {
        self.level.store(level, Ordering::Relaxed);
    }

    /// Makes a built-in record from the pool and offers it as the overflow
    /// policy says. A record the policy refuses is freed and counted in the
    /// queue's dropped count (and its drop report); the error says why.
    /// The caller checks [`LogQueue::enabled`] first (a record below the
    /// threshold is not made, not counted).
    #[inline]
    pub fn log(&self, call: &Call, message: &[u8]) -> Result<(), PutError<()>> {
        self.put_filled(|record| record.fill_call(call, message))
    }

    /// [`LogQueue::log`] with the message still to be formatted: `format`
    /// with `args`, which must match `format.args()` one to one (else
    /// `Err(None)`, nothing made). The record is formatted as it leaves the
    /// queue, on the taker's thread.
    #[inline]
    pub fn log_deferred(
        &self,
        call: &Call,
        format: &'static Format,
        args: &[Arg<'_>],
    ) -> Result<(), Option<PutError<()>>> {
        if !format.accepts(args) {
            return Err(None);
        }
        self.put_filled(|record| record.fill_deferred(call, format, args))
            .map_err(Some)
    }

    /// Offers a built-in record that `fill` makes in the calling thread's
    /// lane (in the record its slot keeps, else one from the pool),
    /// counting a refusal as a drop.
    #[inline]
    fn put_filled(
        &self,
        fill: impl FnOnce(&mut LogRecord) -> Result<(), NoMem>,
    ) -> Result<(), PutError<()>> {
        let blank = || Entry::Log(self.pool.take());
        self.queue
            .put_with(blank, |slot| {
                if !matches!(slot, Entry::Log(_)) {
                    *slot = Entry::Log(self.pool.try_take()?);
                }
                match slot {
                    Entry::Log(record) => fill(record).ok().map(|()| record.order_key),
                    // Justified: made a built-in record just above.
                    Entry::Ptr(_) => unreachable!("the slot holds a built-in record"),
                }
            })
            .inspect_err(|_| self.queue.count_drop())
    }
}

/// How the built-in queue's lanes keep their slots: a slot keeps a built-in
/// record (its buffers reused by the next call on that thread) and gives
/// it to the taker in exchange for one from the pool; a program's pointer
/// record takes the slot's record back to the pool.
fn lane_hooks(pool: &Arc<RecordPool>) -> LaneHooks<Entry> {
    let out = Arc::clone(pool);
    let back = Arc::clone(pool);
    LaneHooks {
        blank: || Entry::Ptr(RawRecord(std::ptr::null_mut())),
        take_out: Box::new(move |slot: &mut Entry| match slot {
            // Out of memory, the slot keeps a blank pointer entry: its
            // next put makes a record (or is refused, QL_ERR_NOMEM).
            Entry::Log(_) => std::mem::replace(
                slot,
                out.try_take()
                    .map_or(Entry::Ptr(RawRecord(std::ptr::null_mut())), Entry::Log),
            ),
            // The slot keeps no copy of a program's pointer.
            Entry::Ptr(_) => std::mem::replace(slot, Entry::Ptr(RawRecord(std::ptr::null_mut()))),
        }),
        put_in: Box::new(move |slot: &mut Entry, entry: Entry| {
            if let Entry::Log(old) = std::mem::replace(slot, entry) {
                back.recycle(old);
            }
        }),
        key: |entry: &Entry| match entry {
            Entry::Log(record) => record.order_key,
            Entry::Ptr(_) => crate::clock::order_key(),
        },
    }
}

/// A program's `done`: sees each record once the listener is done with it.
pub type DoneFn = Box<dyn Fn(&Entry) + Send + Sync>;

/// A program's `on_drop`: takes each program pointer evicted.
pub type OnDropFn = Box<dyn Fn(RawRecord) + Send + Sync>;

/// The `done` hook of a listener: the program's `done` for every record,
/// then, on a built-in queue (`pool`), a built-in record back to the pool
/// for reuse. `None` when there is neither.
pub fn done_hook(
    done: Option<DoneFn>,
    pool: Option<Arc<RecordPool>>,
) -> Option<TakeBackHook<Entry>> {
    match (done, pool) {
        (None, None) => None,
        (done, pool) => Some(Box::new(move |record: Entry| {
            if let Some(done) = &done {
                done(&record);
            }
            if let (Entry::Log(record), Some(pool)) = (record, &pool) {
                pool.recycle(record);
            }
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Dequeued;

    fn log(queue: &LogQueue, message: &[u8]) -> Result<(), PutError<()>> {
        queue.log(&Call::plain(20, b"t", 0), message)
    }

    #[test]
    fn a_refused_record_is_counted_dropped() {
        let queue = LogQueue::with_options(LogOptions {
            capacity: 1,
            overflow: Overflow::DropNewest,
            on_drop: None,
            report_drops: false,
            level: i32::MIN,
        })
        .unwrap();
        assert!(log(&queue, b"kept").is_ok());
        assert!(matches!(log(&queue, b"refused"), Err(PutError::Full(()))));
        assert_eq!(queue.queue().dropped(), 1);
        assert_eq!(queue.queue().len(), 1);
    }

    #[test]
    fn level_threshold() {
        let queue = LogQueue::new(0, 30).unwrap();
        assert!(!queue.enabled(20));
        assert!(queue.enabled(30));
        queue.set_level(i32::MIN);
        assert!(queue.enabled(i32::MIN));
        assert!(!queue.is_inherited());
    }

    #[test]
    fn done_hook_recycles_built_in_records_only_with_a_pool() {
        assert!(done_hook(None, None).is_none());
        let queue = LogQueue::new(4, i32::MIN).unwrap();
        log(&queue, b"m").unwrap();
        let Dequeued::Record(entry) = queue.queue().dequeue_for(false, &mut || {}) else {
            panic!("no record");
        };
        let spare = queue.pool().spare();
        let done = done_hook(None, Some(Arc::clone(queue.pool()))).unwrap();
        done(entry);
        assert_eq!(queue.pool().spare(), spare + 1);
    }
}
