//! Status codes and the small result enums of the vtables.
//!
//! Values that cross from C into Rust are plain fixed-width integers with
//! named constants, never Rust enums: an unknown value from C is then an
//! error to report, not undefined behaviour.
//!
//! In Rust, [`ql_status`] is its own type (C sees `int32_t`): a library
//! status and a callback's `int32_t` return code (errno-like: 11 is
//! `EAGAIN` there, `QL_ERR_PANIC` here) cannot be mixed up. Neither
//! compiles:
//!
//! ```compile_fail,E0308
//! let code: i32 = queue_listener::ffi::QL_ERR_PANIC;
//! ```
//!
//! ```compile_fail,E0308
//! let status: queue_listener::ffi::ql_status = 11;
//! ```

use std::ffi::c_char;

use crate::protocol::Error;
use crate::queue::{GetError, PutError};

use super::boundary;

/// The result of every fallible function: `QL_OK` (0) or one `QL_ERR_*`.
///
/// `ql_status_str` turns any value into text.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ql_status(i32);

impl ql_status {
    /// The status with this number, as a C program may pass it: any
    /// `int32_t`, known or not (`ql_status_str` takes any). A callback's
    /// return code is no status: it stays an `i32`.
    pub const fn from_raw(raw: i32) -> Self {
        ql_status(raw)
    }

    /// The number C sees.
    pub const fn raw(self) -> i32 {
        self.0
    }
}

/// Success.
pub const QL_OK: ql_status = ql_status(0);
/// A required pointer argument was NULL. Nothing happened.
pub const QL_ERR_NULL: ql_status = ql_status(1);
/// An argument was invalid: a required vtable slot missing, a capacity too
/// large, `respect_handler_level` without a way to read record levels.
pub const QL_ERR_INVALID: ql_status = ql_status(2);
/// `ql_start` on a listener whose thread is running or being stopped.
pub const QL_ERR_ALREADY_STARTED: ql_status = ql_status(3);
/// The call would wait for the calling thread itself (for example
/// `ql_stop` from inside a handler), directly or through other listeners
/// (A's handler stops B while B's handler stops A). Nothing changed.
pub const QL_ERR_WOULD_DEADLOCK: ql_status = ql_status(4);
/// The queue had no room. The record or sentinel was not put.
pub const QL_ERR_FULL: ql_status = ql_status(5);
/// The deadline passed before the call could finish.
pub const QL_ERR_TIMEOUT: ql_status = ql_status(6);
/// A non-blocking get found the queue empty.
pub const QL_ERR_EMPTY: ql_status = ql_status(7);
/// A get took a sentinel off the queue instead of a record.
pub const QL_ERR_SENTINEL: ql_status = ql_status(8);
/// The program's queue reported an error.
pub const QL_ERR_QUEUE: ql_status = ql_status(9);
/// The operating system could not create the listener thread.
pub const QL_ERR_THREAD: ql_status = ql_status(10);
/// A panic inside the library was caught at the C boundary.
pub const QL_ERR_PANIC: ql_status = ql_status(11);
/// The listener is not running, so the call cannot be served (for example
/// `ql_listener_flush` on a stopped listener).
pub const QL_ERR_NOT_RUNNING: ql_status = ql_status(12);
/// The call is not supported here (for example a flush barrier on a queue
/// given as a vtable, which cannot carry one).
pub const QL_ERR_UNSUPPORTED: ql_status = ql_status(13);
/// The listener or queue was inherited from the parent process across
/// `fork()`: it belongs to the parent and cannot be used here (make a new
/// one in the child).
pub const QL_ERR_FORKED: ql_status = ql_status(14);
/// The call did its work (the listener stopped, the flush completed, the
/// listener was freed), but handlers counted records lost since the
/// previous `ql_stop`, `ql_stop_timeout` or `ql_listener_flush` returned:
/// read which and why with `ql_listener_handler_stats`.
pub const QL_ERR_LOST: ql_status = ql_status(15);
/// Out of memory: an allocation whose size the caller chose (a message,
/// fields, the arguments of a deferred format) or the queue's growth
/// failed. A record of `ql_log` & co. is dropped and counted in the
/// queue's dropped count; a program pointer stays the caller's. Nothing
/// else changed.
pub const QL_ERR_NOMEM: ql_status = ql_status(16);

/// What a `dequeue` callback reports. Any other value counts as
/// `QL_DEQUEUE_ERROR`.
pub type ql_dequeue_result = i32;
/// `*record_out` holds a record.
pub const QL_DEQUEUE_RECORD: ql_dequeue_result = 0;
/// The sentinel was taken: the listener acknowledges it and stops.
pub const QL_DEQUEUE_SENTINEL: ql_dequeue_result = 1;
/// Nothing to take: the listener loop ends cleanly (Python's `queue.Empty`).
pub const QL_DEQUEUE_EMPTY: ql_dequeue_result = 2;
/// The queue failed: counted, told to `on_error`, then tried again after a
/// short pause (the loop ends instead once a stop has been requested).
pub const QL_DEQUEUE_ERROR: ql_dequeue_result = 3;

