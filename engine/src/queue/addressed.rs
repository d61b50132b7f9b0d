//! Addressed sentinels and flush barriers: the built-in queue's business.
//!
//! Several listeners may share one queue. Each sentinel and flush barrier is
//! addressed to the listener that put it: when another listener's thread
//! takes it, the queue holds it for its listener, which takes it before
//! anything else at its next take (and is woken for it if asleep). It was
//! at the head of the queue when taken, so its listener still meets it
//! behind every record put before it. Those of a listener that no longer
//! exists are dropped when taken. A sentinel a program's own get takes is
//! counted as vanished for its listener, whose stop then puts another.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};

use super::lanes::{Control, Refused, WhenFull};
use super::{ChannelQueue, Item};
use crate::protocol::{Error, SentinelPut};
use crate::threads::{current_listener, on_listener_thread};

/// A sentinel or flush barrier held for its listener.
#[derive(Debug, Clone, Copy)]
pub(super) enum Held {
    Sentinel,
    Barrier(u64),
}

/// Where one listener's sentinels and flush barriers are.
#[derive(Default)]
pub(super) struct Addressee {
    /// How many are in the channel now.
    queued: usize,
    /// Taken off the channel by another thread, waiting for this
    /// listener's next take, oldest first.
    held: VecDeque<Held>,
    /// Sentinels a program's get took, not yet reported to the listener.
    vanished: usize,
    /// The listener no longer exists: its items are dropped when taken.
    gone: bool,
    /// Wakes the listener's thread, asleep on an empty channel, when an
    /// item is held for it.
    wake: Option<(Sender<()>, Receiver<()>)>,
}

/// The addressees of a queue, by listener id.
#[derive(Default)]
pub(super) struct Book {
    listeners: HashMap<u64, Addressee>,
    /// The listener of each flush barrier in the channel, by barrier id.
    barriers: HashMap<u64, u64>,
}

thread_local! {
    /// The queue (address), listener and `held_version` this thread last
    /// looked in the book at.
    pub(super) static SEEN: Cell<(usize, u64, u64)> = const { Cell::new((0, 0, 0)) };
}

impl<R> ChannelQueue<R> {
    /// Tries once, without blocking, to put a sentinel addressed to the
    /// listener with id `listener`: whichever thread takes it off the
    /// channel, only that listener's thread gets it.
    pub(crate) fn enqueue_sentinel_for(&self, listener: u64) -> SentinelPut {
        // Booked first: a thread may take it as soon as it is in.
        self.booked(listener, None);
        if let Some(lanes) = &self.lanes {
            let put = self.lane_put(
                lanes,
                Some(Control::Sentinel(listener)),
                WhenFull::Refuse,
                |_| Some(0),
            );
            if put.is_ok() {
                return SentinelPut::Ok;
            }
            self.unbooked(listener, None);
            return SentinelPut::Full;
        }
        let put = match self.tx.try_send(Item::Sentinel(listener)) {
            Ok(()) => return SentinelPut::Ok,
            Err(TrySendError::Full(_)) => SentinelPut::Full,
            Err(TrySendError::Disconnected(_)) => SentinelPut::Error,
        };
        self.unbooked(listener, None);
        put
    }

