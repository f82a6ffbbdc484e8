//! echo-bench: the load generator and benchmark suite for echo-reactor.
//!
//!   echo-bench throughput --addr 127.0.0.1:7007 -c 50 -l 512 -t 10 [--pid PID]
//!   echo-bench interleave --addr A --pid P --addr B --pid Q -c 50 -l 512 -t 1 --rounds 20
//!   echo-bench burst      --addr 127.0.0.1:7007 -n 2000 [--pid PID]
//!   echo-bench hold       --addr 127.0.0.1:7007 -n 10000 --pid PID
//!   echo-bench fairness   --addr 127.0.0.1:7007
//!   echo-bench suite      [--quick]            (what `make bench` runs)
//!
//! The load modes drive their connections from one mio thread (fairness:
//! a probe and a bulk client on threads of their own), raise RLIMIT_NOFILE
//! to the hard limit, and only talk to loopback addresses. `--json` prints
//! the typed report as one JSON object instead of text.
#![forbid(unsafe_code)]

mod burst;
mod chart;
mod fairness;
mod hold;
mod loadgen;
mod net;
// Shared with the integration tests, which use parts the benchmark does not.
#[allow(dead_code)]
mod paced;
#[allow(dead_code)]
mod procfs;
mod stats;
mod suite;
#[allow(dead_code)]
mod swarm;
mod syscalls;
mod throughput;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "echo-bench",
    about = "Load generator and benchmark suite for echo-reactor"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// C connections, each sending one L-byte message and waiting for its echo, for T seconds.
    Throughput {
        #[command(flatten)]
        opts: throughput::Opts,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Like throughput, against several servers in turn: one window each per round.
    Interleave {
        /// Server addresses (loopback only), each followed by its --pid.
        #[arg(short, long, required = true)]
        addr: Vec<SocketAddr>,
        /// Server PIDs, in the order of the addresses.
        #[arg(long)]
        pid: Vec<u32>,
        /// Connections per server.
        #[arg(short, long, default_value_t = 50)]
        connections: usize,
        /// Message length in bytes (the last byte is a newline).
        #[arg(short, long, default_value_t = 512)]
        length: usize,
        /// Seconds of each window.
        #[arg(short = 't', long, default_value_t = 1.0)]
        seconds: f64,
        /// Warm-up seconds per server before the first round.
        #[arg(long, default_value_t = 0.3)]
        warmup: f64,
        /// Rounds: each server gets one window per round, in a rotating order.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// The number of the first round (the order rotates with it).
        #[arg(long, default_value_t = 0)]
        first_round: usize,
        #[arg(long)]
        json: bool,
    },
    /// N clients connect at the same instant, each sends one line and waits for its echo.
    Burst {
        #[command(flatten)]
        opts: burst::Opts,
        #[arg(long)]
        json: bool,
    },
    /// Open N idle connections, keep them, then echo one line on each.
    Hold {
        #[command(flatten)]
        opts: hold::Opts,
        #[arg(long)]
        json: bool,
    },
    /// A probe's echo time alone, then beside a client moving bulk data.
    Fairness {
        #[command(flatten)]
        opts: fairness::Opts,
        #[arg(long)]
        json: bool,
    },
    /// Run every server side by side and print the results table (`make bench`).
    Suite(suite::SuiteArgs),
}

