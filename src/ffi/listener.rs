//! `ql_listener` and the vtables a C program plugs in.

use std::ffi::c_void;
use std::ptr;
use std::slice;
use std::sync::Arc;
use std::time::Duration;

use super::record::WithPtr;
use super::{
    boundary, ql_dequeue_result, ql_enqueue_result, ql_stage, ql_status, status_of,
    status_of_result, try_out, try_ref, RawRecord, QL_DEQUEUE_EMPTY, QL_DEQUEUE_RECORD,
    QL_DEQUEUE_SENTINEL, QL_ENQUEUE_FULL, QL_ENQUEUE_OK, QL_ERR_INVALID, QL_ERR_LOST, QL_OK,
    QL_STAGE_DEQUEUE, QL_STAGE_HANDLE, QL_STAGE_HANDLER, QL_STAGE_PREPARE,
};
use crate::ffi::handlers::{ql_handler, CHandler};
use crate::ffi::queue::ql_queue;
use crate::listener::{
    DequeueHook, Dequeued, EnqueueSentinelHook, Error, HandleHook, Handler, Hooks, Listener,
    OnErrorHook, PrepareHook, Queue, SentinelPut, SinkCounts, Source, Stage, TakeBackHook,
};
use crate::log_queue::{done_hook, DoneFn, Entry, LogQueue};
use crate::record::RecordPool;

/// The "queue-like object" of a listener: the program's own queue, as
/// callbacks.
///
/// The library copies this struct. `ctx` must stay valid until the last
/// listener using it has been freed; the library never frees it.
///
/// Threads: `dequeue` and `task_done` are called on the listener thread;
/// `enqueue_sentinel` on the thread calling `ql_stop`, `ql_stop_timeout`,
/// `ql_enqueue_sentinel` or `ql_listener_free`, possibly while `dequeue`
/// runs on the listener thread. The queue itself must be thread-safe.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_queue_vtable {
    /// Passed as the first argument of every callback.
    pub ctx: *mut c_void,
    /// Takes the next item. With `block`, waits until there is one (the
    /// listener always passes true; `false` exists for `dequeue` hooks that
    /// call it). Returns `QL_DEQUEUE_RECORD` after writing the record to
    /// `*record_out`, or `QL_DEQUEUE_SENTINEL`, `QL_DEQUEUE_EMPTY`,
    /// `QL_DEQUEUE_ERROR`. Required, unless the hooks override `dequeue`.
    pub dequeue: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            block: bool,
            record_out: *mut *mut c_void,
        ) -> ql_dequeue_result,
    >,
    /// Puts the sentinel behind every queued item, without blocking:
    /// `QL_ENQUEUE_OK`, `QL_ENQUEUE_FULL` (the library retries while a stop
    /// waits) or `QL_ENQUEUE_ERROR`. Required, unless the hooks override
    /// `enqueue_sentinel`.
    pub enqueue_sentinel: Option<unsafe extern "C" fn(ctx: *mut c_void) -> ql_enqueue_result>,
    /// Optional. Called once for every dequeued record, after every handler
    /// saw it, and once for the sentinel with `record` NULL (Python's
    /// `queue.task_done`). A queue that also carries NULL records and needs
    /// to tell the two apart knows which it handed out last: the listener
    /// calls `task_done` before its next `dequeue`.
    pub task_done: Option<unsafe extern "C" fn(ctx: *mut c_void, record: *mut c_void)>,
}

/// A built-in handler's own account of the records it was given. Every
/// record
/// received is, at any moment, `written`, `lost` or `pending`; after
/// `ql_stop` or `ql_listener_flush` returns, `pending` is 0 for the
/// built-in handlers, except a syslog handler (`ql_syslog_handler`): what
/// it could not deliver within its `flush_timeout_ms` stays pending (its
/// sender keeps trying) until the handler is freed, when it is counted
/// lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ql_sink_counts {
    /// Records written whole.
    pub written: u64,
    /// Records counted lost: dropped whole, or (on a stream, never on a
    /// file that could be truncated back) after a part of them went out.
    pub lost: u64,
    /// Records held, neither written nor lost yet.
    pub pending: u64,
    /// Failed writes (after `EINTR` retries and the write timeout).
    pub write_errors: u64,
    /// The failed writes no `handle` call returned (at a batch end or a
    /// flush); the listener counts and reports them.
    pub deferred_errors: u64,
    /// The errno of the last failure, or 0.
    pub last_errno: i32,
    /// Files only: lines found cut off at the end of the file when it was
    /// opened (a writer died inside a line); each was ended with a newline.
    pub torn_tails: u64,
    /// Files only: rotations done.
    pub rotations: u64,
    /// Files only: rotations and reopens that failed (the handler kept its
    /// file and tries again at the next write).
    pub rotation_failures: u64,
    /// Files: times the file was reopened (moved or deleted under a
    /// `watch` handler, or `ql_reopen_files`). Syslog: times the handler
    /// connected again after its connection was lost or could not be made.
    pub reopens: u64,
    /// Files only: backups that could not be compressed (kept as they were).
    pub compress_failures: u64,
    /// Syslog over RELP only: messages sent again on a new connection
    /// because the old one ended before the collector acknowledged them;
    /// each may arrive twice (at most this many duplicates).
    pub resent: u64,
}

