//! Reporting: the markdown table, where the instructions go, how the
//! median's spread shrinks with rounds, notes on generator-bound runs, and
//! results.json (every typed run and summary) with results.svg.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::thread;

use serde::Serialize;

use super::judge::Verdict;
use super::measure::ServerRuns;
use super::plan::{Contender, Plan};
use super::summary::{ServerSummary, Summary, FLOOR};
use crate::chart;

/// One server's entry in a row.
enum Cell {
    /// The server sat this run out (see the notes for why).
    Skipped,
    Value(Option<f64>),
}

type Getter = Box<dyn Fn(&ServerSummary) -> Cell>;

/// One row: a label and each server's value.
struct Row {
    label: String,
    get: Getter,
    digits: usize,
}

fn row(label: String, digits: usize, get: impl Fn(&ServerSummary) -> Option<f64> + 'static) -> Row {
    Row {
        label,
        get: Box::new(move |s| Cell::Value(get(s))),
        digits,
    }
}

/// A row of a run some servers skip at this size.
fn sized_row(
    label: String,
    digits: usize,
    clients: usize,
    what: &'static str,
    get: impl Fn(&ServerSummary) -> Option<f64> + 'static,
) -> Row {
    Row {
        label,
        get: Box::new(move |s| {
            let prefix = format!("{what} {clients}:");
            if s.skipped.iter().any(|k| k.starts_with(&prefix)) {
                Cell::Skipped
            } else {
                Cell::Value(get(s))
            }
        }),
        digits,
    }
}

fn rows(plan: &Plan) -> Vec<Row> {
    let mut r = Vec::new();
    for &load in &plan.loads {
        let l = load.label();
        r.push(row(format!("throughput rounds, {l}"), 0, move |s| {
            Some(s.load(load)?.rounds as f64)
        }));
        r.push(row(format!("req/s, {l}"), 0, move |s| s.load(load)?.rps));
        r.push(row(format!("req per server CPU-s, {l}"), 0, move |s| {
            s.load(load)?.rpcpu
        }));
        r.push(row(
            format!("req per CPU-s / {FLOOR}'s, same round, {l}"),
            3,
            move |s| s.load(load)?.rpcpu_vs_floor.median,
        ));
        r.push(row(format!("syscalls per request, {l}"), 3, move |s| {
            s.load(load)?.syscalls_per_request
        }));
        r.push(row(format!("p99 latency us, {l}"), 0, move |s| {
            s.load(load)?.p99_us
        }));
        r.push(row(
            format!("retransmission timeouts, all rounds, {l}"),
            0,
            move |s| s.load(load)?.tcp_timeouts_total,
        ));
    }
    if let Some(&last) = plan.loads.last() {
        r.push(row(
            format!("peak RSS KiB, {} clients", last.clients),
            0,
            move |s| s.load(last)?.peak_rss_kib,
        ));
    }
    let idle = plan.idle_hold;
    r.push(row(
        format!("RSS B per idle conn, {idle} conns"),
        0,
        move |s| s.hold(idle)?.rss_per_conn,
    ));
    let top = plan.ceiling;
    r.push(sized_row(
        format!("hold {top}: failed (worst)"),
        0,
        top,
        "hold",
        move |s| s.hold(top)?.failed_worst,
    ));
    r.push(sized_row(
        format!("hold {top}: peak RSS KiB (worst)"),
        0,
        top,
        "hold",
        move |s| s.hold(top)?.peak_rss_kib_worst,
    ));
    for n in plan.burst_sizes() {
        r.push(sized_row(
            format!("burst {n}: last echo ms"),
            1,
            n,
            "burst",
            move |s| s.burst(n)?.last_echo_ms,
        ));
        r.push(sized_row(
            format!("burst {n}: p99 ms from own connect"),
            1,
            n,
            "burst",
            move |s| s.burst(n)?.own_echo_p99_ms,
        ));
        r.push(sized_row(
            format!("burst {n}: failed (worst)"),
            0,
            n,
            "burst",
            move |s| s.burst(n)?.failed_worst,
        ));
        if n >= 10000 {
            r.push(sized_row(
                format!("burst {n}: SYN retransmits (worst)"),
                0,
                n,
                "burst",
                move |s| s.burst(n)?.syn_retransmits_worst,
            ));
            r.push(sized_row(
                format!("burst {n}: peak RSS KiB (worst)"),
                0,
                n,
                "burst",
                move |s| s.burst(n)?.peak_rss_kib_worst,
            ));
        }
    }
    r.push(row("probe p99 ms, alone".into(), 3, |s| {
        s.fairness.as_ref()?.probe_alone_p99_ms
    }));
    r.push(row("probe p50 ms beside a bulk client".into(), 3, |s| {
        s.fairness.as_ref()?.probe_p50_ms
    }));
    r.push(row("probe p99 ms beside a bulk client".into(), 3, |s| {
        s.fairness.as_ref()?.probe_p99_ms
    }));
    r.push(row("bulk client MiB/s each way".into(), 0, |s| {
        s.fairness.as_ref()?.bulk_mib_per_s
    }));
    r.push(row(
        "user-space instructions per request, 50 x 512 B".into(),
        0,
        |s| s.instructions_per_request,
    ));
    for &load in &plan.loads {
        let l = load.label();
        r.push(row(format!("server CPU busy %, {l}"), 0, move |s| {
            s.load(load)?.server_busy.map(|x| 100.0 * x)
        }));
        r.push(row(
            format!("load generator CPU busy %, {l}"),
            0,
            move |s| s.load(load)?.load_busy.map(|x| 100.0 * x),
        ));
    }
    r
}