    /// Puts flush barrier `id` of listener `listener` behind every queued
    /// record, waiting for room until `deadline` (`None`: for ever). `id`
    /// must be unique in the process (the listener takes them from one
    /// counter): the book knows a barrier's listener by its id alone.
    pub(crate) fn enqueue_barrier(
        &self,
        listener: u64,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let item = || Item::Barrier(id);
        // Never evicts, whatever the policy: the barrier exists to see the
        // records before it handled, not to drop them.
        self.booked(listener, Some(id));
        if let Some(lanes) = &self.lanes {
            let put = self.lane_put(
                lanes,
                Some(Control::Barrier(id)),
                WhenFull::Wait(deadline),
                |_| Some(0),
            );
            let failed = match put {
                Ok(()) => return Ok(()),
                Err(Refused::Full | Refused::Timeout | Refused::DroppedItself) => Error::Timeout,
                Err(Refused::WouldDeadlock) => Error::WouldDeadlock,
                // Out of memory: the queue could not take it.
                Err(Refused::NoMem) => Error::Queue,
            };
            self.unbooked(listener, Some(id));
            return Err(failed);
        }
        let failed = match self.tx.try_send(item()) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) if on_listener_thread() => Error::WouldDeadlock,
            Err(TrySendError::Full(_)) => {
                let sent = match deadline {
                    Some(deadline) => self.tx.send_deadline(item(), deadline),
                    None => self
                        .tx
                        .send(item())
                        .map_err(|e| SendTimeoutError::Disconnected(e.0)),
                };
                match sent {
                    Ok(()) => return Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => Error::Timeout,
                    Err(SendTimeoutError::Disconnected(_)) => Error::Queue,
                }
            }
            Err(TrySendError::Disconnected(_)) => Error::Queue,
        };
        self.unbooked(listener, Some(id));
        Err(failed)
    }

    /// Sentinels addressed to `listener` that a program's get (not a
    /// listener) took off the queue since the last call, so that its stop
    /// stops counting on them.
    pub(crate) fn take_vanished_sentinels(&self, listener: u64) -> usize {
        match self.book().listeners.get_mut(&listener) {
            Some(addressee) => std::mem::take(&mut addressee.vanished),
            None => 0,
        }
    }

    /// The listener with this id no longer exists: its sentinels and
    /// barriers still queued are dropped when taken.
    pub(crate) fn forget_listener(&self, listener: u64) {
        let mut book = self.book();
        let Some(addressee) = book.listeners.get_mut(&listener) else {
            return;
        };
        if addressee.queued == 0 {
            book.listeners.remove(&listener);
        } else {
            // Items still in the channel are dropped as they are taken.
            *addressee = Addressee {
                queued: addressee.queued,
                gone: true,
                ..Addressee::default()
            };
        }
    }

    pub(super) fn book(&self) -> MutexGuard<'_, Book> {
        // The book is consistent after every step: a panic elsewhere while
        // it was locked leaves nothing half done.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The receiver that wakes listener `me`'s thread, or `None` when an
    /// item is already held for it (take it instead of sleeping).
    pub(super) fn wake_for(&self, me: u64) -> Option<Receiver<()>> {
        let mut book = self.book();
        let addressee = book.listeners.entry(me).or_default();
        if !addressee.held.is_empty() {
            return None;
        }
        let (_, rx) = addressee.wake.get_or_insert_with(|| bounded(1));
        Some(rx.clone())
    }

    /// True when an item may have been held for some listener since this
    /// thread last looked in the book (on a listener's thread only).
    #[inline]
    pub(super) fn new_holds(&self) -> bool {
        let version = self.held_version.load(Ordering::Relaxed);
        if version == 0 {
            return false;
        }
        let me = current_listener();
        me != 0 && SEEN.with(|seen| seen.get() != (self as *const Self as usize, me, version))
    }

    /// The item held for listener `me` to take first, if any: its first
    /// barrier, else its oldest sentinel.
    ///
    /// Markers go first: two items of one listener taken by two threads
    /// can be booked in either order, and a barrier served early is still
    /// served after every record before it (it was at the head of the
    /// queue when taken), while a sentinel served first would end the run
    /// and leave the barrier's flush unserved.
    pub(super) fn take_held(&self, me: u64) -> Option<Item<R>> {
        if me == 0 {
            return None;
        }
        let version = self.held_version.load(Ordering::Relaxed);
        let mut book = self.book();
        let control = book.listeners.get_mut(&me).and_then(|addressee| {
            let held = &mut addressee.held;
            let first = held
                .iter()
                .position(|c| matches!(c, Held::Barrier(_)))
                .unwrap_or(0);
            held.remove(first)
        });
        if book.listeners.get(&me).is_none_or(|a| a.held.is_empty()) {
            // Nothing more for this thread up to `version`.
            SEEN.with(|seen| seen.set((self as *const Self as usize, me, version)));
        }
        Some(match control? {
            Held::Sentinel => Item::Sentinel(me),
            Held::Barrier(id) => Item::Barrier(id),
        })
    }

    /// Books `held`, addressed to `owner`, as taken off the channel by
    /// this thread. True when the caller gets it: it is the caller's own,
    /// or a sentinel taken by a program's get (then counted as vanished).
    /// Otherwise it is held for its listener, or dropped when the listener
    /// is gone.
    pub(super) fn arrived(&self, owner: u64, held: Held) -> bool {
        let me = current_listener();
        let mut book = self.book();
        let owner = match held {
            Held::Sentinel => owner,
            Held::Barrier(id) => match book.barriers.remove(&id) {
                Some(owner) => owner,
                None => return false,
            },
        };
        let Some(addressee) = book.listeners.get_mut(&owner) else {
            // Never booked: nobody can be waiting for it.
            return owner == me && me != 0;
        };
        addressee.queued = addressee.queued.saturating_sub(1);
        let mine = if owner == me {
            true
        } else if addressee.gone {
            false
        } else if me == 0 && matches!(held, Held::Sentinel) {
            addressee.vanished += 1;
            true
        } else {
            addressee.held.push_back(held);
            self.held_version.fetch_add(1, Ordering::Relaxed);
            if let Some((wake, _)) = &addressee.wake {
                // Full means a wake is already pending.
                let _ = wake.try_send(());
            }
            false
        };
        if addressee.gone && addressee.queued == 0 {
            book.listeners.remove(&owner);
        }
        mine
    }

    /// Counts one more item of `owner` in the channel, before it is sent.
    /// A barrier's id is booked with it.
    pub(super) fn booked(&self, owner: u64, barrier: Option<u64>) {
        let mut book = self.book();
        book.listeners.entry(owner).or_default().queued += 1;
        if let Some(id) = barrier {
            book.barriers.insert(id, owner);
        }
    }

    /// Takes back [`ChannelQueue::booked`] after a send that failed.
    pub(super) fn unbooked(&self, owner: u64, barrier: Option<u64>) {
        let mut book = self.book();
        if let Some(id) = barrier {
            book.barriers.remove(&id);
        }
        if let Some(addressee) = book.listeners.get_mut(&owner) {
            addressee.queued = addressee.queued.saturating_sub(1);
            if addressee.gone && addressee.queued == 0 {
                book.listeners.remove(&owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Dequeued;
    use crate::queue::GetError;
    use crate::threads::as_listener_thread;

    /// Two items of listener 7, a barrier then a sentinel, taken by two
    /// other threads that book them in the other order: 7 is served the
    /// barrier first (its flush completes), then the sentinel.
    #[test]
    fn a_held_barrier_is_served_before_a_held_sentinel() {
        let q = ChannelQueue::<u32>::new(0).unwrap();
        q.booked(7, None);
        q.booked(7, Some(1));
        // The sentinel, by listener 9's thread: held for 7.
        assert!(!as_listener_thread(9, || q.arrived(7, Held::Sentinel)));
        // The barrier, by a program's get: held for 7.
        assert!(!q.arrived(7, Held::Barrier(1)));
        // Neither is another listener's to take.
        assert_eq!(
            as_listener_thread(9, || q.dequeue_for(false, &mut || {})),
            Dequeued::Empty
        );
        assert_eq!(q.get_nowait(), Err(GetError::Empty));
        as_listener_thread(7, || {
            assert_eq!(q.dequeue_for(false, &mut || {}), Dequeued::Barrier(1));
            assert_eq!(q.dequeue_for(false, &mut || {}), Dequeued::Sentinel);
            assert_eq!(q.dequeue_for(false, &mut || {}), Dequeued::Empty);
        });
    }

    /// What is held for a listener that is then forgotten is dropped, and
    /// what it still has in the channel is dropped when taken, by anyone.
    #[test]
    fn a_forgotten_listeners_items_are_dropped() {
        let q = ChannelQueue::<u32>::new(0).unwrap();
        assert_eq!(q.enqueue_sentinel_for(7), SentinelPut::Ok);
        q.put(1).unwrap();
        assert_eq!(q.enqueue_sentinel_for(7), SentinelPut::Ok);
        as_listener_thread(9, || {
            // 9 takes 7's first sentinel (held for 7), then record 1.
            assert_eq!(q.dequeue_for(false, &mut || {}), Dequeued::Record(1));
        });
        q.forget_listener(7);
        assert!(q.book().listeners.contains_key(&7), "one still queued");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get_nowait(), Err(GetError::Empty));
        assert_eq!(q.len(), 0);
        assert!(
            q.book().listeners.is_empty(),
            "the entry goes with the last"
        );
        as_listener_thread(7, || {
            assert_eq!(q.dequeue_for(false, &mut || {}), Dequeued::Empty)
        });
    }
}
