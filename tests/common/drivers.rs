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
