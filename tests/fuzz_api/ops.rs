//! The fuzzer and its operations: one random call (or a few) per step.

use std::collections::{HashSet, VecDeque};
use std::ffi::{c_char, c_void, CStr};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use super::common::lock;
use super::objects::*;
use super::support::*;
use super::world::*;
use queue_listener::ffi::handlers::ql_handler;
use queue_listener::ffi::handlers::{
    ql_handler_free, ql_handler_lines_lost, ql_handler_options_default, ql_null_handler,
    ql_stream_handler_fd, QL_FLUSH_BATCH, QL_FLUSH_EVERY_RECORD, QL_FLUSH_EXPLICIT,
};
use queue_listener::ffi::listener::{
    ql_enqueue_sentinel, ql_hooks, ql_listener, ql_listener_flush, ql_listener_free,
    ql_listener_is_running, ql_listener_new, ql_listener_new_with_queue, ql_listener_stats,
    ql_queue_vtable, ql_start, ql_stats, ql_stop, ql_stop_timeout,
};
use queue_listener::ffi::log::{
    ql_context_clear, ql_context_remove, ql_context_set, ql_log, ql_log_src, ql_log_user,
};
use queue_listener::ffi::queue::{
    ql_queue, ql_queue_enabled, ql_queue_free, ql_queue_get_nowait, ql_queue_get_timeout,
    ql_queue_len, ql_queue_new, ql_queue_new_with_options, ql_queue_options,
    ql_queue_options_default, ql_queue_put, ql_queue_put_nowait, ql_queue_put_timeout,
    ql_queue_set_level, QL_OVERFLOW_BLOCK, QL_OVERFLOW_DROP_NEWEST, QL_OVERFLOW_DROP_OLDEST,
    QL_QUEUE_MAX_CAPACITY,
};
use queue_listener::ffi::record::{
    ql_field, ql_field_value, ql_level_name, ql_record_free, ql_source, ql_str, QL_FIELD_BOOL,
    QL_FIELD_DOUBLE, QL_FIELD_INT, QL_FIELD_STR, QL_FIELD_UINT, QL_LEVEL_ALL,
};
use queue_listener::ffi::{
    ql_status, ql_status_str, ql_version, QL_ERR_ALREADY_STARTED, QL_ERR_EMPTY, QL_ERR_FULL,
    QL_ERR_INVALID, QL_ERR_NOT_RUNNING, QL_ERR_NULL, QL_ERR_QUEUE, QL_ERR_SENTINEL, QL_ERR_TIMEOUT,
    QL_ERR_UNSUPPORTED, QL_OK,
};

// ---------------------------------------------------------------------------
// The fuzzer.

pub(crate) struct Fuzzer {
    pub(crate) world: Arc<World>,
    pub(crate) rng: Rng,
    pub(crate) queues: Vec<QSlot>,
    pub(crate) listeners: Vec<Option<LSlot>>,
    pub(crate) fakes: Vec<Arc<FakeQueue>>,
    pub(crate) trace: Arc<Mutex<VecDeque<String>>>,
    pub(crate) verbose: bool,
    pub(crate) devnull: std::fs::File,
    pub(crate) background: Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>,
    /// Vtable queues a listener without `done` took records from: those
    /// records are the program's loss.
    pub(crate) lost_fakes: HashSet<usize>,
}

