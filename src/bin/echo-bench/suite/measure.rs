//! Measuring: every run of every round, each against a server started for
//! it alone (in a namespace of its own when the suite has them), so no run
//! inherits another's memory, backlog or TIME_WAIT sockets. Servers take
//! turns in a different order each round. What comes back is kept as the
//! load generator's typed reports, by server, size and round.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::instructions::InstrReport;
use super::plan::{Contender, Load, Part, Plan};
use super::rounds;
use super::servers::{self, Netns, Placement, Running};
use crate::burst::BurstReport;
use crate::fairness::FairnessReport;
use crate::hold::HoldReport;
use crate::syscalls::Method;
use crate::throughput::ThroughputReport;

/// How measurements run on this machine.
pub struct Ctx {
    /// The load generator: this binary.
    pub exe: PathBuf,
    pub logs: PathBuf,
    pub pin: bool,
    /// A fresh network namespace per measurement.
    pub fresh_netns: bool,
    pub syscalls: Method,
}

impl Ctx {
    pub fn netns(&self) -> Result<Option<Netns>, String> {
        self.fresh_netns.then(Netns::new).transpose()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Run<T> {
    pub round: usize,
    pub report: T,
}

/// Runs at one throughput load.
#[derive(Clone, Debug, Serialize)]
pub struct AtLoad<T> {
    pub load: Load,
    pub runs: Vec<Run<T>>,
}

/// Runs with one number of clients.
#[derive(Clone, Debug, Serialize)]
pub struct AtSize<T> {
    pub clients: usize,
    pub runs: Vec<Run<T>>,
}

/// Everything measured of one server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerRuns {
    pub name: &'static str,
    pub throughput: Vec<AtLoad<ThroughputReport>>,
    /// Separate runs with the syscall counter attached (it slows the server).
    pub syscalls: Vec<AtLoad<ThroughputReport>>,
    pub holds: Vec<AtSize<HoldReport>>,
    pub bursts: Vec<AtSize<BurstReport>>,
    pub fairness: Vec<Run<FairnessReport>>,
    pub instructions: Option<InstrReport>,
    /// Runs it sat out, and why.
    pub skipped: Vec<String>,
}

pub fn at_load<T>(v: &mut Vec<AtLoad<T>>, load: Load) -> &mut Vec<Run<T>> {
    let i = match v.iter().position(|a| a.load == load) {
        Some(i) => i,
        None => {
            v.push(AtLoad {
                load,
                runs: Vec::new(),
            });
            v.len() - 1
        }
    };
    &mut v[i].runs
}

fn at_size<T>(v: &mut Vec<AtSize<T>>, clients: usize) -> &mut Vec<Run<T>> {
    let i = match v.iter().position(|a| a.clients == clients) {
        Some(i) => i,
        None => {
            v.push(AtSize {
                clients,
                runs: Vec::new(),
            });
            v.len() - 1
        }
    };
    &mut v[i].runs
}

/// One measurement: a fresh server for `clients` at once, the load
/// generator with `args(server)`, the server stopped.
fn one<T: DeserializeOwned>(
    ctx: &Ctx,
    s: &Contender,
    clients: usize,
    args: impl FnOnce(&Running) -> Vec<String>,
) -> Result<T, String> {
    let ns = ctx.netns()?;
    let at = Placement {
        netns: ns.as_ref(),
        pin: ctx.pin,
        logs: &ctx.logs,
    };
    let server = servers::start(s, &s.args(clients), &[], &at, Duration::from_secs(10))?;
    let res = servers::load(&ctx.exe, &at, &args(&server));
    server.kill();
    res
}

pub fn words(v: &[&dyn ToString]) -> Vec<String> {
    v.iter().map(|w| w.to_string()).collect()
}

fn throughput_args(r: &Running, load: Load, secs: f64, warmup: f64, sys: Method) -> Vec<String> {
    words(&[
        &"throughput",
        &"-a",
        &r.addr,
        &"-c",
        &load.clients,
        &"-l",
        &load.bytes,
        &"-t",
        &secs,
        &"--warmup",
        &warmup,
        &"--pid",
        &r.pid,
        &"--syscalls",
        &sys.name_arg(),
    ])
}

/// The servers in the order of round `round`: rotated by one each round.
fn order(servers: &[Contender], round: usize) -> Vec<&Contender> {
    let n = servers.len().max(1);
    (0..servers.len())
        .map(|i| &servers[(i + round) % n])
        .collect()
}

/// Runs every round; a run that fails is reported in `failures` and leaves
/// a gap, the others go on.
pub fn run_rounds(
    ctx: &Ctx,
    plan: &Plan,
    servers: &[Contender],
    failures: &mut Vec<String>,
) -> Vec<ServerRuns> {
    let mut out: Vec<ServerRuns> = servers
        .iter()
        .map(|s| ServerRuns {
            name: s.name,
            throughput: Vec::new(),
            syscalls: Vec::new(),
            holds: Vec::new(),
            bursts: Vec::new(),
            fairness: Vec::new(),
            instructions: None,
            skipped: Vec::new(),
        })
        .collect();
    let slot = |out: &mut Vec<ServerRuns>, s: &Contender| {
        out.iter()
            .position(|r| r.name == s.name)
            .expect("known server")
    };
    let mut fail = |s: &Contender, what: &str, e: String| {
        eprintln!("  {:<12} {what}: {e}", s.name);
        failures.push(format!("{} {what}: {e}", s.name));
    };
    if plan.has(Part::Throughput) {
        for &load in &plan.loads {
            rounds::throughput(ctx, plan, servers, load, &mut out, &mut fail);
        }
    }
    for round in 0..plan.other_rounds {
        eprintln!("round {}/{}", round + 1, plan.other_rounds);
        let servers_now = order(servers, round);
        if plan.has(Part::Syscalls) && ctx.syscalls != Method::None {
            for &load in &plan.loads {
                for s in &servers_now {
                    let what = format!("syscalls {}", load.label());
                    let res: Result<ThroughputReport, _> = one(ctx, s, load.clients, |r| {
                        throughput_args(r, load, plan.sys_secs, 0.2, ctx.syscalls)
                    });
                    match res {
                        Ok(v) => {
                            eprintln!(
                                "  {:<12} {:>12}: {:.3} syscalls per request ({})",
                                s.name,
                                load.label(),
                                v.syscalls_per_request.unwrap_or(f64::NAN),
                                v.syscall_method
                            );
                            let i = slot(&mut out, s);
                            at_load(&mut out[i].syscalls, load).push(Run { round, report: v });
                        }
                        Err(e) => fail(s, &what, e),
                    }
                }
            }
        }
        if plan.has(Part::Hold) {
            for n in plan.hold_sizes() {
                for s in &servers_now {
                    if let Some(why) = s.skips(n) {
                        let i = slot(&mut out, s);
                        note_skip(&mut out[i], format!("hold {n}: {why}"));
                        continue;
                    }
                    let res: Result<HoldReport, _> = one(ctx, s, n, |r| {
                        words(&[
                            &"hold",
                            &"-a",
                            &r.addr,
                            &"-n",
                            &n,
                            &"--pid",
                            &r.pid,
                            &"--settle",
                            &plan.settle,
                        ])
                    });
                    match res {
                        Ok(v) => {
                            eprintln!(
                                "  {:<12} hold {n:>5}: {:.0} B per idle connection, {} failed, peak RSS {} KiB",
                                s.name,
                                v.rss_bytes_per_conn.unwrap_or(f64::NAN),
                                v.failed,
                                v.rss_kb.peak.map_or("n/a".into(), |k| k.to_string())
                            );
                            let i = slot(&mut out, s);
                            at_size(&mut out[i].holds, n).push(Run { round, report: v });
                        }
                        Err(e) => fail(s, &format!("hold {n}"), e),
                    }
                }
            }
        }
        if plan.has(Part::Burst) {
            for n in plan.burst_sizes() {
                for s in &servers_now {
                    if let Some(why) = s.skips(n) {
                        let i = slot(&mut out, s);
                        note_skip(&mut out[i], format!("burst {n}: {why}"));
                        continue;
                    }
                    let res: Result<BurstReport, _> = one(ctx, s, n, |r| {
                        words(&[
                            &"burst",
                            &"-a",
                            &r.addr,
                            &"-n",
                            &n,
                            &"--timeout",
                            &plan.burst_timeout,
                            &"--pid",
                            &r.pid,
                        ])
                    });
                    match res {
                        Ok(v) => {
                            eprintln!(
                                "  {:<12} burst {n:>5}: last echo {:>7.1} ms, own p99 {:>7.1} ms, {} failed, {} SYN retransmits, peak RSS {} KiB",
                                s.name,
                                v.echo_ms.last.unwrap_or(f64::NAN),
                                v.own_echo_ms.p99.unwrap_or(f64::NAN),
                                v.failures,
                                v.tcp_counters_delta.get("TcpExt.TCPSynRetrans").map_or("?".into(), |x| x.to_string()),
                                v.server_peak_rss_kb.map_or("n/a".into(), |k| k.to_string())
                            );
                            let i = slot(&mut out, s);
                            at_size(&mut out[i].bursts, n).push(Run { round, report: v });
                        }
                        Err(e) => fail(s, &format!("burst {n}"), e),
                    }
                }
            }
        }
        if plan.has(Part::Fairness) {
            for s in &servers_now {
                let res: Result<FairnessReport, _> = one(ctx, s, 2, |r| {
                    words(&[
                        &"fairness",
                        &"-a",
                        &r.addr,
                        &"--alone",
                        &plan.fairness_alone,
                        &"--beside",
                        &plan.fairness_beside,
                    ])
                });
                match res {
                    Ok(v) => {
                        eprintln!(
                            "  {:<12} fairness: probe p99 {:.3} ms alone, {:.3} ms beside bulk ({:.0} MiB/s)",
                            s.name,
                            v.alone.p99_ms.unwrap_or(f64::NAN),
                            v.beside_bulk.p99_ms.unwrap_or(f64::NAN),
                            v.bulk_mib_per_s
                        );
                        for e in &v.errors {
                            fail(s, "fairness", e.clone());
                        }
                        let i = slot(&mut out, s);
                        out[i].fairness.push(Run { round, report: v });
                    }
                    Err(e) => fail(s, "fairness", e),
                }
            }
        }
    }
    out
}

fn note_skip(r: &mut ServerRuns, why: String) {
    if !r.skipped.contains(&why) {
        eprintln!("  {:<12} skipped {why}", r.name);
        r.skipped.push(why);
    }
}
