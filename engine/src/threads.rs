//! Who the calling thread is, as the engine needs to know: the listener
//! whose thread it is (0 on any other thread), and the fork generation of
//! the process (objects made in an older one were inherited from a parent
//! across `fork`, and their threads do not exist here).
//!
//! At the bottom of the engine: the listener sets the identity, the
//! built-in queue reads it (a put that would wait on a listener thread
//! could wait for itself), the fork handlers move the generation. Beside
//! it, which listener thread waits for which other listener (a stop or
//! flush from a handler), so that a cycle of such waits is refused.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

thread_local! {
    /// The id of the listener whose thread this is; 0 elsewhere.
    static THIS_LISTENER: Cell<u64> = const { Cell::new(0) };
}

/// How many times this process is a `fork` child of a process that used
/// the library (0 in the original process).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation: objects made in an older one were inherited
/// from a parent process.
pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// The process id the library last saw (0 before the first look).
static PID: AtomicI32 = AtomicI32::new(0);

/// Remembers the process id, so that a child made without atfork handlers
/// is noticed by [`fork_generation_checked`] (every constructor calls it).
pub fn note_pid() {
    // SAFETY: getpid has no preconditions.
    let now = unsafe { libc::getpid() };
    let _ = PID.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
}

/// [`fork_generation`], after noticing a fork no atfork handler reported:
/// a child made with `_Fork()` (or a raw `clone`) runs none, so the process
/// id is compared (one `getpid` system call: for the control calls, not
/// the log path).
pub fn fork_generation_checked() -> u64 {
    // SAFETY: getpid has no preconditions.
    let now = unsafe { libc::getpid() };
    let seen = PID.swap(now, Ordering::Relaxed);
    if seen != 0 && seen != now {
        note_fork_in_child();
    }
    fork_generation()
}

/// To be called in a `fork` child, on the thread that forked, before
/// anything else: from now on every existing listener and queue counts as
/// inherited (their threads do not exist here), and the thread forgets the
/// per-thread state it had in the parent.
pub fn note_fork_in_child() {
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    THIS_LISTENER.with(|this| this.set(0));
    forget_waits_after_fork();
    crate::crash::forget_after_fork();
    crate::record::forget_thread_id();
    crate::clock::after_fork_in_child();
    crate::queue::forget_after_fork();
}

/// True on any listener thread. A put that would block there could wait for
/// itself, so the built-in queue refuses it instead.
pub fn on_listener_thread() -> bool {
    current_listener() != 0
}

/// The id of the listener whose thread calls
/// ([`crate::Listener::id`]); 0 on any other thread.
pub fn current_listener() -> u64 {
    THIS_LISTENER.with(Cell::get)
}

/// Marks the calling thread as listener `id`'s, for the rest of its life
/// (the listener thread, first thing).
pub(crate) fn become_listener_thread(id: u64) {
    THIS_LISTENER.with(|this| this.set(id));
}

/// Runs `f` as if on the thread of listener `id` (unit tests of the queue).
#[cfg(test)]
pub(crate) fn as_listener_thread<T>(id: u64, f: impl FnOnce() -> T) -> T {
    let before = THIS_LISTENER.with(|this| this.replace(id));
    let out = f();
    THIS_LISTENER.with(|this| this.set(before));
    out
}

/// A lock held for a few instructions that a `fork` child can take back
/// ([`SpinLock::reset_in_child`]): a `Mutex` the child inherits held by a
/// parent thread (which does not exist there) is never unlocked.
pub(crate) struct SpinLock(AtomicBool);

/// Held [`SpinLock`]; unlocks when dropped (also on unwind).
pub(crate) struct SpinGuard<'a>(&'a AtomicBool);

impl SpinLock {
    pub(crate) const fn new() -> SpinLock {
        SpinLock(AtomicBool::new(false))
    }