impl From<SinkCounts> for ql_sink_counts {
    fn from(c: SinkCounts) -> Self {
        ql_sink_counts {
            written: c.written,
            lost: c.lost,
            pending: c.pending,
            write_errors: c.write_errors,
            deferred_errors: c.deferred_errors,
            last_errno: c.last_errno,
            torn_tails: c.torn_tails,
            rotations: c.rotations,
            rotation_failures: c.rotation_failures,
            reopens: c.reopens,
            compress_failures: c.compress_failures,
            resent: c.resent,
        }
    }
}

/// One handler's counters, from `ql_listener_handler_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ql_handler_stats {
    /// Records the listener gave the handler's `handle`.
    pub received: u64,
    /// The handler's failures: nonzero returns of `handle`, and the
    /// `deferred_errors` its counts showed.
    pub errors: u64,
    /// True for a built-in handler, which keeps its own account; `sink` is
    /// all zeros otherwise.
    pub has_counts: bool,
    /// The handler's own account.
    pub sink: ql_sink_counts,
}

/// Overrides of the listener's steps, as a Python subclass overrides
/// `QueueListener.dequeue`, `prepare`, `handle` and `enqueue_sentinel`.
/// Every slot may be NULL for the default behaviour; the whole struct may be
/// NULL for all defaults. Copied by `ql_listener_new`; `ctx` must stay valid
/// until the listener is freed.
///
/// A record's life, in order: `dequeue` → `prepare` (exactly once) →
/// `handle` or the handlers → `release` (only for a record `prepare`
/// replaced) → the queue's `task_done` → `done`.
///
/// Threads: every hook runs on the listener thread, one call at a time,
/// except `enqueue_sentinel`, which runs on the thread stopping the
/// listener.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ql_hooks {
    /// Passed as the first argument of every hook.
    pub ctx: *mut c_void,
    /// Replaces the queue's `dequeue`; same contract.
    pub dequeue: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            block: bool,
            record_out: *mut *mut c_void,
        ) -> ql_dequeue_result,
    >,
    /// Prepares a record once, before any handler sees it. `*prepared_out`
    /// holds `record` on entry; write another pointer there to replace the
    /// record (never modify a record the producer still holds: make a new
    /// one). Return 0, or nonzero to skip the record: no handler sees it,
    /// `prepare_errors` counts it, `on_error` is told (`QL_STAGE_PREPARE`).
    /// A replacement written before a nonzero return still goes to
    /// `release`.
    pub prepare: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            record: *mut c_void,
            prepared_out: *mut *mut c_void,
        ) -> i32,
    >,
    /// Replaces the dispatch to the handlers for each prepared record (the
    /// library still calls `prepare` first). Return 0, or nonzero to count
    /// a failure (`QL_STAGE_HANDLE`).
    pub handle: Option<unsafe extern "C" fn(ctx: *mut c_void, record: *mut c_void) -> i32>,
    /// Replaces the queue's `enqueue_sentinel`; same contract.
    pub enqueue_sentinel: Option<unsafe extern "C" fn(ctx: *mut c_void) -> ql_enqueue_result>,
    /// The level of a prepared record (the original or the one `prepare`
    /// made), compared with each handler's level when
    /// `respect_handler_level` is true. Required then, except on the
    /// built-in queue with no `prepare` hook, whose records carry their
    /// level (see `ql_listener_new_with_queue`).
    pub record_level: Option<unsafe extern "C" fn(ctx: *mut c_void, record: *mut c_void) -> i32>,
    /// Takes back a record `prepare` made, after every handler saw it.
    pub release: Option<unsafe extern "C" fn(ctx: *mut c_void, prepared: *mut c_void)>,
    /// The last step of a dequeued record's life, after `task_done`: the
    /// place to free records the program allocated. Not called for records
    /// that never left the queue.
    pub done: Option<unsafe extern "C" fn(ctx: *mut c_void, record: *mut c_void)>,
    /// Told of every failure, then the listener goes on. `stage` says
    /// where; `handler_index` is the failing handler's index for
    /// `QL_STAGE_HANDLER`, else 0; `record` is the record involved (NULL for
    /// `QL_STAGE_DEQUEUE`); `code` what the callback returned.
    pub on_error: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            stage: ql_stage,
            handler_index: usize,
            record: *mut c_void,
            code: i32,
        ),
    >,
}

