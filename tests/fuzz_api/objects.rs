//! What the program holds (built-in queues, its own vtable queue,
//! listeners) and the C callbacks it gives the library.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use super::common::lock;
use super::support::*;
use super::world::*;
use queue_listener::ffi::listener::{
    ql_listener, ql_listener_flush, ql_listener_free, ql_listener_is_running, ql_listener_stats,
    ql_start, ql_stats, ql_stop, ql_stop_timeout,
};
use queue_listener::ffi::log::ql_log;
use queue_listener::ffi::queue::{
    ql_queue, ql_queue_get_timeout, QL_OVERFLOW_BLOCK_TIMEOUT, QL_OVERFLOW_DROP_NEWEST,
    QL_OVERFLOW_DROP_OLDEST,
};
use queue_listener::ffi::{
    ql_status, QL_DEQUEUE_EMPTY, QL_DEQUEUE_ERROR, QL_DEQUEUE_RECORD, QL_DEQUEUE_SENTINEL,
    QL_ENQUEUE_ERROR, QL_ENQUEUE_FULL, QL_ENQUEUE_OK, QL_ERR_ALREADY_STARTED, QL_ERR_FULL,
    QL_ERR_SENTINEL, QL_ERR_TIMEOUT, QL_ERR_WOULD_DEADLOCK, QL_OK, QL_STAGE_DEQUEUE,
    QL_STAGE_HANDLER,
};

// ---------------------------------------------------------------------------
// Built-in queues as the program holds them.

/// The program's pointer to a built-in queue: callbacks that use it hold
/// the read lock; `ql_queue_free` takes the write lock and clears it.
pub(crate) struct QHandle(pub(crate) RwLock<usize>);

impl QHandle {
    /// Calls `f` with the queue, holding the read lock; `None` once freed.
    pub(crate) fn with<T>(&self, f: impl FnOnce(*const ql_queue) -> T) -> Option<T> {
        let guard = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if *guard == 0 {
            None
        } else {
            Some(f(*guard as *const ql_queue))
        }
    }
}

pub(crate) struct QSlot {
    pub(crate) handle: Arc<QHandle>,
    pub(crate) capacity: usize,
    pub(crate) overflow: i32,
    pub(crate) block_timeout_ms: u64,
    pub(crate) level: i32,
    /// Only built-in records go on it (built-in handlers read them).
    pub(crate) log_only: bool,
    /// The background producer uses it: never freed before the end.
    pub(crate) pinned: bool,
    /// Records put on it may be lost by the program's own choice.
    pub(crate) may_lose: Arc<AtomicBool>,
    /// Listeners made on it (indexes).
    pub(crate) listeners: Vec<usize>,
    /// `on_drop` context.
    pub(crate) _drop_ctx: Option<Arc<DropCtx>>,
    pub(crate) freed: bool,
    /// The queue took a program pointer (a put not refused as invalid).
    pub(crate) took_pointers: bool,
    /// A listener filtering by the built-in records' levels (no
    /// `record_level` hook) was made on it: pointer puts are refused.
    pub(crate) levels_required: bool,
}

impl QSlot {
    /// A blocking put or log returns within a bounded time.
    pub(crate) fn bounded_put(&self) -> bool {
        self.capacity == 0
            || self.overflow == QL_OVERFLOW_DROP_NEWEST
            || self.overflow == QL_OVERFLOW_DROP_OLDEST
            || (self.overflow == QL_OVERFLOW_BLOCK_TIMEOUT && self.block_timeout_ms <= 20)
    }
}

pub(crate) struct DropCtx {
    pub(crate) world: Arc<World>,
}

pub(crate) unsafe extern "C" fn on_drop(ctx: *mut c_void, record: *mut c_void) {
    no_unwind((), || {
        // SAFETY: the queue's DropCtx, alive until the end of the sequence.
        let ctx = unsafe { &*ctx.cast::<DropCtx>() };
        cover(C_ON_DROP);
        if !record.is_null() && ctx.world.give_back(record, "on_drop").is_none() {
            ctx.world
                .violation(format!("on_drop: unknown pointer {record:p}"));
        }
    })
}

// ---------------------------------------------------------------------------
// The program's own queue, behind `ql_queue_vtable`.

#[derive(Debug)]
pub(crate) enum FItem {
    Rec(usize),
    Sentinel,
}

