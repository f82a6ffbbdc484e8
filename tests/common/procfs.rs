//! The process and its sockets through /proc. The readers themselves are
//! the benchmark's (one copy for both); here they panic with the path when
//! the process is gone, which in a test is a failure, and
//! `wait_until_server_read` waits on the TCP queues.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

// The benchmark binary is the home of the readers: tests depend on the
// project's sources, never the other way round.
#[path = "../../src/bin/echo-bench/procfs.rs"]
mod readers;

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
        let table = readers::tcp_table(client)
            .unwrap_or_else(|| panic!("cannot read the TCP table of {client}"));
        let client_tx = readers::tcp_queues_in(&table, client, server).map(|q| q.0);
        let server_rx = readers::tcp_queues_in(&table, server, client).map(|q| q.1);
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

/// Threads of process `pid`: entries of /proc/PID/task.
pub fn thread_count(pid: u32) -> usize {
    readers::thread_count(pid).unwrap_or_else(|| panic!("cannot read /proc/{pid}/task"))
}

/// Resident set size of `pid` in KiB: `VmRSS` from /proc/PID/status.
pub fn rss_kib(pid: u32) -> u64 {
    status_field_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`, ...).
pub fn status_field_kib(pid: u32, field: &str) -> u64 {
    readers::status_kb(pid, field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Open descriptors of `pid`: entries of /proc/PID/fd.
pub fn fd_count(pid: u32) -> usize {
    readers::fd_count(pid).unwrap_or_else(|| panic!("cannot read /proc/{pid}/fd"))
}

/// CPU time `pid` has used (utime + stime from /proc/PID/stat), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    readers::cpu_secs(pid).unwrap_or_else(|| panic!("cannot read /proc/{pid}/stat"))
}

/// `(tx_queue, rx_queue)` of the live TCP socket `local` -> `remote`.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    readers::tcp_queues(local, remote)
}
