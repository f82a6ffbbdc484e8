//! Client drivers shared by several suites: client loops that load the
//! server the way a scenario needs and report what they saw. They panic only
//! when a run cannot go on (a connect that fails); what the echo should be
//! is for the scenario to assert, from what they report.
//!
//! - `chunking`: `ChunkRun`, many nonblocking clients sending random chunks
//!   with random pauses, both directions hashed
//! - `swarm`: `Swarm`, many nonblocking one-line clients connecting at once,
//!   closing after the echo or holding on until released
//! - `threads`: blocking client loops on threads: `latency_clients`,
//!   `churn_cycles`, `exchange`, `spawn_non_readers`
//! - `fleet`: `Fleet`, never-readers that write until the server holds
//!   them back, then read their echo and check every byte
//! - `poll_ready`: one poll of a mio client loop, as what each token may do
//! - `paced`: `Probe` (64-byte ping-pong on a fixed tick), `Bulk` (a
//!   full-speed transfer both ways at once), `pin_current_thread`

mod chunking;
mod fleet;
mod paced;
mod swarm;
mod threads;

// A test crate uses only some of these (see `common`).
#[allow(unused_imports)]
pub use self::{chunking::*, fleet::*, paced::*, swarm::*, threads::*};

/// One poll of a client loop, at most `wait` long: each ready token as
/// (token, may read, may write). An error or a closed side counts as both,
/// so the next read or write reports it.
pub fn poll_ready(
    poll: &mut mio::Poll,
    events: &mut mio::Events,
    wait: std::time::Duration,
) -> Vec<(usize, bool, bool)> {
    match poll.poll(events, Some(wait)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(e) => panic!("poll: {e}"),
    }
    events
        .iter()
        .map(|ev| {
            let err = ev.is_error();
            (
                ev.token().0,
                ev.is_readable() || ev.is_read_closed() || err,
                ev.is_writable() || ev.is_write_closed() || err,
            )
        })
        .collect()
}
