//! Concurrency limit: more clients than `--max-connections` arrive at once
//! and hold on. Asserts exactly the limit are served while they hold, active
//! connections and fds never exceed the limit, and every client is served
//! once the holders close.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::drivers::Swarm;
use crate::common::*;

#[test]
fn concurrency_limit() {
    let _g = serial();
    let n = scale(300, 1000);
    let limit = 100usize;
    let server = Arc::new(ServerProcess::start(&[
        "--max-connections",
        &limit.to_string(),
        "--backlog",
        "2048",
    ]));
    let base_fds = server.fd_count();
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new((AtomicUsize::new(0), AtomicU64::new(0), AtomicUsize::new(0)));
    let sampler = {
        let server = server.clone();
        let stop = stop.clone();
        let peaks = peaks.clone();
        thread::spawn(move || {
            let hard = Instant::now() + Duration::from_secs(150);
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                peaks.0.fetch_max(server.fd_count(), Ordering::Relaxed);
                if k % 20 == 0 {
                    peaks
                        .1
                        .fetch_max(server.stats().get("active"), Ordering::Relaxed);
                    peaks.2.fetch_add(1, Ordering::Relaxed);
                }
                k += 1;
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let t0 = Instant::now();
    let mut swarm = Swarm::new(server.addr, n, true);
    // Phase 1: everyone holds on; exactly `limit` get served.
    let deadline = t0 + Duration::from_secs(30);
    while swarm.echoed < limit && swarm.failed == 0 {
        assert!(Instant::now() < deadline, "only {} echoed", swarm.echoed);
        swarm.step(Duration::from_millis(50));
    }
    let hold_until = Instant::now() + Duration::from_millis(scale(300, 1000));
    while Instant::now() < hold_until {
        swarm.step(Duration::from_millis(20));
    }
    let held_echoed = swarm.echoed;
    let st_held = server.stats();
    let fds_held = server.fd_count();
    // Phase 2: each closes after its echo; all must be served.
    swarm.release();
    let deadline = Instant::now() + Duration::from_secs(scale(60, 120));
    while !swarm.settled() {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} echoed",
            swarm.echoed
        );
        swarm.step(Duration::from_millis(50));
    }
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (st, _, _) = server.wait_settled(base_fds, Duration::from_secs(10));
    let peak_fds = peaks.0.load(Ordering::Relaxed);
    let peak_active = peaks.1.load(Ordering::Relaxed).max(st_held.get("active"));
    figure(
        "concurrency-limit",
        &format!(
            "--max-connections {limit}, {n} clients at once: {}/{n} echoed in {:.2} s ({} failed); while all held: {held_echoed} served, active={}, fds +{}; peak active {peak_active} ({} samples), peak fds +{}, accept_pauses_limit={}",
            swarm.echoed,
            elapsed.as_secs_f64(),
            swarm.failed,
            st_held.get("active"),
            fds_held - base_fds,
            peaks.2.load(Ordering::Relaxed),
            peak_fds.saturating_sub(base_fds),
            st.get("accept_pauses_limit"),
        ),
    );
    assert_eq!(swarm.failed, 0, "{:?}", swarm.errors(5));
    assert_eq!(swarm.echoed, n);
    assert_eq!(held_echoed, limit, "served while {limit} were held");
    assert_eq!(st_held.get("active"), limit as u64);
    assert!(
        peak_active <= limit as u64,
        "active peaked at {peak_active}"
    );
    assert!(
        peak_fds <= base_fds + limit,
        "fds peaked at {peak_fds} (base {base_fds})"
    );
    assert_eq!(st.get("accepted"), n as u64);
}