/// Counters of a listener since it was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ql_stats {
    /// Records dequeued and prepared, then dispatched to the handlers.
    pub handled: u64,
    /// Nonzero returns of handlers and of the `handle` hook.
    pub handler_errors: u64,
    /// Nonzero returns of `prepare` (those records reached no handler).
    pub prepare_errors: u64,
    /// `QL_DEQUEUE_ERROR` results of `dequeue`.
    pub dequeue_errors: u64,
    /// Records the built-in queue dropped under its overflow policy (see
    /// `ql_queue_options`), since the queue was made. 0 for a vtable queue.
    pub dropped: u64,
    /// Items on the built-in queue now. 0 for a vtable queue.
    pub queue_depth: u64,
    /// The most items the listener has seen on the built-in queue at once,
    /// since the queue was made. 0 for a vtable queue.
    pub queue_high_water: u64,
    /// Batches taken off the built-in queue: runs of records that ended
    /// with the queue found empty. 0 for a vtable queue.
    pub batches: u64,
}

/// A listener: a queue, a list of handlers, hooks, and at most one thread
/// (named `ql-listener`) taking records off the queue.
///
/// Threads: `ql_start`, `ql_stop`, `ql_stop_timeout`, `ql_enqueue_sentinel`,
/// `ql_listener_is_running` and `ql_listener_stats` may be called from any
/// thread, concurrently. `ql_listener_free` must be the last call on the
/// listener, with no other call in progress.
pub struct ql_listener {
    pub(crate) inner: Listener<Entry>,
}

struct VtableQueue(ql_queue_vtable);
// SAFETY: the C API requires the program's queue to be thread-safe and its
// ctx to outlive the listener (documented on `ql_queue_vtable`).
unsafe impl Send for VtableQueue {}
// SAFETY: as above.
unsafe impl Sync for VtableQueue {}

fn dequeued(result: ql_dequeue_result, record: *mut c_void) -> Dequeued<Entry> {
    match result {
        QL_DEQUEUE_RECORD => Dequeued::Record(Entry::Ptr(RawRecord(record))),
        QL_DEQUEUE_SENTINEL => Dequeued::Sentinel,
        QL_DEQUEUE_EMPTY => Dequeued::Empty,
        _ => Dequeued::Error,
    }
}

fn sentinel_put(result: ql_enqueue_result) -> SentinelPut {
    match result {
        QL_ENQUEUE_OK => SentinelPut::Ok,
        QL_ENQUEUE_FULL => SentinelPut::Full,
        _ => SentinelPut::Error,
    }
}

type DequeueFn = unsafe extern "C" fn(*mut c_void, bool, *mut *mut c_void) -> ql_dequeue_result;

fn call_dequeue(f: Option<DequeueFn>, ctx: *mut c_void, block: bool) -> Dequeued<Entry> {
    let Some(f) = f else {
        return Dequeued::Error;
    };
    let mut record = ptr::null_mut();
    // SAFETY: a callback of the program's, called as its contract says.
    let result = unsafe { f(ctx, block, &mut record) };
    dequeued(result, record)
}

impl Queue<Entry> for VtableQueue {
    #[inline]
    fn dequeue(&self, block: bool) -> Dequeued<Entry> {
        call_dequeue(self.0.dequeue, self.0.ctx, block)
    }

    fn enqueue_sentinel(&self) -> SentinelPut {
        match self.0.enqueue_sentinel {
            // SAFETY: as in `call_dequeue`.
            Some(f) => sentinel_put(unsafe { f(self.0.ctx) }),
            None => SentinelPut::Error,
        }
    }

    fn task_done(&self, record: Option<&Entry>) {
        if let Some(f) = self.0.task_done {
            match record {
                // SAFETY: as in `call_dequeue`.
                Some(record) => record.with_ptr(|p| unsafe { f(self.0.ctx, p) }),
                // SAFETY: as in `call_dequeue`.
                None => unsafe { f(self.0.ctx, ptr::null_mut()) },
            }
        }
    }
}

