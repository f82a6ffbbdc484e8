//! `burst` mode: N clients connect at the same instant (every socket is made
//! and bound first, then the connects are issued back to back), each sends
//! one line and waits for its echo. A client fails when its echo has not
//! come `timeout` after its own connect call. "last echo" is the time from
//! the first connect to the last echo: how long the server took to serve
//! the whole burst.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::procfs;
use super::stats::percentile;
use super::swarm::{Swarm, SwarmOpts};

#[derive(clap::Args)]
pub struct Opts {
    #[arg(short, long, default_value = "127.0.0.1:7007")]
    pub addr: SocketAddr,
    /// Clients.
    #[arg(short = 'n', long, default_value_t = 15)]
    pub clients: usize,
    /// A client fails without an echo this many seconds after its own connect.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Clients per loopback source address (127.0.0.1, .2, ...; 0: one source).
    #[arg(long, default_value_t = super::loadgen::PER_SOURCE)]
    pub per_source: usize,
    /// Server PID: report its RSS after the burst and at peak.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Milliseconds at a few quantiles.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Spread {
    pub first: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub last: Option<f64>,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Spread {
        v.sort_by(|a, b| a.total_cmp(b));
        Spread {
            first: v.first().copied(),
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            last: v.last().copied(),
        }
    }
}

/// One burst.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BurstReport {
    pub addr: String,
    pub clients: usize,
    /// Loopback source addresses the clients were spread over.
    pub sources: usize,
    pub timeout_s: f64,
    pub echoed: usize,
    pub failures: u64,
    pub failure_reasons: BTreeMap<String, u64>,
    /// Time to issue every connect, from the first.
    pub connects_issued_ms: f64,
    /// From each client's connect call to its connection.
    pub connect_ms: Spread,
    /// From the first connect of the burst to each echo (`last`: the whole
    /// burst served).
    pub echo_ms: Spread,
    /// From each client's own connect call to its echo.
    pub own_echo_ms: Spread,
    pub server_rss_kb: Option<u64>,
    pub server_peak_rss_kb: Option<u64>,
    /// Growth of the kernel's TCP counters (SYN retransmits, listen
    /// overflows), in this network namespace.
    pub tcp_counters_delta: BTreeMap<String, u64>,
}

pub fn run(o: &Opts) -> Result<BurstReport, String> {
    let timeout = Duration::from_secs_f64(o.timeout);
    let opts = SwarmOpts {
        per_source: o.per_source,
        in_flight: 0,
        send_on_connect: true,
        hold: false,
    };
    let mut swarm = Swarm::prepare(o.addr, o.clients, opts, |i| {
        format!("burst client {i:06}\n").into_bytes()
    })
    .map_err(|e| format!("socket: {e} (RLIMIT_NOFILE too low?)"))?;
    let tcp0 = procfs::tcp_counters();
    let t0 = Instant::now();
    swarm.connect_more();
    let issued = t0.elapsed();
    // Every client is settled by its own deadline; the bound only guards
    // against a clock that never gets there.
    let hard = Instant::now() + timeout + Duration::from_secs(5);
    let mut next_expiry = Instant::now();
    while !swarm.settled() && Instant::now() < hard {
        swarm.step(Duration::from_millis(50));
        if Instant::now() >= next_expiry {
            swarm.expire(timeout);
            next_expiry = Instant::now() + Duration::from_millis(100);
        }
    }
    swarm.expire(timeout);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let times = swarm.times();
    let report = BurstReport {
        addr: o.addr.to_string(),
        clients: o.clients,
        sources: match o.per_source {
            0 => 1,
            k => o.clients.div_ceil(k),
        },
        timeout_s: o.timeout,
        echoed: swarm.echoed,
        failures: swarm.failed as u64,
        failure_reasons: swarm.error_counts(),
        connects_issued_ms: ms(issued),
        connect_ms: Spread::of(times.iter().filter_map(|t| t.connected.map(ms)).collect()),
        echo_ms: Spread::of(
            times
                .iter()
                .filter_map(|t| t.echoed.map(|e| ms(t.connect_at - t0 + e)))
                .collect(),
        ),
        own_echo_ms: Spread::of(times.iter().filter_map(|t| t.echoed.map(ms)).collect()),
        server_rss_kb: o.pid.and_then(procfs::rss_kb),
        server_peak_rss_kb: o.pid.and_then(procfs::hwm_kb),
        tcp_counters_delta: procfs::tcp_delta(&tcp0),
    };
    drop(swarm);
    Ok(report)
}

pub fn print_human(r: &BurstReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.1}"));
    let e = &r.echo_ms;
    let _ = writeln!(
        o,
        "burst {} clients from {} source address(es): {} echoed, {} failed; echo ms from the first connect: first {}  p50 {}  p99 {}  last {} (connects issued in {:.1} ms)",
        r.clients, r.sources, r.echoed, r.failures, f(e.first), f(e.p50), f(e.p99), f(e.last),
        r.connects_issued_ms
    );
    let _ = writeln!(
        o,
        "from each client's own connect: connected p99 {} ms, echo p50 {} p99 {} max {} ms",
        f(r.connect_ms.p99),
        f(r.own_echo_ms.p50),
        f(r.own_echo_ms.p99),
        f(r.own_echo_ms.last)
    );
    if let Some(peak) = r.server_peak_rss_kb {
        let _ = writeln!(o, "server RSS peak {peak} KiB");
    }
    if r.failures > 0 {
        let _ = writeln!(o, "failure reasons: {:?}", r.failure_reasons);
    }
    let _ = writeln!(o, "kernel TCP counters (delta): {:?}", r.tcp_counters_delta);
    o
}
