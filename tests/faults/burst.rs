//! A burst of connects with loss: lost SYNs and SYN-ACKs cost their client a
//! retransmission (1 s, then 3 s, 7 s, 15 s after the first SYN), lost data
//! a retransmission timeout; every client still gets its echo and its EOF.

use std::time::{Duration, Instant};

use crate::common::{figure, percentile, scale, ServerProcess};
use crate::flows::{Flows, Shut};
use crate::netns::Netns;

/// Five lost handshakes in a row take a client to 31 s; more is a
/// one-in-a-billion event, not loss.
const BOUND: Duration = Duration::from_secs(40);
const LOSS_PCT: u32 = 3;

pub fn connect_burst(ns: &mut Netns) {
    ns.set_loss(LOSS_PCT);
    let n = scale(500, 2000);
    let server = ServerProcess::start(&[]);
    let t0 = Instant::now();
    let mut flows = Flows::connect(server.addr, n, 64, 64, Shut::WhenSent, 0xb065_7000);
    let issued = t0.elapsed();
    let done = flows.run_until(t0 + BOUND, |_| false);
    let mut connects: Vec<Duration> = flows
        .flows
        .iter()
        .filter_map(|f| f.connect_time())
        .collect();
    connects.sort();
    let retried = connects
        .iter()
        .filter(|d| **d >= Duration::from_secs(1))
        .count();
    let echoed: Vec<Duration> = flows
        .flows
        .iter()
        .filter_map(|f| f.echoed_at.map(|t| t - t0))
        .collect();
    let last_echo = echoed.iter().max().copied().unwrap_or_default();
    let (failed, first) = flows.failures(5);
    let st = server.stats_until(Duration::from_secs(10), |st| st.get("active") == 0 || !done);
    figure(
        "faults-connect-burst",
        &format!(
            "{n} clients connecting at once ({:.0} ms to issue) with {LOSS_PCT}% loss: {} echoed, {failed} failed; last echo {:.2} s; {retried} needed a SYN retry (connect >= 1 s); connect p50 {:.1} ms, p99 {:.0} ms, max {:.2} s; server accepted={} closed_client={}; {}",
            issued.as_secs_f64() * 1e3,
            echoed.len(),
            last_echo.as_secs_f64(),
            percentile(&connects, 0.5).as_secs_f64() * 1e3,
            percentile(&connects, 0.99).as_secs_f64() * 1e3,
            connects.last().copied().unwrap_or_default().as_secs_f64(),
            st.get("accepted"),
            st.get("closed_client"),
            ns.describe_drops(),
        ),
    );
    assert!(
        done,
        "{} of {n} clients not done within {BOUND:?}: {first:?}",
        flows.live()
    );
    assert_eq!(failed, 0, "clients without their echo and EOF: {first:?}");
    assert_eq!(st.get("accepted"), n as u64, "connections accepted");
    assert_eq!(st.get("closed_client"), n as u64, "closed by client EOF");
}
