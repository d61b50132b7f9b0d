//! `ql_queue`: the built-in queue, for C.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use super::{
    boundary, ql_status, status_of_get, status_of_put, try_out, try_ref, RawRecord, QL_ERR_INVALID,
    QL_OK,
};
use crate::queue::{ChannelQueue, GetError};

/// The largest capacity `ql_queue_new` accepts: 16777216 (2^24) items.
pub const QL_QUEUE_MAX_CAPACITY: usize = 1 << 24;
const _: () = assert!(QL_QUEUE_MAX_CAPACITY == crate::queue::MAX_CAPACITY);

/// The built-in queue: a thread-safe FIFO of `void *` records, bounded or
/// unbounded, with its own sentinel (no record value is ever taken for it).
///
/// Reference-counted: `ql_queue_free` drops the program's reference, and
/// every listener made with `ql_listener_new_with_queue` holds its own, so a
/// queue freed while a listener still uses it stays alive until that
/// listener is freed.
///
/// Records are opaque pointers the program owns; the queue never reads or
/// frees them.
///
/// All `ql_queue_*` functions may be called from any thread at once, except
/// `ql_queue_free`, which must be the program's last use of its pointer.
pub struct ql_queue {
    pub(crate) inner: Arc<ChannelQueue<RawRecord>>,
}

/// Makes a built-in queue.
///
/// `capacity` is the most items (records plus sentinels) it holds; 0 means
/// unbounded. Bounded slots are allocated up front, so a capacity over
/// `QL_QUEUE_MAX_CAPACITY` is refused with `QL_ERR_INVALID`.
///
/// On success writes the new queue to `*queue_out` and returns `QL_OK`; the
/// caller owns it and frees it with `ql_queue_free`. On failure `*queue_out`
/// is left as it was. `QL_ERR_NULL` when `queue_out` is NULL.
///
/// # Safety
/// `queue_out` must be NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_new(capacity: usize, queue_out: *mut *mut ql_queue) -> ql_status {
    boundary(|| {
        let out = try_out!(queue_out);
        let Some(queue) = ChannelQueue::new(capacity) else {
            return QL_ERR_INVALID;
        };
        *out = Box::into_raw(Box::new(ql_queue {
            inner: Arc::new(queue),
        }));
        QL_OK
    })
}

/// Drops the program's reference to a queue. NULL is a no-op.
///
/// A listener made on this queue keeps its own reference, so freeing the
/// queue first is safe. Records still queued when the last reference goes
/// are forgotten, not freed: drain them with `ql_queue_get_nowait` first if
/// they own memory.
///
/// # Safety
/// `queue` must be NULL or a pointer from `ql_queue_new` not yet freed, and
/// no other thread may be using it.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_free(queue: *mut ql_queue) {
    boundary(|| {
        if !queue.is_null() {
            // SAFETY: `queue` came from `Box::into_raw` in `ql_queue_new`
            // and is freed once (the caller's promise).
            drop(unsafe { Box::from_raw(queue) });
        }
    })
}

/// Puts a record, waiting for room on a full bounded queue.
///
/// Returns `QL_OK` once the record is queued; the listener then owns it
/// until its `done` hook. On a listener thread (from a handler or hook) a
/// full queue returns `QL_ERR_WOULD_DEADLOCK` at once instead of waiting for
/// the thread that is waiting; the record was not put and stays the
/// caller's. `QL_ERR_NULL` when `queue` is NULL. `record` may be any value,
/// NULL included.
///
/// # Safety
/// `queue` must be NULL or a live queue from `ql_queue_new`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_put(queue: *const ql_queue, record: *mut c_void) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        status_of_put(queue.inner.put(RawRecord(record)))
    })
}

/// Puts a record only if there is room now: `QL_OK`, or `QL_ERR_FULL` (the
/// record stays the caller's), on any thread, listener threads included.
/// Never blocks. `QL_ERR_NULL` when `queue` is NULL.
///
/// # Safety
/// `queue` must be NULL or a live queue from `ql_queue_new`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_put_nowait(
    queue: *const ql_queue,
    record: *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        status_of_put(queue.inner.put_nowait(RawRecord(record)))
    })
}

/// Puts a record, waiting at most `timeout_ms` milliseconds for room:
/// `QL_OK`, or `QL_ERR_TIMEOUT` (the record stays the caller's). On a
/// listener thread a full queue returns `QL_ERR_WOULD_DEADLOCK` at once, as
/// `ql_queue_put` does. `QL_ERR_NULL` when `queue` is NULL.
///
/// # Safety
/// `queue` must be NULL or a live queue from `ql_queue_new`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_put_timeout(
    queue: *const ql_queue,
    record: *mut c_void,
    timeout_ms: u64,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        let timeout = Duration::from_millis(timeout_ms);
        status_of_put(queue.inner.put_timeout(RawRecord(record), timeout))
    })
}

fn get_into(got: Result<RawRecord, GetError>, out: &mut *mut c_void) -> ql_status {
    match got {
        Ok(record) => {
            *out = record.0;
            QL_OK
        }
        Err(e) => status_of_get(e),
    }
}

/// Takes the oldest record, waiting for one.
///
/// `QL_OK` writes it to `*record_out`; the caller owns it. When the oldest
/// item is a sentinel, it is removed and `QL_ERR_SENTINEL` is returned with
/// `*record_out` untouched. Meant for draining a queue no listener is
/// running on: a get competes with the listener for records.
///
/// # Safety
/// `queue` must be NULL or a live queue; `record_out` NULL or valid for one
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_get(
    queue: *const ql_queue,
    record_out: *mut *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        let out = try_out!(record_out);
        get_into(queue.inner.get(), out)
    })
}

/// Takes the oldest record if there is one: as `ql_queue_get`, but returns
/// `QL_ERR_EMPTY` at once when nothing is queued.
///
/// # Safety
/// As `ql_queue_get`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_get_nowait(
    queue: *const ql_queue,
    record_out: *mut *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        let out = try_out!(record_out);
        get_into(queue.inner.get_nowait(), out)
    })
}

/// Takes the oldest record, waiting at most `timeout_ms` milliseconds: as
/// `ql_queue_get`, or `QL_ERR_TIMEOUT`.
///
/// # Safety
/// As `ql_queue_get`.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_get_timeout(
    queue: *const ql_queue,
    timeout_ms: u64,
    record_out: *mut *mut c_void,
) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        let out = try_out!(record_out);
        get_into(
            queue.inner.get_timeout(Duration::from_millis(timeout_ms)),
            out,
        )
    })
}

/// Writes the number of items queued now (records and sentinels) to
/// `*len_out`. The value may be stale as soon as it is read.
///
/// # Safety
/// `queue` must be NULL or a live queue; `len_out` NULL or valid for one
/// write.
#[no_mangle]
pub unsafe extern "C" fn ql_queue_len(queue: *const ql_queue, len_out: *mut usize) -> ql_status {
    boundary(|| {
        let queue = try_ref!(queue);
        let out = try_out!(len_out);
        *out = queue.inner.len();
        QL_OK
    })
}
