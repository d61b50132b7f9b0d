//! `ql_queue`: the built-in queue, for C.

use std::ffi::c_void;
use std::time::Duration;

use super::record::{hand_out, QL_LEVEL_ALL};
use super::{
    boundary, ql_status, status_of_get, status_of_put, try_out, try_ref, RawRecord, QL_ERR_INVALID,
    QL_OK,
};
use crate::log_queue::{Entry, LogOptions, LogQueue, OnDropFn};
use crate::queue::{GetError, Overflow};

/// What a put does when a bounded queue is full (`ql_queue_options`).
pub type ql_overflow = i32;
/// Wait for room: lossless, the default. On a listener thread (a handler
/// that logs) a full queue refuses at once with `QL_ERR_WOULD_DEADLOCK`
/// instead of waiting for itself.
pub const QL_OVERFLOW_BLOCK: ql_overflow = 0;
/// Wait for room at most `block_timeout_ms`, then refuse the record
/// (`QL_ERR_TIMEOUT`): a stalled handler (a full disk) can never hang a
/// producer for longer.
pub const QL_OVERFLOW_BLOCK_TIMEOUT: ql_overflow = 1;
/// Refuse the new record at once (`QL_ERR_FULL`).
pub const QL_OVERFLOW_DROP_NEWEST: ql_overflow = 2;
/// Drop the oldest queued records until the new one fits; never waits,
/// never refuses. A program pointer evicted this way goes to `on_drop`.
pub const QL_OVERFLOW_DROP_OLDEST: ql_overflow = 3;

/// How to make a built-in queue: start from `ql_queue_options_default()`
/// and change what you need.
///
/// Drops: a built-in record (`ql_log`) that the policy refuses or evicts is
/// freed by the library and counted in the queue's dropped count (see
/// `ql_stats.dropped`). A program pointer (`ql_queue_put`) that the policy
/// refuses stays the caller's, with a status that says so, and is not
/// counted; one that `QL_OVERFLOW_DROP_OLDEST` evicts is counted and handed
/// to `on_drop`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_queue_options {
    /// The size of this struct as the program was compiled with it: set by
    /// `ql_queue_options_default()`, never by hand. It lets the struct grow in later versions
    /// without breaking programs built against this header (see "Versioning
    /// and ABI" in the README): the library reads `struct_size` bytes,
    /// and members it knows that an older program's struct lacks take their
    /// defaults. A size smaller than any layout (0: options not made by
    /// `ql_queue_options_default()`) is `QL_ERR_INVALID`; a larger one whose members
    /// unknown to this library are not all zero is `QL_ERR_UNSUPPORTED`.
    pub struct_size: usize,
    /// Most items held (records, sentinels, flush barriers); 0 means
    /// unbounded. At most `QL_QUEUE_MAX_CAPACITY`. Default 8192.
    pub capacity: usize,
    /// One of `QL_OVERFLOW_*`. Default `QL_OVERFLOW_BLOCK`.
    pub overflow: ql_overflow,
    /// The wait of `QL_OVERFLOW_BLOCK_TIMEOUT`, in ms. Default 1000.
    pub block_timeout_ms: u64,
    /// Records of `ql_log` below this level are skipped at once (see
    /// `ql_queue_set_level`). Default `QL_LEVEL_ALL`.
    pub level: i32,
    /// When true, once records were dropped the listener hands its handlers
    /// one built-in record, level WARNING, logger "queue_listener", message
    /// "N records dropped", before the next item it takes (that is, as soon
    /// as room returns), so losses show in the log itself. Default false.
    pub report_drops: bool,
    /// Passed to `on_drop`.
    pub drop_ctx: *mut c_void,
    /// Optional. Takes each program pointer that `QL_OVERFLOW_DROP_OLDEST`
    /// evicts (to free it), on the thread whose put evicted it.
    pub on_drop: Option<unsafe extern "C" fn(ctx: *mut c_void, record: *mut c_void)>,
}

/// The default options: capacity 8192, `QL_OVERFLOW_BLOCK`, a 1000 ms
/// timeout for `QL_OVERFLOW_BLOCK_TIMEOUT`, level `QL_LEVEL_ALL`, no drop
/// report, no `on_drop`. Any thread.
#[no_mangle]
pub extern "C" fn ql_queue_options_default() -> ql_queue_options {
    boundary(default_options)
}

fn default_options() -> ql_queue_options {
    ql_queue_options {
        struct_size: std::mem::size_of::<ql_queue_options>(),
        capacity: 8192,
        overflow: QL_OVERFLOW_BLOCK,
        block_timeout_ms: 1000,
        level: QL_LEVEL_ALL,
        report_drops: false,
        drop_ctx: std::ptr::null_mut(),
        on_drop: None,
    }
}