/// The `ctx` of a `ql_hooks`, as the closures that call the program's hooks
/// carry it.
#[derive(Clone, Copy)]
struct HookCtx(*mut c_void);
// SAFETY: hooks run on the listener thread (and `enqueue_sentinel` on a
// stopping thread), as documented on `ql_hooks`; ctx outlives the listener.
unsafe impl Send for HookCtx {}
// SAFETY: as above.
unsafe impl Sync for HookCtx {}

impl HookCtx {
    /// The pointer. A method, so that a closure captures the whole
    /// `HookCtx` (`Send`), not its raw pointer field (which is not).
    #[inline]
    fn get(self) -> *mut c_void {
        self.0
    }
}

type ReleaseFn = unsafe extern "C" fn(*mut c_void, *mut c_void);

fn call_release(f: ReleaseFn, ctx: HookCtx, prepared: Entry) {
    // SAFETY: as in `call_dequeue`.
    prepared.with_ptr(|p| unsafe { f(ctx.get(), p) })
}

/// The engine's hooks for a program's `ql_hooks`, slot for slot (a NULL
/// slot is an empty one), on a queue whose built-in records, if it has
/// any, go back to `pool` when done.
fn c_hooks(hooks: ql_hooks, pool: Option<Arc<RecordPool>>) -> Hooks<Entry> {
    let ctx = HookCtx(hooks.ctx);
    let release = hooks.release;
    Hooks {
        dequeue: hooks.dequeue.map(|f| -> DequeueHook<Entry> {
            Box::new(move |_queue, block| call_dequeue(Some(f), ctx.get(), block))
        }),
        prepare: hooks.prepare.map(|f| -> PrepareHook<Entry> {
            Box::new(move |record| {
                record.with_ptr(|original| {
                    let mut prepared = original;
                    // SAFETY: as in `call_dequeue`.
                    match unsafe { f(ctx.get(), original, &mut prepared) } {
                        0 if prepared == original => Ok(None),
                        0 => Ok(Some(Entry::Ptr(RawRecord(prepared)))),
                        code => {
                            if let (true, Some(release)) = (prepared != original, release) {
                                // A replacement made before failing goes
                                // back too.
                                call_release(release, ctx, Entry::Ptr(RawRecord(prepared)));
                            }
                            Err(code)
                        }
                    }
                })
            })
        }),
        handle: hooks.handle.map(|f| -> HandleHook<Entry> {
            Box::new(move |record| {
                // SAFETY: as in `call_dequeue`.
                match record.with_ptr(|p| unsafe { f(ctx.get(), p) }) {
                    0 => Ok(()),
                    code => Err(code),
                }
            })
        }),
        enqueue_sentinel: hooks
            .enqueue_sentinel
            .map(|f| -> EnqueueSentinelHook<Entry> {
                // SAFETY: as in `call_dequeue`.
                Box::new(move |_queue| sentinel_put(unsafe { f(ctx.get()) }))
            }),
        record_level: Some(match hooks.record_level {
            Some(f) => Box::new(move |record: &Entry| {
                // SAFETY: as in `call_dequeue`.
                Some(record.with_ptr(|p| unsafe { f(ctx.get(), p) }))
            }),
            None => Box::new(Entry::level),
        }),
        release: release.map(|f| -> TakeBackHook<Entry> {
            Box::new(move |prepared| call_release(f, ctx, prepared))
        }),
        done: done_hook(
            hooks.done.map(|f| -> DoneFn {
                // SAFETY: as in `call_dequeue`.
                Box::new(move |record| record.with_ptr(|p| unsafe { f(ctx.get(), p) }))
            }),
            pool,
        ),
        on_error: hooks.on_error.map(|f| -> OnErrorHook<Entry> {
            Box::new(move |stage, record, code| {
                let (stage, index) = match stage {
                    Stage::Dequeue => (QL_STAGE_DEQUEUE, 0),
                    Stage::Prepare => (QL_STAGE_PREPARE, 0),
                    Stage::Handle => (QL_STAGE_HANDLE, 0),
                    Stage::Handler(i) => (QL_STAGE_HANDLER, i),
                };
                match record {
                    // SAFETY: as in `call_dequeue`.
                    Some(record) => {
                        record.with_ptr(|p| unsafe { f(ctx.get(), stage, index, p, code) })
                    }
                    // SAFETY: as in `call_dequeue`.
                    None => unsafe { f(ctx.get(), stage, index, ptr::null_mut(), code) },
                }
            })
        }),
    }
}

