//! From runs to one typed number per server and metric: the median over
//! rounds, or the worst round for failures and peaks; requests per
//! CPU-second also as a ratio to the C floor within each round.

use serde::Serialize;

use super::measure::{Run, ServerRuns};
use super::plan::{Load, Plan};
use crate::stats::{max, median, median_spread};

/// The server every other is compared with: the same syscalls as
/// echo-reactor and almost no code of its own.
pub const FLOOR: &str = "c-epoll";

/// A server's value relative to the floor's in the same round.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ratio {
    pub rounds: Vec<f64>,
    pub median: Option<f64>,
    /// How far the median of these rounds may be from that of endless
    /// rounds (`stats::median_spread`: ±, relative).
    pub spread: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    pub load: Load,
    /// Throughput rounds measured.
    pub rounds: usize,
    pub rps: Option<f64>,
    pub rpcpu: Option<f64>,
    pub rpcpu_vs_floor: Ratio,
    pub syscalls_per_request: Option<f64>,
    pub p99_us: Option<f64>,
    pub server_busy: Option<f64>,
    pub load_busy: Option<f64>,
    pub peak_rss_kib: Option<f64>,
    /// Retransmission timeouts over all rounds (not a median).
    pub tcp_timeouts_total: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HoldSummary {
    pub clients: usize,
    pub rss_per_conn: Option<f64>,
    pub failed_worst: Option<f64>,
    pub peak_rss_kib_worst: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BurstSummary {
    pub clients: usize,
    pub last_echo_ms: Option<f64>,
    pub own_echo_p99_ms: Option<f64>,
    pub failed_worst: Option<f64>,
    pub syn_retransmits_worst: Option<f64>,
    pub peak_rss_kib_worst: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FairnessSummary {
    pub probe_alone_p99_ms: Option<f64>,
    pub probe_p50_ms: Option<f64>,
    pub probe_p99_ms: Option<f64>,
    pub bulk_mib_per_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerSummary {
    pub name: &'static str,
    pub loads: Vec<LoadSummary>,
    pub holds: Vec<HoldSummary>,
    pub bursts: Vec<BurstSummary>,
    pub fairness: Option<FairnessSummary>,
    pub instructions_per_request: Option<f64>,
    pub skipped: Vec<String>,
}

impl ServerSummary {
    pub fn load(&self, load: Load) -> Option<&LoadSummary> {
        self.loads.iter().find(|l| l.load == load)
    }
    pub fn hold(&self, clients: usize) -> Option<&HoldSummary> {
        self.holds.iter().find(|h| h.clients == clients)
    }
    pub fn burst(&self, clients: usize) -> Option<&BurstSummary> {
        self.bursts.iter().find(|b| b.clients == clients)
    }
}

/// The spread of the median after the first k rounds, for each k.
#[derive(Clone, Debug, Serialize)]
pub struct SpreadByRounds {
    pub load: Load,
    pub server: &'static str,
    /// (k, ± relative spread of the median of the first k rounds)
    pub spread: Vec<(usize, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub servers: Vec<ServerSummary>,
    pub spread_by_rounds: Vec<SpreadByRounds>,
}

impl Summary {
    pub fn server(&self, name: &str) -> Option<&ServerSummary> {
        self.servers.iter().find(|s| s.name == name)
    }
}

fn med<T>(runs: &[Run<T>], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    median(&runs.iter().filter_map(|r| f(&r.report)).collect::<Vec<_>>())
}

fn worst<T>(runs: &[Run<T>], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    max(&runs.iter().filter_map(|r| f(&r.report)).collect::<Vec<_>>())
}

fn rpcpu_by_round(s: &ServerRuns, load: Load) -> Vec<(usize, f64)> {
    s.throughput
        .iter()
        .filter(|a| a.load == load)
        .flat_map(|a| &a.runs)
        .filter_map(|r| Some((r.round, r.report.requests_per_cpu_sec?)))
        .collect()
}

/// `s`'s requests per CPU-second over the floor's, round by round.
pub fn ratio(s: &ServerRuns, floor: Option<&ServerRuns>, load: Load) -> Ratio {
    let Some(floor) = floor else {
        return Ratio::default();
    };
    let base = rpcpu_by_round(floor, load);
    let rounds: Vec<f64> = rpcpu_by_round(s, load)
        .into_iter()
        .filter_map(|(round, v)| {
            let (_, b) = base.iter().find(|(r, _)| *r == round)?;
            Some(v / b)
        })
        .collect();
    Ratio {
        median: median(&rounds),
        spread: median_spread(&rounds),
        rounds,
    }
}

pub fn summarize(plan: &Plan, runs: &[ServerRuns]) -> Summary {
    let floor = runs.iter().find(|s| s.name == FLOOR);
    let servers = runs
        .iter()
        .map(|s| {
            let loads = plan
                .loads
                .iter()
                .map(|&load| {
                    let t: &[Run<_>] = s
                        .throughput
                        .iter()
                        .find(|a| a.load == load)
                        .map_or(&[], |a| &a.runs);
                    let sys: &[Run<_>] = s
                        .syscalls
                        .iter()
                        .find(|a| a.load == load)
                        .map_or(&[], |a| &a.runs);
                    LoadSummary {
                        load,
                        rounds: t.len(),
                        rps: med(t, |r| Some(r.requests_per_sec)),
                        rpcpu: med(t, |r| r.requests_per_cpu_sec),
                        rpcpu_vs_floor: ratio(s, floor, load),
                        syscalls_per_request: med(sys, |r| r.syscalls_per_request),
                        p99_us: med(t, |r| r.latency_us.as_ref().map(|l| l.p99)),
                        server_busy: med(t, |r| r.server_cpu_util),
                        load_busy: med(t, |r| r.loadgen_cpu_util),
                        peak_rss_kib: med(t, |r| r.server_peak_rss_kb.map(|k| k as f64)),
                        tcp_timeouts_total: t
                            .iter()
                            .map(|r| r.report.tcp_timeouts.map(|x| x as f64))
                            .sum(),
                    }
                })
                .collect();
            let holds = s
                .holds
                .iter()
                .map(|h| HoldSummary {
                    clients: h.clients,
                    rss_per_conn: med(&h.runs, |r| r.rss_bytes_per_conn),
                    failed_worst: worst(&h.runs, |r| Some(r.failed as f64)),
                    peak_rss_kib_worst: worst(&h.runs, |r| r.rss_kb.peak.map(|k| k as f64)),
                })
                .collect();
            let bursts = s
                .bursts
                .iter()
                .map(|b| BurstSummary {
                    clients: b.clients,
                    last_echo_ms: med(&b.runs, |r| r.echo_ms.last),
                    own_echo_p99_ms: med(&b.runs, |r| r.own_echo_ms.p99),
                    failed_worst: worst(&b.runs, |r| Some(r.failures as f64)),
                    syn_retransmits_worst: worst(&b.runs, |r| {
                        r.tcp_counters_delta
                            .get("TcpExt.TCPSynRetrans")
                            .map(|&x| x as f64)
                    }),
                    peak_rss_kib_worst: worst(&b.runs, |r| r.server_peak_rss_kb.map(|k| k as f64)),
                })
                .collect();
            let f = &s.fairness;
            let fairness = (!f.is_empty()).then(|| FairnessSummary {
                probe_alone_p99_ms: med(f, |r| r.alone.p99_ms),
                probe_p50_ms: med(f, |r| r.beside_bulk.p50_ms),
                probe_p99_ms: med(f, |r| r.beside_bulk.p99_ms),
                bulk_mib_per_s: med(f, |r| Some(r.bulk_mib_per_s)),
            });
            ServerSummary {
                name: s.name,
                loads,
                holds,
                bursts,
                fairness,
                instructions_per_request: s.instructions.as_ref().map(|i| i.per_request),
                skipped: s.skipped.clone(),
            }
        })
        .collect::<Vec<_>>();
    let spread_by_rounds = servers
        .iter()
        .filter(|s| s.name != FLOOR)
        .flat_map(|s| {
            s.loads.iter().map(|l| SpreadByRounds {
                load: l.load,
                server: s.name,
                spread: (1..=l.rpcpu_vs_floor.rounds.len())
                    .filter_map(|k| Some((k, median_spread(&l.rpcpu_vs_floor.rounds[..k])?)))
                    .collect(),
            })
        })
        .filter(|s| !s.spread.is_empty())
        .collect();
    Summary {
        servers,
        spread_by_rounds,
    }
}
