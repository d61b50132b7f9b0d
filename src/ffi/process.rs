//! `ql_listener_drain_at_exit`: the C door to the exit registry
//! (`crate::process`, which also keeps the `fork()` handlers), and
//! `ql_listener_flush_on_crash`: the door to the fatal-signal flush
//! (`crate::crash`).

use std::time::Duration;

use super::listener::ql_listener;
use super::{boundary, ql_status, status_of_result, try_ref, QL_OK};
use crate::crash::Signals;

/// Flags of `ql_listener_flush_on_crash`: the signals it handles beyond the
/// fatal five.
pub type ql_crash_signals = u32;
/// Also flush on SIGTERM (where the program does not ignore it).
pub const QL_CRASH_SIGTERM: ql_crash_signals = 1;
/// Also flush on SIGINT (where the program does not ignore it).
pub const QL_CRASH_SIGINT: ql_crash_signals = 2;

/// Opts a listener in to the crash flush: when the process gets SIGSEGV,
/// SIGBUS, SIGILL, SIGFPE or SIGABRT (and SIGTERM / SIGINT with
/// `QL_CRASH_SIGTERM` / `QL_CRASH_SIGINT`), what the listener's built-in
/// file and fd handlers hold and every record queued on its queue are
/// written before the process dies, in the order the listener would have
/// handled them, each exactly once.
///
/// The flush runs in the signal handler and is async-signal-safe: no
/// allocation (its room, about 3 MiB, is reserved by the first call), no
/// lock another thread may hold (each is tried, then given up), at most 1 s
/// waiting for the listener's thread to finish the record it is handling
/// and 5 s in all. It writes only with the built-in file, rotating file
/// and fd handlers; a program's handler, `FILE *` handler, syslog or
/// journald handler is skipped, as are program pointer records, and
/// `prepare` is not called (records are written as queued). Then the
/// action the program had installed for the signal runs: its handler is
/// called (and if it returns, the listeners go on), or the default action
/// is taken by raising the signal again, so the process dies of it (with
/// its core dump). A handler the program installs after this call
/// replaces the library's (the program then chooses); the next call
/// installs the library's again, chaining to that one. See the README,
/// "Crash flush".
///
/// Again for the same listener: only adds signals. `ql_listener_free`
/// (and `ql_stop` is not needed) forgets it. Returns `QL_OK`;
/// `QL_ERR_NULL`; `QL_ERR_UNSUPPORTED` for a listener on a program's queue
/// (`ql_listener_new`) or with a `dequeue` hook; `QL_ERR_FORKED`;
/// `QL_ERR_FULL` when 64 listeners are registered; `QL_ERR_INVALID` for an
/// unknown flag. Any thread.
///
/// # Safety
/// `listener` must be NULL or a live listener.
#[no_mangle]
pub unsafe extern "C" fn ql_listener_flush_on_crash(
    listener: *const ql_listener,
    signals: ql_crash_signals,
) -> ql_status {
    boundary(|| {
        let listener = try_ref!(listener);
        if signals & !(QL_CRASH_SIGTERM | QL_CRASH_SIGINT) != 0 {
            return super::QL_ERR_INVALID;
        }
        status_of_result(listener.inner.flush_on_crash(Signals {
            term: signals & QL_CRASH_SIGTERM != 0,
            int: signals & QL_CRASH_SIGINT != 0,
        }))
    })
}

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
