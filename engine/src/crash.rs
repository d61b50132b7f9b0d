//! The fatal-signal flush: on SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT
//! (and, when asked, SIGTERM and SIGINT), every record already queued on
//! every listener that opted in is written by its sinks before the process
//! dies, through a path that is async-signal-safe.
//!
//! ```text
//! signal ─▶ on_signal (one thread at a time; a second crashing thread waits)
//!   for each registered listener:
//!     claim its gate ─ its thread leaves a record's handling, then parks
//!       (its own thread, crashed inside a handler: no wait)
//!     each handler: crash_begin (a built-in sink writes what it holds
//!       with write(2); a sink that cannot be written so is skipped)
//!     the queue: crash_drain, in order, up to a waiting stop or flush:
//!       each record to each handler's crash_handle (level-filtered)
//!   ─▶ the program's previous handler, or the default action (re-raised)
//!   ─▶ only when that handler returns: the listeners go on (gates released)
//! ```
//!
//! Async-signal-safe means here: no allocation (the room to format in is
//! made when a listener opts in), no lock another thread may hold (every
//! lock is tried, and given up after a bound), system calls that POSIX
//! lists as safe (`write`, `poll`, `sigaction`, `raise`, `clock_gettime`,
//! `nanosleep`, `sched_yield`). What cannot be written that way is skipped:
//! program handlers and hooks (except `record_level` with
//! `respect_handler_level`), `FILE *` streams, syslog and journald sinks,
//! program pointer records, a program's own queue.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, Ordering};

use crate::threads::SpinLock;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Listeners that may opt in at once.
pub const MAX_LISTENERS: usize = 64;

/// Room to format one deferred message in (a longer one is written as its
/// format string, marked).
const MESSAGE_ROOM: usize = crate::record::MAX_MESSAGE + (64 << 10);
/// Room to format one line in (a longer one has its message cut).
const LINE_ROOM: usize = 2 * crate::record::MAX_MESSAGE;

/// How long the flush waits for a listener's thread to finish the record
/// it is handling.
const CLAIM_WAIT: Duration = Duration::from_secs(1);
/// How long the whole flush may take, writes included.
const FLUSH_BOUND: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ gate

/// Between a listener's thread and the crash flush: the thread holds it
/// while it takes and handles records (and around its handlers' batch ends
/// and flushes), and lets go of it while it sleeps, and between two records
/// when a flush asks (`wanted`); the flush claims it when it is free, and
/// the thread then parks, holding no record, until the flush lets go (when
/// the process lives on).
#[derive(Debug, Default)]
pub struct Gate {
    state: AtomicU8,
    /// A flush waits to claim the gate: the thread lets go of it at its
    /// next record (one load per record otherwise).
    wanted: AtomicBool,
}

const FREE: u8 = 0;
const WORKING: u8 = 1;
const CLAIMED: u8 = 2;

impl Gate {
    /// A free gate.
    pub const fn new() -> Gate {
        Gate {
            state: AtomicU8::new(FREE),
            wanted: AtomicBool::new(false),
        }
    }

    /// The listener's thread, between two records (holding none): lets a
    /// flush that waits for the gate take it (and waits in `enter` while
    /// it holds it).
    #[inline]
    pub fn pass(&self) {
        if self.wanted.load(Ordering::Relaxed) {
            self.leave();
            self.enter();
        }
    }

