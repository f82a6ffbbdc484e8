//! `throughput` mode: C connections, each sends one L-byte message and waits
//! for its complete echo before sending the next, for T seconds (the client
//! loop is `loadgen`).
//!
//! Timeline: connect all, warm up, let every request finish (server idle),
//! snapshot the server's CPU time and attach the syscall counter, run the
//! measured window, stop issuing, wait for the last echoes, snapshot again.
//! So CPU seconds and syscalls cover exactly the requests counted.
//!
//! `interleave` runs the same windows against several servers at once, in
//! turn: round after round, each server gets one window while the others
//! sit idle, in a different order each round. Servers measured a second
//! apart share whatever else the machine is doing, which a comparison of
//! separate runs minutes apart does not.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::loadgen::{Gen, Window};
use super::syscalls::{self, Method};

/// Round-trip times of the measured window, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One throughput run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ThroughputReport {
    pub addr: String,
    pub connections: usize,
    pub connected: usize,
    pub connect_ms: f64,
    pub message_bytes: usize,
    /// The measured window, from the first request to the last echo.
    pub seconds: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub latency_us: Option<Latency>,
    pub verified_bytes: u64,
    /// Connections that failed, and echoes that differed from the request.
    pub errors: u64,
    pub mismatches: u64,
    pub first_error: Option<String>,
    /// The server's CPU seconds (utime + stime, all threads) in the window.
    pub server_cpu_secs: Option<f64>,
    pub server_cpu_util: Option<f64>,
    pub requests_per_cpu_sec: Option<f64>,
    pub loadgen_cpu_util: Option<f64>,
    pub syscall_method: String,
    pub syscalls: Option<u64>,
    pub syscalls_per_request: Option<f64>,
    pub server_rss_kb: Option<u64>,
    pub server_peak_rss_kb: Option<u64>,
    /// Retransmission timeouts (`TcpExt.TCPTimeouts`) during the window, in
    /// the namespace: a segment lost on loopback (its backlog overflowed
    /// while the machine was busy) stalls a client for 200 ms or more.
    #[serde(default)]
    pub tcp_timeouts: Option<u64>,
}

#[derive(clap::Args)]
pub struct Opts {
    /// Server address (loopback only).
    #[arg(short, long, default_value = "127.0.0.1:7007")]
    pub addr: SocketAddr,
    /// Connections.
    #[arg(
        short = 'c',
        long = "connections",
        value_name = "CONNECTIONS",
        default_value_t = 50
    )]
    pub conns: usize,
    /// Message length in bytes (the last byte is a newline).
    #[arg(
        short = 'l',
        long = "length",
        value_name = "LENGTH",
        default_value_t = 512
    )]
    pub len: usize,
    /// Measured seconds.
    #[arg(
        short = 't',
        long = "seconds",
        value_name = "SECONDS",
        default_value_t = 10.0
    )]
    pub secs: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Server PID: report its CPU time, requests per CPU-second, RSS and syscalls.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Syscall counter when --pid is given: auto, perf, strace or none.
    #[arg(long, default_value = "none")]
    pub syscalls: Method,
    /// Send each connection's next request as soon as its echo is in
    /// (default: after reading every echo of the poll batch).
    #[arg(long)]
    pub immediate: bool,
}

/// Several servers measured in turn, window by window.
pub struct InterleaveOpts {
    /// Each server's address and PID.
    pub targets: Vec<(SocketAddr, Option<u32>)>,
    pub conns: usize,
    pub len: usize,
    /// Seconds of each window.
    pub secs: f64,
    pub warmup: f64,
    pub rounds: usize,
    /// The number of the first round: the order of servers rotates with it.
    pub first_round: usize,
}

/// One server's windows, round by round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TargetWindows {
    pub addr: String,
    pub windows: Vec<ThroughputReport>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InterleavedReport {
    pub rounds: usize,
    pub targets: Vec<TargetWindows>,
}

fn report(
    g: &Gen,
    addr: SocketAddr,
    o: (usize, usize),
    connect_ms: f64,
    w: Window,
    method: &str,
) -> ThroughputReport {
    let (conns, len) = o;
    let reqs = w.requests;
    let q = |p: f64| w.hist.value_at_quantile(p) as f64 / 1000.0;
    let latency_us = (reqs > 0).then(|| Latency {
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        p999: q(0.999),
        max: w.hist.max() as f64 / 1000.0,
        mean: w.hist.mean() / 1000.0,
    });
    ThroughputReport {
        addr: addr.to_string(),
        connections: conns,
        connected: g.connected(),
        connect_ms,
        message_bytes: len,
        seconds: w.secs,
        requests: reqs,
        requests_per_sec: reqs as f64 / w.secs,
        latency_us,
        verified_bytes: g.verified,
        errors: g.errors,
        mismatches: g.mismatches,
        first_error: g.first_error.clone(),
        server_cpu_secs: w.server_cpu,
        server_cpu_util: w.server_cpu.map(|c| c / w.secs),
        requests_per_cpu_sec: w.server_cpu.filter(|&c| c > 0.0).map(|c| reqs as f64 / c),
        loadgen_cpu_util: w.loadgen_cpu.map(|c| c / w.secs),
        syscall_method: method.to_string(),
        syscalls: w.syscalls,
        syscalls_per_request: w
            .syscalls
            .filter(|_| reqs > 0)
            .map(|s| s as f64 / reqs as f64),
        server_rss_kb: w.server_rss_kb,
        server_peak_rss_kb: w.server_peak_rss_kb,
        tcp_timeouts: w.tcp_timeouts,
    }
}

