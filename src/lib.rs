//! echo-reactor: a TCP and UDP echo server built as one single-threaded
//! mio reactor.
//!
//! # Layout
//! - [`config`]: the command-line options and their defaults.
//! - [`reactor`]: the poll loop, mechanism only: one turn in named steps
//!   (wait, timers, signals, events, run queue, accept, shutdown) over the
//!   slab of connections, the listeners and the UDP sockets. Its module doc
//!   states the order rules; `reactor/setup.rs` builds it,
//!   `reactor/shutdown.rs` holds the shutdown steps.
//! - [`run_queue`]: connections and UDP sockets that used their share of a
//!   turn, served in the next one.
//! - [`accept`]: accept policy: a batch per listener per turn, listeners
//!   taking turns, the pause after `EMFILE`, the connection limit and its
//!   warnings.
//! - [`deadlines`]: when to look at a connection without an event (idle,
//!   end of lingering, PROXY header wait): two timing wheels and the
//!   handles, by slab key.
//! - [`shutdown`]: serving, draining or closing; which signals are one
//!   request.
//! - [`connection`]: one connection's state machine and buffers: PROXY
//!   header, read, echo, backpressure, half-close, lingering close; it
//!   reports its deadline.
//! - [`pending`]: the echo a socket has not taken yet.
//! - [`udp`]: one UDP echo socket: a share of datagrams per turn, the loop
//!   guard, drops counted.
//! - [`endpoint`]: the kinds of socket served (TCP, PROXY, UDP).
//! - [`listener`]: the sockets at start (bound to the flags, or passed in),
//!   their options, and the connection limit.
//! - [`activation`]: the sockets systemd passes in `LISTEN_FDS`, checked.
//! - [`proxy_header`]: the PROXY protocol header (via `ppp`) and
//!   `--proxy-trust` networks.
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