impl Fuzzer {
    pub(crate) fn live_queue(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.queues.len())
            .filter(|&i| !self.queues[i].freed)
            .collect();
        (!live.is_empty()).then(|| self.rng.pick(&live))
    }

    pub(crate) fn live_listener(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.listeners.len())
            .filter(|&i| self.listeners[i].is_some())
            .collect();
        (!live.is_empty()).then(|| self.rng.pick(&live))
    }

    pub(crate) fn capacity(&mut self) -> usize {
        self.rng
            .pick(&[0, 0, 1, 2, 3, 8, 64, QL_QUEUE_MAX_CAPACITY + 1, usize::MAX])
    }

    pub(crate) fn step(&mut self) {
        type Op = (u64, &'static str, fn(&mut Fuzzer));
        let weights: &[Op] = &[
            (3, "new queue", Fuzzer::op_new_queue),
            (4, "new listener on queue", Fuzzer::op_new_listener_on_queue),
            (
                3,
                "new listener on vtable",
                Fuzzer::op_new_listener_on_vtable,
            ),
            (8, "start", Fuzzer::op_start),
            (5, "stop", Fuzzer::op_stop),
            (4, "stop_timeout", Fuzzer::op_stop_timeout),
            (4, "enqueue_sentinel", Fuzzer::op_enqueue_sentinel),
            (3, "flush", Fuzzer::op_flush),
            (3, "stats", Fuzzer::op_stats),
            (3, "free listener", Fuzzer::op_free_listener),
            (14, "put", Fuzzer::op_puts),
            (8, "log", Fuzzer::op_logs),
            (2, "get", Fuzzer::op_get),
            (3, "queue misc", Fuzzer::op_queue_misc),
            (1, "free queue", Fuzzer::op_free_queue),
            (5, "vtable queue put", Fuzzer::op_fake_put),
            (2, "statics", Fuzzer::op_statics),
            (3, "NULL arguments", Fuzzer::op_null_arguments),
            (3, "pause", Fuzzer::op_pause),
        ];
        let total: u64 = weights.iter().map(|w| w.0).sum();
        let mut roll = self.rng.below(total);
        for (weight, name, op) in weights {
            if roll < *weight {
                self.note(format!("[{name}]"));
                op(self);
                return;
            }
            roll -= weight;
        }
    }

    // -- queues -----------------------------------------------------------

    pub(crate) fn op_new_queue(&mut self) {
        if self.queues.len() >= 5 {
            return;
        }
        let capacity = self.capacity();
        let mut out = ptr::null_mut();
        let null_out = self.rng.pct(4);
        let out_ptr: *mut *mut ql_queue = if null_out { ptr::null_mut() } else { &mut out };
        if self.rng.pct(30) {
            // SAFETY: NULL or a valid out-pointer.
            let got = unsafe { ql_queue_new(capacity, out_ptr) };
            let want = if null_out {
                QL_ERR_NULL
            } else if capacity > QL_QUEUE_MAX_CAPACITY {
                QL_ERR_INVALID
            } else {
                QL_OK
            };
            if self.expect(&format!("ql_queue_new({capacity})"), got, &[want]) == QL_OK {
                self.add_queue(
                    out,
                    capacity,
                    QL_OVERFLOW_BLOCK,
                    1000,
                    QL_LEVEL_ALL,
                    false,
                    None,
                );
            }
            return;
        }
        let mut o = ql_queue_options_default();
        o.capacity = capacity;
        o.overflow = self.rng.pick(&[0, 0, 1, 2, 3, 3, 4, -1, 99]);
        o.block_timeout_ms = self.rng.pick(&[0, 1, 5, 20, 1000, u64::MAX]);
        o.level = self.rng.pick(&[QL_LEVEL_ALL, QL_LEVEL_ALL, 0, 20, 30, -5]);
        o.report_drops = self.rng.pct(40);
        let drop_ctx = self.rng.pct(60).then(|| {
            Arc::new(DropCtx {
                world: self.world.clone(),
            })
        });
        if let Some(ctx) = &drop_ctx {
            o.drop_ctx = Arc::as_ptr(ctx).cast_mut().cast();
            o.on_drop = Some(on_drop);
        }
        let null_options = self.rng.pct(3);
        let opt_ptr: *const ql_queue_options = if null_options { ptr::null() } else { &o };
        // SAFETY: NULL or valid pointers.
        let got = unsafe { ql_queue_new_with_options(opt_ptr, out_ptr) };
        let want = if null_out || null_options {
            QL_ERR_NULL
        } else if capacity > QL_QUEUE_MAX_CAPACITY || !(0..=3).contains(&o.overflow) {
            QL_ERR_INVALID
        } else {
            QL_OK
        };
        let what = format!(
            "ql_queue_new_with_options(capacity {capacity}, overflow {}, timeout {}, level {}, report {}, on_drop {})",
            o.overflow, o.block_timeout_ms, o.level, o.report_drops, drop_ctx.is_some()
        );
        if self.expect(&what, got, &[want]) == QL_OK {
            let log_only = self.rng.pct(30);
            self.add_queue(
                out,
                capacity,
                o.overflow,
                o.block_timeout_ms,
                o.level,
                log_only,
                drop_ctx,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_queue(
        &mut self,
        q: *mut ql_queue,
        capacity: usize,
        overflow: i32,
        block_timeout_ms: u64,
        level: i32,
        log_only: bool,
        drop_ctx: Option<Arc<DropCtx>>,
    ) -> usize {
        let may_lose = overflow == QL_OVERFLOW_DROP_OLDEST && drop_ctx.is_none();
        self.queues.push(QSlot {
            handle: Arc::new(QHandle(RwLock::new(q as usize))),
            capacity,
            overflow,
            block_timeout_ms,
            level,
            log_only,
            pinned: false,
            may_lose: Arc::new(AtomicBool::new(may_lose)),
            listeners: Vec::new(),
            _drop_ctx: drop_ctx,
            freed: false,
            took_pointers: false,
            levels_required: false,
        });
        self.queues.len() - 1
    }

    /// True when no listener on queue `qi` may be running (so the program
    /// may drain it).
    pub(crate) fn idle(&mut self, qi: usize) -> bool {
        let ls = self.queues[qi].listeners.clone();
        ls.into_iter().all(|li| match &self.listeners[li] {
            None => true,
            Some(l) => {
                let mut running = true;
                // SAFETY: a live listener, a valid out-pointer.
                let got = unsafe { ql_listener_is_running(l.ptr, &mut running) };
                self.expect("ql_listener_is_running", got, &[QL_OK]);
                !running
            }
        })
    }

    /// Takes records back with get_nowait until empty.
    pub(crate) fn drain(&mut self, qi: usize) {
        for _ in 0..100_000 {
            let mut record = ptr::null_mut();
            let got = self.queues[qi]
                .handle
                .clone()
                // SAFETY: live queue, valid out-pointer.
                .with(|q| unsafe { ql_queue_get_nowait(q, &mut record) })
                .unwrap_or(QL_ERR_EMPTY);
            match got {
                QL_OK => self.got_back(qi, record),
                QL_ERR_SENTINEL => {}
                _ => {
                    self.expect("ql_queue_get_nowait (drain)", got, &[QL_ERR_EMPTY]);
                    return;
                }
            }
        }
    }

    /// A record a get handed back to the program.
    pub(crate) fn got_back(&self, qi: usize, record: *mut c_void) {
        let w = &self.world;
        if record.is_null() {
            return;
        }
        cover(C_GOT_BACK);
        if w.is_ours(record) {
            w.give_back(record, "ql_queue_get");
            return;
        }
        // A built-in record handed out: check it, then free it.
        // SAFETY: handed out by ql_queue_get*: a ql_record the caller owns.
        match unsafe { read_builtin(record.cast()) } {
            Ok(Some(id)) if !lock(&w.logged).contains_key(&id) => {
                w.violation(format!("ql_queue_get: built-in record {id} never logged"));
            }
            Ok(_) => {}
            Err(e) => w.violation(format!(
                "ql_queue_get on queue {qi}: bad built-in record: {e}"
            )),
        }
        // SAFETY: as above; freed once.
        unsafe { ql_record_free(record.cast()) };
    }

    pub(crate) fn op_free_queue(&mut self) {
        let Some(qi) = self.live_queue() else { return };
        if self.queues[qi].pinned {
            return;
        }
        let attached = self.queues[qi]
            .listeners
            .iter()
            .any(|&li| self.listeners[li].is_some());
        if self.idle(qi) {
            self.drain(qi);
        }
        if attached {
            // Records left on it now belong to listeners the program can
            // no longer drain from.
            self.queues[qi].may_lose.store(true, Ordering::Relaxed);
        }
        let handle = self.queues[qi].handle.clone();
        let mut p = handle.0.write().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: the program's pointer, freed once, no call in progress
        // (callbacks use it under the read lock).
        unsafe { ql_queue_free(*p as *mut ql_queue) };
        *p = 0;
        drop(p);
        self.queues[qi].freed = true;
        self.note(format!("ql_queue_free(queue {qi}) attached {attached}"));
    }

    // -- listeners --------------------------------------------------------

    /// A handler of ours; its ctx is owned by the listener once made.
    pub(crate) fn make_handler(
        &mut self,
        shared: &Arc<LShared>,
        index: usize,
    ) -> (ql_handler, Arc<AtomicU64>) {
        let destroyed = Arc::new(AtomicU64::new(0));
        let ctx = Box::into_raw(Box::new(HCtx {
            shared: shared.clone(),
            index,
            fail_pct: self.rng.pick(&[0, 0, 10, 50, 100]),
            destroyed: destroyed.clone(),
        }));
        let h = ql_handler {
            ctx: ctx.cast(),
            level: self.rng.pick(&[0, 0, 10, 30, 50, -1]),
            handle: Some(h_handle),
            flush: self
                .rng
                .pct(60)
                .then_some(h_flush as unsafe extern "C" fn(*mut c_void)),
            destroy: Some(h_destroy),
            batch_end: self
                .rng
                .pct(50)
                .then_some(h_batch_end as unsafe extern "C" fn(*mut c_void)),
        };
        (h, destroyed)
    }

    pub(crate) fn new_shared(
        &mut self,
        index: usize,
        builtin: bool,
        queue: Option<Arc<QHandle>>,
        n: usize,
    ) -> Arc<LShared> {
        Arc::new(LShared {
            world: self.world.clone(),
            index,
            listener: AtomicPtr::new(ptr::null_mut()),
            freeing: AtomicBool::new(false),
            builtin_queue: builtin,
            queue,
            handler_count: n,
            done: AtomicU64::new(0),
            released: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            prepare_failed: AtomicU64::new(0),
            handler_failed: AtomicU64::new(0),
            handle_hook_failed: AtomicU64::new(0),
            on_error: AtomicU64::new(0),
        })
    }

    /// Builds handlers (some invalid, some built-in) and hooks, calls
    /// `make`, and checks and records the result.
    pub(crate) fn new_listener(&mut self, queue: Option<usize>, fake: Option<Arc<FakeQueue>>) {
        if self.listeners.len() >= 8 {
            return;
        }
        let index = self.listeners.len();
        let builtin = queue.is_some();
        let log_only = queue.is_some_and(|qi| self.queues[qi].log_only);
        let n = self.rng.pick(&[0usize, 1, 1, 2, 3]);
        let qhandle = queue.map(|qi| self.queues[qi].handle.clone());
        let shared = self.new_shared(index, builtin, qhandle.clone(), n);
        let mut handlers = Vec::new();
        let mut destroyed = Vec::new();
        let mut invalid = false;
        let mut only_ours = true;
        for i in 0..n {
            let roll = self.rng.below(100);
            if roll < 8 {
                // Invalid: no handle.
                let (mut h, d) = self.make_handler(&shared, i);
                h.handle = None;
                invalid = true;
                handlers.push(h);
                destroyed.push(d);
            } else if roll < 18 {
                let mut h = ql_handler {
                    ctx: ptr::null_mut(),
                    level: 0,
                    handle: None,
                    flush: None,
                    destroy: None,
                    batch_end: None,
                };
                // SAFETY: a valid out-pointer.
                let got = unsafe { ql_null_handler(self.rng.pick(&[0, 20, -3]), &mut h) };
                self.expect("ql_null_handler", got, &[QL_OK]);
                only_ours = false;
                handlers.push(h);
            } else if roll < 30 && log_only {
                let mut o = ql_handler_options_default();
                o.level = self.rng.pick(&[0, 30]);
                o.flush =
                    self.rng
                        .pick(&[QL_FLUSH_EVERY_RECORD, QL_FLUSH_BATCH, QL_FLUSH_EXPLICIT]);
                let pattern = self.rng.pick(&[
                    ptr::null(),
                    c"{time} {level} {levelno} [{thread}] {logger}: {message} {{}}".as_ptr(),
                    c"{message".as_ptr(),
                ]);
                o.pattern = pattern;
                let mut h = ql_handler {
                    ctx: ptr::null_mut(),
                    level: 0,
                    handle: None,
                    flush: None,
                    destroy: None,
                    batch_end: None,
                };
                // SAFETY: a valid fd (kept open to the end), options, out.
                let got = unsafe { ql_stream_handler_fd(self.devnull.as_raw_fd(), &o, &mut h) };
                let got = self.expect("ql_stream_handler_fd", got, &[QL_OK, QL_ERR_INVALID]);
                if got == QL_OK {
                    only_ours = false;
                    handlers.push(h);
                } else {
                    // A bad pattern: one of ours takes the place.
                    let (h, d) = self.make_handler(&shared, i);
                    handlers.push(h);
                    destroyed.push(d);
                }
            } else {
                let (h, d) = self.make_handler(&shared, i);
                handlers.push(h);
                destroyed.push(d);
            }
        }
        // Hooks.
        let with_hooks = self.rng.pct(75);
        let plan = HooksPlan {
            prepare_pct_fail: self.rng.pick(&[0, 10, 50]),
            handle_fail_pct: self.rng.pick(&[0, 20, 100]),
            release: self.rng.pct(60),
        };
        let fake_dequeue_hook = fake.is_some() && with_hooks && self.rng.pct(20);
        let fake_sentinel_hook = fake.is_some() && with_hooks && self.rng.pct(20);
        let get_hook = builtin && with_hooks && self.rng.pct(15);
        let hooks_ctx = with_hooks.then(|| {
            Arc::new(HooksCtx {
                shared: shared.clone(),
                plan,
                fake: fake.clone(),
                get_from: get_hook.then(|| qhandle.clone()).flatten(),
                queue_index: queue.unwrap_or(usize::MAX),
            })
        });
        let hooks = hooks_ctx.as_ref().map(|ctx| ql_hooks {
            ctx: Arc::as_ptr(ctx).cast_mut().cast(),
            dequeue: (fake_dequeue_hook || get_hook).then_some(k_dequeue as _),
            prepare: self.rng.pct(50).then_some(k_prepare as _),
            handle: self.rng.pct(20).then_some(k_handle as _),
            enqueue_sentinel: fake_sentinel_hook.then_some(k_enqueue_sentinel as _),
            record_level: self.rng.pct(50).then_some(k_record_level as _),
            release: plan.release.then_some(k_release as _),
            // A get-based dequeue hands out built-in records the program
            // must free: it needs done.
            done: (get_hook || self.rng.pct(75)).then_some(k_done as _),
            on_error: self.rng.pct(60).then_some(k_on_error as _),
        });
        let respect = self.rng.pct(30);
        // The queue.
        let vtable = fake.as_ref().map(|f| ql_queue_vtable {
            ctx: Arc::as_ptr(f).cast_mut().cast(),
            dequeue: (!fake_dequeue_hook || self.rng.pct(50)).then_some(vt_dequeue as _),
            enqueue_sentinel: (!fake_sentinel_hook || self.rng.pct(50))
                .then_some(vt_enqueue_sentinel as _),
            task_done: self.rng.pct(50).then_some(vt_task_done as _),
        });
        let vtable = vtable.map(|mut v| {
            // Sometimes drop a required slot.
            if self.rng.pct(5) {
                v.dequeue = None;
            }
            if self.rng.pct(5) {
                v.enqueue_sentinel = None;
            }
            v
        });
        assert_eq!(handlers.len(), n);
        let null_out = self.rng.pct(3);
        let null_handlers = n > 0 && self.rng.pct(3);
        let null_queue = self.rng.pct(2);
        let null_hooks_ptr = hooks.is_none();
        let mut out = ptr::null_mut();
        let hooks_ref = hooks.as_ref();
        // SAFETY: NULL or valid pointers, as each case says; contexts live
        // as long as the listener (kept in the LSlot).
        let got = unsafe {
            let hp: *const ql_hooks = hooks_ref.map_or(ptr::null(), |h| h as *const _);
            let hs: *const ql_handler = if null_handlers || handlers.is_empty() {
                ptr::null()
            } else {
                handlers.as_ptr()
            };
            let op: *mut *mut ql_listener = if null_out { ptr::null_mut() } else { &mut out };
            match (queue, &vtable) {
                (Some(qi), _) => {
                    let q = if null_queue {
                        ptr::null()
                    } else {
                        *self.queues[qi].handle.0.read().unwrap() as *const ql_queue
                    };
                    ql_listener_new_with_queue(q, hs, n, hp, respect, op)
                }
                (None, Some(v)) => {
                    let vp: *const ql_queue_vtable = if null_queue { ptr::null() } else { v };
                    ql_listener_new(vp, hs, n, hp, respect, op)
                }
                (None, None) => unreachable!(),
            }
        };
        let has_dequeue = builtin
            || vtable.as_ref().is_some_and(|v| v.dequeue.is_some())
            || hooks.as_ref().is_some_and(|h| h.dequeue.is_some());
        let has_sentinel = builtin
            || vtable
                .as_ref()
                .is_some_and(|v| v.enqueue_sentinel.is_some())
            || hooks.as_ref().is_some_and(|h| h.enqueue_sentinel.is_some());
        let level_hook = hooks.as_ref().is_some_and(|h| h.record_level.is_some());
        // Without a hook, only the built-in queue's own records, untouched
        // by prepare, carry a level the library reads; then it refuses
        // program pointers on that queue, and is refused once the queue
        // took one (the background producer may put them at any time).
        let levels_from_queue = respect && !level_hook;
        let prepare_hook = hooks.as_ref().is_some_and(|h| h.prepare.is_some());
        let (took, racing) = queue.map_or((false, false), |qi| {
            (self.queues[qi].took_pointers, self.queues[qi].pinned)
        });
        let dequeue_hook = hooks.as_ref().is_some_and(|h| h.dequeue.is_some());
        let has_level = level_hook || (builtin && !prepare_hook && !dequeue_hook && !took);
        let want = if null_out || null_handlers || null_queue {
            QL_ERR_NULL
        } else if invalid || !has_dequeue || !has_sentinel || (respect && !has_level) {
            QL_ERR_INVALID
        } else {
            QL_OK
        };
        let what = format!(
            "listener {index} new on {} ({n} handlers, hooks {}, respect {respect})",
            match queue {
                Some(qi) => format!("queue {qi}"),
                None => format!("vtable queue {}", fake.as_ref().map_or(0, |f| f.index)),
            },
            !null_hooks_ptr
        );
        // On NULL and invalid alike, any documented failure is a failure;
        // both promise that nothing was kept or called.
        let allowed: &[ql_status] = if want == QL_OK && levels_from_queue && racing {
            &[QL_OK, QL_ERR_INVALID]
        } else if want == QL_OK {
            &[QL_OK]
        } else if want == QL_ERR_NULL && (invalid || !has_dequeue || !has_sentinel) {
            &[QL_ERR_NULL, QL_ERR_INVALID]
        } else {
            &[want]
        };
        let got = self.expect(&what, got, allowed);
        if let (QL_OK, true, Some(qi)) = (got, levels_from_queue, queue) {
            self.queues[qi].levels_required = true;
        }
        if got != QL_OK {
            // Everything stays ours: no callback was called.
            for d in &destroyed {
                if d.load(Ordering::Acquire) != 0 {
                    self.world
                        .violation(format!("{what}: a handler was destroyed on failure"));
                }
            }
            shared.freeing.store(true, Ordering::Release);
            for mut h in handlers {
                if h.destroy.is_some() && h.handle.is_none() && !h.ctx.is_null() {
                    // Our invalid handler: free its ctx ourselves.
                    // SAFETY: our Box, never given to a listener.
                    drop(unsafe { Box::from_raw(h.ctx.cast::<HCtx>()) });
                } else {
                    // SAFETY: a handler no listener owns.
                    unsafe { ql_handler_free(&mut h) };
                }
            }
            return;
        }
        shared.listener.store(out, Ordering::Release);
        cover(C_LISTENERS);
        let has_done = hooks.as_ref().is_some_and(|h| h.done.is_some());
        if let Some(qi) = queue {
            self.queues[qi].listeners.push(index);
            if !has_done {
                self.queues[qi].may_lose.store(true, Ordering::Relaxed);
            }
        }
        if let (Some(f), false) = (&fake, has_done) {
            self.lost_fakes.insert(f.index);
        }
        self.listeners.push(Some(LSlot {
            ptr: out,
            shared,
            destroyed,
            _hooks: hooks_ctx,
            fake,
            has_done,
            has_on_error: hooks.as_ref().is_some_and(|h| h.on_error.is_some()),
            has_prepare: hooks.as_ref().is_some_and(|h| h.prepare.is_some()),
            has_release: hooks.as_ref().is_some_and(|h| h.release.is_some()),
            has_handle_hook: hooks.as_ref().is_some_and(|h| h.handle.is_some()),
            has_dequeue_hook: hooks.as_ref().is_some_and(|h| h.dequeue.is_some()),
            only_ours,
        }));
    }

    pub(crate) fn op_new_listener_on_queue(&mut self) {
        let Some(qi) = self.live_queue() else { return };
        // Listeners may share a queue (sentinels and flush barriers are
        // addressed to theirs): a second one joins a queue that has a live
        // listener in a third of the tries.
        let shared = self.queues[qi]
            .listeners
            .iter()
            .any(|&li| self.listeners[li].is_some());
        if shared && !self.rng.pct(33) {
            return;
        }
        if shared {
            cover(C_SHARED);
        }
        self.new_listener(Some(qi), None);
    }

    pub(crate) fn op_new_listener_on_vtable(&mut self) {
        let fake = Arc::new(FakeQueue {
            world: self.world.clone(),
            index: self.fakes.len(),
            items: Mutex::new(VecDeque::new()),
            changed: Condvar::new(),
            chaos: AtomicBool::new(true),
            chaos_pct: self.rng.pick(&[0, 0, 3, 10, 25]),
            empty_when_empty: self.rng.pct(20),
            capacity: self.rng.pick(&[0, 0, 1, 4]),
            phantoms: AtomicU64::new(0),
            task_done: AtomicU64::new(0),
        });
        self.fakes.push(fake.clone());
        self.new_listener(None, Some(fake));
    }

    pub(crate) fn op_start(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let l = self.listeners[li].as_ref().unwrap().ptr;
        // SAFETY: a live listener.
        let got = unsafe { ql_start(l) };
        let got = self.expect(
            &format!("ql_start(listener {li})"),
            got,
            &[QL_OK, QL_ERR_ALREADY_STARTED],
        );
        if got == QL_OK {
            cover(C_STARTS);
        }
    }

    pub(crate) fn queue_results(&self, li: usize) -> &'static [ql_status] {
        let l = self.listeners[li].as_ref().unwrap();
        if l.fake.is_some() {
            &[QL_OK, QL_ERR_QUEUE]
        } else {
            &[QL_OK]
        }
    }

    pub(crate) fn op_stop(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let l = self.listeners[li].as_ref().unwrap().ptr;
        // SAFETY: a live listener.
        let got = unsafe { ql_stop(l) };
        let allowed = self.queue_results(li);
        self.expect(&format!("ql_stop(listener {li})"), got, allowed);
    }

    pub(crate) fn op_stop_timeout(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let l = self.listeners[li].as_ref().unwrap().ptr;
        let ms = self.rng.pick(&[0, 1, 5, 20]);
        // SAFETY: a live listener.
        let got = unsafe { ql_stop_timeout(l, ms) };
        let mut allowed = self.queue_results(li).to_vec();
        allowed.push(QL_ERR_TIMEOUT);
        self.expect(
            &format!("ql_stop_timeout(listener {li}, {ms})"),
            got,
            &allowed,
        );
    }

    pub(crate) fn op_enqueue_sentinel(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let l = self.listeners[li].as_ref().unwrap().ptr;
        // SAFETY: a live listener.
        let got = unsafe { ql_enqueue_sentinel(l) };
        let allowed: &[ql_status] = if self.listeners[li].as_ref().unwrap().fake.is_some() {
            &[QL_OK, QL_ERR_FULL, QL_ERR_QUEUE]
        } else {
            &[QL_OK, QL_ERR_FULL]
        };
        self.expect(&format!("ql_enqueue_sentinel(listener {li})"), got, allowed);
    }

    pub(crate) fn op_flush(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let slot = self.listeners[li].as_ref().unwrap();
        let (l, vtable) = (slot.ptr, slot.fake.is_some());
        let hooked = slot.has_dequeue_hook;
        let ms = self.rng.pick(&[0, 1, 10]);
        // SAFETY: a live listener.
        let got = unsafe { ql_listener_flush(l, ms) };
        let allowed: &[ql_status] = if hooked {
            &[QL_ERR_UNSUPPORTED]
        } else if vtable {
            &[QL_ERR_UNSUPPORTED, QL_ERR_NOT_RUNNING]
        } else {
            &[QL_OK, QL_ERR_TIMEOUT, QL_ERR_NOT_RUNNING]
        };
        self.expect(
            &format!("ql_listener_flush(listener {li}, {ms})"),
            got,
            allowed,
        );
    }

    pub(crate) fn op_stats(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let slot = self.listeners[li].as_ref().unwrap();
        let (l, vtable) = (slot.ptr, slot.fake.is_some());
        let mut s = ql_stats::default();
        // SAFETY: a live listener, a valid out-pointer.
        let got = unsafe { ql_listener_stats(l, &mut s) };
        self.expect(&format!("ql_listener_stats(listener {li})"), got, &[QL_OK]);
        if vtable && (s.dropped, s.queue_depth, s.queue_high_water, s.batches) != (0, 0, 0, 0) {
            self.world.violation(format!(
                "vtable listener {li}: built-in queue counters {s:?}"
            ));
        }
    }

    pub(crate) fn free_listener(&mut self, li: usize, final_: bool) -> bool {
        let slot = self.listeners[li].as_ref().unwrap();
        let l = slot.ptr;
        let mut running = true;
        // SAFETY: a live listener, a valid out-pointer.
        let got = unsafe { ql_listener_is_running(l, &mut running) };
        self.expect("ql_listener_is_running", got, &[QL_OK]);
        if !running {
            self.check_counters(li, slot);
        }
        slot.shared.freeing.store(true, Ordering::Release);
        // SAFETY: a live listener, no other call on it in progress (only
        // this thread calls, and callbacks never free it).
        let got = unsafe { ql_listener_free(l) };
        let allowed = if final_ {
            &[QL_OK][..]
        } else {
            self.queue_results(li)
        };
        let got = self.expect(&format!("ql_listener_free(listener {li})"), got, allowed);
        let slot = self.listeners[li].as_ref().unwrap();
        if got != QL_OK {
            slot.shared.freeing.store(false, Ordering::Release);
            return false;
        }
        for (i, d) in slot.destroyed.iter().enumerate() {
            let n = d.load(Ordering::Acquire);
            if n != 1 {
                self.world
                    .violation(format!("listener {li} handler {i}: destroyed {n} times"));
            }
        }
        self.listeners[li] = None;
        true
    }

    pub(crate) fn op_free_listener(&mut self) {
        if let Some(li) = self.live_listener() {
            self.free_listener(li, false);
        }
    }

    // -- producers --------------------------------------------------------

    /// A burst of puts (or logs, on a queue for built-in records only).
    pub(crate) fn op_puts(&mut self) {
        for _ in 0..=self.rng.below(8) {
            self.op_put();
        }
    }

    pub(crate) fn op_logs(&mut self) {
        for _ in 0..=self.rng.below(4) {
            self.op_log();
        }
    }

    pub(crate) fn op_put(&mut self) {
        let Some(qi) = self.live_queue() else { return };
        if self.queues[qi].log_only {
            return self.op_log();
        }
        let w = self.world.clone();
        let record = if self.rng.pct(5) {
            ptr::null_mut()
        } else {
            w.new_prog(Home::Queue(qi))
        };
        let q = &self.queues[qi];
        let (kind, ms) = (self.rng.below(3), self.rng.pick(&[0u64, 1, 5]));
        let handle = q.handle.clone();
        let (what, got, allowed): (String, ql_status, Vec<ql_status>) = match kind {
            0 if q.bounded_put() => (
                "ql_queue_put".into(),
                // SAFETY: live queue.
                handle.with(|p| unsafe { ql_queue_put(p, record) }).unwrap(),
                vec![QL_OK, QL_ERR_FULL, QL_ERR_TIMEOUT],
            ),
            2 => (
                format!("ql_queue_put_timeout({ms})"),
                // SAFETY: live queue.
                handle
                    .with(|p| unsafe { ql_queue_put_timeout(p, record, ms) })
                    .unwrap(),
                vec![QL_OK, QL_ERR_TIMEOUT],
            ),
            _ => (
                "ql_queue_put_nowait".into(),
                // SAFETY: live queue.
                handle
                    .with(|p| unsafe { ql_queue_put_nowait(p, record) })
                    .unwrap(),
                vec![QL_OK, QL_ERR_FULL],
            ),
        };
        let allowed = if q.levels_required {
            vec![QL_ERR_INVALID]
        } else if q.capacity == 0 {
            vec![QL_OK]
        } else {
            allowed
        };
        let got = self.expect(&format!("{what}(queue {qi})"), got, &allowed);
        if got != QL_ERR_INVALID {
            self.queues[qi].took_pointers = true;
        }
        if got != QL_OK && !record.is_null() {
            // Refused: it stays the program's, which frees it.
            cover(C_REFUSED);
            w.give_back(record, "refused");
        }
    }

    pub(crate) fn op_log(&mut self) {
        let Some(qi) = self.live_queue() else { return };
        let q = &self.queues[qi];
        if !q.bounded_put() {
            return; // a log on a full lossless queue waits without bound
        }
        let handle = q.handle.clone();
        let (threshold, capacity) = (q.level, q.capacity);
        let w = self.world.clone();
        let id = w.id();
        let level = self.rng.pick(&[-5, 0, 10, 20, 30, 40, 50, i32::MAX]);
        let len = self.rng.pick(&[0usize, 5, 90, 200, 2000]);
        let mut message = format!("fz#{id}#").into_bytes();
        message.resize(len.max(message.len()), b'x');
        let logger = self
            .rng
            .pick(&[ptr::null(), c"".as_ptr(), c"app.fz".as_ptr()]);
        let user = self.rng.pct(50);
        let null_message = self.rng.pct(3);
        let msg_ptr: *const c_char = if null_message {
            ptr::null()
        } else {
            message.as_ptr().cast()
        };
        let passes = level >= threshold;
        // One call in three carries fields, a source location, and changes
        // the thread's context first (valid or not, as a program might).
        let structured = self.rng.pct(33);
        let fields = if structured {
            Fields::random(&mut self.rng)
        } else {
            Fields::default()
        };
        if structured && self.rng.pct(30) {
            self.op_context();
        }
        let refused = fields.refusal();
        if passes && !null_message && refused.is_none() {
            lock(&w.logged).insert(id, qi);
        }
        let source = ql_source {
            file: c"fz/ops.rs".as_ptr(),
            line: 7,
            func: c"op_log".as_ptr(),
        };
        let source_ptr: *const ql_source = if self.rng.pct(50) {
            &source
        } else {
            ptr::null()
        };
        // SAFETY: a live queue; message valid for its length (or NULL);
        // the fields and their strings live until the call returns.
        let got = handle
            .with(|p| unsafe {
                if structured {
                    ql_log_src(
                        p,
                        level,
                        logger,
                        source_ptr,
                        fields.ptr(),
                        fields.count,
                        msg_ptr,
                        message.len(),
                        if user {
                            id as usize as *mut c_void
                        } else {
                            ptr::null_mut()
                        },
                    )
                } else if user {
                    ql_log_user(
                        p,
                        level,
                        logger,
                        msg_ptr,
                        message.len(),
                        id as usize as *mut c_void,
                    )
                } else {
                    ql_log(p, level, logger, msg_ptr, message.len())
                }
            })
            .unwrap();
        let allowed: Vec<ql_status> = if !passes {
            vec![QL_OK]
        } else if null_message {
            vec![QL_ERR_NULL]
        } else if let Some(refusal) = refused {
            vec![refusal]
        } else if capacity == 0 {
            vec![QL_OK]
        } else {
            vec![QL_OK, QL_ERR_FULL, QL_ERR_TIMEOUT]
        };
        if structured && got == QL_OK && passes {
            cover(C_STRUCTURED);
        }
        self.expect(
            &format!("ql_log(queue {qi}, level {level}, {} bytes)", message.len()),
            got,
            &allowed,
        );
    }

    /// Changes the calling thread's context fields: sets one (valid or
    /// not), removes one, or clears them; checks each status.
    pub(crate) fn op_context(&mut self) {
        match self.rng.below(4) {
            0 | 1 => {
                let f = Fields::random_one(&mut self.rng);
                let want = f.refusal().unwrap_or(QL_OK);
                // SAFETY: the field's strings live until the call returns.
                let got = unsafe { ql_context_set(f.fields[0]) };
                // A valid new key past QL_FIELDS_MAX context fields is
                // refused too; the fuzzer keeps few keys, so never here.
                self.expect("ql_context_set", got, &[want]);
            }
            2 => {
                let key = self.rng.pick(&[c"k1", c"request_id", c"nope"]);
                // SAFETY: a C string.
                let got = unsafe { ql_context_remove(key.as_ptr()) };
                self.expect("ql_context_remove", got, &[QL_OK, QL_ERR_EMPTY]);
            }
            _ => ql_context_clear(),
        }
    }

    pub(crate) fn op_get(&mut self) {
        let Some(qi) = self.live_queue() else { return };
        if !self.idle(qi) {
            return; // a get competes with a running listener
        }
        let handle = self.queues[qi].handle.clone();
        let mut record = ptr::null_mut();
        let (what, got) = if self.rng.pct(50) {
            (
                "ql_queue_get_nowait",
                // SAFETY: live queue, valid out-pointer.
                handle
                    .with(|p| unsafe { ql_queue_get_nowait(p, &mut record) })
                    .unwrap(),
            )
        } else {
            let ms = self.rng.pick(&[0, 1, 3]);
            (
                "ql_queue_get_timeout",
                // SAFETY: as above.
                handle
                    .with(|p| unsafe { ql_queue_get_timeout(p, ms, &mut record) })
                    .unwrap(),
            )
        };
        let got = self.expect(
            &format!("{what}(queue {qi})"),
            got,
            &[QL_OK, QL_ERR_EMPTY, QL_ERR_TIMEOUT, QL_ERR_SENTINEL],
        );
        if got == QL_OK {
            self.got_back(qi, record);
        }
    }

    pub(crate) fn op_queue_misc(&mut self) {
        let Some(qi) = self.live_queue() else { return };
        let handle = self.queues[qi].handle.clone();
        match self.rng.below(3) {
            0 => {
                let level = self.rng.pick(&[QL_LEVEL_ALL, 0, 20, 30, 60]);
                // SAFETY: live queue.
                let got = handle
                    .with(|p| unsafe { ql_queue_set_level(p, level) })
                    .unwrap();
                if self.expect("ql_queue_set_level", got, &[QL_OK]) == QL_OK {
                    self.queues[qi].level = level;
                }
            }
            1 => {
                let level = self.rng.pick(&[i32::MIN, -1, 0, 25, 30, i32::MAX]);
                // SAFETY: live queue.
                let on = handle
                    .with(|p| unsafe { ql_queue_enabled(p, level) })
                    .unwrap();
                if on != (level >= self.queues[qi].level) {
                    self.world.violation(format!(
                        "ql_queue_enabled(level {level}) = {on}, threshold {}",
                        self.queues[qi].level
                    ));
                }
            }
            _ => {
                let mut len = usize::MAX;
                // SAFETY: live queue, valid out-pointer.
                let got = handle
                    .with(|p| unsafe { ql_queue_len(p, &mut len) })
                    .unwrap();
                self.expect("ql_queue_len", got, &[QL_OK]);
                let cap = self.queues[qi].capacity;
                if cap != 0 && len > cap {
                    self.world
                        .violation(format!("queue {qi}: length {len} over capacity {cap}"));
                }
            }
        }
    }

    pub(crate) fn op_fake_put(&mut self) {
        if self.fakes.is_empty() {
            return;
        }
        let fake = self.fakes[self.rng.below(self.fakes.len() as u64) as usize].clone();
        for _ in 0..=self.rng.below(3) {
            let p = self.world.new_prog(Home::Fake(fake.index));
            fake.push(FItem::Rec(p as usize));
        }
        if self.rng.pct(10) {
            let on = !fake.chaos.load(Ordering::Relaxed);
            fake.chaos.store(on, Ordering::Relaxed);
        }
    }

    // -- the rest ---------------------------------------------------------

    pub(crate) fn op_statics(&mut self) {
        let w = self.world.clone();
        let status = self
            .rng
            .pick(&[0, 1, 5, 9, 14, 15, -1, 1000, i32::MIN, i32::MAX]);
        // SAFETY: static strings, never NULL (checked).
        unsafe {
            let s = ql_status_str(ql_status::from_raw(status));
            if s.is_null() {
                w.violation(format!("ql_status_str({status}) is NULL"));
            } else {
                let text = CStr::from_ptr(s).to_string_lossy();
                let known = KNOWN_STATUSES.contains(&status);
                if known != text.starts_with("QL_") || (!known && text != "unknown status") {
                    w.violation(format!("ql_status_str({status}) = {text:?}"));
                }
            }
            let level = self.rng.pick(&[0, 10, 20, 30, 40, 50, 25, -10, i32::MAX]);
            let name = ql_level_name(level);
            let python = [0, 10, 20, 30, 40, 50].contains(&level);
            if name.is_null() == python {
                w.violation(format!("ql_level_name({level}) NULL: {}", name.is_null()));
            }
            let v = ql_version();
            if v.is_null() || CStr::from_ptr(v).to_bytes() != env!("CARGO_PKG_VERSION").as_bytes() {
                w.violation("ql_version".into());
            }
        }
        let o = ql_queue_options_default();
        if (
            o.capacity,
            o.overflow,
            o.block_timeout_ms,
            o.level,
            o.report_drops,
        ) != (8192, QL_OVERFLOW_BLOCK, 1000, QL_LEVEL_ALL, false)
            || o.on_drop.is_some()
        {
            w.violation("ql_queue_options_default differs from its documentation".into());
        }
        let h = ql_handler_options_default();
        if (h.level, h.flush, h.max_bytes, h.backup_count) != (0, QL_FLUSH_BATCH, 0, 0)
            || !h.pattern.is_null()
        {
            w.violation("ql_handler_options_default differs from its documentation".into());
        }
    }

    /// Calls with a NULL required pointer: `QL_ERR_NULL`, nothing changed.
    pub(crate) fn op_null_arguments(&mut self) {
        let null_l: *const ql_listener = ptr::null();
        let null_q: *const ql_queue = ptr::null();
        let live_l = self
            .live_listener()
            .map(|li| self.listeners[li].as_ref().unwrap().ptr);
        let live_q = self.live_queue().map(|qi| self.queues[qi].handle.clone());
        let mut record = ptr::null_mut();
        let mut len = 0usize;
        let mut stats = ql_stats::default();
        let mut running = false;
        let mut out_q = ptr::null_mut();
        let which = self.rng.below(20);
        // SAFETY: every pointer is NULL or valid; live objects are live.
        let (what, got): (&str, ql_status) = unsafe {
            match which {
                0 => ("ql_start(NULL)", ql_start(null_l)),
                1 => ("ql_stop(NULL)", ql_stop(null_l)),
                2 => ("ql_stop_timeout(NULL)", ql_stop_timeout(null_l, 1)),
                3 => ("ql_enqueue_sentinel(NULL)", ql_enqueue_sentinel(null_l)),
                4 => ("ql_listener_flush(NULL)", ql_listener_flush(null_l, 1)),
                5 => (
                    "ql_listener_stats(NULL, s)",
                    ql_listener_stats(null_l, &mut stats),
                ),
                6 => match live_l {
                    Some(l) => (
                        "ql_listener_stats(l, NULL)",
                        ql_listener_stats(l, ptr::null_mut()),
                    ),
                    None => return,
                },
                7 => match live_l {
                    Some(l) => (
                        "ql_listener_is_running(l, NULL)",
                        ql_listener_is_running(l, ptr::null_mut()),
                    ),
                    None => (
                        "ql_listener_is_running(NULL, b)",
                        ql_listener_is_running(null_l, &mut running),
                    ),
                },
                8 => ("ql_queue_put(NULL)", ql_queue_put(null_q, ptr::null_mut())),
                9 => (
                    "ql_queue_put_nowait(NULL)",
                    ql_queue_put_nowait(null_q, ptr::null_mut()),
                ),
                10 => (
                    "ql_queue_put_timeout(NULL)",
                    ql_queue_put_timeout(null_q, ptr::null_mut(), 1),
                ),
                11 => (
                    "ql_queue_get_nowait(NULL, r)",
                    ql_queue_get_nowait(null_q, &mut record),
                ),
                12 => match &live_q {
                    Some(q) => (
                        "ql_queue_get_timeout(q, NULL)",
                        q.with(|q| ql_queue_get_timeout(q, 1, ptr::null_mut()))
                            .unwrap(),
                    ),
                    None => (
                        "ql_queue_get_timeout(NULL)",
                        ql_queue_get_timeout(null_q, 1, &mut record),
                    ),
                },
                13 => match &live_q {
                    Some(q) => (
                        "ql_queue_len(q, NULL)",
                        q.with(|q| ql_queue_len(q, ptr::null_mut())).unwrap(),
                    ),
                    None => ("ql_queue_len(NULL, n)", ql_queue_len(null_q, &mut len)),
                },
                14 => (
                    "ql_log(NULL)",
                    ql_log(null_q, 30, ptr::null(), c"x".as_ptr(), 1),
                ),
                15 => match &live_q {
                    Some(q) => (
                        "ql_log(q, message NULL, len 3)",
                        q.with(|q| {
                            if ql_queue_enabled(q, 50) {
                                ql_log(q, 50, ptr::null(), ptr::null(), 3)
                            } else {
                                QL_ERR_NULL
                            }
                        })
                        .unwrap(),
                    ),
                    None => return,
                },
                16 => ("ql_queue_set_level(NULL)", ql_queue_set_level(null_q, 0)),
                17 => ("ql_queue_new(NULL out)", ql_queue_new(4, ptr::null_mut())),
                18 => (
                    "ql_queue_new_with_options(NULL, out)",
                    ql_queue_new_with_options(ptr::null(), &mut out_q),
                ),
                _ => {
                    // The no-ops.
                    ql_queue_free(ptr::null_mut());
                    ql_record_free(ptr::null_mut());
                    ql_handler_free(ptr::null_mut());
                    if ql_handler_lines_lost(ptr::null()) != 0 || ql_queue_enabled(null_q, 0) {
                        self.world.violation("NULL no-op calls".into());
                    }
                    ("ql_listener_free(NULL)", {
                        let got = ql_listener_free(ptr::null_mut());
                        if got == QL_OK {
                            QL_ERR_NULL // as expected: map to the common check
                        } else {
                            got
                        }
                    })
                }
            }
        };
        self.expect(what, got, &[QL_ERR_NULL]);
        if !out_q.is_null() {
            self.world
                .violation("an out-parameter was written on failure".into());
        }
    }

    pub(crate) fn op_pause(&mut self) {
        let us = self.rng.pick(&[0u64, 50, 500, 2000]);
        thread::sleep(Duration::from_micros(us));
    }

    /// A thread logging onto one queue for the whole sequence.
    pub(crate) fn start_background(&mut self) {
        let mut o = ql_queue_options_default();
        o.capacity = self.rng.pick(&[0, 4, 64]);
        o.overflow = self.rng.pick(&[
            QL_OVERFLOW_DROP_NEWEST,
            QL_OVERFLOW_DROP_OLDEST,
            QL_OVERFLOW_BLOCK,
        ]);
        o.report_drops = self.rng.pct(50);
        let mut q = ptr::null_mut();
        // SAFETY: valid pointers.
        let got = unsafe { ql_queue_new_with_options(&o, &mut q) };
        self.expect("ql_queue_new_with_options (background)", got, &[QL_OK]);
        let qi = self.add_queue(q, o.capacity, o.overflow, 1000, QL_LEVEL_ALL, true, None);
        self.queues[qi].pinned = true;
        let (stop, handle, world) = (
            Arc::new(AtomicBool::new(false)),
            self.queues[qi].handle.clone(),
            self.world.clone(),
        );
        let stop2 = stop.clone();
        let blocking = self.queues[qi].bounded_put();
        let join = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let id = world.id();
                lock(&world.logged).insert(id, qi);
                let message = format!("fz#{id}# background");
                // SAFETY: the queue stays alive until this thread is joined.
                let got = handle
                    .with(|p| unsafe {
                        if blocking {
                            ql_log(
                                p,
                                20,
                                c"fz.bg".as_ptr(),
                                message.as_ptr().cast(),
                                message.len(),
                            )
                        } else {
                            // A lossless bounded queue: never wait.
                            let record = ptr::null_mut();
                            ql_queue_put_nowait(p, record)
                        }
                    })
                    .unwrap_or(QL_OK);
                // QL_ERR_INVALID: a listener filtering by the built-in
                // records' levels was made on the queue (op_put and
                // test_handling check that rule exactly).
                if ![QL_OK, QL_ERR_FULL, QL_ERR_TIMEOUT, QL_ERR_INVALID].contains(&got) {
                    world.violation(format!("background producer: status {got:?}"));
                }
                thread::sleep(Duration::from_micros(200));
            }
        });
        self.background = Some((stop, join));
    }
}

