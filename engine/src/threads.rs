//! Who the calling thread is, as the engine needs to know: the listener
//! whose thread it is (0 on any other thread), and the fork generation of
//! the process (objects made in an older one were inherited from a parent
//! across `fork`, and their threads do not exist here).
//!
//! At the bottom of the engine: the listener sets the identity, the
//! built-in queue reads it (a put that would wait on a listener thread
//! could wait for itself), the fork handlers move the generation.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

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
