//! What the fuzzer checks beside each call: statuses against the
//! documentation, a stopped listener's counters, and the final accounting
//! once everything is freed.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use super::common::lock;
use super::objects::*;
use super::ops::*;
use super::support::*;
use super::world::*;
use queue_listener::ffi::listener::{ql_listener_is_running, ql_listener_stats, ql_stats, ql_stop};
use queue_listener::ffi::queue::{ql_queue, ql_queue_free};
use queue_listener::ffi::{ql_status, ql_status_str, QL_OK};

pub(crate) fn status_name(s: ql_status) -> String {
    // SAFETY: ql_status_str returns a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ql_status_str(s)) };
    format!("{} ({})", s.raw(), text.to_string_lossy())
}

impl Fuzzer {
    pub(crate) fn note(&self, what: String) {
        if self.verbose {
            eprintln!("  {what}");
        }
        let mut t = lock(&self.trace);
        if t.len() >= 60 {
            t.pop_front();
        }
        t.push_back(what);
    }

    pub(crate) fn expect(&self, what: &str, got: ql_status, allowed: &[ql_status]) -> ql_status {
        if !KNOWN_STATUSES.contains(&got.raw()) {
            self.world
                .violation(format!("{what}: unknown status {}", got.raw()));
        } else if !allowed.contains(&got) {
            self.world.violation(format!(
                "{what}: returned {}, expected one of {allowed:?}",
                status_name(got)
            ));
        }
        self.note(format!("{what} -> {}", got.raw()));
        got
    }

    /// Checks a joined listener's counters against what its callbacks saw.
    pub(crate) fn check_counters(&self, li: usize, slot: &LSlot) {
        let mut s = ql_stats::default();
        // SAFETY: a live listener, a valid out-pointer.
        let got = unsafe { ql_listener_stats(slot.ptr, &mut s) };
        self.expect("ql_listener_stats (final)", got, &[QL_OK]);
        COVER[C_DEQUEUE_ERRORS].fetch_add(s.dequeue_errors, Ordering::Relaxed);
        let c = &slot.shared;
        let w = &self.world;
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        if slot.has_done && load(&c.done) != s.handled + s.prepare_errors {
            w.violation(format!(
                "listener {li}: done called {} times, handled {} + prepare errors {}",
                load(&c.done),
                s.handled,
                s.prepare_errors
            ));
        }
        if slot.has_on_error
            && load(&c.on_error) != s.handler_errors + s.prepare_errors + s.dequeue_errors
        {
            w.violation(format!(
                "listener {li}: on_error called {} times, counters {s:?}",
                load(&c.on_error)
            ));
        }
        if slot.has_prepare && load(&c.prepare_failed) != s.prepare_errors {
            w.violation(format!(
                "listener {li}: prepare failed {} times, prepare_errors {}",
                load(&c.prepare_failed),
                s.prepare_errors
            ));
        }
        if slot.only_ours {
            let failed = if slot.has_handle_hook {
                load(&c.handle_hook_failed)
            } else {
                load(&c.handler_failed)
            };
            if failed != s.handler_errors {
                w.violation(format!(
                    "listener {li}: handlers failed {failed} times, handler_errors {}",
                    s.handler_errors
                ));
            }
        }
        if slot.has_prepare && slot.has_release && load(&c.released) != load(&c.replaced) {
            w.violation(format!(
                "listener {li}: prepare replaced {} records, release called {} times",
                load(&c.replaced),
                load(&c.released)
            ));
        }
    }

    /// Stops and frees everything, then checks every record's fate.
    pub(crate) fn finish(&mut self) {
        if let Some((stop, join)) = self.background.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = join.join();
        }
        for fake in &self.fakes {
            fake.chaos.store(false, Ordering::Relaxed);
        }
        for li in 0..self.listeners.len() {
            if self.listeners[li].is_none() {
                continue;
            }
            let l = self.listeners[li].as_ref().unwrap().ptr;
            for attempt in 0.. {
                // SAFETY: a live listener.
                let got = unsafe { ql_stop(l) };
                let allowed = self.queue_results(li);
                self.expect(&format!("ql_stop(listener {li}) final"), got, allowed);
                let mut running = true;
                // SAFETY: as above.
                unsafe { ql_listener_is_running(l, &mut running) };
                if !running || attempt > 20 {
                    break;
                }
            }
            self.free_listener(li, true);
        }
        for qi in 0..self.queues.len() {
            if self.queues[qi].freed {
                continue;
            }
            self.drain(qi);
            let handle = self.queues[qi].handle.clone();
            let mut p = handle.0.write().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: the program's pointer, freed once.
            unsafe { ql_queue_free(*p as *mut ql_queue) };
            *p = 0;
            self.queues[qi].freed = true;
        }
        // What is left in the program's own queues is the program's.
        for fake in &self.fakes {
            let items: Vec<FItem> = lock(&fake.items).drain(..).collect();
            for item in items {
                if let FItem::Rec(p) = item {
                    self.world
                        .give_back(p as *mut c_void, "drained (vtable queue)");
                }
            }
        }
        // Every record must have been given back, unless the program gave
        // up the means to.
        let mut lost = Vec::new();
        for rec in lock(&self.world.records).values() {
            if rec.freed.is_some() {
                continue;
            }
            let excused = match rec.home {
                Home::Queue(qi) => self.queues[qi].may_lose.load(Ordering::Relaxed),
                Home::Fake(fi) => self.lost_fakes.contains(&fi),
                Home::None => false,
            };
            if !excused {
                lost.push((rec.id, rec.kind, rec.home));
            }
        }
        lost.sort_by_key(|l| l.0);
        if !lost.is_empty() {
            self.world.violation(format!(
                "records never given back (id, kind, home): {:?}",
                &lost[..lost.len().min(10)]
            ));
        }
        let panics = CALLBACK_PANICS.swap(0, Ordering::Relaxed);
        if panics != 0 {
            self.world
                .violation(format!("{panics} callbacks panicked (a fuzzer bug)"));
        }
    }
}