/// The queue a listener is made on, and what it provides.
struct QueueParts<'a> {
    queue: Source<Entry>,
    /// The built-in queue's record pool.
    pool: Option<Arc<RecordPool>>,
    has_dequeue: bool,
    has_enqueue_sentinel: bool,
    /// The built-in queue, whose records carry their level (but not its
    /// program pointers).
    built_in: Option<&'a LogQueue>,
}

/// Checks and copies the arguments shared by both constructors, then makes
/// the listener on `queue`.
///
/// # Safety
/// As `ql_listener_new`.
unsafe fn new_listener(
    queue: QueueParts,
    handlers: *const ql_handler,
    handler_count: usize,
    hooks: *const ql_hooks,
    respect_handler_level: bool,
    listener_out: *mut *mut ql_listener,
) -> ql_status {
    let out = try_out!(listener_out);
    crate::process::install();
    let handlers: &[ql_handler] = match handler_count {
        0 => &[],
        n => {
            let first = try_ref!(handlers);
            // SAFETY: the caller promises `handler_count` valid entries.
            unsafe { slice::from_raw_parts(first, n) }
        }
    };
    // SAFETY: NULL or valid, as the caller promises.
    let hooks = unsafe { hooks.as_ref() }.copied().unwrap_or(ql_hooks {
        ctx: ptr::null_mut(),
        dequeue: None,
        prepare: None,
        handle: None,
        enqueue_sentinel: None,
        record_level: None,
        release: None,
        done: None,
        on_error: None,
    });
    let QueueParts {
        queue,
        pool,
        has_dequeue,
        has_enqueue_sentinel,
        built_in,
    } = queue;
    // Filtering by level needs every record's level: a `record_level` hook,
    // or the built-in queue's own records, untouched by `prepare` (whose
    // replacement is an opaque pointer), not taken by a `dequeue` hook
    // (whose records are opaque pointers), and with no program pointers.
    let levels_from_queue = respect_handler_level && hooks.record_level.is_none();
    if (!has_dequeue && hooks.dequeue.is_none())
        || (!has_enqueue_sentinel && hooks.enqueue_sentinel.is_none())
        || (levels_from_queue
            && (built_in.is_none() || hooks.prepare.is_some() || hooks.dequeue.is_some()))
        || handlers.iter().any(|h| h.handle.is_none())
    {
        return QL_ERR_INVALID;
    }
    if let (true, Some(queue)) = (levels_from_queue, built_in) {
        if queue.require_levels().is_err() {
            return QL_ERR_INVALID;
        }
    }
    let handlers = handlers
        .iter()
        .map(|h| Box::new(CHandler(*h)) as Box<dyn Handler<Entry>>)
        .collect();
    let c_dequeue = hooks.dequeue.is_some();
    let mut listener = Listener::new(queue, handlers, c_hooks(hooks, pool), respect_handler_level);
    if c_dequeue {
        // `ql_dequeue_result` has no value for a flush barrier.
        listener = listener.refusing_barriers();
    }
    *out = Box::into_raw(Box::new(ql_listener { inner: listener }));
    QL_OK
}

/// Makes an idle listener on the program's own queue.
///
/// - `queue`: the queue vtable, copied. `dequeue` and `enqueue_sentinel`
///   are required unless `hooks` overrides them.
/// - `handlers`, `handler_count`: the handlers, in dispatch order, copied;
///   the listener owns each handler's `ctx` from now on (see `ql_handler`).
///   `handlers` may be NULL when `handler_count` is 0.
/// - `hooks`: overrides, copied; NULL for Python's default behaviour.
/// - `respect_handler_level`: filter records by handler level; then
///   `hooks->record_level` is required.
/// - `listener_out`: receives the listener on success only. The caller owns
///   it and frees it with `ql_listener_free`.
///
/// Returns `QL_OK`; `QL_ERR_NULL` for a NULL `queue`, `listener_out`, or
/// `handlers` with a nonzero count; `QL_ERR_INVALID` for a missing required
/// slot. On failure nothing is kept and no callback is called. Nothing
/// runs until `ql_start`. Any thread.
///
/// # Safety
/// Each pointer must be NULL or valid for reading (`handlers` for
/// `handler_count` entries; `listener_out` for one write). The callbacks
/// and their `ctx` must follow the contracts of `ql_queue_vtable`,
/// `ql_handler` and `ql_hooks`.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_new(
    queue: *const ql_queue_vtable,
    handlers: *const ql_handler,
    handler_count: usize,
    hooks: *const ql_hooks,
    respect_handler_level: bool,
    listener_out: *mut *mut ql_listener,
) -> ql_status {
    boundary(|| {
        let queue = *try_ref!(queue);
        let parts = QueueParts {
            has_dequeue: queue.dequeue.is_some(),
            has_enqueue_sentinel: queue.enqueue_sentinel.is_some(),
            built_in: None,
            queue: if queue.task_done.is_some() {
                Source::custom(Arc::new(VtableQueue(queue)))
            } else {
                // No `task_done`: the listener skips the call altogether.
                Source::custom_without_task_done(Arc::new(VtableQueue(queue)))
            },
            pool: None,
        };
        // SAFETY: forwarded from our caller.
        unsafe {
            new_listener(
                parts,
                handlers,
                handler_count,
                hooks,
                respect_handler_level,
                listener_out,
            )
        }
    })
}