struct OnDrop {
    ctx: *mut c_void,
    f: unsafe extern "C" fn(*mut c_void, *mut c_void),
}
// SAFETY: the program gives `on_drop` to be called from its producer
// threads (documented on `ql_queue_options`).
unsafe impl Send for OnDrop {}
// SAFETY: as above.
unsafe impl Sync for OnDrop {}

impl OnDrop {
    fn call(&self, record: RawRecord) {
        // SAFETY: the program's callback, as its contract says.
        unsafe { (self.f)(self.ctx, record.0) }
    }
}

/// The largest capacity `ql_queue_new` accepts: 16777216 (2^24) items.
pub const QL_QUEUE_MAX_CAPACITY: usize = 1 << 24;
const _: () = assert!(QL_QUEUE_MAX_CAPACITY == crate::queue::MAX_CAPACITY);

/// The built-in queue: a thread-safe FIFO of `void *` records, bounded or
/// unbounded, with its own sentinel (no record value is ever taken for it).
///
/// Reference-counted: `ql_queue_free` drops the program's reference, and
/// every listener made with `ql_listener_new_with_queue` holds its own, so a
/// queue freed while a listener still uses it stays alive until that
/// listener is freed.
///
/// Records are opaque pointers the program owns; the queue never reads or
/// frees them.
///
/// All `ql_queue_*` functions may be called from any thread at once, except
/// `ql_queue_free`, which must be the program's last use of its pointer.
pub struct ql_queue {
    /// The engine's queue: channel, record pool, level, fork generation.
    pub(crate) inner: LogQueue,
}

/// Returns `QL_ERR_FORKED` from the enclosing function for a queue
/// inherited across `fork`.
macro_rules! refuse_inherited {
    ($queue:expr) => {
        if $queue.inner.is_inherited() {
            return $crate::ffi::QL_ERR_FORKED;
        }
    };
}
pub(crate) use refuse_inherited;

/// Returns `QL_ERR_INVALID` from the enclosing put of a program pointer
/// when a listener on the queue filters by level and could not read the
/// pointer's (`LogQueue::admit_pointer`).
macro_rules! admit_pointer {
    ($queue:expr) => {
        if $queue.inner.admit_pointer().is_err() {
            return QL_ERR_INVALID;
        }
    };
}

/// Makes a built-in queue.
///
/// `capacity` is the most items (records plus sentinels) it holds; 0 means
/// unbounded; over `QL_QUEUE_MAX_CAPACITY` it is refused with
/// `QL_ERR_INVALID`. Nothing is allocated for the capacity up front (the
/// lanes grow as records come; a queue keeps a pool of spare records of
/// at most 65 600 entries, about 1 MiB at the largest capacities).
///
/// On success writes the new queue to `*queue_out` and returns `QL_OK`; the
/// caller owns it and frees it with `ql_queue_free`. On failure `*queue_out`
/// is left as it was. `QL_ERR_NULL` when `queue_out` is NULL.
///
/// # Safety
/// `queue_out` must be NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_new(capacity: usize, queue_out: *mut *mut ql_queue) -> ql_status {
    boundary(|| {
        let out = try_out!(queue_out);
        crate::process::install();
        let Some(inner) = LogQueue::new(capacity, QL_LEVEL_ALL) else {
            return QL_ERR_INVALID;
        };
        *out = Box::into_raw(Box::new(ql_queue { inner }));
        QL_OK
    })
}

/// Makes a built-in queue as `options` say (see `ql_queue_options`).
///
/// On success writes the new queue to `*queue_out` and returns `QL_OK`; the
/// caller owns it and frees it with `ql_queue_free`. `QL_ERR_INVALID` for a
/// capacity over `QL_QUEUE_MAX_CAPACITY` or an unknown `overflow`;
/// `QL_ERR_NULL` when `options` or `queue_out` is NULL. On failure
/// `*queue_out` is left as it was. Any thread.
///
/// # Safety
/// `options` must be NULL or valid for reading `struct_size` bytes; `queue_out` NULL or valid
/// for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_new_with_options(
    options: *const ql_queue_options,
    queue_out: *mut *mut ql_queue,
) -> ql_status {
    boundary(|| {
        if options.is_null() {
            return super::QL_ERR_NULL;
        }
        // SAFETY: the caller's promise.
        let options = match unsafe { super::read_sized(options) } {
            Ok(o) => o,
            Err(status) => return status,
        };
        let out = try_out!(queue_out);
        crate::process::install();
        let overflow = match options.overflow {
            QL_OVERFLOW_BLOCK => Overflow::Block,
            QL_OVERFLOW_BLOCK_TIMEOUT => {
                Overflow::BlockFor(Duration::from_millis(options.block_timeout_ms))
            }
            QL_OVERFLOW_DROP_NEWEST => Overflow::DropNewest,
            QL_OVERFLOW_DROP_OLDEST => Overflow::DropOldest,
            _ => return QL_ERR_INVALID,
        };
        let on_drop = options.on_drop.map(|f| {
            let on_drop = OnDrop {
                ctx: options.drop_ctx,
                f,
            };
            Box::new(move |record: RawRecord| on_drop.call(record)) as OnDropFn
        });
        let Some(inner) = LogQueue::with_options(LogOptions {
            capacity: options.capacity,
            overflow,
            on_drop,
            report_drops: options.report_drops,
            level: options.level,
        }) else {
            return QL_ERR_INVALID;
        };
        *out = Box::into_raw(Box::new(ql_queue { inner }));
        QL_OK
    })
}

