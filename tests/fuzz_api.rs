//! A property-driven fuzzer of the C API, called from Rust.
//!
//! From a seed (u64) it derives a random call sequence over the whole C
//! surface: queues (`ql_queue_new`, `ql_queue_new_with_options` with random
//! capacities, policies, timeouts, thresholds, drop reports and `on_drop`),
//! listeners on the built-in queue or on a program queue (`ql_queue_vtable`
//! backed by a Rust queue whose `dequeue` randomly answers RECORD, SENTINEL,
//! EMPTY, ERROR or unknown codes and whose `enqueue_sentinel` answers OK,
//! FULL or ERROR; slots randomly NULL), random hooks (prepare keeping,
//! replacing, writing NULL or failing; a failing handle hook; random
//! levels; done / release / on_error counting), handlers that fail or call
//! back into the library from the listener thread, the built-in handlers,
//! every control call in any order with short timeouts, puts, logs, gets,
//! NULL arguments, and the frees. A background producer sometimes logs
//! onto one queue meanwhile.
//!
//! The sequence respects the documented contract (it tests the library, not
//! undefined behaviour): nothing is called on a freed object,
//! `ql_listener_free` runs with no other call on the listener in progress,
//! vtable and hook contexts outlive their listener, a blocking put is only
//! made where the policy bounds its wait, `ql_queue_get*` only drains a
//! queue no listener is running on, and a queue has one listener at a time
//! (a restriction from before sentinels and flush barriers were addressed to
//! their listener; listeners sharing a queue are tested in
//! `tests/shared_queue.rs`, and fuzzing them is planned in issue 11).
//!
//! Checked: no crash and no hang (a watchdog per sequence); every status is
//! a known one and one the documentation allows for that call; NULL gives
//! `QL_ERR_NULL`; the program's records are each done / released / given to
//! `on_drop` / taken back exactly once, never touched after that, and none is
//! lost unless the program gave up the means to get it back (a listener
//! without `done`, `DROP_OLDEST` without `on_drop`, a queue freed under a
//! listener); built-in records reach `done` at most once; each handler is
//! destroyed exactly once, in `ql_listener_free`; a stopped listener's
//! counters agree with what the callbacks saw; and once everything is freed
//! the Rust heap is back where it was (a counting global allocator: no
//! memory leaks inside the library).
//!
//! The corpus (`tests/fuzz_corpus/seeds.txt`) is replayed first, then fresh
//! seeds run for `QL_FUZZ_SECONDS` (default 15). `QL_FUZZ_SEED=<n>` runs one
//! seed and prints its calls; `QL_FUZZ_KEEP_GOING=1` reports every failing
//! seed instead of stopping at the first. A failure prints its seed: add it
//! to the corpus with a comment. `QL_FUZZ_COVERAGE=1` prints what each seed reached
//! (the counters of the final summary), to choose corpus seeds.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{c_char, c_void, CStr};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicIsize, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::{lock, run_bounded, Run};
use queue_listener::ffi::handlers::{
    ql_handler_free, ql_handler_lines_lost, ql_handler_options_default, ql_null_handler,
    ql_stream_handler_fd, QL_FLUSH_BATCH, QL_FLUSH_EVERY_RECORD, QL_FLUSH_EXPLICIT,
};
use queue_listener::ffi::listener::{
    ql_enqueue_sentinel, ql_handler, ql_hooks, ql_listener, ql_listener_flush, ql_listener_free,
    ql_listener_is_running, ql_listener_new, ql_listener_new_with_queue, ql_listener_stats,
    ql_queue_vtable, ql_start, ql_stats, ql_stop, ql_stop_timeout,
};
use queue_listener::ffi::queue::{
    ql_queue, ql_queue_enabled, ql_queue_free, ql_queue_get_nowait, ql_queue_get_timeout,
    ql_queue_len, ql_queue_new, ql_queue_new_with_options, ql_queue_options,
    ql_queue_options_default, ql_queue_put, ql_queue_put_nowait, ql_queue_put_timeout,
    ql_queue_set_level, QL_OVERFLOW_BLOCK, QL_OVERFLOW_BLOCK_TIMEOUT, QL_OVERFLOW_DROP_NEWEST,
    QL_OVERFLOW_DROP_OLDEST, QL_QUEUE_MAX_CAPACITY,
};
use queue_listener::ffi::record::{
    ql_level_name, ql_log, ql_log_user, ql_record, ql_record_free, QL_LEVEL_ALL, QL_MESSAGE_MAX,
};
use queue_listener::ffi::{
    ql_status_str, ql_version, QL_DEQUEUE_EMPTY, QL_DEQUEUE_ERROR, QL_DEQUEUE_RECORD,
    QL_DEQUEUE_SENTINEL, QL_ENQUEUE_ERROR, QL_ENQUEUE_FULL, QL_ENQUEUE_OK, QL_ERR_ALREADY_STARTED,
    QL_ERR_EMPTY, QL_ERR_FULL, QL_ERR_INVALID, QL_ERR_NOT_RUNNING, QL_ERR_NULL, QL_ERR_QUEUE,
    QL_ERR_SENTINEL, QL_ERR_TIMEOUT, QL_ERR_UNSUPPORTED, QL_ERR_WOULD_DEADLOCK, QL_OK,
    QL_STAGE_DEQUEUE, QL_STAGE_HANDLER,
};