/// Makes an idle listener on a built-in queue: `ql_listener_new` without
/// writing a vtable.
///
/// The listener takes its own reference to `queue`, so the queue may be
/// freed with `ql_queue_free` at any time; it lives until the listener is
/// freed too. Arguments, results and ownership otherwise as
/// `ql_listener_new` (`QL_ERR_NULL` for a NULL `queue`).
///
/// `respect_handler_level` without a `record_level` hook filters by the
/// level built-in records carry. The library cannot read the level of a
/// program pointer (`ql_queue_put`) or of a record a `prepare` hook made, so
/// rather than pass those to every handler it refuses them, with
/// `QL_ERR_INVALID`: this call is refused when `hooks->prepare` or
/// `hooks->dequeue` is set, or
/// when the queue has already taken a program pointer record; once it
/// succeeds, the queue refuses program pointer records for its whole life.
/// A `record_level` hook lifts all three (it is asked for every record).
///
/// # Safety
/// `queue` must be NULL or a live queue from `ql_queue_new`; the other
/// arguments as for `ql_listener_new`.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_new_with_queue(
    queue: *const ql_queue,
    handlers: *const ql_handler,
    handler_count: usize,
    hooks: *const ql_hooks,
    respect_handler_level: bool,
    listener_out: *mut *mut ql_listener,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        if queue.inner.is_inherited() {
            return super::QL_ERR_FORKED;
        }
        let parts = QueueParts {
            queue: Source::BuiltIn(Arc::clone(queue.inner.queue())),
            pool: Some(Arc::clone(queue.inner.pool())),
            has_dequeue: true,
            has_enqueue_sentinel: true,
            built_in: Some(&queue.inner),
        };
        // SAFETY: forwarded from our caller.
        unsafe {
            new_listener(
                parts,
                handlers,
                handler_count,
                hooks,
                respect_handler_level,
                listener_out,
            )
        }
    })
}

/// Starts the listener thread, named `ql-listener`.
///
/// Returns `QL_OK`; `QL_ERR_ALREADY_STARTED` while the thread runs or
/// another thread is stopping it (no second thread is made);
/// `QL_ERR_THREAD` when the system cannot make a thread; `QL_ERR_NULL`.
/// From the listener's own thread (inside a handler or hook) it returns
/// `QL_ERR_ALREADY_STARTED`. A listener whose loop ended by itself (its
/// queue reported empty, or it reached a sentinel from `ql_enqueue_sentinel`)
/// is joined and restarted; if its handlers' `flush` is still running, start
/// waits for it. Sentinels that a joined thread never reached (put by a stop
/// whose loop had already ended) are acknowledged with `task_done` and
/// skipped by the next run, so they cannot end it early.
/// Start and stop may alternate any number of times. Any thread.
///
/// # Safety
/// `listener` must be NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn ql_start(listener: *const ql_listener) -> ql_status {
    boundary(|| status_of_result(try_ref!(listener).inner.start()))
}

