//! Torture suite: load, faults and hostile clients against the real server
//! binary, one module per scenario, each printing one `FIGURE name: ...`
//! line with what it measured.
//!
//! Default sizes are short (for `make test`); `TORTURE_FULL=1` runs the full
//! sizes (`make torture`: release build, `--test-threads=1`). Scenarios run
//! one at a time even on several test threads (`serial`): they measure fds,
//! memory and timing of one server. Every loop is bounded in count and in
//! time; sockets carry timeouts so a hang fails the test instead of
//! blocking it.

#[path = "../common/mod.rs"]
mod common;

mod bulk_neighbour;
mod churn;
mod concurrency_limit;
mod fd_exhaustion;
mod hostile_input;
mod idle_half_open;
mod memory_budget;
mod random_chunking;
mod reset_storm;
mod signals;
mod slow_readers;
mod syscall_trace;

use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Milliseconds, for figures.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
