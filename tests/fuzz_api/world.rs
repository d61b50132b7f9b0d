//! The program's records, and what became of each: the ledger every
//! check reads.

use std::collections::{HashMap, HashSet};
use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use super::common::lock;
use super::support::*;
use queue_listener::ffi::record::{ql_record, ql_record_free, QL_MESSAGE_MAX};

// ---------------------------------------------------------------------------
// The program's records, and what became of each.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An opaque program record (`ql_queue_put`, or a vtable queue's).
    Prog,
    /// A `ql_record`-shaped record a `prepare` hook made.
    Prepared,
    /// A built-in record handed out by `ql_queue_get*` (freed with
    /// `ql_record_free`).
    Lib,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    None,
    /// On built-in queue number n.
    Queue(usize),
    /// On vtable queue number n.
    Fake(usize),
}

pub(crate) struct Rec {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) home: Home,
    /// How it was given back, once it was.
    pub(crate) freed: Option<&'static str>,
    /// The memory (kept until the end of the sequence, so that a bad pointer
    /// is reported instead of being a use-after-free).
    pub(crate) _prog: Option<Box<u64>>,
    pub(crate) _prepared: Option<PreparedMem>,
}

/// The memory of a prepared record. Its pointers are static strings.
pub(crate) struct PreparedMem(#[allow(dead_code)] pub(crate) Box<ql_record>);
// SAFETY: the record only points to static strings; it is never mutated.
unsafe impl Send for PreparedMem {}
// SAFETY: as above.
unsafe impl Sync for PreparedMem {}

pub(crate) struct World {
    pub(crate) rng: Mutex<Rng>,
    pub(crate) records: Mutex<HashMap<usize, Rec>>,
    pub(crate) next_id: AtomicU64,
    pub(crate) violations: Mutex<Vec<String>>,
    /// Built-in records logged: id → queue.
    pub(crate) logged: Mutex<HashMap<u64, usize>>,
    /// Built-in record ids seen in `done`.
    pub(crate) views_done: Mutex<HashSet<u64>>,
    /// Calls back into the library that callbacks may still make.
    pub(crate) reentry_budget: AtomicI64,
}

pub(crate) static PREPARED_LOGGER: &CStr = c"fz.prepared";
pub(crate) static PREPARED_MESSAGE: &CStr = c"prepared";

impl World {
    pub(crate) fn new(seed: u64) -> World {
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

    pub(crate) fn violation(&self, message: String) {
        let mut v = lock(&self.violations);
        if v.len() < 50 {
            v.push(message);
        }
    }

    pub(crate) fn chance(&self, percent: u64) -> bool {
        lock(&self.rng).pct(percent)
    }

    pub(crate) fn pick<T: Copy>(&self, items: &[T]) -> T {
        lock(&self.rng).pick(items)
    }

    pub(crate) fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new opaque program record, for `home`.
    pub(crate) fn new_prog(&self, home: Home) -> *mut c_void {
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
    pub(crate) fn new_prepared(&self) -> *mut c_void {
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
    pub(crate) fn is_ours(&self, p: *mut c_void) -> bool {
        lock(&self.records)
            .get(&(p as usize))
            .is_some_and(|r| r.kind != Kind::Lib || r.freed.is_none())
    }

    pub(crate) fn register_lib(&self, p: *mut c_void, home: Home) {
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
    pub(crate) fn give_back(&self, p: *mut c_void, how: &'static str) -> Option<Kind> {
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
    pub(crate) fn look(&self, p: *mut c_void, what: &str) -> Option<Kind> {
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
    pub(crate) fn check_record(
        &self,
        p: *mut c_void,
        builtin_queue: bool,
        what: &str,
    ) -> Option<u64> {
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
pub(crate) unsafe fn read_builtin(r: *const ql_record) -> Result<Option<u64>, String> {
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
