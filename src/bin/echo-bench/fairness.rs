//! `fairness` mode: what a bulk transfer does to an interactive neighbour. A
//! probe sends 64 bytes every 2 ms and times each echo, first alone, then
//! beside one client writing and reading 256 KiB chunks as fast as it can.
//! A fair server keeps the probe's echo prompt however much the bulk
//! connection could still read. The clients are the torture suite's (`paced`).

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::paced::{Bulk, Probe};
use super::stats::percentile;

const TICK: Duration = Duration::from_millis(2);
const CHUNK: usize = 256 * 1024;

#[derive(clap::Args)]
pub struct Opts {
    #[arg(short, long, default_value = "127.0.0.1:7007")]
    pub addr: SocketAddr,
    /// Seconds of the probe alone.
    #[arg(long, default_value_t = 1.0)]
    pub alone: f64,
    /// Seconds of the probe beside the bulk client (5000 probes: a p99
    /// that holds still between runs).
    #[arg(long, default_value_t = 10.0)]
    pub beside: f64,
}

/// The probe's round trips in one stretch, milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoundTrips {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl RoundTrips {
    fn of(rtts: &[Duration]) -> RoundTrips {
        let ms: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        RoundTrips {
            count: ms.len(),
            p50_ms: percentile(&ms, 50.0),
            p99_ms: percentile(&ms, 99.0),
            max_ms: ms.last().copied(),
        }
    }
}

/// One fairness run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FairnessReport {
    pub addr: String,
    pub alone: RoundTrips,
    pub beside_bulk: RoundTrips,
    /// Bulk bytes echoed per second while the probe ran beside it.
    pub bulk_mib_per_s: f64,
    pub bulk_sent: u64,
    pub bulk_echoed: u64,
    pub missed_ticks: u64,
    /// Anything that went wrong: a differing echo, a lost byte, no EOF.
    pub errors: Vec<String>,
}

pub fn run(o: &Opts) -> Result<FairnessReport, String> {
    let limit = Duration::from_secs_f64(o.alone + o.beside + 60.0);
    let probe = Probe::start(o.addr, TICK, limit, None);
    // The first round trip waits for the accept: measure from the second.
    let first = Instant::now() + Duration::from_secs(10);
    while probe.echoes() < 1 {
        if Instant::now() >= first {
            return Err(format!("{}: the probe got no echo within 10 s", o.addr));
        }
        thread::sleep(Duration::from_millis(1));
    }
    let alone_from = Instant::now();
    // A measurement window: the probe runs on its own clock meanwhile.
    thread::sleep(Duration::from_secs_f64(o.alone));
    let alone_to = Instant::now();

    let bulk = Bulk::start(o.addr, CHUNK, limit, None);
    let flowing = Instant::now() + Duration::from_secs(10);
    while bulk.echoed() < 4 * CHUNK as u64 && Instant::now() < flowing {
        thread::sleep(Duration::from_millis(1));
    }
    let (beside_from, echoed_from) = (Instant::now(), bulk.echoed());
    thread::sleep(Duration::from_secs_f64(o.beside));
    let (beside_to, echoed_to) = (Instant::now(), bulk.echoed());
    let bulk = bulk.finish();
    let log = probe.finish();

    let mut errors = Vec::new();
    errors.extend(log.err.clone());
    errors.extend(bulk.err.clone());
    if echoed_to - echoed_from == 0 {
        errors.push("the bulk client got no echo while the probe ran beside it".into());
    }
    if !bulk.eof || bulk.echoed != bulk.sent {
        errors.push(format!(
            "bulk sent {} bytes, {} echoed, EOF {}",
            bulk.sent, bulk.echoed, bulk.eof
        ));
    }
    let secs = (beside_to - beside_from).as_secs_f64().max(1e-9);
    Ok(FairnessReport {
        addr: o.addr.to_string(),
        alone: RoundTrips::of(&log.rtts_between(alone_from, alone_to)),
        beside_bulk: RoundTrips::of(&log.rtts_between(beside_from, beside_to)),
        bulk_mib_per_s: (echoed_to - echoed_from) as f64 / (1024.0 * 1024.0) / secs,
        bulk_sent: bulk.sent,
        bulk_echoed: bulk.echoed,
        missed_ticks: log.missed_ticks,
        errors,
    })
}

pub fn print_human(r: &FairnessReport) -> String {
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.3}"));
    let mut o = format!(
        "probe (64 B every 2 ms) p50/p99 ms: alone {}/{} ({} round trips), beside bulk {}/{} ({}, max {}); bulk {:.0} MiB/s each way, {} ticks missed\n",
        f(r.alone.p50_ms),
        f(r.alone.p99_ms),
        r.alone.count,
        f(r.beside_bulk.p50_ms),
        f(r.beside_bulk.p99_ms),
        r.beside_bulk.count,
        f(r.beside_bulk.max_ms),
        r.bulk_mib_per_s,
        r.missed_ticks
    );
    for e in &r.errors {
        o.push_str(&format!("error: {e}\n"));
    }
    o
}
