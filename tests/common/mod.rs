//! Shared helpers for the integration tests: run the real `echo-reactor`
//! binary on port 0 (or a prepared command that is the server), follow its
//! stderr log, send it signals, ask it for stats (SIGUSR1), talk to it over
//! real sockets with timeouts (a hang fails the test instead of blocking it),
//! look at the process through /proc, and generate and hash test data.
//!
//! Nothing here knows a particular test; any test file can `mod common;`.
//!
//! - `server`: the `ServerProcess`, `run_to_exit`, `send_signal`
//! - `log`: a child's output line by line (`Log`), `stats:` lines (`Stats`)
//! - `client`: connecting, reading, echo checks, refusal checks
//! - `procfs`: threads, fds, RSS and TCP queues from /proc
//! - `data`: deterministic payloads, random numbers, stream hashes
//! - `quit_reference`: the quit rule written plainly (the fuzz target's too)
//! - `util`: polling, scratch dirs, free ports, torture sizes and figures
//! - `haproxy`: real HAProxy in front of the server
//! - `drivers`: client loops for load and latency (`common::drivers::*`)
#![allow(dead_code)]

mod client;
mod data;
pub mod drivers;
mod haproxy;
mod log;
mod procfs;
mod quit_reference;
mod server;
mod util;

// Every test crate uses only some of these: a glob it does not use is not
// an error (the `unused_imports` counterpart of `dead_code` above).
#[allow(unused_imports)]
pub use self::{
    client::*, data::*, haproxy::*, log::*, procfs::*, quit_reference::*, server::*, util::*,
};

use std::time::Duration;

/// The server binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_echo-reactor");

/// Read, write and connect timeout of client sockets, and the bound on
/// most waits: long enough for a loaded machine, short enough that a hang
/// fails the test in reasonable time.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the server may take to print `listening on`, or a run-to-exit
/// invocation to finish.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
