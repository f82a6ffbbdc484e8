//! echo-reactor: a TCP echo server built as one single-threaded mio reactor.
//!
//! # Layout
//! - [`config`]: the command-line options and their defaults.
//! - [`reactor`]: the poll loop: listener, slab of connections, accept
//!   batches, dispatch, timers, signals and shutdown. It knows nothing of
//!   the echo protocol.
//! - [`connection`]: one connection's state machine and buffers: read, echo,
//!   backpressure, half-close and lingering close.
//! - [`quit`]: the quit rule as pure code over byte chunks, no sockets.
//! - [`timers`]: a timing wheel for idle and linger deadlines.
//! - [`stats`]: the counters logged on SIGUSR1 and at exit.
#![forbid(unsafe_code)]

pub mod config;
pub mod connection;
pub mod quit;
pub mod reactor;
pub mod stats;
pub mod timers;

pub use config::Config;
pub use reactor::Server;