pub fn run(o: &Opts) -> Result<ThroughputReport, String> {
    let t = std::time::Instant::now();
    let mut g = Gen::connect(o.addr, o.conns, o.len, o.immediate)?;
    let connect_ms = t.elapsed().as_secs_f64() * 1000.0;
    g.warm_up(o.warmup);
    let method = syscalls::detect(o.syscalls);
    let w = g.window(o.pid, o.secs, method);
    let name = if o.pid.is_some() {
        method.name()
    } else {
        "n/a"
    };
    Ok(report(&g, o.addr, (o.conns, o.len), connect_ms, w, name))
}

pub fn run_interleaved(o: &InterleaveOpts) -> Result<InterleavedReport, String> {
    let mut gens = Vec::new();
    for &(addr, _) in &o.targets {
        let t = std::time::Instant::now();
        let g = Gen::connect(addr, o.conns, o.len, false)?;
        gens.push((g, t.elapsed().as_secs_f64() * 1000.0));
    }
    for (g, _) in gens.iter_mut() {
        g.warm_up(o.warmup);
    }
    let mut out: Vec<TargetWindows> = o
        .targets
        .iter()
        .map(|(addr, _)| TargetWindows {
            addr: addr.to_string(),
            windows: Vec::new(),
        })
        .collect();
    let n = o.targets.len();
    for round in o.first_round..o.first_round + o.rounds {
        for k in 0..n {
            let i = (k + round) % n;
            let (addr, pid) = o.targets[i];
            let (g, connect_ms) = &mut gens[i];
            let w = g.window(pid, o.secs, Method::None);
            out[i]
                .windows
                .push(report(g, addr, (o.conns, o.len), *connect_ms, w, "n/a"));
        }
    }
    Ok(InterleavedReport {
        rounds: o.rounds,
        targets: out,
    })
}

pub fn print_human(r: &ThroughputReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.0}"));
    let _ = writeln!(
        o,
        "throughput {} conns x {} B for {:.1} s: {} requests, {:.0} req/s ({} connected, {} errors, {} mismatches, {} bytes verified)",
        r.connections, r.message_bytes, r.seconds, r.requests, r.requests_per_sec,
        r.connected, r.errors, r.mismatches, r.verified_bytes
    );
    if let Some(l) = &r.latency_us {
        let _ = writeln!(
            o,
            "latency us: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    if let Some(cpu) = r.server_cpu_secs {
        let _ = writeln!(
            o,
            "server: {cpu:.2} CPU-s ({}% busy), {} req per CPU-s, peak RSS {} KiB; load generator {}% busy",
            f(r.server_cpu_util.map(|u| 100.0 * u)),
            f(r.requests_per_cpu_sec),
            r.server_peak_rss_kb.map_or("n/a".into(), |k| k.to_string()),
            f(r.loadgen_cpu_util.map(|u| 100.0 * u)),
        );
        let _ = match (r.syscalls, r.syscalls_per_request) {
            (Some(n), Some(per)) => writeln!(
                o,
                "syscalls ({}): {n} = {per:.3} per request",
                r.syscall_method
            ),
            _ => writeln!(o, "syscalls: n/a"),
        };
    }
    if let Some(e) = &r.first_error {
        let _ = writeln!(o, "first error: {e}");
    }
    o
}

pub fn print_interleaved(r: &InterleavedReport) -> String {
    let mut o = format!("{} round(s), servers in turn:\n", r.rounds);
    for t in &r.targets {
        let rpcpu: Vec<String> = t
            .windows
            .iter()
            .map(|w| {
                w.requests_per_cpu_sec
                    .map_or("n/a".into(), |x| format!("{x:.0}"))
            })
            .collect();
        let rps: Vec<String> = t
            .windows
            .iter()
            .map(|w| format!("{:.0}", w.requests_per_sec))
            .collect();
        o.push_str(&format!(
            "{}: req/s {}; req per CPU-s {}\n",
            t.addr,
            rps.join(" "),
            rpcpu.join(" ")
        ));
        if let Some(e) = t.windows.last().and_then(|w| w.first_error.as_ref()) {
            o.push_str(&format!("{}: first error: {e}\n", t.addr));
        }
    }
    o
}
