//! Counting a server's reads per turn of its event loop with strace(1):
//! attach to the running process for a while, then count, for each file
//! descriptor, the `read`/`recvfrom` calls between two consecutive
//! `epoll_wait` calls. The count depends on the server's code, not on
//! timing: a server that caps the reads of one connection per turn never
//! exceeds the cap, however fast the data comes.
//!
//! Also finds the server's fd of one connection (by socket inode), so the
//! count can be reported for that connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

/// strace runs here.
pub fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An strace attached to a process, writing its trace to a file.
pub struct Tracer {
    child: Child,
    stderr: Arc<Log>,
    out: std::path::PathBuf,
    _dir: TempDir,
}

/// Reads per descriptor and turn, from one trace.
#[derive(Debug, Default)]
pub struct TurnReads {
    /// `epoll_wait` calls seen (turns of the loop).
    pub polls: u64,
    /// `read`/`recvfrom` calls seen.
    pub reads: u64,
    /// For each fd, the most reads of it between two polls.
    pub most_per_fd: HashMap<i32, u32>,
}

impl TurnReads {
    /// The fd read most often in one turn, and that count.
    pub fn most(&self) -> Option<(i32, u32)> {
        self.most_per_fd
            .iter()
            .map(|(&fd, &n)| (fd, n))
            .max_by_key(|&(fd, n)| (n, -fd))
    }
}

impl Tracer {
    /// Attaches to `pid` (and any threads it has); returns once strace says
    /// it is attached.
    pub fn attach(pid: u32) -> Tracer {
        let dir = TempDir::new("strace");
        let out = dir.0.join("trace");
        let mut child = Command::new("strace")
            .args(["-f", "-s", "0", "-o"])
            .arg(&out)
            .args(["-e", "trace=epoll_wait,epoll_pwait,read,recvfrom", "-p"])
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strace");
        let stderr = Log::follow(child.stderr.take().expect("stderr is piped"));
        if stderr
            .wait_for("attached", Duration::from_secs(10))
            .is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strace did not attach to {pid}: {}", stderr.dump());
        }
        Tracer {
            child,
            stderr,
            out,
            _dir: dir,
        }
    }

    /// Detaches (SIGINT: strace lets the process run on) and counts.
    pub fn detach(mut self) -> TurnReads {
        send_signal(self.child.id(), "INT");
        let exited = wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("strace did not detach: {}", self.stderr.dump());
        }
        let text = std::fs::read_to_string(&self.out)
            .unwrap_or_else(|e| panic!("{}: {e}", self.out.display()));
        count_turn_reads(&text)
    }
}

/// Parses strace output (`-f -o`, so each line may start with a pid).
/// A call cut in two by another thread (`<unfinished ...>`, then
/// `<... resumed>`) counts once, at its start. Reads before the first poll
/// and after the last belong to partial turns and count as such.
pub fn count_turn_reads(text: &str) -> TurnReads {
    let mut result = TurnReads::default();
    let mut turn: HashMap<i32, u32> = HashMap::new();
    let fold = |turn: &mut HashMap<i32, u32>, result: &mut TurnReads| {
        for (fd, n) in turn.drain() {
            let most = result.most_per_fd.entry(fd).or_insert(0);
            *most = (*most).max(n);
        }
    };
    for line in text.lines() {
        let call = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        match name {
            "epoll_wait" | "epoll_pwait" => {
                fold(&mut turn, &mut result);
                result.polls += 1;
            }
            "read" | "recvfrom" => {
                if let Some(fd) = args.split(',').next().and_then(|f| f.trim().parse().ok()) {
                    *turn.entry(fd).or_insert(0) += 1;
                    result.reads += 1;
                }
            }
            _ => {}
        }
    }
    fold(&mut turn, &mut result);
    result
}

/// The fd that process `pid` holds for the TCP connection `local` <->
/// `remote` (IPv4), found through the socket's inode in /proc/net/tcp.
pub fn fd_of_connection(pid: u32, local: SocketAddr, remote: SocketAddr) -> Option<i32> {
    let key = format!("{} {} ", proc_net_addr(local)?, proc_net_addr(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().find_map(|line| {
        let rest = &line[line.find(": ")? + 2..];
        let fields: Vec<&str> = rest.strip_prefix(&key)?.split_whitespace().collect();
        // st, tx:rx, tr:when, retrnsmt, uid, timeout, inode; 01 = established
        if fields.first() != Some(&"01") {
            return None;
        }
        fields.get(6).map(|s| s.to_string())
    })?;
    let target = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|link| link.to_str() == Some(&target))
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
}

/// An IPv4 address as /proc/net/tcp prints it (the address as a host-order
/// word in hex, the port in hex).
fn proc_net_addr(addr: SocketAddr) -> Option<String> {
    match addr.ip() {
        IpAddr::V4(ip) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(ip.octets()),
            addr.port()
        )),
        IpAddr::V6(_) => None,
    }
}

#[test]
fn turn_reads_parse() {
    let trace = "\
123   read(4, \"\"..., 65536) = 65536
123   epoll_wait(3, [{events=EPOLLIN, data={u32=1, u64=1}}], 1024, -1) = 1
123   recvfrom(9, \"\"..., 65536, 0, NULL, NULL) = 65536
123   recvfrom(9, \"\"..., 65536, 0, NULL, NULL) = 65536
123   recvfrom(7, \"\"..., 65536, 0, NULL, NULL) = 64
123   recvfrom(9, \"\"..., 65536, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)
123   epoll_wait(3,  <unfinished ...>
123   <... epoll_wait resumed>[], 1024, 0) = 0
123   --- SIGUSR1 {si_signo=SIGUSR1, si_code=SI_USER} ---
123   recvfrom(9, \"\"..., 65536, 0, NULL, NULL) = 65536
123   epoll_wait(3, [], 1024, 0) = 0
";
    let counts = count_turn_reads(trace);
    assert_eq!(counts.polls, 3);
    assert_eq!(counts.reads, 6);
    assert_eq!(counts.most_per_fd[&9], 3);
    assert_eq!(counts.most_per_fd[&7], 1);
    assert_eq!(counts.most_per_fd[&4], 1);
    assert_eq!(counts.most(), Some((9, 3)));
}