    /// The listener's thread, before it takes a record: waits (parked,
    /// polling every millisecond) while a crash flush holds the gate.
    pub fn enter(&self) {
        loop {
            if self
                .state
                .compare_exchange(FREE, WORKING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
            // Claimed: the process is dying, or a program's handler for
            // the signal will let it go on.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The listener's thread, holding no record.
    pub fn leave(&self) {
        self.state.store(FREE, Ordering::Release);
    }

    /// The crash flush: claims the gate once the thread lets go of it,
    /// or gives up.
    pub(crate) fn claim(&self, give_up: &dyn Fn() -> bool) -> bool {
        self.wanted.store(true, Ordering::SeqCst);
        let claimed = loop {
            match self
                .state
                .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break true,
                // A flush that claimed it already (a second signal after a
                // program's handler let the process go on).
                Err(CLAIMED) => break true,
                Err(_) if give_up() => break false,
                Err(_) => nap(),
            }
        };
        self.wanted.store(false, Ordering::SeqCst);
        claimed
    }

    /// The crash flush is over and the process lives on.
    pub(crate) fn release(&self) {
        let _ = self
            .state
            .compare_exchange(CLAIMED, FREE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A short wait that is async-signal-safe (`nanosleep`).
fn nap() {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000,
    };
    // SAFETY: valid timespec; a NULL remainder is allowed.
    unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
}

// --------------------------------------------------------------- scratch

/// The room the flush formats in, made when the first listener opts in.
pub struct Scratch {
    /// A deferred message, formatted.
    pub message: Vec<u8>,
    /// One line.
    pub line: Vec<u8>,
}

struct ScratchCell(UnsafeCell<Scratch>);
// SAFETY: only the one thread that owns the flush (CRASHING) touches it.
unsafe impl Sync for ScratchCell {}

static SCRATCH: OnceLock<ScratchCell> = OnceLock::new();

// -------------------------------------------------------------- registry

/// What the flush needs of a listener ([`crate::Listener`] implements it).
pub trait Flushable: Send + Sync {
    /// The listener's id.
    fn listener_id(&self) -> u64;
    /// Writes what the listener's sinks hold and what its queue holds:
    /// waits for its thread until `claim_until` says so, and for writes and
    /// locks until `give_up` does.
    fn crash_flush(
        &self,
        scratch: &mut Scratch,
        claim_until: &dyn Fn() -> bool,
        give_up: &dyn Fn() -> bool,
    ) -> Flushed;
    /// The flush is over and the process lives on.
    fn crash_resume(&self);
}

/// What [`Flushable::crash_flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Sinks and queue written.
    Done,
    /// Skipped: its thread stayed in a handler past the bound.
    Busy,
    /// Sinks written; the queue stayed locked by another thread (a
    /// program's get) past the bound.
    QueueBusy,
}

type Entry = Box<Arc<dyn Flushable>>;

static SLOTS: [AtomicPtr<Arc<dyn Flushable>>; MAX_LISTENERS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_LISTENERS];

/// The thread id (gettid) of the thread flushing; 0 when none is.
static CRASHING: AtomicI32 = AtomicI32::new(0);
/// The thread id of the thread calling the program's previous action; 0
/// when none is. That action may call the library's handler again (the
/// program installed it over the library's, keeping the library's as its
/// own previous one, and a later opt-in installed the library's over it):
/// then the default action ends the cycle.
static CHAINING: AtomicI32 = AtomicI32::new(0);

/// Refused by [`register`]: [`MAX_LISTENERS`] are registered already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Which signals, beyond the fatal five, a registration asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    /// Also on SIGTERM.
    pub term: bool,
    /// Also on SIGINT.
    pub int: bool,
}

/// Registers `target` for the flush (again: nothing changes) and installs
/// the signal handlers `signals` needs that are not installed yet. Not
/// async-signal-safe (it allocates): from normal code.
pub fn register(target: Arc<dyn Flushable>, signals: Signals) -> Result<(), Full> {
    SCRATCH.get_or_init(|| {
        ScratchCell(UnsafeCell::new(Scratch {
            message: Vec::with_capacity(MESSAGE_ROOM),
            line: Vec::with_capacity(LINE_ROOM),
        }))
    });
    let _one = INSTALLING.lock();
    let id = target.listener_id();
    let registered = SLOTS.iter().any(|slot| {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot holds a live Entry until it is swapped
        // out, which only happens under INSTALLING (held here).
        !p.is_null() && unsafe { (*p).listener_id() } == id
    });
    if !registered {
        let entry: *mut Arc<dyn Flushable> = Box::into_raw(Box::new(target));
        let placed = SLOTS.iter().any(|slot| {
            slot.compare_exchange(
                std::ptr::null_mut(),
                entry,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        });
        if !placed {
            // SAFETY: made just above, never shared.
            drop(unsafe { Box::from_raw(entry) });
            return Err(Full);
        }
    }
    install(signals);
    Ok(())
}

/// Forgets listener `id` (it is being freed). Its entry is freed unless a
/// flush is running, which may be reading it (then it is leaked: the
/// process is dying, or the flush's program handler runs).
pub fn unregister(id: u64) {
    let _one = INSTALLING.lock();
    for slot in &SLOTS {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: as in `register`.
        if p.is_null() || unsafe { (*p).listener_id() } != id {
            continue;
        }
        slot.store(std::ptr::null_mut(), Ordering::SeqCst);
        if CRASHING.load(Ordering::SeqCst) == 0 {
            // SAFETY: out of the registry, and no flush read it: a flush
            // marks CRASHING (SeqCst) before it reads any slot.
            drop(unsafe { Entry::from_raw(p) });
        }
    }
}

/// In a `fork` child: the parent's listeners are not this process's (their
/// threads do not exist here, and their queued records are the parent's to
/// write): forgotten, their entries leaked (the parent may have been
/// changing the registry). The signal handlers stay installed; with no
/// listener registered they only chain.
pub fn forget_after_fork() {
    for slot in &SLOTS {
        slot.store(std::ptr::null_mut(), Ordering::SeqCst);
    }
    CRASHING.store(0, Ordering::SeqCst);
    CHAINING.store(0, Ordering::SeqCst);
    INSTALLING.reset_in_child();
}

// --------------------------------------------------------------- signals

/// The fatal signals, always handled once a listener opted in.
const FATAL: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Signal numbers below this are handled.
const NSIG: usize = 32;

/// The actions the program had before the library installed its own, by
/// signal number; written before the handler is installed, read by it.
struct Previous(UnsafeCell<[libc::sigaction; NSIG]>);
// SAFETY: an entry is written (under INSTALLING) only while the library's
// handler is not the signal's action, and read by that handler.
unsafe impl Sync for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

/// Serializes registrations and installs: a spin lock, not a `Mutex`, so
/// a `fork` child that inherits it held by a parent thread (which does not
/// exist there) takes it back ([`forget_after_fork`]).
static INSTALLING: SpinLock = SpinLock::new();

fn previous() -> &'static Previous {
    PREVIOUS.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid value (SIG_DFL).
        Previous(UnsafeCell::new(unsafe { std::mem::zeroed() }))
    })
}

