//! `suite`: what `make bench` runs. For each server (echo-reactor, the tokio
//! and thread-per-connection baselines, and the C epoll baseline when a C
//! compiler is present) it starts a fresh server on 127.0.0.1:0 pinned to
//! CPU 0, runs one measurement with the load generator (this same binary, in
//! a child process pinned to CPU 1), and stops the server. Servers alternate
//! within each measurement, over 3 rounds; the table reports medians.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::chart;
use super::net::median;
use super::syscalls::{self, Method};

const C_SOURCE: &str = include_str!("../../baseline/epoll_echo.c");

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
    /// Rounds (servers alternate inside each round; medians are reported) [default: 3, quick 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Measured seconds per throughput run [default: 2.5, quick 0.3].
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
}

struct Contender {
    name: &'static str,
    bin: PathBuf,
    args: Vec<String>,
}

struct Running {
    child: Child,
    pid: u32,
    addr: String,
}

struct Plan {
    rounds: usize,
    secs: f64,
    sys_secs: f64,
    warmup: f64,
    separate_syscall_runs: bool,
    loads: [(usize, usize); 2],
    hold: usize,
    bursts: [usize; 3],
    burst_timeout: f64,
    settle: f64,
}

/// Where each measurement's result goes: (server, metric) -> values over rounds.
type Samples = BTreeMap<(&'static str, String), Vec<f64>>;

fn sibling(exe: &Path, name: &str) -> PathBuf {
    exe.parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn can_pin() -> bool {
    thread::available_parallelism().map_or(1, |n| n.get()) >= 2
        && Command::new("taskset")
            .args(["-c", "0", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn pinned(cpu: Option<&str>, bin: &Path) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", c]).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

fn start(s: &Contender, pin: bool, logs: &Path) -> Result<Running, String> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{}.log", s.name)))
        .map_err(|e| format!("log file: {e}"))?;
    let mut cmd = pinned(pin.then_some("0"), &s.bin);
    cmd.args(&s.args)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("start {}: {e}", s.bin.display()))?;
    let pid = child.id();
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep the pipe open (and drained) while the server runs.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.starts_with("listening on ") => Ok(Running {
            child,
            pid,
            addr: line["listening on ".len()..].trim().to_string(),
        }),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{} did not print `listening on ADDR` (got {:?})",
                s.name,
                other.ok()
            ))
        }
    }
}

fn stop(mut r: Running) {
    let _ = r.child.kill();
    let _ = r.child.wait();
}

fn load(exe: &Path, pin: bool, args: &[String]) -> Result<Value, String> {
    let out = pinned(pin.then_some("1"), exe)
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("load generator: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "load generator failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("load generator output: {e}"))
}

/// Runs the load generator (`args` gets the server's address and pid) against
/// a server started for this measurement alone, so no run inherits another's
/// memory or backlog. Failures are reported here, `what` naming the run; the
/// caller counts them.
fn measure(
    s: &Contender,
    pin: bool,
    logs: &Path,
    exe: &Path,
    what: &str,
    args: impl FnOnce(&Running) -> Vec<String>,
) -> Option<Value> {
    let r = match start(s, pin, logs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("  {:<12} {e}", s.name);
            return None;
        }
    };
    let res = load(exe, pin, &args(&r));
    stop(r);
    res.map_err(|e| eprintln!("  {:<12} {what}: {e}", s.name))
        .ok()
}

fn throughput_args(
    r: &Running,
    (c, l): (usize, usize),
    secs: f64,
    warmup: f64,
    syscalls: &str,
) -> Vec<String> {
    cmdline(&[
        "throughput",
        "-a",
        &r.addr,
        "-c",
        &c.to_string(),
        "-l",
        &l.to_string(),
        "-t",
        &secs.to_string(),
        "--warmup",
        &warmup.to_string(),
        "--pid",
        &r.pid.to_string(),
        "--syscalls",
        syscalls,
    ])
}

fn build_c(out: &Path) -> Option<PathBuf> {
    let src = out.join("epoll_echo.c");
    let bin = out.join("epoll-echo");
    fs::write(&src, C_SOURCE).ok()?;
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}