/// Prints a mode's report (JSON or text) or its error.
fn emit<T: Serialize>(res: Result<T, String>, json: bool, human: fn(&T) -> String) -> ExitCode {
    match res {
        Ok(report) => {
            let text = if json {
                match serde_json::to_string(&report) {
                    Ok(s) => s + "\n",
                    Err(e) => {
                        eprintln!("echo-bench: report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                human(&report)
            };
            // Ignore a closed stdout (e.g. piped into `head`).
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    net::raise_nofile();
    let check = net::check_loopback;
    match cli.cmd {
        Cmd::Throughput { opts, json } => emit(
            check(opts.addr).and_then(|_| throughput::run(&opts)),
            json,
            throughput::print_human,
        ),
        Cmd::Interleave {
            addr,
            pid,
            connections,
            length,
            seconds,
            warmup,
            rounds,
            first_round,
            json,
        } => emit(
            addr.iter().try_for_each(|&a| check(a)).and_then(|_| {
                if !pid.is_empty() && pid.len() != addr.len() {
                    return Err("give one --pid per --addr, or none".into());
                }
                throughput::run_interleaved(&throughput::InterleaveOpts {
                    targets: addr
                        .iter()
                        .enumerate()
                        .map(|(i, &a)| (a, pid.get(i).copied()))
                        .collect(),
                    conns: connections,
                    len: length,
                    secs: seconds,
                    warmup,
                    rounds,
                    first_round,
                })
            }),
            json,
            throughput::print_interleaved,
        ),
        Cmd::Burst { opts, json } => emit(
            check(opts.addr).and_then(|_| burst::run(&opts)),
            json,
            burst::print_human,
        ),
        Cmd::Hold { opts, json } => emit(
            check(opts.addr).and_then(|_| hold::run(&opts)),
            json,
            hold::print_human,
        ),
        Cmd::Fairness { opts, json } => emit(
            check(opts.addr).and_then(|_| fairness::run(&opts)),
            json,
            fairness::print_human,
        ),
        Cmd::Suite(args) => match suite::run(&args, self_exe()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("echo-bench suite: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("echo-bench"))
}

#[cfg(test)]
mod tests {
    use super::procfs::*;
    use super::swarm::{source_of, Swarm, SwarmOpts};
    use std::collections::BTreeSet;
    use std::io::{Read, Write};
    use std::net::{IpAddr, SocketAddr, TcpListener};
    use std::time::{Duration, Instant};

    #[test]
    fn sources_spread_over_loopback() {
        let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(source_of(v4, 0, 2000), ip("127.0.0.1"));
        assert_eq!(source_of(v4, 1999, 2000), ip("127.0.0.1"));
        assert_eq!(source_of(v4, 2000, 2000), ip("127.0.0.2"));
        assert_eq!(source_of(v4, 256 * 2000, 2000), ip("127.0.1.1"));
        assert_eq!(source_of(v4, 5, 0), None);
        assert_eq!(source_of(v6, 5, 10), None);
    }

    /// A swarm spread over sources reaches a real listener from each of
    /// them, and every client gets its own line back.
    #[test]
    fn swarm_clients_come_from_their_sources() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let n = 40;
        let server = std::thread::spawn(move || {
            let mut peers = BTreeSet::new();
            for _ in 0..n {
                let (mut s, peer) = listener.accept().unwrap();
                peers.insert(peer.ip());
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while !line.ends_with(b"\n") {
                    assert_eq!(s.read(&mut b).unwrap(), 1, "EOF before a whole line");
                    line.push(b[0]);
                }
                s.write_all(&line).unwrap();
            }
            peers
        });
        let opts = SwarmOpts {
            per_source: 10,
            in_flight: 8,
            send_on_connect: true,
            hold: false,
        };
        let mut swarm =
            Swarm::prepare(addr, n, opts, |i| format!("client {i}\n").into_bytes()).unwrap();
        swarm.connect_more();
        let end = Instant::now() + Duration::from_secs(20);
        while !swarm.settled() && Instant::now() < end {
            swarm.step(Duration::from_millis(50));
        }
        assert_eq!(swarm.echoed, n, "{:?}", swarm.errors(5));
        let peers = server.join().unwrap();
        let want: BTreeSet<IpAddr> = (1..=4)
            .map(|k| format!("127.0.0.{k}").parse().unwrap())
            .collect();
        assert_eq!(peers, want);
        assert!(swarm.times().iter().all(|t| t.echoed.is_some()));
    }

    #[test]
    fn procfs_reads_own_process() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        assert!(hwm_kb(me).unwrap() >= rss_kb(me).unwrap() / 2);
        assert!(cpu_ticks(me).is_some());
        assert!(fd_count(me).unwrap() >= 3);
        assert!(thread_count(me).unwrap() >= 1);
        assert!(clk_tck() > 0);
    }
}