    /// Spins a little, then yields, until the lock is had.
    pub(crate) fn lock(&self) -> SpinGuard<'_> {
        let mut spins = 0u32;
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        SpinGuard(&self.0)
    }

    /// In a `fork` child, on the only thread: free, whoever held it.
    pub(crate) fn reset_in_child(&self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Drop for SpinGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Which listener's thread waits, in a stop or flush, for which other
/// listener's thread: `(waiting, waited for)`. A listener thread waits for
/// at most one listener at a time (the call blocks it), so following the
/// edges from any listener is a chain; a call that would close the chain
/// into a cycle is refused ([`wait_for_listener`]).
///
/// Behind a [`SpinLock`] held for a few instructions (no allocation while
/// holding it, except a push that grows the list), which a `fork` child
/// takes back ([`forget_waits_after_fork`]).
struct WaitGraph {
    lock: SpinLock,
    edges: UnsafeCell<Vec<(u64, u64)>>,
}

// SAFETY: `edges` is only touched while `lock` is held (WaitGraph::with).
unsafe impl Sync for WaitGraph {}

static WAITS: WaitGraph = WaitGraph {
    lock: SpinLock::new(),
    edges: UnsafeCell::new(Vec::new()),
};

impl WaitGraph {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<(u64, u64)>) -> T) -> T {
        let _held = self.lock.lock();
        // SAFETY: the lock is held until `_held` drops.
        f(unsafe { &mut *self.edges.get() })
    }
}

/// Refused by [`wait_for_listener`]: the wait would close a cycle of
/// listener threads each waiting for the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WouldCycle;

/// While it lives, the calling listener thread is recorded as waiting for
/// another listener; dropping it ends the wait.
#[derive(Debug)]
pub struct Waiting {
    edge: Option<(u64, u64)>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(edge) = self.edge {
            WAITS.with(|edges| {
                if let Some(i) = edges.iter().position(|e| *e == edge) {
                    edges.swap_remove(i);
                }
            });
        }
    }
}

/// Before the calling thread waits for listener `target`'s thread (a stop
/// or flush of it): on a listener thread, refused when `target`'s thread
/// is itself waiting, directly or along a chain, for this one; else the
/// wait is recorded until the returned guard drops. On any other thread
/// nothing is recorded (no listener waits for it).
pub fn wait_for_listener(target: u64) -> Result<Waiting, WouldCycle> {
    let me = current_listener();
    if me == 0 {
        return Ok(Waiting { edge: None });
    }
    WAITS.with(|edges| {
        let mut at = target;
        // A chain visits each edge at most once.
        for _ in 0..=edges.len() {
            if at == me {
                return Err(WouldCycle);
            }
            match edges.iter().find(|(from, _)| *from == at) {
                Some(&(_, next)) => at = next,
                None => break,
            }
        }
        edges.push((me, target));
        Ok(Waiting {
            edge: Some((me, target)),
        })
    })
}

/// In a `fork` child: no listener thread waits (none exists), and the
/// lock may have been inherited held.
fn forget_waits_after_fork() {
    // SAFETY: only the forking thread exists in the child; nothing else can
    // hold a reference into `edges`. The old list is leaked, not read: the
    // parent may have been changing it.
    unsafe { std::ptr::write(WAITS.edges.get(), Vec::new()) };
    WAITS.lock.reset_in_child();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_that_would_close_a_cycle_is_refused_and_a_broken_chain_allows_it() {
        // Ids no listener of another test uses.
        let (a, b, c) = (u64::MAX - 3, u64::MAX - 2, u64::MAX - 1);
        let a_waits = as_listener_thread(a, || wait_for_listener(b)).unwrap();
        let b_waits = as_listener_thread(b, || wait_for_listener(c)).unwrap();
        assert_eq!(
            as_listener_thread(c, || wait_for_listener(a)).unwrap_err(),
            WouldCycle
        );
        // Not a listener thread: nobody waits for it, nothing recorded.
        assert!(wait_for_listener(a).unwrap().edge.is_none());
        drop(b_waits);
        let c_waits = as_listener_thread(c, || wait_for_listener(a)).unwrap();
        assert_eq!(
            as_listener_thread(b, || wait_for_listener(c)).unwrap_err(),
            WouldCycle
        );
        drop(a_waits);
        drop(c_waits);
        WAITS.with(|edges| assert!(!edges.iter().any(|&(from, _)| from >= a)));
    }
}