// ---------------------------------------------------------------------------
// A counting allocator: the Rust heap's live bytes.

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// A small deterministic generator (SplitMix64): a seed means the same calls
// on every machine and with every version of every crate.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with `percent` % probability.
    fn pct(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Panics caught inside callbacks (a panic must never unwind into C).
static CALLBACK_PANICS: AtomicU64 = AtomicU64::new(0);

fn no_unwind<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        CALLBACK_PANICS.fetch_add(1, Ordering::Relaxed);
        fallback
    })
}

/// What the sequences reached, summed over a run (printed at the end, so a
/// fuzzer that stopped reaching the interesting paths shows).
static COVER: [AtomicU64; 12] = [const { AtomicU64::new(0) }; 12];
const C_LISTENERS: usize = 0;
const C_STARTS: usize = 1;
const C_HANDLED: usize = 2;
const C_DONE: usize = 3;
const C_BUILTIN_DONE: usize = 4;
const C_RELEASED: usize = 5;
const C_ON_DROP: usize = 6;
const C_DEQUEUE_ERRORS: usize = 7;
const C_REENTRY: usize = 8;
const C_GOT_BACK: usize = 9;
const C_REFUSED: usize = 10;
const C_HEAP_CHECKS: usize = 11;
const COVER_NAMES: [&str; 12] = [
    "listeners made",
    "starts",
    "records handled",
    "done calls",
    "built-in records done",
    "releases",
    "on_drop calls",
    "dequeue errors",
    "calls from the listener thread",
    "records taken back by get",
    "puts refused",
    "heap checks",
];

fn cover(what: usize) {
    COVER[what].fetch_add(1, Ordering::Relaxed);
}

const KNOWN_STATUSES: std::ops::RangeInclusive<i32> = 0..=15;

// ---------------------------------------------------------------------------
// The program's records, and what became of each.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An opaque program record (`ql_queue_put`, or a vtable queue's).
    Prog,
    /// A `ql_record`-shaped record a `prepare` hook made.
    Prepared,
    /// A built-in record handed out by `ql_queue_get*` (freed with
    /// `ql_record_free`).
    Lib,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Home {
    None,
    /// On built-in queue number n.
    Queue(usize),
    /// On vtable queue number n.
    Fake(usize),
}

struct Rec {
    id: u64,
    kind: Kind,
    home: Home,
    /// How it was given back, once it was.
    freed: Option<&'static str>,
    /// The memory (kept until the end of the sequence, so that a bad pointer
    /// is reported instead of being a use-after-free).
    _prog: Option<Box<u64>>,
    _prepared: Option<PreparedMem>,
}

