//! Modules of the `echo-bench` load generator (see `src/bin/echo-bench.rs`).

pub mod burst;
pub mod chart;
pub mod hold;
pub mod net;
// Shared with the integration tests, which use readers the benchmark does not.
#[allow(dead_code)]
pub mod procfs;
pub mod suite;
pub mod syscalls;
pub mod throughput;

#[cfg(test)]
mod tests {
    use super::procfs::*;

    #[test]
    fn procfs_reads_own_process() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        assert!(hwm_kb(me).unwrap() >= rss_kb(me).unwrap() / 2);
        assert!(cpu_ticks(me).is_some());
        assert!(fd_count(me).unwrap() >= 3);
        assert!(thread_count(me).unwrap() >= 1);
        assert!(clk_tck() > 0);
    }
}
