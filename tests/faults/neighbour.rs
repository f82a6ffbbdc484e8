//! A bulk client beside an interactive one on the slow link: both share the
//! one tbf queue, so the probe's round trips wait behind the bulk client's
//! queued segments. Correctness is asserted (every echo exact); the round
//! trips are figures, not pass/fail (performance targets are not timed
//! tests).

use std::thread;
use std::time::{Duration, Instant};

use crate::common::drivers::{Bulk, Probe};
use crate::common::{figure, mib, percentile, scale, wait_until, ServerProcess};
use crate::netns::Netns;

const TICK: Duration = Duration::from_millis(2);
const CHUNK: usize = 256 * 1024;
const LIMIT: Duration = Duration::from_secs(90);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn bulk_neighbour(ns: &mut Netns) {
    ns.slow_link();
    let window = Duration::from_secs_f64(scale(1.5, 5.0));
    let server = ServerProcess::start(&[]);
    let probe = Probe::start(server.addr, TICK, LIMIT, None);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(5), || {
            probe.echoes() > 0
        }),
        "the probe got no echo within 20 s"
    );
    // Measuring windows: the probe runs on its own clock meanwhile.
    let alone_from = Instant::now();
    thread::sleep(window);
    let alone_to = Instant::now();
    let bulk = Bulk::start(server.addr, CHUNK, LIMIT, None);
    // The bulk client at full speed: its queue in tbf is built up.
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(5), || {
            bulk.echoed() >= 4 * CHUNK as u64
        }),
        "the bulk client got no 1 MiB echo within 20 s"
    );
    let beside_from = Instant::now();
    let echoed_from = bulk.echoed();
    thread::sleep(window);
    let beside_to = Instant::now();
    let bulk_rate = mib(bulk.echoed() - echoed_from) / (beside_to - beside_from).as_secs_f64();
    let bulk_report = bulk.finish();
    let log = probe.finish();
    let alone = log.rtts_between(alone_from, alone_to);
    let beside = log.rtts_between(beside_from, beside_to);
    figure(
        "faults-bulk-neighbour",
        &format!(
            "64 B probe every {} ms over {}: alone p50 {:.2} ms p99 {:.2} ms ({} round trips); beside a bulk client writing {} KiB chunks ({:.1} MiB/s echoed): p50 {:.2} ms p99 {:.2} ms ({} round trips, {} ticks missed overall); bulk {:.1} MiB echoed exactly",
            ms(TICK),
            ns.describe(),
            ms(percentile(&alone, 0.5)),
            ms(percentile(&alone, 0.99)),
            alone.len(),
            CHUNK / 1024,
            bulk_rate,
            ms(percentile(&beside, 0.5)),
            ms(percentile(&beside, 0.99)),
            beside.len(),
            log.missed_ticks,
            mib(bulk_report.echoed),
        ),
    );
    assert_eq!(log.err, None, "probe");
    assert_eq!(bulk_report.err, None, "bulk client");
    assert!(bulk_report.eof, "bulk client: no EOF after its echo");
    assert_eq!(
        bulk_report.echoed, bulk_report.sent,
        "bulk client: echo length"
    );
    assert!(
        !alone.is_empty() && !beside.is_empty(),
        "probe round trips: {} alone, {} beside the bulk client",
        alone.len(),
        beside.len()
    );
}
