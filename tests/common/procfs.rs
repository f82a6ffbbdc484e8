//! The process and its sockets through /proc: threads, descriptors, memory,
//! and the TCP queues of /proc/net/tcp{,6}.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// Waits until the server process has read everything this client sent:
/// the client's unacknowledged bytes (its tx_queue) and the server socket's
/// unread bytes (its rx_queue) are both 0 in /proc/net/tcp{,6}. Lets a test
/// put a segment boundary exactly where it wants one: after this returns,
/// the bytes written so far were consumed by a read of their own.
pub fn wait_until_server_read(stream: &TcpStream) {
    let client = stream.local_addr().unwrap();
    let server = stream.peer_addr().unwrap();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        // One read of the table serves both sides.
        let table = read_tcp_table(client);
        let client_tx = tcp_queues_in(&table, client, server).map(|q| q.0);
        let server_rx = tcp_queues_in(&table, server, client).map(|q| q.1);
        if client_tx == Some(0) && server_rx == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server did not read the bytes sent: client tx_queue {client_tx:?}, \
             server rx_queue {server_rx:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `(tx_queue, rx_queue)` of the established TCP socket `local` ->
/// `remote`, from /proc/net/tcp (IPv4) or /proc/net/tcp6 (IPv6).
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    tcp_queues_in(&read_tcp_table(local), local, remote)
}

/// The text of /proc/net/tcp or /proc/net/tcp6, whichever holds `addr`.
fn read_tcp_table(addr: SocketAddr) -> String {
    let table = match addr.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    std::fs::read_to_string(table).unwrap_or_else(|e| panic!("{table}: {e}"))
}

/// Finds the line by substring search (the table can hold tens of
/// thousands of TIME_WAIT lines, some with the same addresses as a live
/// socket; parsing every line is slow in a debug build) and parses only the
/// live socket's line.
fn tcp_queues_in(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
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

/// Threads of process `pid`: entries of /proc/PID/task.
pub fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/task: {e}"))
        .count()
}

/// Resident set size of `pid` in KiB: `VmRSS` from /proc/PID/status.
pub fn rss_kib(pid: u32) -> u64 {
    status_field_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`, ...).
pub fn status_field_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Open descriptors of `pid`: entries of /proc/PID/fd.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

/// CPU time `pid` has used (utime + stime from /proc/PID/stat), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}
