//! Planning: what the suite measures, how often and at what sizes, and
//! against which servers.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::syscalls::Method;

/// Throughput rounds in a full run: at least `MIN_ROUNDS`, then batches of
/// `ROUND_BATCH` until the median of echo-reactor's requests per CPU-second
/// over c-epoll's is known to `SPREAD_GOAL` (`stats::median_spread`), at
/// most `MAX_ROUNDS`. On the shared reference machine single rounds scatter
/// by ±20 % and ±3 % needs from about 25 to over 60 rounds, with its load;
/// below 20 the spread itself jumps (±9 % at 10 rounds, ±1 % at 11, ±8 % at
/// 12 in one run), so stopping at its first dip would stop on luck
/// (docs/benchmarks.md, "How many rounds").
pub const MIN_ROUNDS: usize = 20;
pub const ROUND_BATCH: usize = 5;
pub const MAX_ROUNDS: usize = 60;
pub const SPREAD_GOAL: f64 = 0.03;
/// Rounds of everything else (syscalls, idle memory, bursts, fairness):
/// counts and worst cases, which move far less than CPU time.
pub const OTHER_ROUNDS: usize = 3;
/// echo-reactor's default `--max-connections`: larger runs raise it.
const REACTOR_DEFAULT_MAX_CONNECTIONS: usize = 10000;
/// Descriptors kept free below RLIMIT_NOFILE for everything but the clients
/// (the server's listener, logs, epoll; the generator's own).
const FD_HEADROOM: u64 = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Throughput,
    Syscalls,
    Hold,
    Burst,
    Fairness,
    Instructions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A fresh network namespace per measurement when one can be made, else the host's.
    Auto,
    /// Fail unless a fresh network namespace can be made.
    Fresh,
    /// The host's network namespace.
    Host,
}

#[derive(clap::Args)]
pub struct SuiteArgs {
    /// A few seconds in total: one round, small numbers, targets not judged (for CI).
    #[arg(long)]
    pub quick: bool,
    /// echo-reactor binary [default: `echo-reactor` next to this executable].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Directory holding baseline-tokio and baseline-threads [default: next to this executable].
    #[arg(long)]
    pub baseline_dir: Option<PathBuf>,
    /// Output directory for results.json, results.svg and server logs.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Throughput rounds, fixed (servers take turns in each round; medians are reported)
    /// [default: 20, then more until the spread is under ±3 %, at most 60; quick 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Rounds of the other measurements (syscalls, holds, bursts, fairness).
    #[arg(long)]
    pub other_rounds: Option<usize>,
    /// Measured seconds of each server's throughput window [default: 1, quick 0.3].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Syscall counter: auto (perf, else strace, else n/a), perf, strace or none.
    #[arg(long, default_value = "auto")]
    pub syscalls: Method,
    /// Skip the C epoll baseline even if a C compiler is present.
    #[arg(long)]
    pub no_c: bool,
    /// Only these servers (comma separated: echo-reactor,tokio,threads,c-epoll).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these measurements [default: all; quick: all but instructions].
    #[arg(long, value_delimiter = ',', value_enum)]
    pub measure: Vec<Part>,
    /// Where the servers and the load run.
    #[arg(long, value_enum, default_value = "auto")]
    pub network: Network,
    /// Clients of the largest burst and hold [default: RLIMIT_NOFILE - 500, down to a thousand].
    #[arg(long)]
    pub ceiling: Option<usize>,
}

/// Clients and message size of a throughput run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Load {
    pub clients: usize,
    pub bytes: usize,
}

