//! Memory budget: thousands of clients that write without ever reading
//! their echo, against `--max-memory`, beside a probe (a 64-byte ping-pong
//! every 5 ms) and newcomers connecting once the budget is spent; then the
//! never-readers read everything back.
//!
//! Figures: the server's RSS growth (its peak, `VmHWM`, over the whole run,
//! the never-readers' reading included; also the peak by the time they were
//! held back) against the budget, `pending_peak`, `memory_pauses`, the
//! probe's and the newcomers' echo times while the budget is spent, and how
//! long all the echo takes to come back once the never-readers read.
//!
//! Asserts: RSS growth within the budget + one read share (4 KiB) per
//! never-reader + `RSS_SLACK`; `pending_peak` within the budget + one read
//! share per never-reader; every byte back byte-exact; the probe's and the
//! newcomers' echo within `ECHO_BOUND` while the budget is spent; the
//! server alive and holding nothing at the end.
//!
//! The never-reader fleet is the one of `tests/memory_budget.rs`, at scale.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::drivers::{Fleet, Probe};
use crate::common::*;
use crate::{ms, secs, KIB, MIB};

/// The server's read share of one connection in one turn: the most one
/// connection can add to the held echo after the budget check let it read.
const READ_SHARE: u64 = 4 * KIB;
/// What the server may allocate beyond the echo it holds, whatever the
/// budget: each connection's state (2000 idle connections add 0.25 MiB of
/// RSS), the slab's doubling, the poll's event buffer, and the allocator's
/// chunk headers and free chunks between held buffers. Not room for echo
/// buffers' spare capacity: that grows with the budget.
const RSS_SLACK: u64 = 8 * MIB;
/// How long an echo may take while the budget is spent: a correctness
/// bound (the client is served at all), not a performance target.
const ECHO_BOUND: Duration = Duration::from_secs(2);
/// The most the fleet may take to fill the budget.
const FILL_LIMIT: Duration = Duration::from_secs(180);

/// `count` newcomers one after another: connect, one 64-byte echo,
/// half-close, clean EOF; each timed from the connect. Errors are returned.
fn newcomers(addr: SocketAddr, count: usize) -> Result<Vec<Duration>, String> {
    let mut times = Vec::with_capacity(count);
    for seq in 0..count {
        let mut msg = format!("newcomer {seq:06} ").into_bytes();
        msg.resize(63, b'.');
        msg.push(b'\n');
        let at = Instant::now();
        let result = (|| -> io::Result<()> {
            let mut s = try_connect(addr, IO_TIMEOUT)?;
            try_echo(&mut s, &msg)?;
            s.shutdown(Shutdown::Write)?;
            match s.read(&mut [0u8; 16])? {
                0 => Ok(()),
                n => Err(io::Error::other(format!("{n} bytes after the echo"))),
            }
        })();
        result.map_err(|e| format!("newcomer {seq}: {e}"))?;
        times.push(at.elapsed());
    }
    times.sort();
    Ok(times)
}

fn p50_p99(sorted: &[Duration]) -> String {
    format!(
        "{:.2}/{:.2} ms",
        ms(percentile(sorted, 0.50)),
        ms(percentile(sorted, 0.99))
    )
}