pub fn table(plan: &Plan, s: &Summary) -> String {
    let mut t = format!(
        "| metric (median over rounds; failed, peaks: worst of {}) |",
        plan.other_rounds
    );
    for x in &s.servers {
        let _ = write!(t, " {} |", x.name);
    }
    t.push_str("\n|---|");
    for _ in &s.servers {
        t.push_str("---:|");
    }
    t.push('\n');
    for r in rows(plan) {
        let cells: Vec<Cell> = s.servers.iter().map(|x| (r.get)(x)).collect();
        if cells.iter().all(|c| matches!(c, Cell::Value(None))) {
            continue; // not measured in this run at all
        }
        let _ = write!(t, "| {} |", r.label);
        for c in cells {
            let text = match c {
                Cell::Skipped => "skipped".to_string(),
                Cell::Value(None) => "n/a".to_string(),
                Cell::Value(Some(v)) => format!("{v:.*}", r.digits),
            };
            let _ = write!(t, " {text} |");
        }
        t.push('\n');
    }
    t
}

/// Where echo-reactor's instructions go, and each server's total.
pub fn instructions_table(runs: &[ServerRuns]) -> String {
    let mut t = String::new();
    let measured: Vec<_> = runs
        .iter()
        .filter_map(|r| Some((r.name, r.instructions.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return t;
    }
    t.push_str("| server | instructions per request | fixed cost (start, connects, exit) | requests, short / long run |\n|---|---:|---:|---:|\n");
    for (name, i) in &measured {
        let _ = writeln!(
            t,
            "| {name} | {:.0} | {:.0} | {} / {} |",
            i.per_request, i.fixed, i.short.requests, i.long.requests
        );
    }
    for (name, i) in &measured {
        if *name != "echo-reactor" {
            continue;
        }
        let _ = write!(
            t,
            "\n| {name}: function | object | instructions per request | share |\n|---|---|---:|---:|\n"
        );
        let mut shown = 0.0;
        for f in i.functions.iter().take(16) {
            shown += f.per_request;
            let _ = writeln!(
                t,
                "| `{}` | {} | {:.1} | {:.0} % |",
                f.function.replace('|', "\\|"),
                f.object,
                f.per_request,
                100.0 * f.per_request / i.per_request
            );
        }
        let _ = writeln!(
            t,
            "| everything else | | {:.1} | {:.0} % |",
            i.per_request - shown,
            100.0 * (i.per_request - shown) / i.per_request
        );
    }
    t
}

/// The spread of the median ratio to the floor after k rounds, for each k.
pub fn spread_table(s: &Summary) -> String {
    let mut t = String::new();
    let cols: Vec<_> = s
        .spread_by_rounds
        .iter()
        .filter(|c| c.server == "echo-reactor")
        .collect();
    // Rounds, not entries: a spread exists only from the fifth round on.
    let Some(kmax) = cols
        .iter()
        .filter_map(|c| c.spread.last())
        .map(|(k, _)| *k)
        .max()
    else {
        return t;
    };
    t.push_str("| rounds |");
    for c in &cols {
        let _ = write!(t, " spread of the median ratio, {} |", c.load.label());
    }
    t.push_str("\n|---:|");
    for _ in &cols {
        t.push_str("---:|");
    }
    t.push('\n');
    for k in 1..=kmax {
        let _ = write!(t, "| {k} |");
        for c in &cols {
            let v = c.spread.iter().find(|(kk, _)| *kk == k).map(|(_, v)| *v);
            let _ = write!(
                t,
                " {} |",
                v.map_or("n/a".into(), |v| format!("{:.1} %", 100.0 * v))
            );
        }
        t.push('\n');
    }
    t
}

/// Where the load generator, not the server, set the pace.
pub fn notes(plan: &Plan, s: &Summary) -> Vec<String> {
    let mut notes = Vec::new();
    for &load in &plan.loads {
        for x in &s.servers {
            let Some(l) = x.load(load) else { continue };
            if let (Some(srv), Some(gen)) = (l.server_busy, l.load_busy) {
                if gen >= 0.93 && srv < 0.90 {
                    notes.push(format!(
                        "note: {} at {}: load generator {:.0}% busy, server {:.0}%: req/s is generator-bound there (req per CPU-s still compares)",
                        x.name, load.label(), gen * 100.0, srv * 100.0
                    ));
                }
            }
        }
    }
    for x in &s.servers {
        for why in &x.skipped {
            notes.push(format!("note: {} skipped {why}", x.name));
        }
    }
    notes
}

#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_gib: Option<f64>,
    pub date: String,
    pub somaxconn: String,
    /// /proc/loadavg when the suite started: others' work on a shared machine.
    pub loadavg_at_start: String,
}

pub fn machine() -> Machine {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_string();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    Machine {
        cpus: thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
            .unwrap_or_default(),
        kernel: read("/proc/sys/kernel/osrelease"),
        mem_gib: meminfo
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|k| (k / 1048576.0 * 10.0).round() / 10.0),
        date: Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        somaxconn: read("/proc/sys/net/core/somaxconn"),
        loadavg_at_start: read("/proc/loadavg"),
    }
}

