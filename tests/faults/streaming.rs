//! Many clients streaming at once over the slow link with loss: each
//! writes and reads concurrently, and every byte must come back exactly
//! (both directions hashed), however the loss and the queue cut and delay
//! the segments.

use std::time::{Duration, Instant};

use crate::common::{figure, mib, scale, ServerProcess};
use crate::flows::{Flows, Shut};
use crate::netns::Netns;

const KIB: u64 = 1024;

pub fn streaming_echo(ns: &mut Netns) {
    ns.slow_link();
    ns.set_loss(2);
    let n = scale(50, 100);
    let each = scale(128, 256) * KIB;
    let bound = Duration::from_secs(scale(60, 120));
    let server = ServerProcess::start(&[]);
    let t0 = Instant::now();
    let mut flows = Flows::connect(server.addr, n, each, 64 * 1024, Shut::WhenSent, 0x57e4_0001);
    let done = flows.run_until(t0 + bound, |_| false);
    let elapsed = t0.elapsed();
    let (failed, first) = flows.failures(5);
    let retried = flows
        .flows
        .iter()
        .filter(|f| {
            f.connect_time()
                .is_some_and(|d| d >= Duration::from_secs(1))
        })
        .count();
    let (sent, echoed) = (flows.sent(), flows.echoed());
    let st = server.stats_until(Duration::from_secs(10), |st| st.get("active") == 0 || !done);
    figure(
        "faults-streaming",
        &format!(
            "{n} clients x {} KiB, writing and reading at once, over {}: {:.1} MiB verified by hash each way, {failed} failed clients, {} bytes lost; {:.1} s ({:.1} MiB/s each way); {retried} connects needed a SYN retry; server bytes_in={} bytes_out={}; {}",
            each / KIB,
            ns.describe(),
            mib(echoed),
            sent - echoed.min(sent),
            elapsed.as_secs_f64(),
            mib(echoed) / elapsed.as_secs_f64(),
            st.get("bytes_in"),
            st.get("bytes_out"),
            ns.describe_drops(),
        ),
    );
    assert!(
        done,
        "{} of {n} clients not done within {bound:?}: {first:?}",
        flows.live()
    );
    assert_eq!(failed, 0, "failed clients: {first:?}");
    assert_eq!(sent, n as u64 * each, "bytes sent");
    assert_eq!(st.get("bytes_in"), sent, "server bytes_in");
    assert_eq!(st.get("bytes_out"), echoed, "server bytes_out");
}
