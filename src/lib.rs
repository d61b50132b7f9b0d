//! queue_listener: Python's `logging.handlers.QueueListener` for C and C++.
//!
//! This crate is the C skin: [`ffi`], pointer conversion, NULL checks,
//! status codes and the panic boundary, and nothing else. Everything it
//! does is a call into the engine, the `queue-listener-engine` crate
//! (`engine/` in the repository), re-exported here for Rust programs and
//! tests. The C header `include/queue_listener.h` is generated from [`ffi`]
//! by cbindgen, which reads this crate only.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod ffi;

pub use queue_listener_engine::{
    clock, crash, deferred, fields, listener, log_queue, output, printf, process, protocol, queue,
    record, threads,
};
pub use queue_listener_engine::{
    ChannelQueue, Dequeued, Error, Handler, HandlerStats, Hooks, Listener, Queue, SentinelPut,
    Source, Stage, Stats,
};
