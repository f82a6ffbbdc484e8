//! Slow readers: clients that write as fast as the server takes it and
//! never read their echo, beside normal clients doing 64-byte round trips.
//! Asserts that backpressure paused every slow reader, that the server's
//! memory stays within one `--max-buffer` per slow reader (plus 4 MiB), that
//! every normal client is still served, and that their p99 latency stays
//! within 10x of the p99 without slow readers (or 100 ms).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::drivers::{latency_clients, spawn_non_readers};
use crate::common::*;
use crate::{ms, secs};

#[test]
fn slow_readers() {
    let _g = serial();
    let max_buffer: u64 = 65536;
    let slow_n = 50;
    let normal_n = 50;
    let base_dur = secs(scale(1.0, 5.0));
    let load_dur = secs(scale(2.0, 10.0));
    let server = ServerProcess::start(&["--max-buffer", &max_buffer.to_string()]);
    let addr = server.addr;

    // Baseline latency without slow readers.
    let (base, _) = latency_clients(addr, normal_n, base_dur);
    let base_p50 = percentile(&base, 0.50);
    let base_p99 = percentile(&base, 0.99);
    let rss_before = server.rss_kib();

    // Slow readers: write as fast as they can, never read.
    let stop = Arc::new(AtomicBool::new(false));
    let slow_bytes = Arc::new(AtomicU64::new(0));
    let slow = spawn_non_readers(addr, slow_n, stop.clone(), slow_bytes.clone());
    // RSS sampler.
    let rss_peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let stop = stop.clone();
        let rss_peak = rss_peak.clone();
        let pid = server.pid;
        thread::spawn(move || {
            let hard = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kb) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    rss_peak.fetch_max(kb, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let (loaded, counts) = latency_clients(addr, normal_n, load_dur);
    // Every slow reader must have been paused by backpressure by now (on a
    // slow machine the kernel buffers may take longer to fill: wait, bounded).
    let mut st = server.stats();
    let t_wait = Instant::now();
    while st.get("backpressure_pauses") < slow_n as u64
        && t_wait.elapsed() < Duration::from_secs(30)
    {
        thread::sleep(Duration::from_millis(50));
        st = server.stats();
    }
    let rss_during = server.rss_kib();
    stop.store(true, Ordering::Relaxed);
    let per = slow.join().expect("slow readers panicked");
    sampler.join().unwrap();
    let peak = rss_peak.load(Ordering::Relaxed).max(rss_during);
    let growth_kib = peak.saturating_sub(rss_before);
    let allowed_kib = (slow_n as u64 * max_buffer) / 1024 + 4 * 1024;
    let p50 = percentile(&loaded, 0.50);
    let p99 = percentile(&loaded, 0.99);
    let min_count = counts.iter().copied().min().unwrap_or(0);
    let max_slow = per.iter().copied().max().unwrap_or(0);
    assert!(server.echo_check(b"still serving\n").is_ok());
    figure(
        "slow-readers",
        &format!(
            "{slow_n} slow readers wrote {:.1} MiB (max {:.0} KiB each, {} backpressure pauses); server RSS {} KiB -> peak {} KiB (+{} KiB, limit {} KiB = {slow_n} x max-buffer + 4 MiB); {normal_n} normal clients p50/p99 {:.2}/{:.2} ms vs {:.2}/{:.2} ms without slow readers, {} round trips (fewest per client {min_count})",
            mib(slow_bytes.load(Ordering::Relaxed)),
            max_slow as f64 / 1024.0,
            st.get("backpressure_pauses"),
            rss_before,
            peak,
            growth_kib,
            allowed_kib,
            ms(p50),
            ms(p99),
            ms(base_p50),
            ms(base_p99),
            loaded.len(),
        ),
    );
    assert!(
        growth_kib <= allowed_kib,
        "RSS grew {growth_kib} KiB > {allowed_kib} KiB"
    );
    assert!(min_count > 0, "a normal client got no echo at all");
    assert!(
        p99 <= (base_p99 * 10).max(Duration::from_millis(100)),
        "p99 {p99:?} with slow readers vs {base_p99:?} without"
    );
    assert!(st.get("backpressure_pauses") >= slow_n as u64);
}
