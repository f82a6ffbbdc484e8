//! `hold` mode: open N connections and keep them idle, then echo one line on
//! each, then keep them idle again. With --pid it samples the server's VmRSS
//! before, while idle (after the server has accepted all N, seen through
//! /proc/PID/fd) and after the echo round, and reports growth per connection.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::procfs;
use super::swarm::{Swarm, SwarmOpts};

#[derive(clap::Args)]
pub struct Opts {
    #[arg(short, long, default_value = "127.0.0.1:7007")]
    pub addr: SocketAddr,
    /// Connections.
    #[arg(
        short = 'n',
        long = "connections",
        value_name = "CONNECTIONS",
        default_value_t = 10000
    )]
    pub conns: usize,
    /// Server PID: report its RSS growth per connection (VmRSS).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Seconds to let the server settle before each RSS sample.
    #[arg(long, default_value_t = 0.3)]
    pub settle: f64,
    /// Clients per loopback source address (127.0.0.1, .2, ...; 0: one source).
    #[arg(long, default_value_t = super::loadgen::PER_SOURCE)]
    pub per_source: usize,
}

/// The server's VmRSS at each stage, KiB.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RssStages {
    pub before: Option<u64>,
    pub idle: Option<u64>,
    pub after_echo: Option<u64>,
    pub peak: Option<u64>,
}

/// One hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HoldReport {
    pub addr: String,
    pub connections: usize,
    pub open: usize,
    pub echoed: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// The server's descriptors grew by one per connection (else some were
    /// still in its accept queue when RSS was sampled).
    pub server_accepted_all: bool,
    pub connect_ms: f64,
    pub echo_round_ms: f64,
    pub rss_kb: RssStages,
    pub rss_bytes_per_conn_idle: Option<f64>,
    pub rss_bytes_per_conn_after_echo: Option<f64>,
    /// The larger of the two.
    pub rss_bytes_per_conn: Option<f64>,
}

fn per_conn(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) * 1024.0 / n as f64),
        _ => None,
    }
}

/// Wait until the server holds `target` descriptors, or its count has not
/// grown for a second (then some connections still sit in the accept queue).
fn wait_fds(pid: Option<u32>, target: usize, timeout: Duration) -> bool {
    let Some(pid) = pid else { return true };
    let end = Instant::now() + timeout;
    let (mut last, mut since) = (0usize, Instant::now());
    while Instant::now() < end {
        let n = procfs::fd_count(pid).unwrap_or(0);
        if n >= target {
            return true;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn run(o: &Opts) -> Result<HoldReport, String> {
    let rss0 = o.pid.and_then(procfs::rss_kb);
    let fd0 = o.pid.and_then(procfs::fd_count).unwrap_or(0);
    // At most 64 handshakes in flight, below any listen backlog: this is
    // not a burst.
    let opts = SwarmOpts {
        per_source: o.per_source,
        in_flight: 64,
        send_on_connect: false,
        hold: true,
    };
    let mut swarm = Swarm::prepare(o.addr, o.conns, opts, |i| {
        format!("hold {i:06}\n").into_bytes()
    })
    .map_err(|e| format!("socket: {e} (RLIMIT_NOFILE too low?)"))?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    swarm.connect_more();
    while !swarm.connects_done() && Instant::now() < deadline {
        swarm.step(Duration::from_millis(100));
    }
    let open = swarm.open();
    let connect_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let all_accepted = wait_fds(o.pid, fd0 + open, Duration::from_secs(10));
    // Let the server finish what the accepts started before sampling.
    thread::sleep(Duration::from_secs_f64(o.settle));
    let rss_idle = o.pid.and_then(procfs::rss_kb);

    let t_echo = Instant::now();
    let echo_deadline = t_echo + Duration::from_secs(30);
    swarm.send_all();
    while !swarm.settled() && Instant::now() < echo_deadline {
        swarm.step(Duration::from_millis(100));
    }
    let echo_ms = t_echo.elapsed().as_secs_f64() * 1000.0;
    thread::sleep(Duration::from_secs_f64(o.settle));
    let rss_after = o.pid.and_then(procfs::rss_kb);
    let hwm = o.pid.and_then(procfs::hwm_kb);
    let idle_pc = per_conn(rss0, rss_idle, open);
    let after_pc = per_conn(rss0, rss_after, open);
    let report = HoldReport {
        addr: o.addr.to_string(),
        connections: o.conns,
        open,
        echoed: swarm.echoed,
        failed: o.conns - swarm.echoed,
        first_error: swarm.errors(1).pop(),
        server_accepted_all: all_accepted,
        connect_ms,
        echo_round_ms: echo_ms,
        rss_kb: RssStages {
            before: rss0,
            idle: rss_idle,
            after_echo: rss_after,
            peak: hwm,
        },
        rss_bytes_per_conn_idle: idle_pc,
        rss_bytes_per_conn_after_echo: after_pc,
        rss_bytes_per_conn: match (idle_pc, after_pc) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        },
    };
    drop(swarm);
    Ok(report)
}

pub fn print_human(r: &HoldReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.0}"));
    let _ = writeln!(
        o,
        "hold {} connections: {} open, {} echoed one line, {} failed (connect {:.0} ms, echo round {:.0} ms)",
        r.connections, r.open, r.echoed, r.failed, r.connect_ms, r.echo_round_ms
    );
    let k = |x: Option<u64>| x.map_or("n/a".to_string(), |x| x.to_string());
    if r.rss_kb.before.is_some() {
        let _ = writeln!(
            o,
            "server RSS KiB: before {}  idle {}  after echo {}  peak {}; per connection: {} B idle, {} B after echo",
            k(r.rss_kb.before),
            k(r.rss_kb.idle),
            k(r.rss_kb.after_echo),
            k(r.rss_kb.peak),
            f(r.rss_bytes_per_conn_idle),
            f(r.rss_bytes_per_conn_after_echo)
        );
    }
    if let Some(e) = &r.first_error {
        let _ = writeln!(o, "first error: {e}");
    }
    o
}