/// What an `enqueue_sentinel` callback reports. Any other value counts as
/// `QL_ENQUEUE_ERROR`.
pub type ql_enqueue_result = i32;
/// The sentinel is on the queue.
pub const QL_ENQUEUE_OK: ql_enqueue_result = 0;
/// No room now; the library may try again later.
pub const QL_ENQUEUE_FULL: ql_enqueue_result = 1;
/// The queue failed.
pub const QL_ENQUEUE_ERROR: ql_enqueue_result = 2;

/// Where a failure told to `on_error` happened.
pub type ql_stage = i32;
/// `dequeue` returned `QL_DEQUEUE_ERROR`; `record` is NULL, `code` 0.
pub const QL_STAGE_DEQUEUE: ql_stage = 0;
/// `prepare` returned nonzero; no handler saw the record.
pub const QL_STAGE_PREPARE: ql_stage = 1;
/// The `handle` hook returned nonzero.
pub const QL_STAGE_HANDLE: ql_stage = 2;
/// The handler at `handler_index` returned nonzero.
pub const QL_STAGE_HANDLER: ql_stage = 3;

pub(crate) fn status_of(error: Error) -> ql_status {
    match error {
        Error::AlreadyStarted => QL_ERR_ALREADY_STARTED,
        Error::WouldDeadlock => QL_ERR_WOULD_DEADLOCK,
        Error::Full => QL_ERR_FULL,
        Error::Timeout => QL_ERR_TIMEOUT,
        Error::Queue => QL_ERR_QUEUE,
        Error::Thread => QL_ERR_THREAD,
        Error::Panicked => QL_ERR_PANIC,
        Error::NotRunning => QL_ERR_NOT_RUNNING,
        Error::Unsupported => QL_ERR_UNSUPPORTED,
        Error::Forked => QL_ERR_FORKED,
        Error::Lost(_) => QL_ERR_LOST,
    }
}

pub(crate) fn status_of_result(result: Result<(), Error>) -> ql_status {
    result.map_or_else(status_of, |()| QL_OK)
}

pub(crate) fn status_of_put<R>(result: Result<(), PutError<R>>) -> ql_status {
    match result {
        Ok(()) => QL_OK,
        Err(PutError::Full(_)) => QL_ERR_FULL,
        Err(PutError::Timeout(_)) => QL_ERR_TIMEOUT,
        Err(PutError::WouldDeadlock(_)) => QL_ERR_WOULD_DEADLOCK,
        Err(PutError::NoMem(_)) => QL_ERR_NOMEM,
    }
}

pub(crate) fn status_of_get(error: GetError) -> ql_status {
    match error {
        GetError::Empty => QL_ERR_EMPTY,
        GetError::Timeout => QL_ERR_TIMEOUT,
        GetError::Sentinel => QL_ERR_SENTINEL,
    }
}

/// The name and meaning of a status, for messages.
///
/// Takes any integer: an unknown value gives "unknown status". Returns a
/// static NUL-terminated string that must not be freed; never NULL (after
/// an internal panic, "panic inside queue_listener"). Any thread.
#[no_mangle]
pub extern "C" fn ql_status_str(status: ql_status) -> *const c_char {
    boundary(|| {
        let text = match status {
            QL_OK => c"QL_OK: success",
            QL_ERR_NULL => c"QL_ERR_NULL: a required pointer argument was NULL",
            QL_ERR_INVALID => c"QL_ERR_INVALID: invalid argument",
            QL_ERR_ALREADY_STARTED => c"QL_ERR_ALREADY_STARTED: the listener is already running",
            QL_ERR_WOULD_DEADLOCK => {
                c"QL_ERR_WOULD_DEADLOCK: the call would wait for the calling thread itself"
            }
            QL_ERR_FULL => c"QL_ERR_FULL: the queue is full",
            QL_ERR_TIMEOUT => c"QL_ERR_TIMEOUT: the deadline passed",
            QL_ERR_EMPTY => c"QL_ERR_EMPTY: the queue is empty",
            QL_ERR_SENTINEL => c"QL_ERR_SENTINEL: took the sentinel instead of a record",
            QL_ERR_QUEUE => c"QL_ERR_QUEUE: the queue reported an error",
            QL_ERR_THREAD => c"QL_ERR_THREAD: could not create the listener thread",
            QL_ERR_PANIC => c"QL_ERR_PANIC: a panic inside the library was caught",
            QL_ERR_NOT_RUNNING => c"QL_ERR_NOT_RUNNING: the listener is not running",
            QL_ERR_UNSUPPORTED => c"QL_ERR_UNSUPPORTED: not supported by this queue",
            QL_ERR_FORKED => c"QL_ERR_FORKED: inherited from the parent process across fork()",
            QL_ERR_LOST => {
                c"QL_ERR_LOST: done, but handlers counted records lost since the last stop or flush"
            }
            QL_ERR_NOMEM => {
                c"QL_ERR_NOMEM: out of memory: the record was not made (a record of ql_log is dropped and counted)"
            }
            _ => c"unknown status",
        };
        text.as_ptr()
    })
}
