//! Readers for /proc: a server's RSS, CPU time and open fds, and the
//! kernel's TCP counters (SYN retransmits, listen-queue overflows).

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
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
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second for /proc/PID/stat (`getconf CLK_TCK`, else 100).
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

/// Number of open file descriptors of a process.
pub fn fd_count(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        assert!(hwm_kb(me).unwrap() >= rss_kb(me).unwrap() / 2);
        assert!(cpu_ticks(me).is_some());
        assert!(fd_count(me).unwrap() >= 3);
        assert!(clk_tck() > 0);
    }
}
