//! echo-reactor: a TCP echo server built as one single-threaded mio reactor.
//!
//! # Layout
//! - [`config`]: the command-line options and their defaults.
//! - [`reactor`]: the poll loop, mechanism only: one turn in named steps
//!   (wait, timers, signals, events, run queue, accept, shutdown) over the
//!   slab of connections. Its module doc states the order rules.
//! - [`run_queue`]: connections that used their share of a turn, served
//!   in the next one.
//! - [`accept`]: accept policy: batches, the pause after `EMFILE`, the
//!   connection limit and its warnings.
//! - [`deadlines`]: when to look at a connection without an event (idle,
//!   end of lingering): two timing wheels and the handles, by slab key.
//! - [`shutdown`]: serving, draining or closing; which signals are one
//!   request.
//! - [`connection`]: one connection's state machine and buffers: read, echo,
//!   backpressure, half-close, lingering close; it reports its deadline.
//! - [`pending`]: the echo a socket has not taken yet.
//! - [`listener`]: the listening socket and the connection limit, at start.
//! - [`quit`]: the quit rule as pure code over byte chunks, no sockets.
//! - [`timers`]: a timing wheel.
//! - [`logging`]: log output that never blocks the loop, and rate-limited
//!   warnings.
//! - [`stats`]: the counters logged on SIGUSR1 and at exit.
#![forbid(unsafe_code)]

pub mod accept;
pub mod activation;
pub mod config;
pub mod connection;
pub mod deadlines;
pub mod endpoint;
pub mod listener;
pub mod logging;
pub mod pending;
pub mod proxy_header;
pub mod quit;
pub mod reactor;
pub mod run_queue;
pub mod shutdown;
pub mod stats;
pub mod timers;
pub mod udp;

pub use config::Config;
pub use reactor::Reactor;

/// "1 connection", "3 connections": for the log.
fn connections(n: usize) -> String {
    format!("{n} connection{}", if n == 1 { "" } else { "s" })
}
