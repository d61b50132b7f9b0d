//! The process around the listeners: draining at `exit()`, and `fork()`.
//!
//! - [`drain_at_exit`] (`ql_listener_drain_at_exit`) registers a
//!   listener; an `atexit` handler stops every registered listener that
//!   still exists, within the largest bound given, so records queued
//!   before `exit()` are handled.
//! - `pthread_atfork` handlers keep the registry's lock consistent across
//!   `fork()` and, in the child, mark every existing listener and queue as
//!   inherited (see `QL_ERR_FORKED`).

use std::cell::UnsafeCell;
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::listener::Stopper;
use crate::threads::note_fork_in_child;

/// Listeners to stop at exit, with their bounds, behind a pthread mutex:
/// unlike a std mutex it can be held across `fork()` by the atfork handlers.
struct Registry {
    lock: UnsafeCell<libc::pthread_mutex_t>,
    entries: UnsafeCell<Vec<(Stopper, Duration)>>,
}

// SAFETY: `entries` is only touched with `lock` held.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    lock: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    entries: UnsafeCell::new(Vec::new()),
};

impl Registry {
    fn lock(&self) {
        // SAFETY: a valid, statically initialized mutex.
        unsafe { libc::pthread_mutex_lock(self.lock.get()) };
    }

    fn unlock(&self) {
        // SAFETY: as above, locked by this thread.
        unsafe { libc::pthread_mutex_unlock(self.lock.get()) };
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<(Stopper, Duration)>) -> T) -> T {
        self.lock();
        // SAFETY: the lock is held.
        let out = f(unsafe { &mut *self.entries.get() });
        self.unlock();
        out
    }
}

extern "C" fn before_fork() {
    REGISTRY.lock();
}

extern "C" fn after_fork_in_parent() {
    REGISTRY.unlock();
}

extern "C" fn after_fork_in_child() {
    note_fork_in_child();
    REGISTRY.unlock();
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let entries = REGISTRY.with(std::mem::take);
        let longest = entries.iter().map(|(_, d)| *d).max().unwrap_or_default();
        let deadline = Instant::now().checked_add(longest);
        for (stopper, _) in &entries {
            let left = deadline.map_or(longest, |d| d.saturating_duration_since(Instant::now()));
            // A timeout or an error leaves that listener as it is: exit goes on.
            let _ = stopper.stop_within(left);
        }
        // Stoppers hold only weak references; dropping them frees nothing
        // the program still uses.
        drop(entries);
    });
}

static INSTALL: Once = Once::new();

/// Installs the fork handlers and the exit handler, once per process.
/// Called by every constructor, so a process that forks has them.
pub fn install() {
    crate::threads::note_pid();
    INSTALL.call_once(|| {
        // SAFETY: plain registrations of `extern "C"` functions that live
        // for the whole program.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            );
            libc::atexit(at_exit);
        }
    });
}

/// Registers a listener (its [`Stopper`]) to be stopped at `exit()`
/// within `timeout` (the largest bound registered is the bound of all);
/// installs the handlers first if needed. A listener registered again
/// keeps one entry, with the larger bound; the entries of freed listeners
/// are forgotten here, so the registry holds at most the live listeners
/// and one freed since the last registration.
pub fn drain_at_exit(stopper: Stopper, timeout: Duration) {
    install();
    REGISTRY.with(|entries| {
        entries.retain(|(registered, _)| !registered.is_gone());
        match entries
            .iter_mut()
            .find(|(registered, _)| registered.id() == stopper.id())
        {
            Some((_, bound)) => *bound = (*bound).max(timeout),
            None => entries.push((stopper, timeout)),
        }
    });
}

/// Listeners registered to be stopped at exit and not forgotten yet.
pub fn registered() -> usize {
    REGISTRY.with(|entries| entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::Listener;
    use crate::queue::ChannelQueue;
    use crate::Hooks;
    use std::sync::Arc;

    #[test]
    fn the_registry_forgets_freed_listeners_and_keeps_one_entry_per_listener() {
        let before = registered();
        for _ in 0..100_000 {
            let queue = Arc::new(ChannelQueue::<u32>::new(0).unwrap());
            let listener = Listener::new(queue, Vec::new(), Hooks::default(), false);
            drain_at_exit(listener.stopper(), Duration::from_millis(10));
            drain_at_exit(listener.stopper(), Duration::from_millis(20));
            drop(listener);
        }
        // Other tests of this binary may register concurrently: bounded,
        // not exact.
        assert!(registered() <= before + 8, "{} entries", registered());
    }
}
