//! `Swarm`: many nonblocking one-line clients on one mio poll, connecting
//! at once, closing after the echo or holding on until released. The code
//! is the benchmark's, whose `burst` and `hold` drive the same clients: one
//! copy for both (tests depend on the project's sources, never the other
//! way round).

#[path = "../../../src/bin/echo-bench/swarm.rs"]
mod shared;

// A test crate uses only some of these (see `common`).
#[allow(unused_imports)]
pub use shared::Swarm;