fn cmdline(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn machine() -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mem_kb = fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    json!({
        "cpus": thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu_model": cpu,
        "kernel": kernel.trim(),
        "mem_gib": mem_kb.map(|k| (k as f64 / 1048576.0 * 10.0).round() / 10.0),
        "date": date,
        "somaxconn": fs::read_to_string("/proc/sys/net/core/somaxconn").map(|s| s.trim().to_string()).unwrap_or_default(),
    })
}

pub fn run(a: &SuiteArgs, exe: PathBuf) -> Result<(), String> {
    let t_suite = Instant::now();
    let nofile = super::net::raise_nofile();
    // Leave room for the generator's own descriptors; the server inherits this limit.
    let cap = |n: usize| n.min((nofile as usize).saturating_sub(200).max(100));
    let plan = if a.quick {
        Plan {
            rounds: a.rounds.unwrap_or(1),
            secs: a.seconds.unwrap_or(0.3),
            sys_secs: 0.3,
            warmup: 0.1,
            separate_syscall_runs: false,
            loads: [(50, 512), (cap(100), 64)],
            hold: cap(200),
            bursts: [15, cap(60), cap(100)],
            burst_timeout: 5.0,
            settle: 0.05,
        }
    } else {
        Plan {
            rounds: a.rounds.unwrap_or(3),
            secs: a.seconds.unwrap_or(2.5),
            sys_secs: 1.0,
            warmup: 0.3,
            separate_syscall_runs: true,
            loads: [(50, 512), (cap(1000), 64)],
            hold: cap(10000),
            bursts: [15, cap(2000), cap(10000)],
            burst_timeout: 10.0,
            settle: 0.2,
        }
    };
    fs::create_dir_all(a.out.join("logs")).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let logs = a.out.join("logs");
    let pin = can_pin();
    // --quick counts syscalls only when a counter is named explicitly.
    let method = if a.quick && a.syscalls == Method::Auto {
        Method::None
    } else {
        syscalls::detect(a.syscalls)
    };
    let base_dir = a
        .baseline_dir
        .clone()
        .unwrap_or_else(|| exe.parent().map(Path::to_path_buf).unwrap_or_default());

    let mut servers = vec![
        Contender {
            name: "echo-reactor",
            bin: a
                .server_bin
                .clone()
                .unwrap_or_else(|| sibling(&exe, "echo-reactor")),
            args: vec![],
        },
        Contender {
            name: "tokio",
            bin: base_dir.join("baseline-tokio"),
            args: vec![],
        },
        Contender {
            name: "threads",
            bin: base_dir.join("baseline-threads"),
            args: vec![],
        },
    ];
    let want = |n: &str| a.only.is_empty() || a.only.iter().any(|o| o == n);
    if !a.no_c && want("c-epoll") {
        match build_c(&a.out) {
            Some(bin) => servers.push(Contender {
                name: "c-epoll",
                bin,
                args: vec![],
            }),
            None => eprintln!("note: no working `cc`; skipping the C epoll baseline"),
        }
    }
    servers.retain(|s| {
        if !want(s.name) {
            return false;
        }
        let ok = s.bin.is_file();
        if !ok {
            eprintln!(
                "warning: {} not found at {}; skipping it",
                s.name,
                s.bin.display()
            );
        }
        ok
    });
    if servers.is_empty() {
        return Err(
            "no server binary found (build with `cargo build --release --features bench`)".into(),
        );
    }
    eprintln!(
        "echo-bench suite: {} round(s), servers: {}; server on CPU 0, load on CPU 1: {}; syscalls via {}; RLIMIT_NOFILE {}",
        plan.rounds,
        servers.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        if pin { "yes" } else { "no (fewer than 2 CPUs or no taskset)" },
        method.name(),
        nofile
    );

    let mut samples: Samples = BTreeMap::new();
    let mut failed_runs = 0usize;
    let mut raw: Vec<Value> = Vec::new();
    let push = |samples: &mut Samples, s: &'static str, k: String, v: Option<f64>| {
        if let Some(v) = v {
            samples.entry((s, k)).or_default().push(v);
        }
    };

    for round in 1..=plan.rounds {
        eprintln!("round {round}/{}", plan.rounds);
        // Throughput (and CPU-seconds, latency, peak RSS).
        for &(c, l) in &plan.loads {
            let key = format!("{c}x{l}");
            let sys = if plan.separate_syscall_runs {
                "none"
            } else {
                method.name_arg()
            };
            for s in &servers {
                let Some(v) = measure(s, pin, &logs, &exe, &key, |r| {
                    throughput_args(r, (c, l), plan.secs, plan.warmup, sys)
                }) else {
                    failed_runs += 1;
                    continue;
                };
                let bad = v["errors"].as_u64().unwrap_or(0) + v["mismatches"].as_u64().unwrap_or(0);
                eprintln!(
                    "  {:<12} {key:>8}: {:>8.0} req/s, {:>8.0} req/CPU-s, p99 {:>6.0} us, server {:>3.0}% / load {:>3.0}% CPU, errors {}",
                    s.name,
                    f(&v["requests_per_sec"]).unwrap_or(0.0),
                    f(&v["requests_per_cpu_sec"]).unwrap_or(f64::NAN),
                    f(&v["latency_us"]["p99"]).unwrap_or(f64::NAN),
                    100.0 * f(&v["server_cpu_util"]).unwrap_or(f64::NAN),
                    100.0 * f(&v["loadgen_cpu_util"]).unwrap_or(f64::NAN),
                    bad,
                );
                for (metric, x) in [
                    ("rps", &v["requests_per_sec"]),
                    ("rpcpu", &v["requests_per_cpu_sec"]),
                    ("p99", &v["latency_us"]["p99"]),
                    ("cpu_util", &v["server_cpu_util"]),
                    ("load_util", &v["loadgen_cpu_util"]),
                    ("peak_rss_kb", &v["server_peak_rss_kb"]),
                ] {
                    push(&mut samples, s.name, format!("{metric}_{key}"), f(x));
                }
                if bad > 0 {
                    eprintln!(
                        "  {:<12} {key}: {bad} connection(s) failed or echoed wrong bytes: {}",
                        s.name, v["first_error"]
                    );
                    failed_runs += 1;
                }
                push(
                    &mut samples,
                    s.name,
                    format!("errors_{key}"),
                    Some(bad as f64),
                );
                if !plan.separate_syscall_runs {
                    push(
                        &mut samples,
                        s.name,
                        format!("sys_{key}"),
                        f(&v["syscalls_per_request"]),
                    );
                }
                raw.push(json!({"round": round, "server": s.name, "run": format!("throughput_{key}"), "result": v}));
            }
        }
        // Syscalls per request, in separate runs so the counter does not skew CPU time.
        if plan.separate_syscall_runs && method != Method::None {
            for &(c, l) in &plan.loads {
                let key = format!("{c}x{l}");
                for s in &servers {
                    let Some(v) = measure(s, pin, &logs, &exe, &format!("syscalls {key}"), |r| {
                        throughput_args(r, (c, l), plan.sys_secs, 0.2, method.name_arg())
                    }) else {
                        failed_runs += 1;
                        continue;
                    };
                    eprintln!(
                        "  {:<12} {key:>8}: {:.3} syscalls per request ({})",
                        s.name,
                        f(&v["syscalls_per_request"]).unwrap_or(f64::NAN),
                        v["syscall_method"].as_str().unwrap_or("")
                    );
                    push(
                        &mut samples,
                        s.name,
                        format!("sys_{key}"),
                        f(&v["syscalls_per_request"]),
                    );
                    raw.push(json!({"round": round, "server": s.name, "run": format!("syscalls_{key}"), "result": v}));
                }
            }
        }
        // Idle connections: RSS per connection.
        for s in &servers {
            let Some(v) = measure(s, pin, &logs, &exe, "hold", |r| {
                cmdline(&[
                    "hold",
                    "-a",
                    &r.addr,
                    "-n",
                    &plan.hold.to_string(),
                    "--pid",
                    &r.pid.to_string(),
                    "--settle",
                    &plan.settle.to_string(),
                ])
            }) else {
                failed_runs += 1;
                continue;
            };
            eprintln!(
                "  {:<12} hold {}: {:.0} B per idle connection, {} failed",
                s.name,
                plan.hold,
                f(&v["rss_bytes_per_conn"]).unwrap_or(f64::NAN),
                v["failed"]
            );
            push(
                &mut samples,
                s.name,
                "rss_per_conn".into(),
                f(&v["rss_bytes_per_conn"]),
            );
            push(&mut samples, s.name, "hold_failed".into(), f(&v["failed"]));
            raw.push(json!({"round": round, "server": s.name, "run": "hold", "result": v}));
        }
        // Bursts.
        for &n in &plan.bursts {
            for s in &servers {
                let Some(v) = measure(s, pin, &logs, &exe, &format!("burst {n}"), |r| {
                    cmdline(&[
                        "burst",
                        "-a",
                        &r.addr,
                        "-n",
                        &n.to_string(),
                        "--timeout",
                        &plan.burst_timeout.to_string(),
                    ])
                }) else {
                    failed_runs += 1;
                    continue;
                };
                let syn = v["tcp_counters_delta"]["TcpExt.TCPSynRetrans"].as_f64();
                eprintln!(
                    "  {:<12} burst {n:>5}: last echo {:>7.1} ms, p99 {:>7.1} ms, {} failed, {} SYN retransmits",
                    s.name,
                    f(&v["echo_ms"]["last"]).unwrap_or(f64::NAN),
                    f(&v["echo_ms"]["p99"]).unwrap_or(f64::NAN),
                    v["failures"],
                    syn.map_or("?".to_string(), |x| x.to_string())
                );
                push(
                    &mut samples,
                    s.name,
                    format!("burst_last_{n}"),
                    f(&v["echo_ms"]["last"]),
                );
                push(
                    &mut samples,
                    s.name,
                    format!("burst_fail_{n}"),
                    f(&v["failures"]),
                );
                push(&mut samples, s.name, format!("burst_syn_{n}"), syn);
                raw.push(json!({"round": round, "server": s.name, "run": format!("burst_{n}"), "result": v}));
            }
        }
    }

    let names: Vec<&'static str> = servers.iter().map(|s| s.name).collect();
    let values = |s: &str, k: &str| {
        samples
            .iter()
            .find(|((n, key), _)| *n == s && key == k)
            .map(|(_, v)| v)
    };
    let med = |s: &str, k: &str| values(s, k).and_then(|v| median(v));
    let worst = |s: &str, k: &str| values(s, k).and_then(|v| v.iter().copied().reduce(f64::max));
    let [(c1, l1), (c2, l2)] = plan.loads;
    let k1 = format!("{c1}x{l1}");
    let k2 = format!("{c2}x{l2}");
    let [_, b2, b3] = plan.bursts;

    // Rows: label, metric key, aggregate (median or worst), format.
    type Row = (String, String, bool, fn(f64) -> String);
    let int: fn(f64) -> String = |x| format!("{:.0}", x);
    let pct: fn(f64) -> String = |x| format!("{:.0}", 100.0 * x);
    let mut rows: Vec<Row> = Vec::new();
    for (c, l, k) in [(c1, l1, &k1), (c2, l2, &k2)] {
        rows.extend([
            (
                format!("req/s, {c} clients x {l} B"),
                format!("rps_{k}"),
                false,
                int,
            ),
            (
                format!("req per server CPU-s, {c} x {l} B"),
                format!("rpcpu_{k}"),
                false,
                int,
            ),
            (
                format!("syscalls per request, {c} x {l} B"),
                format!("sys_{k}"),
                false,
                |x| format!("{x:.3}"),
            ),
            (
                format!("p99 latency us, {c} x {l} B"),
                format!("p99_{k}"),
                false,
                int,
            ),
        ]);
    }
    rows.push((
        format!("peak RSS KiB, {c2} clients"),
        format!("peak_rss_kb_{k2}"),
        false,
        int,
    ));
    rows.push((
        format!("RSS B per idle conn, {} conns", plan.hold),
        "rss_per_conn".into(),
        false,
        int,
    ));
    for b in plan.bursts {
        rows.push((
            format!("burst {b}: last echo ms"),
            format!("burst_last_{b}"),
            false,
            |x| format!("{x:.1}"),
        ));
        rows.push((
            format!("burst {b}: failures (worst round)"),
            format!("burst_fail_{b}"),
            true,
            int,
        ));
    }
    rows.push((
        format!("burst {b3}: SYN retransmits (worst)"),
        format!("burst_syn_{b3}"),
        true,
        int,
    ));
    for (c, l, k) in [(c1, l1, &k1), (c2, l2, &k2)] {
        rows.push((
            format!("server CPU busy %, {c} x {l} B"),
            format!("cpu_util_{k}"),
            false,
            pct,
        ));
        rows.push((
            format!("load generator CPU busy %, {c} x {l} B"),
            format!("load_util_{k}"),
            false,
            pct,
        ));
    }
    let mut table = String::new();
    table.push_str(&format!("| metric (median of {} round(s)) |", plan.rounds));
    for n in &names {
        table.push_str(&format!(" {n} |"));
    }
    table.push('\n');
    table.push_str("|---|");
    for _ in &names {
        table.push_str("---:|");
    }
    table.push('\n');
    let mut summary = serde_json::Map::new();
    for (label, key, use_worst, fmt) in &rows {
        table.push_str(&format!("| {label} |"));
        let mut per = serde_json::Map::new();
        for n in &names {
            let v = if *use_worst {
                worst(n, key)
            } else {
                med(n, key)
            };
            table.push_str(&format!(" {} |", v.map_or("n/a".to_string(), fmt)));
            per.insert(n.to_string(), json!(v));
        }
        table.push('\n');
        summary.insert(key.clone(), Value::Object(per));
    }

    // Targets for echo-reactor.
    let er = "echo-reactor";
    let mut targets: Vec<Value> = Vec::new();
    let mut judge = |name: String, ok: Option<bool>, detail: String| {
        targets.push(json!({"target": name, "met": ok, "detail": detail}));
    };
    for k in [&k1, &k2] {
        let (e, t) = (
            med(er, &format!("rpcpu_{k}")),
            med("tokio", &format!("rpcpu_{k}")),
        );
        judge(
            format!("req per CPU-s >= 1.08x tokio at {k}"),
            e.zip(t).map(|(e, t)| e >= 1.08 * t),
            match e.zip(t) {
                Some((e, t)) => {
                    // The C server runs the same syscalls and almost no code
                    // of its own: how far any epoll echo can get here.
                    let floor = med("c-epoll", &format!("rpcpu_{k}"))
                        .map_or(String::new(), |c| format!("; c-epoll {:.3}x", c / t));
                    format!("{e:.0} vs tokio {t:.0} = {:.3}x{floor}", e / t)
                }
                None => "not measured".into(),
            },
        );
    }
    for (k, limit) in [(&k1, 2.15), (&k2, 2.03)] {
        let s = med(er, &format!("sys_{k}"));
        judge(
            format!("<= {limit} syscalls per request at {k}"),
            s.map(|s| s <= limit),
            s.map_or(format!("n/a (counter: {})", method.name()), |s| {
                format!("{s:.3}")
            }),
        );
    }
    {
        let fails = worst(er, &format!("burst_fail_{b3}"));
        let last = med(er, &format!("burst_last_{b3}"));
        let syn = worst(er, &format!("burst_syn_{b3}"));
        judge(
            format!("burst {b3}: no failures, last echo < 1 s"),
            fails.zip(last).map(|(f, l)| f == 0.0 && l < 1000.0),
            format!(
                "failures {}, last echo {} ms, SYN retransmits {}",
                fails.map_or("n/a".into(), |x| x.to_string()),
                last.map_or("n/a".into(), |x| format!("{x:.1}")),
                syn.map_or("n/a".into(), |x| x.to_string())
            ),
        );
        let e = med(er, &format!("burst_last_{b2}"));
        // A thread-server run with failures counts its failed clients at the timeout.
        let t = med("threads", &format!("burst_last_{b2}")).map(|t| {
            if worst("threads", &format!("burst_fail_{b2}")).unwrap_or(0.0) > 0.0 {
                t.max(plan.burst_timeout * 1000.0)
            } else {
                t
            }
        });
        judge(
            format!("burst {b2}: last echo >= 3x faster than threads"),
            e.zip(t).map(|(e, t)| 3.0 * e <= t),
            match e.zip(t) {
                Some((e, t)) => format!("{e:.1} ms vs threads {t:.1} ms = {:.1}x", t / e),
                None => "not measured".into(),
            },
        );
        let r = med(er, "rss_per_conn");
        judge(
            format!("RSS per idle connection <= 400 B at {}", plan.hold),
            r.map(|r| r <= 400.0),
            r.map_or("not measured".into(), |r| format!("{r:.0} B")),
        );
    }

    println!("{table}");
    // Say where the load generator, not the server, set the pace.
    let mut notes = Vec::new();
    for k in [&k1, &k2] {
        for n in &names {
            let (srv, gen) = (
                med(n, &format!("cpu_util_{k}")),
                med(n, &format!("load_util_{k}")),
            );
            if let (Some(srv), Some(gen)) = (srv, gen) {
                if gen >= 0.93 && srv < 0.90 {
                    notes.push(format!(
                        "note: {n} at {k}: load generator {:.0}% busy, server {:.0}%: req/s is generator-bound there (req per CPU-s still compares)",
                        gen * 100.0,
                        srv * 100.0
                    ));
                }
            }
        }
    }
    for n in &notes {
        println!("{n}");
    }
    if a.quick {
        println!("quick run: numbers are indicative only; targets are not judged.");
    } else {
        println!("echo-reactor targets:");
        for t in &targets {
            println!(
                "- {}: {} ({})",
                match t["met"].as_bool() {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "missed (not measured)",
                },
                t["target"].as_str().unwrap_or(""),
                t["detail"].as_str().unwrap_or("")
            );
        }
    }

    let results = json!({
        "machine": machine(),
        "config": {
            "quick": a.quick, "rounds": plan.rounds, "seconds": plan.secs,
            "syscall_seconds": plan.sys_secs, "loads": plan.loads, "hold": plan.hold,
            "bursts": plan.bursts, "burst_timeout_s": plan.burst_timeout, "pinned": pin,
            "syscall_method": method.name(), "rlimit_nofile": nofile,
            "servers": servers.iter().map(|s| json!({"name": s.name, "bin": s.bin.display().to_string()})).collect::<Vec<_>>(),
        },
        "summary": summary,
        "table_markdown": table,
        "notes": notes,
        "targets": if a.quick { Value::Null } else { json!(targets) },
        "runs": raw,
        "suite_seconds": t_suite.elapsed().as_secs_f64(),
    });
    let json_path = a.out.join("results.json");
    fs::write(
        &json_path,
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", json_path.display()))?;
    let svg_path = a.out.join("results.svg");
    let chart_data: Vec<chart::Bar> = names
        .iter()
        .map(|n| chart::Bar {
            server: n.to_string(),
            rpcpu: [&k1, &k2].map(|k| med(n, &format!("rpcpu_{k}"))),
            burst: plan.bursts.map(|b| med(n, &format!("burst_last_{b}"))),
            burst_failed: plan.bursts.map(|b| worst(n, &format!("burst_fail_{b}"))),
        })
        .collect();
    chart::draw(&svg_path, &chart_data, [&k1, &k2], plan.bursts)?;
    if failed_runs > 0 {
        return Err(format!(
            "{failed_runs} measurement(s) failed to run or saw echo errors (see above); results written anyway"
        ));
    }
    println!(
        "wrote {} and {} ({:.0} s)",
        json_path.display(),
        svg_path.display(),
        t_suite.elapsed().as_secs_f64()
    );
    Ok(())
}