/// Installs the handler for each signal asked for whose action is not the
/// library's (never installed, or replaced by the program since), keeping
/// the action it replaces to chain to. SIGTERM and SIGINT are left alone
/// where the program ignores them. Under INSTALLING.
fn install(signals: Signals) {
    let mut wanted: Vec<libc::c_int> = FATAL.to_vec();
    if signals.term {
        wanted.push(libc::SIGTERM);
    }
    if signals.int {
        wanted.push(libc::SIGINT);
    }
    let previous = previous();
    let ours = on_signal as *const () as usize;
    for sig in wanted {
        // SAFETY: plain sigaction calls with valid structures; the entry
        // of PREVIOUS for `sig` is written while the signal's action is
        // not the library's handler, which alone reads it.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            if old.sa_sigaction == ours
                || (matches!(sig, libc::SIGTERM | libc::SIGINT)
                    && old.sa_sigaction == libc::SIG_IGN)
            {
                continue;
            }
            // As the program's action behaved for the rest of the
            // program: system calls it interrupts restart or not, and the
            // same signals are blocked while it runs.
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ours;
            action.sa_flags =
                libc::SA_SIGINFO | libc::SA_ONSTACK | (old.sa_flags & libc::SA_RESTART);
            action.sa_mask = old.sa_mask;
            (*previous.0.get())[sig as usize] = old;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// The handler of every signal the flush is installed for.
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is the thread's own; saved and put back around the
    // system calls below.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    if CHAINING.load(Ordering::SeqCst) == me {
        die_of(sig);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    let start = Instant::now();
    loop {
        match CRASHING.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                flush_all();
                // The listeners go on if the program's handler lets the
                // process live; nothing is left held if it jumps away.
                resume_all();
                CHAINING.store(me, Ordering::SeqCst);
                CRASHING.store(0, Ordering::SeqCst);
                chain(sig, info, context);
                CHAINING.store(0, Ordering::SeqCst);
                break;
            }
            // This thread is inside its own flush or chained call (a fault
            // there, or a program handler that calls the library's again):
            // no second flush, no second call: the default action.
            Err(owner) if owner == me => {
                die_of(sig);
                break;
            }
            // Another thread is flushing (and will end the process): wait
            // for it, within the bound, then flush what is left.
            Err(_) if start.elapsed() > FLUSH_BOUND + CLAIM_WAIT => {
                chain(sig, info, context);
                break;
            }
            Err(_) => nap(),
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Flushes every registered listener, within [`FLUSH_BOUND`] in all.
fn flush_all() {
    let Some(scratch) = SCRATCH.get() else {
        return;
    };
    // SAFETY: CRASHING makes this thread the only user of the scratch.
    let scratch = unsafe { &mut *scratch.0.get() };
    let start = Instant::now();
    let give_up = || start.elapsed() > FLUSH_BOUND;
    crate::output::sys::without_write_signals(|| {
        for slot in &SLOTS {
            let p = slot.load(Ordering::SeqCst);
            if p.is_null() {
                continue;
            }
            // SAFETY: a registered entry; `unregister` does not free it
            // while CRASHING is set (set, SeqCst, before this load).
            let target = unsafe { &**p };
            let claiming = Instant::now();
            let claim_until = || give_up() || claiming.elapsed() > CLAIM_WAIT;
            let flushed = target.crash_flush(scratch, &claim_until, &give_up);
            if flushed != Flushed::Done {
                let note: &[u8] = match flushed {
                    Flushed::Busy => {
                        b"queue_listener: crash flush skipped a listener whose thread stayed in a handler\n"
                    }
                    _ => b"queue_listener: crash flush could not take a listener's queue (held by another thread)\n",
                };
                let _ = crate::output::sys::write_once(libc::STDERR_FILENO, note);
            }
        }
    });
}

/// The flush is over and the process lives on: the listeners go on.
fn resume_all() {
    for slot in &SLOTS {
        let p = slot.load(Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: as in `flush_all`.
            unsafe { (**p).crash_resume() };
        }
    }
}

/// Gives the signal to what the program had: its handler, called as the
/// kernel would (reset to the default first if it asked for
/// `SA_RESETHAND`); or the default action ([`die_of`]). An ignored fatal
/// signal raised by a fault would come back at once, and the kernel would
/// have killed the process: so does this. Returns when the process lives
/// on.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: PREVIOUS[sig] was written before this handler became the
    // signal's action.
    let old = unsafe { (*previous().0.get())[sig as usize] };
    let handler = old.sa_sigaction;
    if handler == libc::SIG_DFL || (handler == libc::SIG_IGN && FATAL.contains(&sig)) {
        die_of(sig);
        return;
    }
    if handler == libc::SIG_IGN {
        return;
    }
    // SAFETY: plain signal calls; the program's handler, called with the
    // arguments its flags say it takes.
    unsafe {
        if old.sa_flags & libc::SA_RESETHAND != 0 {
            set_default(sig);
        }
        if old.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            f(sig, info, context);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(sig);
        }
    }
}

/// The signal's default action, from inside its handler: restored, and the
/// signal raised again. It is blocked until this handler returns, and then
/// delivered: the process dies of it, with a core dump where the default
/// makes one. (A fault's signal would also come back by itself, when the
/// faulting instruction runs again.)
fn die_of(sig: libc::c_int) {
    // SAFETY: plain signal calls.
    unsafe {
        set_default(sig);
        libc::raise(sig);
    }
}

/// # Safety
/// A plain `sigaction` call.
unsafe fn set_default(sig: libc::c_int) {
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask.
    unsafe {
        let action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

/// For a listener's thread: blocks every signal but those a fault or
/// `abort` raises on the thread itself (and `SIGPROF`, for profilers).
/// A signal the crash flush handles then never comes on a listener's
/// thread unless that thread itself crashed (inside a handler): the flush
/// tells the two cases apart by it. Other signals go to the program's
/// threads, as before the library's thread existed.
pub fn block_async_signals_for_thread() {
    // SAFETY: plain signal-mask calls on a valid set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGABRT,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGPROF,
        ] {
            libc::sigdelset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
