//! queue_listener: Python's `logging.handlers.QueueListener` for C and C++.
//!
//! The crate has two layers:
//!
//! * the engine, in safe Rust: [`listener`] the listener (its state
//!   machine, and in `listener/life.rs` the whole life of a record),
//!   [`queue`] the built-in queue, [`protocol`] the vocabulary they share
//!   (Python's three-method [`Queue`], [`Handler`]), [`threads`] who the
//!   calling thread is, [`log_queue`] the queue `ql_queue` wraps (its record
//!   pool, level and drop accounting), `process` the exit registry and
//!   `fork()` handlers, [`record`] and [`fields`] the built-in record,
//!   [`output`] the built-in sinks (formatting, exact accounting, files and
//!   rotation, syslog, journald);
//! * [`ffi`], the C ABI: pointer conversion, NULL checks, status codes and
//!   the panic boundary, and nothing else.
//!
//! The C header `include/queue_listener.h` is generated from [`ffi`] by
//! cbindgen.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod ffi;
pub mod fields;
pub mod listener;
pub mod log_queue;
pub mod output;
mod process;
pub mod protocol;
pub mod queue;
pub mod record;
pub mod threads;

pub use listener::{HandlerStats, Hooks, Listener, Source, Stage, Stats};
pub use protocol::{Dequeued, Error, Handler, Queue, SentinelPut};
pub use queue::ChannelQueue;