pub(crate) struct FakeQueue {
    pub(crate) world: Arc<World>,
    pub(crate) index: usize,
    pub(crate) items: Mutex<VecDeque<FItem>>,
    pub(crate) changed: Condvar,
    /// Random answers are on (turned off for the final stops).
    pub(crate) chaos: AtomicBool,
    pub(crate) chaos_pct: u64,
    /// `dequeue` answers EMPTY instead of waiting.
    pub(crate) empty_when_empty: bool,
    /// `enqueue_sentinel` answers FULL at this many items (0: never).
    pub(crate) capacity: usize,
    pub(crate) phantoms: AtomicU64,
    pub(crate) task_done: AtomicU64,
}

impl FakeQueue {
    pub(crate) fn push(&self, item: FItem) {
        lock(&self.items).push_back(item);
        self.changed.notify_all();
    }

    pub(crate) fn dequeue(&self, block: bool, out: *mut *mut c_void) -> i32 {
        let world = &self.world;
        if self.chaos.load(Ordering::Relaxed) && world.chance(self.chaos_pct) {
            // SAFETY (writes below): the library's out-pointer.
            match world.pick(&[0, 0, 1, 2, 3, 4, 5]) {
                0 if self.phantoms.fetch_add(1, Ordering::Relaxed) < 16 => {
                    let p = world.new_prog(Home::Fake(self.index));
                    unsafe { *out = p };
                    return QL_DEQUEUE_RECORD;
                }
                1 => return QL_DEQUEUE_SENTINEL,
                2 => return QL_DEQUEUE_EMPTY,
                3 => {
                    unsafe { *out = ptr::dangling_mut() }; // must be ignored
                    return QL_DEQUEUE_ERROR;
                }
                4 => {
                    unsafe { *out = ptr::dangling_mut() }; // must be ignored
                    return world.pick(&[-1, 4, 77, i32::MIN, i32::MAX]);
                }
                _ => {}
            }
        }
        let mut items = lock(&self.items);
        loop {
            match items.pop_front() {
                Some(FItem::Rec(p)) => {
                    // SAFETY: as above.
                    unsafe { *out = p as *mut c_void };
                    return QL_DEQUEUE_RECORD;
                }
                Some(FItem::Sentinel) => return QL_DEQUEUE_SENTINEL,
                None if !block || self.empty_when_empty => return QL_DEQUEUE_EMPTY,
                None => {
                    items = self
                        .changed
                        .wait_timeout(items, Duration::from_millis(20))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    pub(crate) fn enqueue_sentinel(&self) -> i32 {
        if self.chaos.load(Ordering::Relaxed) && self.world.chance(self.chaos_pct) {
            return self.world.pick(&[QL_ENQUEUE_FULL, QL_ENQUEUE_ERROR, 9, -3]);
        }
        let mut items = lock(&self.items);
        if self.capacity != 0 && items.len() >= self.capacity {
            return QL_ENQUEUE_FULL;
        }
        items.push_back(FItem::Sentinel);
        self.changed.notify_all();
        QL_ENQUEUE_OK
    }
}

pub(crate) unsafe extern "C" fn vt_dequeue(
    ctx: *mut c_void,
    block: bool,
    out: *mut *mut c_void,
) -> i32 {
    no_unwind(QL_DEQUEUE_ERROR, || {
        // SAFETY: the FakeQueue, alive until its listener is freed.
        unsafe { &*ctx.cast::<FakeQueue>() }.dequeue(block, out)
    })
}

pub(crate) unsafe extern "C" fn vt_enqueue_sentinel(ctx: *mut c_void) -> i32 {
    no_unwind(QL_ENQUEUE_ERROR, || {
        // SAFETY: as above.
        unsafe { &*ctx.cast::<FakeQueue>() }.enqueue_sentinel()
    })
}

pub(crate) unsafe extern "C" fn vt_task_done(ctx: *mut c_void, _record: *mut c_void) {
    no_unwind((), || {
        // SAFETY: as above.
        unsafe { &*ctx.cast::<FakeQueue>() }
            .task_done
            .fetch_add(1, Ordering::Relaxed);
    })
}

// ---------------------------------------------------------------------------
// Listeners: what their callbacks share, and count.

/// Shared by a listener's handlers and hooks.
pub(crate) struct LShared {
    pub(crate) world: Arc<World>,
    pub(crate) index: usize,
    pub(crate) listener: AtomicPtr<ql_listener>,
    /// `ql_listener_free` is under way: `destroy` is expected now.
    pub(crate) freeing: AtomicBool,
    /// Records are built-in queue entries (else vtable queue records).
    pub(crate) builtin_queue: bool,
    /// The built-in queue, for handlers that log onto it.
    pub(crate) queue: Option<Arc<QHandle>>,
    pub(crate) handler_count: usize,
    /// Counters of what the callbacks saw.
    pub(crate) done: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) replaced: AtomicU64,
    pub(crate) prepare_failed: AtomicU64,
    pub(crate) handler_failed: AtomicU64,
    pub(crate) handle_hook_failed: AtomicU64,
    pub(crate) on_error: AtomicU64,
}

pub(crate) struct HCtx {
    pub(crate) shared: Arc<LShared>,
    pub(crate) index: usize,
    pub(crate) fail_pct: u64,
    pub(crate) destroyed: Arc<AtomicU64>,
}

pub(crate) unsafe extern "C" fn h_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
    no_unwind(0, || {
        // SAFETY: the HCtx, owned by the listener until destroy.
        let h = unsafe { &*ctx.cast::<HCtx>() };
        let s = &*h.shared;
        cover(C_HANDLED);
        s.world
            .check_record(record, s.builtin_queue, &format!("handler {}", h.index));
        if s.world.chance(3) && s.world.reentry_budget.fetch_sub(1, Ordering::Relaxed) > 0 {
            cover(C_REENTRY);
            reenter(s);
        }
        if s.world.chance(h.fail_pct) {
            s.handler_failed.fetch_add(1, Ordering::Relaxed);
            s.world.pick(&[-1, 1, 7, i32::MIN, i32::MAX])
        } else {
            0
        }
    })
}

/// Calls from the listener thread (inside a handler) back into the library.
pub(crate) fn reenter(s: &LShared) {
    let w = &s.world;
    let l = s.listener.load(Ordering::Acquire);
    let check = |what: &str, got: ql_status, allowed: &[ql_status]| {
        if !allowed.contains(&got) {
            w.violation(format!(
                "from the listener thread: {what} returned {got:?}, expected one of {allowed:?}"
            ));
        }
    };
    // SAFETY (calls below): the listener is alive while its thread runs;
    // the queue pointer is used under its handle's read lock.
    unsafe {
        match w.pick(&[0, 1, 2, 3, 4, 5, 6, 7, 8]) {
            0 => check("ql_stop", ql_stop(l), &[QL_ERR_WOULD_DEADLOCK]),
            1 => check(
                "ql_stop_timeout",
                ql_stop_timeout(l, 1),
                &[QL_ERR_WOULD_DEADLOCK],
            ),
            2 => check("ql_start", ql_start(l), &[QL_ERR_ALREADY_STARTED]),
            3 => check(
                "ql_listener_free",
                ql_listener_free(l),
                &[QL_ERR_WOULD_DEADLOCK],
            ),
            4 => check(
                "ql_listener_flush",
                ql_listener_flush(l, 5),
                &[QL_ERR_WOULD_DEADLOCK],
            ),
            5 => {
                let mut st = ql_stats::default();
                check("ql_listener_stats", ql_listener_stats(l, &mut st), &[QL_OK]);
            }
            6 => {
                let mut running = false;
                check(
                    "ql_listener_is_running",
                    ql_listener_is_running(l, &mut running),
                    &[QL_OK],
                );
                if !running {
                    w.violation("is_running is false on the listener's own thread".into());
                }
            }
            _ => {
                let Some(q) = &s.queue else { return };
                let id = w.id();
                lock(&w.logged).insert(id, usize::MAX);
                let message = format!("fz#{id}# from a handler");
                q.with(|q| {
                    let got = ql_log(
                        q,
                        40,
                        c"fz.handler".as_ptr(),
                        message.as_ptr().cast(),
                        message.len(),
                    );
                    // A full blocking queue refuses at once on this thread.
                    check(
                        "ql_log",
                        got,
                        &[QL_OK, QL_ERR_FULL, QL_ERR_WOULD_DEADLOCK, QL_ERR_TIMEOUT],
                    );
                });
            }
        }
    }
}

pub(crate) unsafe extern "C" fn h_flush(ctx: *mut c_void) {
    no_unwind((), || {
        // SAFETY: as in h_handle.
        let _ = unsafe { &*ctx.cast::<HCtx>() };
    })
}

pub(crate) unsafe extern "C" fn h_batch_end(ctx: *mut c_void) {
    no_unwind((), || {
        // SAFETY: as in h_handle.
        let h = unsafe { &*ctx.cast::<HCtx>() };
        if !h.shared.builtin_queue {
            h.shared
                .world
                .violation("batch_end called for a vtable queue".into());
        }
    })
}

pub(crate) unsafe extern "C" fn h_destroy(ctx: *mut c_void) {
    no_unwind((), || {
        // SAFETY: made by Box::into_raw in `make_handler`; destroy runs once.
        let h = unsafe { Box::from_raw(ctx.cast::<HCtx>()) };
        if !h.shared.freeing.load(Ordering::Acquire) {
            h.shared.world.violation(format!(
                "listener {} handler {}: destroy outside ql_listener_free",
                h.shared.index, h.index
            ));
        }
        h.destroyed.fetch_add(1, Ordering::AcqRel);
    })
}

#[derive(Clone, Copy)]
pub(crate) struct HooksPlan {
    pub(crate) prepare_pct_fail: u64,
    pub(crate) handle_fail_pct: u64,
    /// `release` is set: `prepare` may make new records.
    pub(crate) release: bool,
}

pub(crate) struct HooksCtx {
    pub(crate) shared: Arc<LShared>,
    pub(crate) plan: HooksPlan,
    pub(crate) fake: Option<Arc<FakeQueue>>,
    /// A built-in queue the `dequeue` hook takes from with ql_queue_get*.
    pub(crate) get_from: Option<Arc<QHandle>>,
    pub(crate) queue_index: usize,
}

pub(crate) fn hooks_of<'a>(ctx: *mut c_void) -> &'a HooksCtx {
    // SAFETY: the HooksCtx, alive until after its listener is freed.
    unsafe { &*ctx.cast::<HooksCtx>() }
}

pub(crate) unsafe extern "C" fn k_dequeue(
    ctx: *mut c_void,
    block: bool,
    out: *mut *mut c_void,
) -> i32 {
    no_unwind(QL_DEQUEUE_ERROR, || {
        let k = hooks_of(ctx);
        if let Some(fake) = &k.fake {
            return fake.dequeue(block, out);
        }
        let Some(q) = &k.get_from else {
            return QL_DEQUEUE_ERROR;
        };
        let w = &k.shared.world;
        loop {
            let mut record = ptr::null_mut();
            // SAFETY: the queue under its handle's read lock.
            let got = q.with(|q| unsafe { ql_queue_get_timeout(q, 5, &mut record) });
            match got {
                // The program freed its queue: nothing more to take.
                None => return QL_DEQUEUE_EMPTY,
                Some(QL_OK) => {
                    if !record.is_null() && !w.is_ours(record) {
                        // A built-in record handed out: ours to free (in done).
                        w.register_lib(record, Home::Queue(k.queue_index));
                    }
                    // SAFETY: the library's out-pointer.
                    unsafe { *out = record };
                    return QL_DEQUEUE_RECORD;
                }
                Some(QL_ERR_SENTINEL) => return QL_DEQUEUE_SENTINEL,
                Some(QL_ERR_TIMEOUT) if block => continue,
                Some(QL_ERR_TIMEOUT) => return QL_DEQUEUE_EMPTY,
                Some(other) => {
                    w.violation(format!("ql_queue_get_timeout in a hook returned {other:?}"));
                    return QL_DEQUEUE_ERROR;
                }
            }
        }
    })
}

pub(crate) unsafe extern "C" fn k_enqueue_sentinel(ctx: *mut c_void) -> i32 {
    no_unwind(QL_ENQUEUE_ERROR, || match &hooks_of(ctx).fake {
        Some(fake) => fake.enqueue_sentinel(),
        None => QL_ENQUEUE_ERROR,
    })
}

pub(crate) unsafe extern "C" fn k_prepare(
    ctx: *mut c_void,
    record: *mut c_void,
    out: *mut *mut c_void,
) -> i32 {
    no_unwind(0, || {
        let k = hooks_of(ctx);
        let s = &*k.shared;
        let w = &s.world;
        w.check_record(record, s.builtin_queue, "prepare");
        // SAFETY: the library's in/out pointer.
        if unsafe { *out } != record {
            w.violation("prepare: *prepared_out does not hold the record on entry".into());
        }
        let replacement = match w.pick(&[0, 0, 1, 2]) {
            1 if k.plan.release => Some(w.new_prepared()),
            2 if !record.is_null() => Some(ptr::null_mut()),
            _ => None,
        };
        if let Some(p) = replacement {
            // SAFETY: as above.
            unsafe { *out = p };
            s.replaced.fetch_add(1, Ordering::Relaxed);
        }
        if w.chance(k.plan.prepare_pct_fail) {
            s.prepare_failed.fetch_add(1, Ordering::Relaxed);
            w.pick(&[-1, 3, i32::MAX])
        } else {
            0
        }
    })
}

pub(crate) unsafe extern "C" fn k_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
    no_unwind(0, || {
        let k = hooks_of(ctx);
        let s = &*k.shared;
        s.world.check_record(record, s.builtin_queue, "handle hook");
        if s.world.chance(k.plan.handle_fail_pct) {
            s.handle_hook_failed.fetch_add(1, Ordering::Relaxed);
            5
        } else {
            0
        }
    })
}

pub(crate) unsafe extern "C" fn k_record_level(ctx: *mut c_void, record: *mut c_void) -> i32 {
    no_unwind(0, || {
        let k = hooks_of(ctx);
        let s = &*k.shared;
        s.world
            .check_record(record, s.builtin_queue, "record_level");
        s.world
            .pick(&[-10, 0, 10, 20, 30, 40, 50, i32::MIN, i32::MAX])
    })
}

pub(crate) unsafe extern "C" fn k_release(ctx: *mut c_void, prepared: *mut c_void) {
    no_unwind((), || {
        let k = hooks_of(ctx);
        let s = &*k.shared;
        s.released.fetch_add(1, Ordering::Relaxed);
        cover(C_RELEASED);
        if prepared.is_null() {
            return;
        }
        match s.world.give_back(prepared, "release") {
            Some(Kind::Prepared) => {}
            other => s.world.violation(format!(
                "release of {prepared:p}, which prepare did not make ({other:?})"
            )),
        }
    })
}

pub(crate) unsafe extern "C" fn k_done(ctx: *mut c_void, record: *mut c_void) {
    no_unwind((), || {
        let k = hooks_of(ctx);
        let s = &*k.shared;
        let w = &s.world;
        s.done.fetch_add(1, Ordering::Relaxed);
        cover(C_DONE);
        if record.is_null() {
            return;
        }
        match w.give_back(record, "done") {
            Some(Kind::Prog | Kind::Lib) => {}
            Some(Kind::Prepared) => w.violation("done given a record prepare made".into()),
            None => {
                cover(C_BUILTIN_DONE);
                if let Some(id) = w.check_record(record, s.builtin_queue, "done") {
                    if !lock(&w.views_done).insert(id) {
                        w.violation(format!("done: built-in record {id} done twice"));
                    }
                }
            }
        }
    })
}

pub(crate) unsafe extern "C" fn k_on_error(
    ctx: *mut c_void,
    stage: i32,
    index: usize,
    record: *mut c_void,
    _code: i32,
) {
    no_unwind((), || {
        let k = hooks_of(ctx);
        let s = &*k.shared;
        s.on_error.fetch_add(1, Ordering::Relaxed);
        let bad = !(QL_STAGE_DEQUEUE..=QL_STAGE_HANDLER).contains(&stage)
            || (stage == QL_STAGE_HANDLER && index >= s.handler_count)
            || (stage != QL_STAGE_HANDLER && index != 0)
            || (stage == QL_STAGE_DEQUEUE && !record.is_null());
        if bad {
            s.world.violation(format!(
                "on_error(stage {stage}, index {index}, record {record:p})"
            ));
        }
    })
}

pub(crate) struct LSlot {
    pub(crate) ptr: *mut ql_listener,
    pub(crate) shared: Arc<LShared>,
    /// Each handler's destroy count (ours only; built-in handlers are not
    /// counted).
    pub(crate) destroyed: Vec<Arc<AtomicU64>>,
    pub(crate) _hooks: Option<Arc<HooksCtx>>,
    pub(crate) fake: Option<Arc<FakeQueue>>,
    pub(crate) has_done: bool,
    pub(crate) has_on_error: bool,
    pub(crate) has_prepare: bool,
    pub(crate) has_release: bool,
    pub(crate) has_handle_hook: bool,
    /// Its hooks replace `dequeue` (then a flush barrier is refused).
    pub(crate) has_dequeue_hook: bool,
    /// Only handlers of ours (their failures are counted exactly).
    pub(crate) only_ours: bool,
}