/// Stops the listener: puts the sentinel behind every queued record, waits
/// until the thread has handled all of them and flushed the handlers, and
/// joins it.
///
/// Every record put before the call has been handled when it returns
/// `QL_OK`. On a full bounded queue it waits until the sentinel gets in.
/// A listener that is not running (never started, or already stopped) is
/// left alone: `QL_OK`, nothing enqueued. A listener whose loop already
/// ended (its queue reported empty) is joined without a sentinel. Several
/// threads may stop at once: all return once the one thread is joined.
///
/// `QL_ERR_WOULD_DEADLOCK` from the listener thread itself (inside a
/// handler or hook), or from another listener's thread when this
/// listener's thread is waiting, directly or along a chain of such stops
/// and flushes, for that one (A's handler stops B while B's handler stops
/// A: one of the two calls is refused): nothing is enqueued, nothing
/// changes. `QL_ERR_QUEUE`
/// when the queue fails to take the sentinel (the listener keeps running),
/// or when `dequeue` kept reporting errors during the stop, so the loop
/// ended before reaching the sentinel: the thread is then joined and the
/// listener stopped, but records may remain on the queue. `QL_ERR_PANIC`
/// when the thread panicked (it is joined). `QL_ERR_LOST` when the stop
/// did all of the above, but built-in handlers counted records lost (a
/// failing disk, a closed pipe) since the previous `ql_stop`,
/// `ql_stop_timeout` or `ql_listener_flush` returned: which and why is in
/// `ql_listener_handler_stats`. `QL_ERR_NULL`.
///
/// # Safety
/// `listener` must be NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn ql_stop(listener: *const ql_listener) -> ql_status {
    boundary(|| status_of_result(try_ref!(listener).inner.stop()))
}

/// `ql_stop` with a deadline of `timeout_ms` milliseconds.
///
/// `QL_ERR_TIMEOUT` when the sentinel could not get in, or the thread did
/// not reach it, in time. The listener then keeps running and usable: a
/// sentinel this call already queued is skipped when the thread reaches it
/// (it goes on with the records behind it), and a later `ql_stop` puts its
/// own, so every record put before that later stop is handled when it
/// returns. Other results as `ql_stop`.
///
/// # Safety
/// `listener` must be NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn ql_stop_timeout(
    listener: *const ql_listener,
    timeout_ms: u64,
) -> ql_status {
    boundary(|| {
        let timeout = Duration::from_millis(timeout_ms);
        status_of_result(try_ref!(listener).inner.stop_timeout(timeout))
    })
}

/// Puts one sentinel on the queue now, without waiting, as Python's
/// `QueueListener.enqueue_sentinel`.
///
/// The thread ends when it reaches the sentinel; records behind it wait for
/// the next `ql_start`. A following `ql_stop` enqueues no second sentinel.
/// Returns `QL_OK`, `QL_ERR_FULL` (nothing was put), `QL_ERR_QUEUE` or
/// `QL_ERR_NULL`. Any thread, the listener thread included.
///
/// # Safety
/// `listener` must be NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn ql_enqueue_sentinel(listener: *const ql_listener) -> ql_status {
    boundary(|| status_of_result(try_ref!(listener).inner.enqueue_sentinel()))
}

/// Writes to `*running_out` whether the listener has a thread, from a
/// successful `ql_start` until a stop joins it. Any thread.
///
/// # Safety
/// `listener` must be NULL or a live listener; `running_out` NULL or valid
/// for one write.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_is_running(
    listener: *const ql_listener,
    running_out: *mut bool,
) -> ql_status {
    boundary(|| {
        let listener = try_ref!(listener);
        *try_out!(running_out) = listener.inner.is_running();
        QL_OK
    })
}

/// Writes the listener's counters to `*stats_out`. Any thread; each counter
/// is read atomically, the set is not a single snapshot.
///
/// # Safety
/// `listener` must be NULL or a live listener; `stats_out` NULL or valid for
/// one write.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_stats(
    listener: *const ql_listener,
    stats_out: *mut ql_stats,
) -> ql_status {
    boundary(|| {
        let listener = try_ref!(listener);
        let out = try_out!(stats_out);
        let s = listener.inner.stats();
        *out = ql_stats {
            handled: s.handled,
            handler_errors: s.handler_errors,
            prepare_errors: s.prepare_errors,
            dequeue_errors: s.dequeue_errors,
            dropped: s.queue.dropped,
            queue_depth: s.queue.depth,
            queue_high_water: s.queue.high_water,
            batches: s.batches,
        };
        QL_OK
    })
}

