//! echo-bench: the load generator and benchmark suite for echo-reactor.
//!
//!   echo-bench throughput --addr 127.0.0.1:7007 -c 50 -l 512 -t 10 [--pid PID]
//!   echo-bench burst      --addr 127.0.0.1:7007 -n 2000
//!   echo-bench hold       --addr 127.0.0.1:7007 -n 10000 --pid PID
//!   echo-bench suite      [--quick]            (what `make bench` runs)
//!
//! Every mode drives its connections from one mio thread (never a thread per
//! connection), raises RLIMIT_NOFILE to the hard limit, and only talks to
//! loopback addresses. `--json` prints one JSON object instead of text.
#![forbid(unsafe_code)]

#[path = "echo_bench/mod.rs"]
mod echo_bench;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use echo_bench::syscalls::Method;
use echo_bench::{burst, hold, net, suite, throughput};

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
        /// Server address (loopback only).
        #[arg(short, long, default_value = "127.0.0.1:7007")]
        addr: SocketAddr,
        /// Connections.
        #[arg(short, long, default_value_t = 50)]
        connections: usize,
        /// Message length in bytes (the last byte is a newline).
        #[arg(short, long, default_value_t = 512)]
        length: usize,
        /// Measured seconds.
        #[arg(short = 't', long, default_value_t = 10.0)]
        seconds: f64,
        /// Warm-up seconds before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Server PID: report its CPU time, requests per CPU-second, RSS and syscalls.
        #[arg(long)]
        pid: Option<u32>,
        /// Syscall counter when --pid is given: auto, perf, strace or none.
        #[arg(long, default_value = "none")]
        syscalls: Method,
        /// Send each connection's next request as soon as its echo is in
        /// (default: after reading every echo of the poll batch).
        #[arg(long)]
        immediate: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// N clients connect at the same instant, each sends one line and waits for its echo.
    Burst {
        #[arg(short, long, default_value = "127.0.0.1:7007")]
        addr: SocketAddr,
        /// Clients.
        #[arg(short = 'n', long, default_value_t = 15)]
        clients: usize,
        /// Give up on clients without an echo after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        #[arg(long)]
        json: bool,
    },
    /// Open N idle connections, keep them, then echo one line on each.
    Hold {
        #[arg(short, long, default_value = "127.0.0.1:7007")]
        addr: SocketAddr,
        /// Connections.
        #[arg(short = 'n', long, default_value_t = 10000)]
        connections: usize,
        /// Server PID: report its RSS growth per connection (VmRSS).
        #[arg(long)]
        pid: Option<u32>,
        /// Seconds to let the server settle before each RSS sample.
        #[arg(long, default_value_t = 0.3)]
        settle: f64,
        #[arg(long)]
        json: bool,
    },
    /// Run every server side by side and print the results table (`make bench`).
    Suite(suite::SuiteArgs),
}

/// A mode's result, whether to print it as JSON, and its text printer.
type Outcome = (
    Result<serde_json::Value, String>,
    bool,
    fn(&serde_json::Value) -> String,
);

fn main() -> ExitCode {
    let cli = Cli::parse();
    net::raise_nofile();
    let check = |a: SocketAddr| net::check_loopback(a);
    let (res, json, human): Outcome = match cli.cmd {
        Cmd::Throughput {
            addr,
            connections,
            length,
            seconds,
            warmup,
            pid,
            syscalls,
            immediate,
            json,
        } => (
            check(addr).and_then(|_| {
                throughput::run(&throughput::Opts {
                    addr,
                    conns: connections,
                    len: length,
                    secs: seconds,
                    warmup,
                    pid,
                    syscalls,
                    immediate,
                })
            }),
            json,
            throughput::print_human,
        ),
        Cmd::Burst {
            addr,
            clients,
            timeout,
            json,
        } => (
            check(addr).and_then(|_| {
                burst::run(&burst::Opts {
                    addr,
                    clients,
                    timeout,
                })
            }),
            json,
            burst::print_human,
        ),
        Cmd::Hold {
            addr,
            connections,
            pid,
            settle,
            json,
        } => (
            check(addr).and_then(|_| {
                hold::run(&hold::Opts {
                    addr,
                    conns: connections,
                    pid,
                    settle,
                })
            }),
            json,
            hold::print_human,
        ),
        Cmd::Suite(args) => {
            return match suite::run(&args, self_exe()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("echo-bench suite: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    match res {
        Ok(v) => {
            // Ignore a closed stdout (e.g. piped into `head`).
            let text = if json { format!("{v}\n") } else { human(&v) };
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("echo-bench"))
}
