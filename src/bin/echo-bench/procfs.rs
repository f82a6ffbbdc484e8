//! Readers for /proc: a process's threads, open fds, memory and CPU time,
//! the queues of one TCP socket (/proc/net/tcp{,6}), the kernel's TCP
//! counters (SYN retransmits, listen-queue overflows), and the CPU time the
//! hypervisor took.
//!
//! The one copy of these readers: the benchmark uses it as a module, and the
//! integration tests include this file (`tests/common/procfs.rs`), so it
//! needs nothing but std. Every reader returns `None` when the file cannot
//! be read or parsed (the process may have exited); callers decide whether
//! that is an error.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`, ...), in KiB.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Current resident set size in KiB (VmRSS).
pub fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// Peak resident set size in KiB (VmHWM).
pub fn hwm_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

/// utime + stime of the whole process (all threads, live and exited), in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may hold spaces: state is field 3,
    // utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second for /proc/PID/stat and /proc/stat (`getconf CLK_TCK`, else 100).
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// CPU seconds (utime+stime) a process has used so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    cpu_ticks(pid).map(|t| t as f64 / clk_tck() as f64)
}

/// Seconds each online CPU was ready to run this guest while the
/// hypervisor ran something else (the `steal` column of /proc/stat), by
/// CPU name (`cpu0`, ...). A benchmark on a shared virtual machine loses
/// that time from under its measurements.
pub fn steal_secs() -> Option<BTreeMap<String, f64>> {
    let tck = clk_tck() as f64;
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let per_cpu = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            // user nice system idle iowait irq softirq steal
            let ticks: u64 = f.nth(7)?.parse().ok()?;
            Some((name, ticks as f64 / tck))
        })
        .collect();
    Some(per_cpu)
}

/// Number of open file descriptors of a process (/proc/PID/fd entries).
pub fn fd_count(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Number of threads of a process (/proc/PID/task entries).
pub fn thread_count(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .ok()
        .map(|d| d.count())
}

/// `(tx_queue, rx_queue)` of the live TCP socket `local` -> `remote`, from
/// /proc/net/tcp (IPv4) or /proc/net/tcp6 (IPv6).
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    tcp_queues_in(&tcp_table(local)?, local, remote)
}

/// The text of /proc/net/tcp or /proc/net/tcp6, whichever holds `addr`:
/// read once, it can serve several `tcp_queues_in` look-ups.
pub fn tcp_table(addr: SocketAddr) -> Option<String> {
    let table = match addr.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    fs::read_to_string(table).ok()
}

/// `(tx_queue, rx_queue)` of `local` -> `remote` in a `tcp_table`. Finds the
/// line by substring search (the table can hold tens of thousands of
/// TIME_WAIT lines, some with the same addresses as a live socket; parsing
/// every line is slow in a debug build) and parses only the live socket's.
pub fn tcp_queues_in(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    const TIME_WAIT: &str = "06";
    let key = format!(" {} {} ", proc_net_addr(local), proc_net_addr(remote));
    table.match_indices(&key).find_map(|(at, _)| {
        let mut fields = table[at + key.len()..].split_whitespace();
        if fields.next()? == TIME_WAIT {
            return None;
        }
        let (tx, rx) = fields.next()?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// An address as /proc/net/tcp prints it: the address's 32-bit words in
/// host byte order as hex, then the port in hex.
fn proc_net_addr(addr: SocketAddr) -> String {
    let octets: Vec<u8> = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    let words: String = octets
        .chunks(4)
        .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .collect();
    format!("{words}:{:04X}", addr.port())
}

/// TCP counters from /proc/net/snmp (`Tcp`) and /proc/net/netstat (`TcpExt`),
/// keyed `Tcp.RetransSegs`, `TcpExt.TCPSynRetrans`, ...
pub fn tcp_counters() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for file in ["/proc/net/snmp", "/proc/net/netstat"] {
        let Ok(s) = fs::read_to_string(file) else {
            continue;
        };
        let lines: Vec<&str> = s.lines().collect();
        for pair in lines.chunks(2) {
            let [head, vals] = pair else { continue };
            let mut h = head.split_whitespace();
            let mut v = vals.split_whitespace();
            let (Some(prefix), Some(_)) = (h.next(), v.next()) else {
                continue;
            };
            let prefix = prefix.trim_end_matches(':');
            if prefix != "Tcp" && prefix != "TcpExt" {
                continue;
            }
            for (k, val) in h.zip(v) {
                if let Ok(n) = val.parse::<u64>() {
                    out.insert(format!("{prefix}.{k}"), n);
                }
            }
        }
    }
    out
}

/// Growth of the interesting TCP counters between two snapshots.
pub fn tcp_delta(before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let after = tcp_counters();
    [
        "TcpExt.TCPSynRetrans",
        "TcpExt.ListenOverflows",
        "TcpExt.ListenDrops",
        "TcpExt.TCPReqQFullDrop",
        "TcpExt.TCPReqQFullDoCookies",
        "TcpExt.TCPTimeouts",
        "Tcp.RetransSegs",
    ]
    .iter()
    .filter_map(|k| {
        let a = after.get(*k)?;
        let b = before.get(*k).copied().unwrap_or(0);
        Some((k.to_string(), a.saturating_sub(b)))
    })
    .collect()
}