/// Sets the queue's threshold: `ql_log`, `ql_log_user` and `ql_logf` skip a
/// record whose level is below it at the cost of one comparison (no
/// formatting, no copy, no enqueue, not counted as a drop). `QL_LEVEL_ALL`
/// lets everything through. Takes effect for calls that start after it,
/// on any thread. `QL_ERR_NULL` when `queue` is NULL.
///
/// # Safety
/// `queue` must be NULL or a live queue.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_set_level(queue: *const ql_queue, level: i32) -> ql_status {
    boundary(|| {
        try_ref!(queue).inner.set_level(level);
        QL_OK
    })
}

/// True when a record at `level` would pass the queue's threshold: what
/// `ql_logf` asks before it formats anything. False for a NULL `queue`;
/// true after an internal panic (so the following `ql_log` reports it).
/// Any thread.
///
/// # Safety
/// `queue` must be NULL or a live queue.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_enabled(queue: *const ql_queue, level: i32) -> bool {
    boundary(|| {
        // SAFETY: the caller's promise.
        // An inherited queue says yes, so that ql_log reports QL_ERR_FORKED.
        unsafe { queue.as_ref() }.is_some_and(|q| q.inner.is_inherited() || q.inner.enabled(level))
    })
}

/// Drops the program's reference to a queue. NULL is a no-op. In a `fork`
/// child, a queue inherited from the parent is left untouched (its memory
/// stays allocated): it belongs to the parent.
///
/// A listener made on this queue keeps its own reference, so freeing the
/// queue first is safe. Records still queued when the last reference goes
/// are forgotten, not freed: drain them with `ql_queue_get_nowait` first if
/// they own memory.
///
/// # Safety
/// `queue` must be NULL or a pointer from `ql_queue_new` not yet freed, and
/// no other thread may be using it.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_free(queue: *mut ql_queue) {
    boundary(|| {
        if !queue.is_null() {
            // SAFETY: `queue` came from `Box::into_raw` in `ql_queue_new`
            // and is freed once (the caller's promise).
            let queue = unsafe { Box::from_raw(queue) };
            if queue.inner.is_inherited() {
                // The parent's: freeing it could wait on locks held by
                // threads that do not exist in this process.
                std::mem::forget(queue);
            }
        }
    })
}

/// Puts a program's record (any pointer, NULL included) as the queue's
/// overflow policy says; the default policy waits for room on a full
/// bounded queue.
///
/// Returns `QL_OK` once the record is queued; the listener then owns it
/// until its `done` hook. Refused, the record stays the caller's:
/// `QL_ERR_FULL` (`QL_OVERFLOW_DROP_NEWEST`), `QL_ERR_TIMEOUT`
/// (`QL_OVERFLOW_BLOCK_TIMEOUT`), or `QL_ERR_WOULD_DEADLOCK` on a listener
/// thread (from a handler or hook), where a full queue refuses at once
/// instead of waiting for the thread that is waiting. With
/// `QL_OVERFLOW_DROP_OLDEST` it always succeeds, after evicting the oldest
/// records. `QL_ERR_NULL` when `queue` is NULL. `QL_ERR_INVALID` when a
/// listener on the queue was made with `respect_handler_level` and no
/// `record_level` hook: it could not read a program pointer's level (see
/// `ql_listener_new_with_queue`); the record stays the caller's.
/// `QL_ERR_NOMEM` when the queue could not grow to hold it (out of
/// memory); it stays the caller's.
///
/// # Safety
/// `queue` must be NULL or a live queue from `ql_queue_new`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_put(queue: *const ql_queue, record: *mut c_void) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        refuse_inherited!(queue);
        admit_pointer!(queue);
        status_of_put(queue.inner.queue().put(Entry::Ptr(RawRecord(record))))
    })
}

