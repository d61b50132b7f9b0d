//! The engine of queue_listener: Python's `logging.handlers.QueueListener`
//! in safe Rust (system calls aside), with the built-in queue, records and
//! sinks. The C ABI over it is the `queue-listener` crate (`src/ffi/` at the
//! top of the repository), which cbindgen reads alone.
//!
//! * [`listener`]: the listener (its state machine, and in
//!   `listener/life.rs` the whole life of a record);
//! * [`queue`]: the built-in queue; [`protocol`]: the vocabulary they share
//!   (Python's three-method [`Queue`], [`Handler`]); [`threads`]: who the
//!   calling thread is;
//! * [`log_queue`]: the queue C's `ql_queue` wraps (its record pool, level
//!   and drop accounting); [`process`]: the exit registry and `fork()`
//!   handlers; [`crash`]: the fatal-signal flush;
//! * [`record`] and [`fields`]: the built-in record; [`clock`]: its
//!   wall-clock time (the TSC where it is invariant);
//! * [`output`]: the built-in sinks (formatting, exact accounting, files
//!   and rotation, syslog, journald);
//! * [`printf`]: a printf-compatible formatter, byte-identical to glibc's
//!   `vsnprintf` in the C locale, for formatting on the listener.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod clock;
pub mod crash;
pub mod deferred;
pub mod fields;
pub mod listener;
pub mod log_queue;
pub mod output;
pub mod printf;
pub mod process;
pub mod protocol;
pub mod queue;
pub mod record;
pub mod threads;
mod tsan;

pub use listener::{HandlerStats, Hooks, Listener, Source, Stage, Stats};
pub use protocol::{Dequeued, Error, Handler, Queue, SentinelPut};
pub use queue::ChannelQueue;
