//! queue_listener: Python's `logging.handlers.QueueListener` for C and C++.
//!
//! The crate has two layers:
//!
//! * the engine, in safe Rust: [`listener`] holds the listener state machine
//!   and the monitor loop (the whole life of a record), [`queue`] the
//!   built-in bounded/unbounded queue, [`log_queue`] the queue `ql_queue`
//!   wraps (its record pool, level and fork generation), `process` the
//!   exit registry and `fork()` handlers, [`output`] the output layer of the
//!   built-in sinks (formatting, exact accounting, files and rotation);
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