/// Puts a record only if there is room now: `QL_OK`, or `QL_ERR_FULL` (the
/// record stays the caller's), on any thread, listener threads included.
/// Never blocks. `QL_ERR_NULL` when `queue` is NULL; `QL_ERR_INVALID` as
/// for `ql_queue_put`.
///
/// # Safety
/// `queue` must be NULL or a live queue from `ql_queue_new`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_put_nowait(
    queue: *const ql_queue,
    record: *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        refuse_inherited!(queue);
        admit_pointer!(queue);
        status_of_put(
            queue
                .inner
                .queue()
                .put_nowait(Entry::Ptr(RawRecord(record))),
        )
    })
}

/// Puts a record, waiting at most `timeout_ms` milliseconds for room:
/// `QL_OK`, or `QL_ERR_TIMEOUT` (the record stays the caller's). On a
/// listener thread a full queue returns `QL_ERR_WOULD_DEADLOCK` at once, as
/// `ql_queue_put` does. `QL_ERR_NULL` when `queue` is NULL;
/// `QL_ERR_INVALID` as for `ql_queue_put`.
///
/// # Safety
/// `queue` must be NULL or a live queue from `ql_queue_new`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_put_timeout(
    queue: *const ql_queue,
    record: *mut c_void,
    timeout_ms: u64,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        refuse_inherited!(queue);
        admit_pointer!(queue);
        let timeout = Duration::from_millis(timeout_ms);
        status_of_put(
            queue
                .inner
                .queue()
                .put_timeout(Entry::Ptr(RawRecord(record)), timeout),
        )
    })
}

fn get_into(got: Result<Entry, GetError>, out: &mut *mut c_void) -> ql_status {
    match got {
        Ok(Entry::Ptr(record)) => {
            *out = record.0;
            QL_OK
        }
        Ok(Entry::Log(record)) => {
            *out = hand_out(*record);
            QL_OK
        }
        Err(e) => status_of_get(e),
    }
}

/// Takes the oldest record, waiting for one.
///
/// `QL_OK` writes it to `*record_out`; the caller owns it. When the oldest
/// item is a listener's sentinel, it is removed and `QL_ERR_SENTINEL` is
/// returned with `*record_out` untouched (that listener's next stop puts
/// another). Meant for draining a queue no listener is running on: a get
/// competes with the listeners for records. Passed over: flush barriers
/// (held for their listener), anything a freed listener left behind
/// (dropped), and, from a listener's own thread (a `dequeue` hook), the
/// sentinels of other listeners (held for them).
///
/// # Safety
/// `queue` must be NULL or a live queue; `record_out` NULL or valid for one
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_get(
    queue: *const ql_queue,
    record_out: *mut *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        refuse_inherited!(queue);
        let out = try_out!(record_out);
        get_into(queue.inner.queue().get(), out)
    })
}

/// Takes the oldest record if there is one: as `ql_queue_get`, but returns
/// `QL_ERR_EMPTY` at once when nothing is queued.
///
/// # Safety
/// As `ql_queue_get`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_get_nowait(
    queue: *const ql_queue,
    record_out: *mut *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        refuse_inherited!(queue);
        let out = try_out!(record_out);
        get_into(queue.inner.queue().get_nowait(), out)
    })
}

/// Takes the oldest record, waiting at most `timeout_ms` milliseconds: as
/// `ql_queue_get`, or `QL_ERR_TIMEOUT`.
///
/// # Safety
/// As `ql_queue_get`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_get_timeout(
    queue: *const ql_queue,
    timeout_ms: u64,
    record_out: *mut *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        refuse_inherited!(queue);
        let out = try_out!(record_out);
        get_into(
            queue
                .inner
                .queue()
                .get_timeout(Duration::from_millis(timeout_ms)),
            out,
        )
    })
}

/// Writes the number of items queued now (records and sentinels) to
/// `*len_out`. The value may be stale as soon as it is read.
///
/// # Safety
/// `queue` must be NULL or a live queue; `len_out` NULL or valid for one
/// write.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_len(queue: *const ql_queue, len_out: *mut usize) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        refuse_inherited!(queue);
        let out = try_out!(len_out);
        *out = queue.inner.queue().len();
        QL_OK
    })
}

// SAFETY: repr(C), `struct_size` first, C-storable members only, no tail
// padding (asserted below).
unsafe impl super::SizedOptions for ql_queue_options {
    const FIRST_SIZE: usize = std::mem::size_of::<ql_queue_options>();
    fn defaults() -> Self {
        default_options()
    }
}
const _: () = assert!(super::no_tail_padding(
    std::mem::size_of::<ql_queue_options>(),
    std::mem::offset_of!(ql_queue_options, on_drop),
    std::mem::size_of::<Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>>(),
));
