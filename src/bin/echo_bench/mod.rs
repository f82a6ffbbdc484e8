//! Modules of the `echo-bench` load generator (see `src/bin/echo-bench.rs`).

pub mod burst;
pub mod chart;
pub mod hold;
pub mod net;
pub mod procfs;
pub mod suite;
pub mod syscalls;
pub mod throughput;