/// Writes the counters of handler `index` (its place in the array the
/// listener was made with) to `*stats_out`: records received, failures,
/// and the handler's own account (written, lost, pending, and for files
/// rotations and reopens) when it keeps one. For a built-in handler,
/// `received == sink.written + sink.lost + sink.pending`.
///
/// Any thread, any time, while the listener lives: no copy of the
/// `ql_handler` and no stop needed. While the listener runs, the fields
/// of one snapshot may be a record apart.
///
/// `QL_ERR_NULL` for a NULL pointer; `QL_ERR_INVALID` for an index past the
/// last handler (nothing written).
///
/// # Safety
/// `listener` must be NULL or a live listener; `stats_out` NULL or valid
/// for one write.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_handler_stats(
    listener: *const ql_listener,
    index: usize,
    stats_out: *mut ql_handler_stats,
) -> ql_status {
    boundary(|| {
        let listener = try_ref!(listener);
        let out = try_out!(stats_out);
        let Some(s) = listener.inner.handler_stats(index) else {
            return QL_ERR_INVALID;
        };
        *out = ql_handler_stats {
            received: s.received,
            errors: s.errors,
            has_counts: s.sink.is_some(),
            sink: s.sink.map(Into::into).unwrap_or_default(),
        };
        QL_OK
    })
}

/// A flush barrier: returns `QL_OK` once every record put on the queue
/// before the call has been handled and every handler's `flush` has run.
///
/// It does not wait for records put after the call, so producers may go on
/// producing: it puts a barrier behind the records queued now and waits for
/// the listener to reach it. On a full queue it waits for room for the
/// barrier, within the same deadline, and gives `QL_ERR_NOT_RUNNING` as
/// soon as the listener's loop ends meanwhile (the room may never come).
///
/// `timeout_ms`: the most to wait in all; `QL_ERR_TIMEOUT` past it (a
/// barrier already queued is reached later and harms nothing).
/// `QL_ERR_NOT_RUNNING` when the listener is not running (records would
/// never be handled) or its loop ended before the barrier;
/// `QL_ERR_WOULD_DEADLOCK` from the listener thread (inside a handler or
/// hook), or when the wait would close a cycle of listeners waiting for
/// each other (as for `ql_stop`); `QL_ERR_UNSUPPORTED` for a listener on a vtable queue, which
/// cannot carry a barrier, or whose hooks replace `dequeue`, which cannot
/// hand one on; `QL_ERR_LOST` when the flush completed, but built-in
/// handlers counted records lost since the previous `ql_stop`,
/// `ql_stop_timeout` or `ql_listener_flush` returned (every record before
/// the barrier is then written or counted lost: a flush writes what the
/// handlers hold, or counts it lost); `QL_ERR_NULL`. Any thread,
/// concurrently with everything but `ql_listener_free`.
///
/// # Safety
/// `listener` must be NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_flush(
    listener: *const ql_listener,
    timeout_ms: u64,
) -> ql_status {
    boundary(|| {
        let listener = try_ref!(listener);
        status_of_result(
            listener
                .inner
                .flush(Some(Duration::from_millis(timeout_ms))),
        )
    })
}

/// Stops the listener if it runs (as `ql_stop`, waiting as long as it
/// takes), calls each handler's `destroy`, drops the listener's reference
/// to a built-in queue, and frees the listener.
///
/// Returns `QL_OK`, or `QL_ERR_LOST` when records were lost since the
/// previous stop or flush returned, as `ql_stop` reports them, those a
/// built-in handler counts lost while it is closed included (a syslog
/// handler's records still undelivered when its last wait for the collector
/// ends); the listener is freed all the same. NULL is a no-op
/// returning `QL_OK`. From the listener's
/// own thread, or where `ql_stop` would close a cycle of waits, it returns
/// `QL_ERR_WOULD_DEADLOCK` and frees nothing. When
/// the queue fails to take the sentinel it returns `QL_ERR_QUEUE` and frees
/// nothing (the listener keeps running; call it again later).
/// Records still queued stay on the queue. No other call on the listener
/// may be in progress or follow.
///
/// # Safety
/// `listener` must be NULL or a live listener, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_free(listener: *mut ql_listener) -> ql_status {
    boundary(|| {
        if listener.is_null() {
            return QL_OK;
        }
        // SAFETY: live, as the caller promises.
        let inner = &unsafe { &*listener }.inner;
        // The thread must be gone before the handlers and the borrowed
        // contexts are released. A stop that fails leaves the listener
        // running, so nothing is freed then.
        let status = match inner.close() {
            Ok(()) | Err(Error::Panicked) => QL_OK,
            Err(Error::Lost(_)) => QL_ERR_LOST,
            Err(e) => return status_of(e),
        };
        // SAFETY: from `Box::into_raw` in `new_listener`, freed once.
        drop(unsafe { Box::from_raw(listener) });
        status
    })
}