/// Everything a run produced, as results.json holds it.
#[derive(Serialize)]
pub struct Results<'a> {
    pub machine: Machine,
    /// "a fresh network namespace per measurement" or "the host's".
    pub network: String,
    pub pinned: bool,
    pub syscall_method: String,
    pub loadavg_at_end: String,
    pub plan: &'a Plan,
    pub servers: &'a [Contender],
    pub summary: &'a Summary,
    /// None in a quick run: nothing is judged.
    pub targets: Option<&'a [Verdict]>,
    pub table_markdown: String,
    pub instructions_markdown: String,
    pub spread_markdown: String,
    pub notes: Vec<String>,
    pub failures: &'a [String],
    pub runs: &'a [ServerRuns],
    pub suite_seconds: f64,
    /// Seconds each CPU was ready while the hypervisor ran something else
    /// during the run (/proc/stat steal): how shared the machine was.
    pub steal_secs_per_cpu: Option<BTreeMap<String, f64>>,
}

/// "cpu0 1.2 s, cpu1 0.4 s", or "n/a".
pub fn per_cpu_secs(secs: Option<&BTreeMap<String, f64>>) -> String {
    match secs {
        Some(secs) if !secs.is_empty() => secs
            .iter()
            .map(|(cpu, s)| format!("{cpu} {s:.1} s"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "n/a".into(),
    }
}

/// The chart's bars, one group per server.
pub fn chart_bars(plan: &Plan, s: &Summary) -> Vec<chart::Bar> {
    s.servers
        .iter()
        .map(|x| chart::Bar {
            server: x.name.to_string(),
            rpcpu: plan
                .loads
                .iter()
                .map(|&l| x.load(l).and_then(|l| l.rpcpu))
                .collect(),
            burst: plan
                .burst_sizes()
                .iter()
                .map(|&n| x.burst(n).and_then(|b| b.last_echo_ms))
                .collect(),
            burst_failed: plan
                .burst_sizes()
                .iter()
                .map(|&n| x.burst(n).and_then(|b| b.failed_worst))
                .collect(),
            probe_p99: [
                x.fairness.as_ref().and_then(|f| f.probe_alone_p99_ms),
                x.fairness.as_ref().and_then(|f| f.probe_p99_ms),
            ],
        })
        .collect()
}