impl Load {
    pub fn label(&self) -> String {
        format!("{} x {} B", self.clients, self.bytes)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub quick: bool,
    pub parts: Vec<Part>,
    /// Throughput rounds: at least `rounds`, at most `max_rounds`.
    pub rounds: usize,
    pub max_rounds: usize,
    pub other_rounds: usize,
    /// Measured seconds of a throughput run, of a syscall-counting run, and
    /// the warm-up before each.
    pub secs: f64,
    pub sys_secs: f64,
    pub warmup: f64,
    pub loads: Vec<Load>,
    /// Idle connections for RSS per connection.
    pub idle_hold: usize,
    /// The fd ceiling: the largest burst and hold.
    pub ceiling: usize,
    pub bursts: Vec<usize>,
    pub burst_timeout: f64,
    pub settle: f64,
    /// Seconds of the fairness probe alone, then beside the bulk client.
    pub fairness_alone: f64,
    pub fairness_beside: f64,
    /// Two load lengths under callgrind; their difference is the per-request cost.
    pub callgrind_secs: (f64, f64),
    pub rlimit_nofile: u64,
}

impl Plan {
    pub fn new(a: &SuiteArgs, nofile: u64) -> Plan {
        let room = nofile.saturating_sub(FD_HEADROOM) as usize;
        let ceiling = a.ceiling.unwrap_or(if room >= 1000 {
            room / 1000 * 1000
        } else {
            room.max(100)
        });
        let cap = |n: usize| n.min(room.max(100));
        let parts = if a.measure.is_empty() {
            let mut all = vec![
                Part::Throughput,
                Part::Syscalls,
                Part::Hold,
                Part::Burst,
                Part::Fairness,
            ];
            if !a.quick {
                all.push(Part::Instructions);
            }
            all
        } else {
            a.measure.clone()
        };
        if a.quick {
            Plan {
                quick: true,
                parts,
                rounds: a.rounds.unwrap_or(1),
                max_rounds: a.rounds.unwrap_or(1),
                other_rounds: a.other_rounds.unwrap_or(1),
                secs: a.seconds.unwrap_or(0.3),
                sys_secs: 0.3,
                warmup: 0.1,
                loads: vec![
                    Load {
                        clients: 50,
                        bytes: 512,
                    },
                    Load {
                        clients: cap(100),
                        bytes: 64,
                    },
                ],
                idle_hold: cap(200),
                ceiling: a.ceiling.unwrap_or(cap(300)),
                bursts: vec![cap(60), cap(100)],
                burst_timeout: 5.0,
                settle: 0.05,
                fairness_alone: 0.2,
                fairness_beside: 0.4,
                callgrind_secs: (0.5, 1.0),
                rlimit_nofile: nofile,
            }
        } else {
            Plan {
                quick: false,
                parts,
                rounds: a.rounds.unwrap_or(MIN_ROUNDS),
                max_rounds: a.rounds.unwrap_or(MAX_ROUNDS),
                other_rounds: a.other_rounds.unwrap_or(OTHER_ROUNDS),
                secs: a.seconds.unwrap_or(1.0),
                // Long enough to average over the load's stalls: after
                // one, each poll returns fewer events, so `epoll_wait`s per
                // request rise. In 1 s windows one server's rounds ran from
                // 2.044 to 2.128, wider than the target's 0.02 margin.
                sys_secs: 3.0,
                warmup: 0.3,
                loads: vec![
                    Load {
                        clients: 50,
                        bytes: 512,
                    },
                    Load {
                        clients: cap(1000),
                        bytes: 64,
                    },
                ],
                idle_hold: cap(10000),
                ceiling,
                bursts: vec![cap(2000), cap(10000)],
                burst_timeout: 10.0,
                settle: 0.2,
                fairness_alone: 1.0,
                // 5000 probes (one per 2 ms tick), so the p99 is the 50th
                // worst, not the 15th: in 3 s windows one server's rounds
                // moved by 0.06 ms, more than the servers differed, and
                // "the best in the table" was decided by the noise.
                fairness_beside: 10.0,
                callgrind_secs: (2.0, 5.0),
                rlimit_nofile: nofile,
            }
        }
    }

    pub fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }

    /// Every burst size, the ceiling last.
    pub fn burst_sizes(&self) -> Vec<usize> {
        let mut v = self.bursts.clone();
        if !v.contains(&self.ceiling) {
            v.push(self.ceiling);
        }
        v
    }

    /// Every hold size: idle memory, then the ceiling.
    pub fn hold_sizes(&self) -> Vec<usize> {
        let mut v = vec![self.idle_hold];
        if self.ceiling != self.idle_hold {
            v.push(self.ceiling);
        }
        v
    }
}

/// A server under test.
#[derive(Clone, Debug, Serialize)]
pub struct Contender {
    pub name: &'static str,
    pub bin: PathBuf,
    /// The most clients it is asked to take at once, and why not more.
    pub max_clients: Option<(usize, &'static str)>,
}

impl Contender {
    /// Its command-line arguments for a run of `clients` at once.
    pub fn args(&self, clients: usize) -> Vec<String> {
        if self.name == "echo-reactor" && clients > REACTOR_DEFAULT_MAX_CONNECTIONS {
            vec!["--max-connections".into(), clients.to_string()]
        } else {
            Vec::new()
        }
    }

    /// Why it sits out a run of `clients` at once, if it does.
    pub fn skips(&self, clients: usize) -> Option<&'static str> {
        self.max_clients
            .filter(|&(most, _)| clients > most)
            .map(|(_, why)| why)
    }
}

fn sibling(exe: &Path, name: &str) -> PathBuf {
    exe.parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The servers the suite can find (the C one is added once built).
pub fn contenders(a: &SuiteArgs, exe: &Path) -> Vec<Contender> {
    let base = a
        .baseline_dir
        .clone()
        .unwrap_or_else(|| exe.parent().map(Path::to_path_buf).unwrap_or_default());
    vec![
        Contender {
            name: "echo-reactor",
            bin: a
                .server_bin
                .clone()
                .unwrap_or_else(|| sibling(exe, "echo-reactor")),
            max_clients: None,
        },
        Contender {
            name: "tokio",
            bin: base.join("baseline-tokio"),
            max_clients: None,
        },
        Contender {
            name: "threads",
            bin: base.join("baseline-threads"),
            // A thread per connection: at the fd ceiling its threads would
            // take most of a typical pid_max (32768) from everyone else on
            // the machine, and its 10000 burst already loses clients to
            // dropped SYNs.
            max_clients: Some((
                10000,
                "a thread per connection: more than 10000 threads would take most of pid_max (32768 here) from everyone else on a shared machine",
            )),
        },
    ]
}

/// Whether the suite wants server `name`.
pub fn wanted(a: &SuiteArgs, name: &str) -> bool {
    a.only.is_empty() || a.only.iter().any(|o| o == name)
}
