//! Churn: connect, echo one line, half-close, EOF, over and over from many
//! threads. Asserts every cycle succeeds, no fd leaks, no connection is left
//! active, and the server's memory grows by at most 1 MiB over all cycles.

use std::time::{Duration, Instant};

use crate::common::drivers::churn_cycles;
use crate::common::*;

#[test]
fn churn() {
    let _g = serial();
    let cycles = scale(2000, 100_000);
    let threads = 50;
    let server = ServerProcess::start(&[]);
    // Warm up (allocator, slab) before taking the baseline.
    let (_, errs) = churn_cycles(server.addr, cycles / 20, threads);
    assert!(errs.is_empty(), "warm-up errors: {errs:?}");
    let (_, base_fds, _) = server.wait_settled(server.fd_count(), Duration::from_secs(10));
    let rss_before = server.rss_kib();
    let t0 = Instant::now();
    let (done, errs) = churn_cycles(server.addr, cycles, threads);
    let elapsed = t0.elapsed();
    let (st, fds, _) = server.wait_settled(base_fds, Duration::from_secs(20));
    let rss_after = server.rss_kib();
    figure(
        "churn",
        &format!(
            "{done}/{cycles} connect/echo/close cycles from {threads} clients in {:.1} s = {:.0} cycles/s, {} errors; fds {base_fds} -> {fds}, RSS {rss_before} -> {rss_after} KiB ({:+.1} B/cycle), active {}",
            elapsed.as_secs_f64(),
            done as f64 / elapsed.as_secs_f64(),
            errs.len(),
            (rss_after as f64 - rss_before as f64) * 1024.0 / cycles as f64,
            st.get("active"),
        ),
    );
    assert!(errs.is_empty(), "churn errors: {errs:?}");
    assert_eq!(done, cycles);
    assert_eq!(fds, base_fds, "fd leak");
    assert_eq!(st.get("active"), 0);
    assert!(
        rss_after <= rss_before + 1024,
        "RSS grew {rss_before} -> {rss_after} KiB over {cycles} cycles ({:.1} bytes per cycle): a leak",
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / cycles as f64
    );
}