#[test]
fn memory_budget() {
    let _g = serial();
    let n = scale(200, 2000);
    let budget = scale(4 * MIB, 32 * MIB);
    let (nofile, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(
        nofile >= 2 * n as u64 + 64,
        "RLIMIT_NOFILE {nofile} is too low for {n} clients and the server's {n} sockets"
    );
    let mut server = ServerProcess::start(&["--max-memory", &format!("{}M", budget / MIB)]);
    let probe = Probe::start(server.addr, Duration::from_millis(5), secs(600.0), None);
    let started = wait_until(Duration::from_secs(10), Duration::from_millis(1), || {
        probe.echoes() >= 1
    });
    assert!(started, "the probe got no echo within 10 s");
    let rss_before = server.rss_kib();

    let fill_from = Instant::now();
    let mut fleet = Fleet::connect(server.addr, n);
    let held = fleet.fill_until_held(&server, FILL_LIMIT, |s| s["memory_pauses"] > 0);
    let spent_from = Instant::now();
    let hwm_held = status_field_kib(server.pid, "VmHWM:");
    let rss_held = server.rss_kib();

    // The budget is spent: newcomers, while the probe goes on.
    let newcomer_times = newcomers(server.addr, scale(20, 100));
    // A measurement window for the probe, not a wait for an event.
    std::thread::sleep(secs(scale(1.0, 3.0)));
    let spent_to = Instant::now();
    let still = server.stats();

    let drain_from = Instant::now();
    let all: Vec<usize> = (0..n).collect();
    let drained = fleet.drain(&all, secs(scale(60.0, 240.0)));
    let drain_took = drain_from.elapsed();
    let probe = probe.finish();
    let alive = server.is_running();
    let hwm_end = status_field_kib(server.pid, "VmHWM:");
    let rss_end = server.rss_kib();
    let last_echo = server.echo_check(b"still serving\n");
    let after = server.stats_until(IO_TIMEOUT, |s| s["active"] == 0);

    let fill_rtts = probe.rtts_between(fill_from, spent_from);
    let spent_rtts = probe.rtts_between(spent_from, spent_to);
    let growth = hwm_end.saturating_sub(rss_before) * KIB;
    let rss_limit = budget + n as u64 * READ_SHARE + RSS_SLACK;
    let peak_limit = budget + n as u64 * READ_SHARE;
    let newcomer_sorted = newcomer_times.clone().unwrap_or_default();
    let mib_k = |kib: u64| mib(kib * KIB);
    figure(
        "memory-budget",
        &format!(
            "{n} never-readers, --max-memory {} MiB: held after {:.1} s having written {:.1} MiB; \
             pending {:.2} MiB held, pending_peak {:.2} MiB (limit {:.2} = budget + {n} x 4 KiB), \
             memory_pauses {}, backpressure_pauses {}; server RSS {:.1} MiB before, peak {:.1} MiB \
             (+{:.1} MiB, limit {:.1} = budget + {n} x 4 KiB + {} MiB; when held: peak {:.1} MiB, \
             RSS {:.1} MiB; after the drain, with nothing held: {:.1} MiB); probe p50/p99 {} while \
             filling, {} with the budget spent ({} round trips, longest {:.2} ms); {} newcomers \
             p50/p99 {} (longest {:.2} ms); all {:.1} MiB back byte-exact in {:.2} s once read",
            budget / MIB,
            (spent_from - fill_from).as_secs_f64(),
            mib(fleet.sent()),
            mib(held["pending_bytes"]),
            mib(after["pending_peak"]),
            mib(peak_limit),
            after["memory_pauses"],
            after["backpressure_pauses"],
            mib_k(rss_before),
            mib_k(hwm_end),
            mib(growth),
            mib(rss_limit),
            RSS_SLACK / MIB,
            mib_k(hwm_held),
            mib_k(rss_held),
            mib_k(rss_end),
            p50_p99(&fill_rtts),
            p50_p99(&spent_rtts),
            spent_rtts.len(),
            ms(spent_rtts.last().copied().unwrap_or_default()),
            newcomer_sorted.len(),
            p50_p99(&newcomer_sorted),
            ms(newcomer_sorted.last().copied().unwrap_or_default()),
            mib(fleet.sent()),
            drain_took.as_secs_f64(),
        ),
    );

    assert!(alive, "the server exited; stderr:\n{}", server.log.tail(20));
    drained.unwrap();
    if let Some(e) = probe.err {
        panic!("probe: {e}");
    }
    let newcomer_times = newcomer_times.unwrap();
    last_echo.expect("a fresh client's echo after the drain");
    assert!(
        growth <= rss_limit,
        "server RSS grew {:.1} MiB at its peak > {:.1} MiB (budget {} MiB + {n} x 4 KiB + {} MiB)",
        mib(growth),
        mib(rss_limit),
        budget / MIB,
        RSS_SLACK / MIB
    );
    assert!(
        after["pending_peak"] <= peak_limit,
        "pending_peak {} > {peak_limit}: {after:?}",
        after["pending_peak"]
    );
    assert!(
        held["pending_bytes"] >= budget,
        "held back before the budget was spent: {held:?}"
    );
    assert!(
        still["pending_bytes"] >= budget,
        "the budget was no longer spent by the end of the window: {still:?}"
    );
    assert!(
        !spent_rtts.is_empty(),
        "no probe round trip with the budget spent"
    );
    let longest = (*spent_rtts.last().unwrap()).max(*newcomer_times.last().unwrap());
    assert!(
        longest <= ECHO_BOUND,
        "an echo took {longest:?} with the budget spent (probe or newcomer)"
    );
    assert_eq!(
        after["pending_bytes"], 0,
        "echo still held after every client read: {after:?}"
    );
    let moved = fleet.sent() + probe.sent + newcomer_times.len() as u64 * 64 + 14;
    assert_eq!(
        (after["bytes_in"], after["bytes_out"]),
        (moved, moved),
        "{after:?}"
    );
}