/// Fields for a structured call, with the strings they point to.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) fields: Vec<ql_field>,
    pub(crate) count: usize,
    /// NULL `fields` with a nonzero count.
    null_array: bool,
    _keys: Vec<std::ffi::CString>,
    _values: Vec<Vec<u8>>,
}

const KEYS: &[&str] = &[
    "k1",
    "request_id",
    "a.b-c_9",
    "message",
    "_x",
    "x1234567890123456789012345678901",
    "",
    "bad key",
    "x12345678901234567890123456789012",
    "é",
];

fn key_ok(key: &str) -> bool {
    (1..=32).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

impl Fields {
    fn one(
        rng: &mut Rng,
        keys: &mut Vec<std::ffi::CString>,
        values: &mut Vec<Vec<u8>>,
    ) -> ql_field {
        let key = if rng.pct(90) {
            KEYS[rng.below(6) as usize]
        } else {
            KEYS[rng.below(KEYS.len() as u64) as usize]
        };
        let key = std::ffi::CString::new(key).unwrap();
        let key_ptr = if rng.pct(2) {
            ptr::null()
        } else {
            key.as_ptr()
        };
        keys.push(key);
        let kind = if rng.pct(3) {
            rng.pick(&[0, 6, -1, i32::MAX])
        } else {
            rng.pick(&[
                QL_FIELD_STR,
                QL_FIELD_INT,
                QL_FIELD_UINT,
                QL_FIELD_DOUBLE,
                QL_FIELD_BOOL,
            ])
        };
        let value = match kind {
            QL_FIELD_STR => {
                let len = rng.pick(&[0usize, 3, 40, 300]);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let ptr: *const c_char = if rng.pct(3) {
                    ptr::null()
                } else {
                    bytes.as_ptr().cast()
                };
                values.push(bytes);
                ql_field_value {
                    s: ql_str { ptr, len },
                }
            }
            QL_FIELD_DOUBLE => ql_field_value {
                d: rng.pick(&[0.0, -0.0, 1e300, f64::NAN, f64::INFINITY]),
            },
            QL_FIELD_BOOL => ql_field_value { b: rng.pct(50) },
            _ => ql_field_value { u: rng.next() },
        };
        ql_field {
            key: key_ptr,
            kind,
            value,
        }
    }

    pub(crate) fn random(rng: &mut Rng) -> Fields {
        let count = rng.pick(&[0usize, 1, 3, 16, 17, 64, 65]);
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let fields = (0..count)
            .map(|_| Fields::one(rng, &mut keys, &mut values))
            .collect();
        Fields {
            fields,
            count,
            null_array: count > 0 && rng.pct(2),
            _keys: keys,
            _values: values,
        }
    }

    pub(crate) fn random_one(rng: &mut Rng) -> Fields {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let fields = vec![Fields::one(rng, &mut keys, &mut values)];
        Fields {
            fields,
            count: 1,
            null_array: false,
            _keys: keys,
            _values: values,
        }
    }

    pub(crate) fn ptr(&self) -> *const ql_field {
        if self.null_array || self.fields.is_empty() {
            ptr::null()
        } else {
            self.fields.as_ptr()
        }
    }

    /// The status the documentation gives for these fields, checked in the
    /// documented order (after the level and the message): `None` when
    /// they are fine.
    pub(crate) fn refusal(&self) -> Option<ql_status> {
        if self.null_array {
            return Some(QL_ERR_NULL);
        }
        if self.count > 64 {
            return Some(QL_ERR_INVALID);
        }
        // SAFETY: the union member read is the one `kind` names.
        let null = self.fields.iter().any(|f| {
            f.key.is_null()
                || (f.kind == QL_FIELD_STR
                    && unsafe { f.value.s.ptr.is_null() && f.value.s.len > 0 })
        });
        if null {
            return Some(QL_ERR_NULL);
        }
        let bad = self.fields.iter().any(|f| {
            !(QL_FIELD_STR..=QL_FIELD_BOOL).contains(&f.kind)
                // SAFETY: a non-NULL key is one of the C strings above.
                || !key_ok(unsafe { CStr::from_ptr(f.key) }.to_str().unwrap_or(""))
        });
        bad.then_some(QL_ERR_INVALID)
    }
}
