//! `ql_listener_drain_at_exit`: the C door to the exit registry
//! (`crate::process`, which also keeps the `fork()` handlers).

use std::time::Duration;

use super::listener::ql_listener;
use super::{boundary, ql_status, try_ref, QL_OK};

/// Opts a listener in to draining at exit: when the program calls `exit()`
/// (or returns from `main`) while the listener still runs, an `atexit`
/// handler stops it as `ql_stop_timeout` would, so every record queued
/// before `exit()` is handled and every handler flushed, waiting at most
/// `timeout_ms`. Several listeners are stopped one after another within the
/// largest bound given. If a handler blocks past the bound, exit goes on
/// without it (and the records behind it are lost with the process).
///
/// Calling it again for the same listener keeps one registration, with
/// the larger bound. A listener freed before exit is skipped, and its
/// registration is forgotten at the next call: the registry holds the live
/// listeners only (and at most one freed since the last call). Not run on `_exit()`, on a crash, or when
/// `exit()` is called from the listener's own thread (a handler), which
/// cannot wait for itself. `QL_OK`; `QL_ERR_NULL`. Any thread.
///
/// # Safety
/// `listener` must be NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_drain_at_exit(
    listener: *const ql_listener,
    timeout_ms: u64,
) -> ql_status {
    boundary(|| {
        let listener = try_ref!(listener);
        crate::process::drain_at_exit(listener.inner.stopper(), Duration::from_millis(timeout_ms));
        QL_OK
    })
}