/// The memory of a prepared record. Its pointers are static strings.
struct PreparedMem(#[allow(dead_code)] Box<ql_record>);
// SAFETY: the record only points to static strings; it is never mutated.
unsafe impl Send for PreparedMem {}
// SAFETY: as above.
unsafe impl Sync for PreparedMem {}

struct World {
    rng: Mutex<Rng>,
    records: Mutex<HashMap<usize, Rec>>,
    next_id: AtomicU64,
    violations: Mutex<Vec<String>>,
    /// Built-in records logged: id → queue.
    logged: Mutex<HashMap<u64, usize>>,
    /// Built-in record ids seen in `done`.
    views_done: Mutex<HashSet<u64>>,
    /// Calls back into the library that callbacks may still make.
    reentry_budget: AtomicI64,
}

static PREPARED_LOGGER: &CStr = c"fz.prepared";
static PREPARED_MESSAGE: &CStr = c"prepared";

impl World {
    fn new(seed: u64) -> World {
        World {
            rng: Mutex::new(Rng(seed ^ 0x5EED_CA11_BAC4)),
            records: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            violations: Mutex::new(Vec::new()),
            logged: Mutex::new(HashMap::new()),
            views_done: Mutex::new(HashSet::new()),
            reentry_budget: AtomicI64::new(40),
        }
    }

    fn violation(&self, message: String) {
        let mut v = lock(&self.violations);
        if v.len() < 50 {
            v.push(message);
        }
    }

    fn chance(&self, percent: u64) -> bool {
        lock(&self.rng).pct(percent)
    }

    fn pick<T: Copy>(&self, items: &[T]) -> T {
        lock(&self.rng).pick(items)
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new opaque program record, for `home`.
    fn new_prog(&self, home: Home) -> *mut c_void {
        let id = self.id();
        let mut b = Box::new(0xF022_0000_0000_0000 | id);
        let p: *mut u64 = &mut *b;
        lock(&self.records).insert(
            p as usize,
            Rec {
                id,
                kind: Kind::Prog,
                home,
                freed: None,
                _prog: Some(b),
                _prepared: None,
            },
        );
        p.cast()
    }

    /// A new `ql_record`-shaped record, as a `prepare` hook makes.
    fn new_prepared(&self) -> *mut c_void {
        let id = self.id();
        let mut b = Box::new(ql_record {
            level: 30,
            thread_id: 0,
            timestamp_ns: 0,
            logger: PREPARED_LOGGER.as_ptr(),
            logger_len: PREPARED_LOGGER.to_bytes().len(),
            message: PREPARED_MESSAGE.as_ptr(),
            message_len: PREPARED_MESSAGE.to_bytes().len(),
            user: ptr::null_mut(),
            file: ptr::null(),
            file_len: 0,
            func: ptr::null(),
            func_len: 0,
            fields: ptr::null(),
            field_count: 0,
            line: 0,
        });
        let p: *mut ql_record = &mut *b;
        lock(&self.records).insert(
            p as usize,
            Rec {
                id,
                kind: Kind::Prepared,
                home: Home::None,
                freed: None,
                _prog: None,
                _prepared: Some(PreparedMem(b)),
            },
        );
        p.cast()
    }

    /// True for a live (not given back) record of ours of `kind`. A freed
    /// built-in record's address may come back for a new one.
    fn is_ours(&self, p: *mut c_void) -> bool {
        lock(&self.records)
            .get(&(p as usize))
            .is_some_and(|r| r.kind != Kind::Lib || r.freed.is_none())
    }

    fn register_lib(&self, p: *mut c_void, home: Home) {
        let id = self.id();
        lock(&self.records).insert(
            p as usize,
            Rec {
                id,
                kind: Kind::Lib,
                home,
                freed: None,
                _prog: None,
                _prepared: None,
            },
        );
    }

    /// Marks a known record given back (`how`); reports a second return.
    /// Returns its kind, or `None` for a pointer that is not one of ours.
    fn give_back(&self, p: *mut c_void, how: &'static str) -> Option<Kind> {
        let (kind, lib) = {
            let mut records = lock(&self.records);
            let rec = records.get_mut(&(p as usize))?;
            if let Some(before) = rec.freed {
                let (id, kind) = (rec.id, rec.kind);
                drop(records);
                self.violation(format!(
                    "{how}: record {id} ({kind:?}) was already given back ({before})"
                ));
                return Some(kind);
            }
            rec.freed = Some(how);
            (rec.kind, rec.kind == Kind::Lib)
        };
        if lib {
            // SAFETY: handed out by ql_queue_get*, freed once (just marked).
            unsafe { ql_record_free(p.cast()) };
        }
        Some(kind)
    }

    /// What a pointer a callback received is; reports records used after
    /// they were given back.
    fn look(&self, p: *mut c_void, what: &str) -> Option<Kind> {
        let (id, kind, freed) = {
            let records = lock(&self.records);
            let rec = records.get(&(p as usize))?;
            (rec.id, rec.kind, rec.freed)
        };
        if let Some(how) = freed {
            self.violation(format!(
                "{what}: record {id} ({kind:?}) used after it was given back ({how})"
            ));
        }
        Some(kind)
    }

    /// Checks a pointer a callback received: one of ours, NULL, or (on a
    /// built-in queue) a built-in record. Returns the built-in record's id.
    fn check_record(&self, p: *mut c_void, builtin_queue: bool, what: &str) -> Option<u64> {
        if p.is_null() || self.look(p, what).is_some() {
            return None;
        }
        if !builtin_queue {
            self.violation(format!("{what}: unknown pointer {p:p} on a vtable queue"));
            return None;
        }
        // SAFETY: not one of ours, on a built-in queue: a `ql_record` the
        // library lends for the call.
        match unsafe { read_builtin(p.cast()) } {
            Ok(id) => {
                if let Some(id) = id {
                    if !lock(&self.logged).contains_key(&id) {
                        self.violation(format!("{what}: built-in record {id} never logged"));
                    }
                }
                id
            }
            Err(e) => {
                self.violation(format!("{what}: bad built-in record: {e}"));
                None
            }
        }
    }
}

/// Reads a built-in record: its id (from `user`, or the message "fz#<id>#"),
/// or `None` for the library's "N records dropped" report.
///
/// # Safety
/// `r` must point to a live `ql_record`.
unsafe fn read_builtin(r: *const ql_record) -> Result<Option<u64>, String> {
    // SAFETY: the caller's promise.
    let r = unsafe { &*r };
    if r.message.is_null() || r.logger.is_null() {
        return Err("NULL text".into());
    }
    if r.message_len > QL_MESSAGE_MAX || r.logger_len > 4096 {
        return Err(format!("lengths {} / {}", r.logger_len, r.message_len));
    }
    // SAFETY: the record's text, with its NUL, as documented.
    let (message, logger) = unsafe {
        (
            std::slice::from_raw_parts(r.message.cast::<u8>(), r.message_len + 1),
            std::slice::from_raw_parts(r.logger.cast::<u8>(), r.logger_len + 1),
        )
    };
    if message[r.message_len] != 0 || logger[r.logger_len] != 0 {
        return Err("text not NUL-terminated".into());
    }
    let (message, logger) = (&message[..r.message_len], &logger[..r.logger_len]);
    if logger == b"queue_listener" && message.ends_with(b" records dropped") {
        return Ok(None);
    }
    if !r.user.is_null() {
        return Ok(Some(r.user as usize as u64));
    }
    let rest = message
        .strip_prefix(b"fz#")
        .ok_or_else(|| format!("unexpected message {:?}", String::from_utf8_lossy(message)))?;
    let digits: Vec<u8> = rest
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .map(Some)
        .ok_or_else(|| "no id in the message".into())
}

// ---------------------------------------------------------------------------
// Built-in queues as the program holds them.

/// The program's pointer to a built-in queue: callbacks that use it hold
/// the read lock; `ql_queue_free` takes the write lock and clears it.
struct QHandle(RwLock<usize>);

impl QHandle {
    /// Calls `f` with the queue, holding the read lock; `None` once freed.
    fn with<T>(&self, f: impl FnOnce(*const ql_queue) -> T) -> Option<T> {
        let guard = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if *guard == 0 {
            None
        } else {
            Some(f(*guard as *const ql_queue))
        }
    }
}

struct QSlot {
    handle: Arc<QHandle>,
    capacity: usize,
    overflow: i32,
    block_timeout_ms: u64,
    level: i32,
    /// Only built-in records go on it (built-in handlers read them).
    log_only: bool,
    /// The background producer uses it: never freed before the end.
    pinned: bool,
    /// Records put on it may be lost by the program's own choice.
    may_lose: Arc<AtomicBool>,
    /// Listeners made on it (indexes).
    listeners: Vec<usize>,
    /// `on_drop` context.
    _drop_ctx: Option<Arc<DropCtx>>,
    freed: bool,
}

impl QSlot {
    /// A blocking put or log returns within a bounded time.
    fn bounded_put(&self) -> bool {
        self.capacity == 0
            || self.overflow == QL_OVERFLOW_DROP_NEWEST
            || self.overflow == QL_OVERFLOW_DROP_OLDEST
            || (self.overflow == QL_OVERFLOW_BLOCK_TIMEOUT && self.block_timeout_ms <= 20)
    }
}

struct DropCtx {
    world: Arc<World>,
}

unsafe extern "C" fn on_drop(ctx: *mut c_void, record: *mut c_void) {
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
enum FItem {
    Rec(usize),
    Sentinel,
}

struct FakeQueue {
    world: Arc<World>,
    index: usize,
    items: Mutex<VecDeque<FItem>>,
    changed: Condvar,
    /// Random answers are on (turned off for the final stops).
    chaos: AtomicBool,
    chaos_pct: u64,
    /// `dequeue` answers EMPTY instead of waiting.
    empty_when_empty: bool,
    /// `enqueue_sentinel` answers FULL at this many items (0: never).
    capacity: usize,
    phantoms: AtomicU64,
    task_done: AtomicU64,
}

impl FakeQueue {
    fn push(&self, item: FItem) {
        lock(&self.items).push_back(item);
        self.changed.notify_all();
    }

    fn dequeue(&self, block: bool, out: *mut *mut c_void) -> i32 {
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

    fn enqueue_sentinel(&self) -> i32 {
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

unsafe extern "C" fn vt_dequeue(ctx: *mut c_void, block: bool, out: *mut *mut c_void) -> i32 {
    no_unwind(QL_DEQUEUE_ERROR, || {
        // SAFETY: the FakeQueue, alive until its listener is freed.
        unsafe { &*ctx.cast::<FakeQueue>() }.dequeue(block, out)
    })
}

unsafe extern "C" fn vt_enqueue_sentinel(ctx: *mut c_void) -> i32 {
    no_unwind(QL_ENQUEUE_ERROR, || {
        // SAFETY: as above.
        unsafe { &*ctx.cast::<FakeQueue>() }.enqueue_sentinel()
    })
}

unsafe extern "C" fn vt_task_done(ctx: *mut c_void, _record: *mut c_void) {
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
struct LShared {
    world: Arc<World>,
    index: usize,
    listener: AtomicPtr<ql_listener>,
    /// `ql_listener_free` is under way: `destroy` is expected now.
    freeing: AtomicBool,
    /// Records are built-in queue entries (else vtable queue records).
    builtin_queue: bool,
    /// The built-in queue, for handlers that log onto it.
    queue: Option<Arc<QHandle>>,
    handler_count: usize,
    /// Counters of what the callbacks saw.
    done: AtomicU64,
    released: AtomicU64,
    replaced: AtomicU64,
    prepare_failed: AtomicU64,
    handler_failed: AtomicU64,
    handle_hook_failed: AtomicU64,
    on_error: AtomicU64,
}

struct HCtx {
    shared: Arc<LShared>,
    index: usize,
    fail_pct: u64,
    destroyed: Arc<AtomicU64>,
}

unsafe extern "C" fn h_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
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
fn reenter(s: &LShared) {
    let w = &s.world;
    let l = s.listener.load(Ordering::Acquire);
    let check = |what: &str, got: i32, allowed: &[i32]| {
        if !allowed.contains(&got) {
            w.violation(format!(
                "from the listener thread: {what} returned {got}, expected one of {allowed:?}"
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

unsafe extern "C" fn h_flush(ctx: *mut c_void) {
    no_unwind((), || {
        // SAFETY: as in h_handle.
        let _ = unsafe { &*ctx.cast::<HCtx>() };
    })
}

unsafe extern "C" fn h_batch_end(ctx: *mut c_void) {
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

unsafe extern "C" fn h_destroy(ctx: *mut c_void) {
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
struct HooksPlan {
    prepare_pct_fail: u64,
    handle_fail_pct: u64,
    /// `release` is set: `prepare` may make new records.
    release: bool,
}

struct HooksCtx {
    shared: Arc<LShared>,
    plan: HooksPlan,
    fake: Option<Arc<FakeQueue>>,
    /// A built-in queue the `dequeue` hook takes from with ql_queue_get*.
    get_from: Option<Arc<QHandle>>,
    queue_index: usize,
}

fn hooks_of<'a>(ctx: *mut c_void) -> &'a HooksCtx {
    // SAFETY: the HooksCtx, alive until after its listener is freed.
    unsafe { &*ctx.cast::<HooksCtx>() }
}

unsafe extern "C" fn k_dequeue(ctx: *mut c_void, block: bool, out: *mut *mut c_void) -> i32 {
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
                    w.violation(format!("ql_queue_get_timeout in a hook returned {other}"));
                    return QL_DEQUEUE_ERROR;
                }
            }
        }
    })
}

unsafe extern "C" fn k_enqueue_sentinel(ctx: *mut c_void) -> i32 {
    no_unwind(QL_ENQUEUE_ERROR, || match &hooks_of(ctx).fake {
        Some(fake) => fake.enqueue_sentinel(),
        None => QL_ENQUEUE_ERROR,
    })
}

unsafe extern "C" fn k_prepare(
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

unsafe extern "C" fn k_handle(ctx: *mut c_void, record: *mut c_void) -> i32 {
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

unsafe extern "C" fn k_record_level(ctx: *mut c_void, record: *mut c_void) -> i32 {
    no_unwind(0, || {
        let k = hooks_of(ctx);
        let s = &*k.shared;
        s.world
            .check_record(record, s.builtin_queue, "record_level");
        s.world
            .pick(&[-10, 0, 10, 20, 30, 40, 50, i32::MIN, i32::MAX])
    })
}

unsafe extern "C" fn k_release(ctx: *mut c_void, prepared: *mut c_void) {
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

unsafe extern "C" fn k_done(ctx: *mut c_void, record: *mut c_void) {
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

unsafe extern "C" fn k_on_error(
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

struct LSlot {
    ptr: *mut ql_listener,
    shared: Arc<LShared>,
    /// Each handler's destroy count (ours only; built-in handlers are not
    /// counted).
    destroyed: Vec<Arc<AtomicU64>>,
    _hooks: Option<Arc<HooksCtx>>,
    fake: Option<Arc<FakeQueue>>,
    has_done: bool,
    has_on_error: bool,
    has_prepare: bool,
    has_release: bool,
    has_handle_hook: bool,
    /// Its hooks replace `dequeue` (then a flush barrier is refused).
    has_dequeue_hook: bool,
    /// Only handlers of ours (their failures are counted exactly).
    only_ours: bool,
}

// ---------------------------------------------------------------------------
// The fuzzer.

struct Fuzzer {
    world: Arc<World>,
    rng: Rng,
    queues: Vec<QSlot>,
    listeners: Vec<Option<LSlot>>,
    fakes: Vec<Arc<FakeQueue>>,
    trace: Arc<Mutex<VecDeque<String>>>,
    verbose: bool,
    devnull: std::fs::File,
    background: Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>,
    /// Vtable queues a listener without `done` took records from: those
    /// records are the program's loss.
    lost_fakes: HashSet<usize>,
}

fn status_name(s: i32) -> String {
    // SAFETY: ql_status_str returns a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ql_status_str(s)) };
    format!("{s} ({})", text.to_string_lossy())
}

impl Fuzzer {
    fn note(&self, what: String) {
        if self.verbose {
            eprintln!("  {what}");
        }
        let mut t = lock(&self.trace);
        if t.len() >= 60 {
            t.pop_front();
        }
        t.push_back(what);
    }

    fn expect(&self, what: &str, got: i32, allowed: &[i32]) -> i32 {
        if !KNOWN_STATUSES.contains(&got) {
            self.world
                .violation(format!("{what}: unknown status {got}"));
        } else if !allowed.contains(&got) {
            self.world.violation(format!(
                "{what}: returned {}, expected one of {allowed:?}",
                status_name(got)
            ));
        }
        self.note(format!("{what} -> {got}"));
        got
    }

    fn live_queue(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.queues.len())
            .filter(|&i| !self.queues[i].freed)
            .collect();
        (!live.is_empty()).then(|| self.rng.pick(&live))
    }

    fn live_listener(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.listeners.len())
            .filter(|&i| self.listeners[i].is_some())
            .collect();
        (!live.is_empty()).then(|| self.rng.pick(&live))
    }

    fn capacity(&mut self) -> usize {
        self.rng
            .pick(&[0, 0, 1, 2, 3, 8, 64, QL_QUEUE_MAX_CAPACITY + 1, usize::MAX])
    }

    fn step(&mut self) {
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

    fn op_new_queue(&mut self) {
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
    fn add_queue(
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
        });
        self.queues.len() - 1
    }

    /// True when no listener on queue `qi` may be running (so the program
    /// may drain it).
    fn idle(&mut self, qi: usize) -> bool {
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
    fn drain(&mut self, qi: usize) {
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
    fn got_back(&self, qi: usize, record: *mut c_void) {
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

    fn op_free_queue(&mut self) {
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
    fn make_handler(
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

    fn new_shared(
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
    fn new_listener(&mut self, queue: Option<usize>, fake: Option<Arc<FakeQueue>>) {
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
        let has_level = builtin || hooks.as_ref().is_some_and(|h| h.record_level.is_some());
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
        let allowed: &[i32] = if want == QL_OK {
            &[QL_OK]
        } else if want == QL_ERR_NULL && (invalid || !has_dequeue || !has_sentinel) {
            &[QL_ERR_NULL, QL_ERR_INVALID]
        } else {
            &[want]
        };
        let got = self.expect(&what, got, allowed);
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

    fn op_new_listener_on_queue(&mut self) {
        let Some(qi) = self.live_queue() else { return };
        // One listener at a time per queue (see the module doc: a
        // restriction kept from before sentinels were addressed; shared
        // queues are tested in tests/shared_queue.rs).
        if self.queues[qi]
            .listeners
            .iter()
            .any(|&li| self.listeners[li].is_some())
        {
            return;
        }
        self.new_listener(Some(qi), None);
    }

    fn op_new_listener_on_vtable(&mut self) {
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

    fn op_start(&mut self) {
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

    fn queue_results(&self, li: usize) -> &'static [i32] {
        let l = self.listeners[li].as_ref().unwrap();
        if l.fake.is_some() {
            &[QL_OK, QL_ERR_QUEUE]
        } else {
            &[QL_OK]
        }
    }

    fn op_stop(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let l = self.listeners[li].as_ref().unwrap().ptr;
        // SAFETY: a live listener.
        let got = unsafe { ql_stop(l) };
        let allowed = self.queue_results(li);
        self.expect(&format!("ql_stop(listener {li})"), got, allowed);
    }

    fn op_stop_timeout(&mut self) {
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

    fn op_enqueue_sentinel(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let l = self.listeners[li].as_ref().unwrap().ptr;
        // SAFETY: a live listener.
        let got = unsafe { ql_enqueue_sentinel(l) };
        let allowed: &[i32] = if self.listeners[li].as_ref().unwrap().fake.is_some() {
            &[QL_OK, QL_ERR_FULL, QL_ERR_QUEUE]
        } else {
            &[QL_OK, QL_ERR_FULL]
        };
        self.expect(&format!("ql_enqueue_sentinel(listener {li})"), got, allowed);
    }

    fn op_flush(&mut self) {
        let Some(li) = self.live_listener() else {
            return;
        };
        let slot = self.listeners[li].as_ref().unwrap();
        let (l, vtable) = (slot.ptr, slot.fake.is_some());
        let hooked = slot.has_dequeue_hook;
        let ms = self.rng.pick(&[0, 1, 10]);
        // SAFETY: a live listener.
        let got = unsafe { ql_listener_flush(l, ms) };
        let allowed: &[i32] = if hooked {
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

    fn op_stats(&mut self) {
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

    /// Checks a joined listener's counters against what its callbacks saw.
    fn check_counters(&self, li: usize, slot: &LSlot) {
        let mut s = ql_stats::default();
        // SAFETY: a live listener, a valid out-pointer.
        let got = unsafe { ql_listener_stats(slot.ptr, &mut s) };
        self.expect("ql_listener_stats (final)", got, &[QL_OK]);
        COVER[C_DEQUEUE_ERRORS].fetch_add(s.dequeue_errors, Ordering::Relaxed);
        let c = &slot.shared;
        let w = &self.world;
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        if slot.has_done && load(&c.done) != s.handled + s.prepare_errors {
            w.violation(format!(
                "listener {li}: done called {} times, handled {} + prepare errors {}",
                load(&c.done),
                s.handled,
                s.prepare_errors
            ));
        }
        if slot.has_on_error
            && load(&c.on_error) != s.handler_errors + s.prepare_errors + s.dequeue_errors
        {
            w.violation(format!(
                "listener {li}: on_error called {} times, counters {s:?}",
                load(&c.on_error)
            ));
        }
        if slot.has_prepare && load(&c.prepare_failed) != s.prepare_errors {
            w.violation(format!(
                "listener {li}: prepare failed {} times, prepare_errors {}",
                load(&c.prepare_failed),
                s.prepare_errors
            ));
        }
        if slot.only_ours {
            let failed = if slot.has_handle_hook {
                load(&c.handle_hook_failed)
            } else {
                load(&c.handler_failed)
            };
            if failed != s.handler_errors {
                w.violation(format!(
                    "listener {li}: handlers failed {failed} times, handler_errors {}",
                    s.handler_errors
                ));
            }
        }
        if slot.has_prepare && slot.has_release && load(&c.released) != load(&c.replaced) {
            w.violation(format!(
                "listener {li}: prepare replaced {} records, release called {} times",
                load(&c.replaced),
                load(&c.released)
            ));
        }
    }

    fn free_listener(&mut self, li: usize, final_: bool) -> bool {
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

    fn op_free_listener(&mut self) {
        if let Some(li) = self.live_listener() {
            self.free_listener(li, false);
        }
    }

    // -- producers --------------------------------------------------------

    /// A burst of puts (or logs, on a queue for built-in records only).
    fn op_puts(&mut self) {
        for _ in 0..=self.rng.below(8) {
            self.op_put();
        }
    }

    fn op_logs(&mut self) {
        for _ in 0..=self.rng.below(4) {
            self.op_log();
        }
    }

    fn op_put(&mut self) {
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
        let (what, got, allowed): (String, i32, Vec<i32>) = match kind {
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
        let allowed = if q.capacity == 0 {
            vec![QL_OK]
        } else {
            allowed
        };
        let got = self.expect(&format!("{what}(queue {qi})"), got, &allowed);
        if got != QL_OK && !record.is_null() {
            // Refused: it stays the program's, which frees it.
            cover(C_REFUSED);
            w.give_back(record, "refused");
        }
    }

    fn op_log(&mut self) {
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
        if passes && !null_message {
            lock(&w.logged).insert(id, qi);
        }
        // SAFETY: a live queue; message valid for its length (or NULL).
        let got = handle
            .with(|p| unsafe {
                if user {
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
        let allowed: Vec<i32> = if !passes {
            vec![QL_OK]
        } else if null_message {
            vec![QL_ERR_NULL]
        } else if capacity == 0 {
            vec![QL_OK]
        } else {
            vec![QL_OK, QL_ERR_FULL, QL_ERR_TIMEOUT]
        };
        self.expect(
            &format!("ql_log(queue {qi}, level {level}, {} bytes)", message.len()),
            got,
            &allowed,
        );
    }

    fn op_get(&mut self) {
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

    fn op_queue_misc(&mut self) {
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

    fn op_fake_put(&mut self) {
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

    fn op_statics(&mut self) {
        let w = self.world.clone();
        let status = self
            .rng
            .pick(&[0, 1, 5, 9, 14, 15, -1, 1000, i32::MIN, i32::MAX]);
        // SAFETY: static strings, never NULL (checked).
        unsafe {
            let s = ql_status_str(status);
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
    fn op_null_arguments(&mut self) {
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
        let (what, got): (&str, i32) = unsafe {
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

    fn op_pause(&mut self) {
        let us = self.rng.pick(&[0u64, 50, 500, 2000]);
        thread::sleep(Duration::from_micros(us));
    }

    /// A thread logging onto one queue for the whole sequence.
    fn start_background(&mut self) {
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
                if ![QL_OK, QL_ERR_FULL, QL_ERR_TIMEOUT].contains(&got) {
                    world.violation(format!("background producer: status {got}"));
                }
                thread::sleep(Duration::from_micros(200));
            }
        });
        self.background = Some((stop, join));
    }

    /// Stops and frees everything, then checks every record's fate.
    fn finish(&mut self) {
        if let Some((stop, join)) = self.background.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = join.join();
        }
        for fake in &self.fakes {
            fake.chaos.store(false, Ordering::Relaxed);
        }
        for li in 0..self.listeners.len() {
            if self.listeners[li].is_none() {
                continue;
            }
            let l = self.listeners[li].as_ref().unwrap().ptr;
            for attempt in 0.. {
                // SAFETY: a live listener.
                let got = unsafe { ql_stop(l) };
                let allowed = self.queue_results(li);
                self.expect(&format!("ql_stop(listener {li}) final"), got, allowed);
                let mut running = true;
                // SAFETY: as above.
                unsafe { ql_listener_is_running(l, &mut running) };
                if !running || attempt > 20 {
                    break;
                }
            }
            self.free_listener(li, true);
        }
        for qi in 0..self.queues.len() {
            if self.queues[qi].freed {
                continue;
            }
            self.drain(qi);
            let handle = self.queues[qi].handle.clone();
            let mut p = handle.0.write().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: the program's pointer, freed once.
            unsafe { ql_queue_free(*p as *mut ql_queue) };
            *p = 0;
            self.queues[qi].freed = true;
        }
        // What is left in the program's own queues is the program's.
        for fake in &self.fakes {
            let items: Vec<FItem> = lock(&fake.items).drain(..).collect();
            for item in items {
                if let FItem::Rec(p) = item {
                    self.world
                        .give_back(p as *mut c_void, "drained (vtable queue)");
                }
            }
        }
        // Every record must have been given back, unless the program gave
        // up the means to.
        let mut lost = Vec::new();
        for rec in lock(&self.world.records).values() {
            if rec.freed.is_some() {
                continue;
            }
            let excused = match rec.home {
                Home::Queue(qi) => self.queues[qi].may_lose.load(Ordering::Relaxed),
                Home::Fake(fi) => self.lost_fakes.contains(&fi),
                Home::None => false,
            };
            if !excused {
                lost.push((rec.id, rec.kind, rec.home));
            }
        }
        lost.sort_by_key(|l| l.0);
        if !lost.is_empty() {
            self.world.violation(format!(
                "records never given back (id, kind, home): {:?}",
                &lost[..lost.len().min(10)]
            ));
        }
        let panics = CALLBACK_PANICS.swap(0, Ordering::Relaxed);
        if panics != 0 {
            self.world
                .violation(format!("{panics} callbacks panicked (a fuzzer bug)"));
        }
    }
}

// ---------------------------------------------------------------------------
// Running sequences.

type Trace = Arc<Mutex<VecDeque<String>>>;

/// Runs one sequence; returns the violations found.
fn run_sequence(seed: u64, trace: Trace, verbose: bool) -> Vec<String> {
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let mut f = Fuzzer {
        world: Arc::new(World::new(seed)),
        rng: Rng(seed),
        queues: Vec::new(),
        listeners: Vec::new(),
        fakes: Vec::new(),
        trace,
        verbose,
        devnull,
        background: None,
        lost_fakes: HashSet::new(),
    };
    if f.rng.pct(25) {
        f.start_background();
    }
    // Most sequences begin with a running listener, so that records flow.
    if f.rng.pct(80) {
        f.op_new_queue();
        f.op_new_listener_on_queue();
    }
    if f.rng.pct(30) {
        f.op_new_listener_on_vtable();
    }
    for li in 0..f.listeners.len() {
        if f.rng.pct(80) && f.listeners[li].is_some() {
            let l = f.listeners[li].as_ref().unwrap().ptr;
            // SAFETY: a live listener.
            let got = unsafe { ql_start(l) };
            f.expect(&format!("ql_start(listener {li})"), got, &[QL_OK]);
        }
    }
    let steps = 20 + f.rng.below(120);
    for _ in 0..steps {
        f.step();
    }
    f.finish();
    let violations = std::mem::take(&mut *lock(&f.world.violations));
    drop(f);
    violations
}

/// How long one sequence may take before it counts as a hang.
const HANG_BOUND: Duration = Duration::from_secs(20);

enum Outcome {
    Passed,
    Failed(String),
    Hung(String),
}

/// Runs one sequence on its own thread under a watchdog, and checks the
/// heap is back where it was once everything is freed and joined.
fn run_watched(seed: u64, verbose: bool) -> Outcome {
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    let trace: Trace = Arc::new(Mutex::new(VecDeque::new()));
    let t = trace.clone();
    let last_calls = |trace: &Trace| lock(trace).iter().cloned().collect::<Vec<_>>().join("\n  ");
    // The run's thread is joined and its channel dropped by now.
    match run_bounded("fuzz-sequence", HANG_BOUND, move || {
        run_sequence(seed, t, verbose)
    }) {
        Run::Done(violations) if violations.is_empty() => {
            drop(trace);
            drop(violations);
            let after = LIVE_BYTES.load(Ordering::SeqCst);
            cover(C_HEAP_CHECKS);
            if after != before && !verbose {
                Outcome::Failed(format!(
                    "the Rust heap holds {} bytes more after everything was freed (a leak)",
                    after - before
                ))
            } else {
                Outcome::Passed
            }
        }
        Run::Done(violations) => Outcome::Failed(format!(
            "{}\nlast calls:\n  {}",
            violations.join("\n"),
            last_calls(&trace)
        )),
        Run::Hung => Outcome::Hung(format!(
            "HANG: the sequence did not finish within {HANG_BOUND:?}\nlast calls:\n  {}",
            last_calls(&trace)
        )),
        Run::Panicked(_) => Outcome::Failed("the sequence thread panicked (a fuzzer bug)".into()),
    }
}

/// The corpus: one seed per line (decimal or 0x hex), `#` starts a comment.
fn corpus() -> Vec<u64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz_corpus/seeds.txt");
    let text = std::fs::read_to_string(path).expect("tests/fuzz_corpus/seeds.txt");
    text.lines()
        .filter_map(|line| {
            let seed = line.split('#').next()?.trim();
            if seed.is_empty() {
                return None;
            }
            let parsed = match seed.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => seed.parse(),
            };
            Some(parsed.unwrap_or_else(|_| panic!("bad corpus seed {seed:?}")))
        })
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| {
        let v = v.trim();
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    })
}

#[test]
fn fuzz_c_api() {
    // One sequence first, unchecked for the heap: it warms up what the
    // process keeps once (the watchdog's channel context, and so on).
    let _ = run_watched(0x0123_4567_89AB_CDEF, true);
    if let Some(seed) = env_u64("QL_FUZZ_SEED") {
        eprintln!("fuzz_api: seed {seed}, its calls:");
        match run_watched(seed, true) {
            Outcome::Passed => return,
            Outcome::Failed(e) | Outcome::Hung(e) => panic!("seed {seed} failed:\n{e}"),
        }
    }
    let keep_going = std::env::var_os("QL_FUZZ_KEEP_GOING").is_some();
    let coverage = std::env::var_os("QL_FUZZ_COVERAGE").is_some();
    let seconds = env_u64("QL_FUZZ_SECONDS").unwrap_or(15);
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut check = |seed: u64, from: &str| {
        if keep_going {
            eprintln!("fuzz_api: {from} seed {seed}");
        }
        let before: Vec<u64> = COVER.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let outcome = run_watched(seed, false);
        if coverage {
            let line: Vec<String> = COVER
                .iter()
                .zip(before)
                .map(|(c, b)| (c.load(Ordering::Relaxed) - b).to_string())
                .collect();
            eprintln!("fuzz_api: coverage {seed} {}", line.join(" "));
        }
        match outcome {
            Outcome::Passed => true,
            Outcome::Failed(e) | Outcome::Hung(e) if keep_going => {
                eprintln!(
                    "fuzz_api: {from} seed {seed} FAILED: {}",
                    e.lines().next().unwrap_or("")
                );
                failures.push(seed);
                !e.starts_with("HANG")
            }
            Outcome::Failed(e) | Outcome::Hung(e) => panic!(
                "fuzz_api: {from} seed {seed} failed (rerun: QL_FUZZ_SEED={seed}; \
             add it to tests/fuzz_corpus/seeds.txt):\n{e}"
            ),
        }
    };
    let corpus = corpus();
    for &seed in &corpus {
        check(seed, "corpus");
    }
    let mut fresh = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 40));
    let mut ran = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let seed = fresh.next();
        ran += 1;
        if !check(seed, "fresh") {
            break; // a hung thread is left behind: stop here
        }
    }
    let reached: Vec<String> = COVER_NAMES
        .iter()
        .zip(&COVER)
        .map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    // Straight to stderr: libtest's capture would hide it in a passing run.
    let summary = format!(
        "fuzz_api: {} corpus seeds and {ran} fresh sequences in {:.1} s\nfuzz_api: reached: {}\n",
        corpus.len(),
        start.elapsed().as_secs_f64(),
        reached.join(", ")
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
