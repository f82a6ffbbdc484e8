//! Fd exhaustion: the server's fd limit is lowered to 64 (prlimit) while
//! earlier clients are connected, then a swarm of new clients arrives and
//! holds on. Asserts the server survives, keeps serving the earlier clients
//! during and after, hits EMFILE repeatedly (accepts paused), warns about it
//! rate-limited rather than flooding the log, and serves every new client
//! once the holders close.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::drivers::Swarm;
use crate::common::*;
use crate::secs;

#[test]
fn fd_exhaustion() {
    let _g = serial();
    let n = scale(100, 500);
    let earlier_n = 20;
    let server = ServerProcess::start(&["--backlog", "1024"]);
    let mut earlier: Vec<TcpStream> = (0..earlier_n).map(|_| server.connect()).collect();
    for (i, s) in earlier.iter_mut().enumerate() {
        try_echo(s, format!("earlier {i} before\n").as_bytes()).expect("earlier echo");
    }
    let st = Command::new("prlimit")
        .arg("--pid")
        .arg(server.pid.to_string())
        .arg("--nofile=64:64")
        .status()
        .expect("run prlimit");
    assert!(st.success(), "prlimit failed");
    let fds_at_limit = server.fd_count();
    let t0 = Instant::now();
    // Phase 1: the new clients that get in hold their connections, so the
    // server keeps running into EMFILE for a while.
    let mut swarm = Swarm::new(server.addr, n, true);
    let pressure = secs(scale(1.5, 3.0));
    let deadline = t0 + Duration::from_secs(30);
    while swarm.echoed == 0 || t0.elapsed() < pressure {
        assert!(
            Instant::now() < deadline && swarm.failed == 0,
            "{} echoed, {} failed: {:?}",
            swarm.echoed,
            swarm.failed,
            swarm.errors(5)
        );
        swarm.step(Duration::from_millis(20));
    }
    let served_under_pressure = swarm.echoed;
    let mut earlier_ok_during = 0;
    for (i, s) in earlier.iter_mut().enumerate() {
        if try_echo(s, format!("earlier {i} during\n").as_bytes()).is_ok() {
            earlier_ok_during += 1;
        }
    }
    let pauses_under_pressure = server.stats().get("accept_pauses_fd");
    // Phase 2: they close; every new client must then be served.
    swarm.release();
    let deadline = Instant::now() + Duration::from_secs(scale(60, 120));
    while !swarm.settled() {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} new clients echoed ({} failed) by the deadline; {:?}",
            swarm.echoed,
            swarm.failed,
            swarm.errors(5)
        );
        swarm.step(Duration::from_millis(50));
    }
    let elapsed = t0.elapsed();
    let mut earlier_ok = 0;
    for (i, s) in earlier.iter_mut().enumerate() {
        if try_echo(s, format!("earlier {i} after\n").as_bytes()).is_ok() {
            earlier_ok += 1;
        }
    }
    let stats = server.stats();
    let warns = server.log.count(|l| l.contains("pausing accepts"));
    let mut server = server;
    let alive = server.is_running();
    figure(
        "fd-exhaustion",
        &format!(
            "nofile=64 with {fds_at_limit} fds in use, {n} clients: {served_under_pressure} served and holding, {pauses_under_pressure} EMFILE pauses in {:.1} s; server alive: {alive}, {earlier_ok_during}/{earlier_n} earlier clients echo during and {earlier_ok}/{earlier_n} after; {}/{n} new clients served in {:.2} s ({} failed); accept_pauses_fd={}, {warns} `pausing accepts` warn lines (rate-limited, not a flood)",
            pressure.as_secs_f64(),
            swarm.echoed,
            elapsed.as_secs_f64(),
            swarm.failed,
            stats.get("accept_pauses_fd"),
        ),
    );
    assert!(alive, "server died");
    assert_eq!(
        earlier_ok_during, earlier_n,
        "earlier clients lost during exhaustion"
    );
    assert_eq!(earlier_ok, earlier_n, "earlier clients lost");
    assert!(
        pauses_under_pressure >= 5,
        "EMFILE hit only {pauses_under_pressure} times under pressure"
    );
    assert_eq!(swarm.echoed, n, "errors: {:?}", swarm.errors(5));
    assert!(stats.get("accept_pauses_fd") >= 1, "EMFILE never hit");
    assert!(warns >= 1, "no `pausing accepts` warning logged");
    let allowed = 2 + elapsed.as_secs() as usize;
    assert!(
        warns <= allowed,
        "{warns} warn lines in {elapsed:?}: a flood, not rate-limited (allowed {allowed})"
    );
}
