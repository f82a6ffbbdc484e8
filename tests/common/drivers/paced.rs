//! `Probe` (64-byte ping-pong on a fixed tick), `Bulk` (a full-speed
//! transfer both ways at once) and `pin_current_thread`. The code is the
//! benchmark's, whose `fairness` measurement runs the same two clients: one
//! copy for both (tests depend on the project's sources, never the other
//! way round).

#[path = "../../../src/bin/echo-bench/paced.rs"]
mod shared;

// A test crate uses only some of these (see `common`).
#[allow(unused_imports)]
pub use shared::*;
