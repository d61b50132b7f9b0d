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
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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
/// and flushes), and lets go of it between records and while it sleeps; the
/// flush claims it when it is free, and the thread then parks, holding no
/// record, until the flush lets go (when the process lives on).
#[derive(Debug, Default)]
pub struct Gate(AtomicU8);

const FREE: u8 = 0;
const WORKING: u8 = 1;
const CLAIMED: u8 = 2;

impl Gate {
    /// A free gate.
    pub const fn new() -> Gate {
        Gate(AtomicU8::new(FREE))
    }

    /// The listener's thread, before it takes a record: waits (parked,
    /// polling every millisecond) while a crash flush holds the gate.
    pub fn enter(&self) {
        loop {
            if self
                .0
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
        self.0.store(FREE, Ordering::Release);
    }

    /// The crash flush: claims the gate once the thread lets go of it,
    /// or gives up.
    pub(crate) fn claim(&self, give_up: &dyn Fn() -> bool) -> bool {
        loop {
            match self
                .0
                .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                // A flush that claimed it already (a second signal after a
                // program's handler let the process go on).
                Err(CLAIMED) => return true,
                Err(_) if give_up() => return false,
                Err(_) => nap(),
            }
        }
    }

    /// The crash flush is over and the process lives on.
    pub(crate) fn release(&self) {
        let _ = self
            .0
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
    /// Writes what the listener's sinks hold and what its queue holds.
    fn crash_flush(&self, scratch: &mut Scratch, give_up: &dyn Fn() -> bool) -> Flushed;
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
    let _one = lock(&INSTALLING);
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
    let _one = lock(&INSTALLING);
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
}

/// True when listener `id` is registered.
pub fn is_registered(id: u64) -> bool {
    let _one = lock(&INSTALLING);
    SLOTS.iter().any(|slot| {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: as in `register`.
        !p.is_null() && unsafe { (*p).listener_id() } == id
    })
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
// SAFETY: an entry is written (under INSTALLING) before the handler for
// its signal is installed, and only read afterwards.
unsafe impl Sync for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();
static INSTALLED: [AtomicBool; NSIG] = [const { AtomicBool::new(false) }; NSIG];
static INSTALLING: Mutex<()> = Mutex::new(());

fn lock(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn previous() -> &'static Previous {
    PREVIOUS.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid value (SIG_DFL).
        Previous(UnsafeCell::new(unsafe { std::mem::zeroed() }))
    })
}

/// Installs the handler for each signal asked for and not yet handled,
/// keeping the program's action to chain to. SIGTERM and SIGINT are left
/// alone where the program ignores them. Under INSTALLING.
fn install(signals: Signals) {
    let mut wanted: Vec<libc::c_int> = FATAL.to_vec();
    if signals.term {
        wanted.push(libc::SIGTERM);
    }
    if signals.int {
        wanted.push(libc::SIGINT);
    }
    let previous = previous();
    for sig in wanted {
        if INSTALLED[sig as usize].load(Ordering::Acquire) {
            continue;
        }
        // SAFETY: plain sigaction calls with valid structures; the entry
        // of PREVIOUS for `sig` is not read before INSTALLED[sig] is set.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            if matches!(sig, libc::SIGTERM | libc::SIGINT) && old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            (*previous.0.get())[sig as usize] = old;
            INSTALLED[sig as usize].store(true, Ordering::Release);
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
    let start = Instant::now();
    let mut flushing = false;
    loop {
        match CRASHING.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                flushing = true;
                break;
            }
            // A fault inside this thread's own flush: no second flush.
            Err(owner) if owner == me => break,
            // Another thread is flushing (and will end the process): wait
            // for it, within the bound.
            Err(_) if start.elapsed() > FLUSH_BOUND + CLAIM_WAIT => break,
            Err(_) => nap(),
        }
    }
    if flushing {
        flush_all();
    }
    let lives_on = chain(sig, info, context);
    if flushing {
        if lives_on {
            resume_all();
        }
        CRASHING.store(0, Ordering::SeqCst);
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
            let claimed_by = Instant::now();
            let wait = || give_up() || claimed_by.elapsed() > CLAIM_WAIT;
            let flushed = target.crash_flush(scratch, &wait);
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
/// kernel would; or the default action, by restoring it and raising the
/// signal again (it is delivered when this handler returns, so the process
/// dies of it, with a core dump where the default makes one). True when
/// the process lives on (the program's handler returned).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) -> bool {
    // SAFETY: INSTALLED[sig] was set after PREVIOUS[sig] was written.
    let old = unsafe { (*previous().0.get())[sig as usize] };
    let handler = old.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // An ignored fatal signal raised by a fault would come back at
        // once; the kernel would have killed the process: so do we.
        // SAFETY: plain signal calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
            if handler == libc::SIG_DFL || FATAL.contains(&sig) {
                libc::raise(sig);
            }
        }
        return handler == libc::SIG_IGN && !FATAL.contains(&sig);
    }
    // SAFETY: the program's handler, called with the arguments its flags
    // say it takes.
    unsafe {
        if old.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            f(sig, info, context);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(sig);
        }
    }
    true
}
