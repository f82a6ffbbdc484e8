//! Shared helpers for the integration tests: run the real `echo-reactor`
//! binary on port 0, talk to it over real sockets with timeouts (a hang fails
//! the test instead of blocking it), and look at the process through /proc.
//!
//! Nothing here knows a particular test; any test file can `mod common;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The server binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_echo-reactor");

/// Read and write timeout of client sockets: long enough for a loaded
/// machine, short enough that a hang fails the test in reasonable time.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may take to print `listening on` or to exit.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The server process

/// Everything the server wrote to a pipe, growing as it writes.
#[derive(Default)]
struct Captured {
    text: Mutex<(Vec<u8>, bool)>, // (bytes, closed)
    grew: Condvar,
}

impl Captured {
    /// Appends what `pipe` yields until its EOF, waking waiters each time.
    fn collect(&self, mut pipe: impl Read) {
        let mut buf = [0u8; 4096];
        loop {
            let n = pipe.read(&mut buf).unwrap_or(0);
            let mut text = self.text.lock().unwrap();
            if n == 0 {
                text.1 = true;
            } else {
                text.0.extend_from_slice(&buf[..n]);
            }
            self.grew.notify_all();
            if n == 0 {
                return;
            }
        }
    }

    /// Waits until the pipe reached EOF (the writer exited); false on timeout.
    fn wait_closed(&self, timeout: Duration) -> bool {
        let text = self.text.lock().unwrap();
        let (text, _) = self
            .grew
            .wait_timeout_while(text, timeout, |text| !text.1)
            .unwrap();
        text.1
    }

    fn bytes(&self) -> Vec<u8> {
        self.text.lock().unwrap().0.clone()
    }
}

/// A running `echo-reactor`; killed (SIGKILL) and reaped on drop.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Captured>,
    /// Stdout after the `listening on` line (the contract says: nothing).
    stdout_rest: Arc<Captured>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Server {
    /// Starts the binary with `args`, adding `--listen 127.0.0.1:0` unless
    /// `args` has a `--listen`, and waits for its `listening on ADDR` line.
    /// `RUST_LOG` is removed from the environment, so the default level
    /// (info) applies.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// Like `start`, with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut all: Vec<&str> = Vec::new();
        if !args
            .iter()
            .any(|a| *a == "--listen" || a.starts_with("--listen="))
        {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        all.extend_from_slice(args);
        let mut cmd = Command::new(BIN);
        cmd.args(&all)
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));

        let stderr = Arc::new(Captured::default());
        let mut readers = Vec::new();
        {
            let pipe = child.stderr.take().expect("stderr is piped");
            let captured = Arc::clone(&stderr);
            readers.push(std::thread::spawn(move || captured.collect(pipe)));
        }
        let (first_line, rx) = mpsc::channel();
        let stdout_rest = Arc::new(Captured::default());
        {
            let pipe = child.stdout.take().expect("stdout is piped");
            let rest = Arc::clone(&stdout_rest);
            readers.push(std::thread::spawn(move || {
                let mut pipe = BufReader::new(pipe);
                let mut line = String::new();
                let first = pipe.read_line(&mut line).map(|n| (n > 0).then_some(line));
                let _ = first_line.send(first);
                // Keep the rest (there should be none), draining the pipe so
                // the server never blocks on it.
                rest.collect(pipe);
            }));
        }
        let mut server = Server {
            child,
            // Replaced below once the server says where it listens.
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr,
            stdout_rest,
            readers,
            status: None,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(Some(line))) => line,
            other => {
                let status = server.kill_and_wait();
                server.stderr.wait_closed(Duration::from_secs(2));
                panic!(
                    "{BIN} {all:?} printed no `listening on` line ({other:?}); \
                     exit: {status:?}; stderr:\n{}",
                    server.stderr_text()
                );
            }
        };
        server.addr = parse_listening_line(&line)
            .unwrap_or_else(|| panic!("first stdout line is not `listening on ADDR`: {line:?}"));
        server
    }

    /// The address from the `listening on` line (the real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new client connection with read/write timeouts set.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// What the server wrote to stdout after its `listening on` line so far.
    pub fn stdout_after_first_line(&self) -> Vec<u8> {
        self.stdout_rest.bytes()
    }

    /// Waits until the server closed stdout and stderr (it exited and the
    /// readers have everything); false on timeout.
    pub fn wait_output_closed(&self, timeout: Duration) -> bool {
        self.stdout_rest.wait_closed(timeout) && self.stderr.wait_closed(timeout)
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.bytes()).into_owned()
    }

    /// Waits until stderr holds at least `n` lines containing `needle`;
    /// returns the n-th, or `None` on timeout or when the server exited.
    pub fn wait_for_stderr_line(
        &self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut text = self.stderr.text.lock().unwrap();
        loop {
            let found = String::from_utf8_lossy(&text.0)
                .lines()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
                .map(str::to_owned);
            if found.is_some() || text.1 {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            text = self
                .stderr
                .grew
                .wait_timeout(text, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Number of stderr lines so far containing `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Sends a signal by name (`TERM`, `INT`, `USR1`, `KILL`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Asks for the counters with SIGUSR1 and returns the `stats:` line's
    /// fields (accepted, active, bytes_in, ...).
    pub fn stats(&self) -> HashMap<String, u64> {
        let needle = "] stats: ";
        let before = self.stderr_count(needle);
        self.signal("USR1");
        let line = self
            .wait_for_stderr_line(needle, before + 1, IO_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "no `stats:` line after SIGUSR1; stderr:\n{}",
                    self.stderr_text()
                )
            });
        parse_stats(&line)
    }

    /// The process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits for the exit (panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "server did not exit within {timeout:?} of SIGTERM; stderr:\n{}",
                self.stderr_text()
            )
        })
    }

    fn kill_and_wait(&mut self) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// Threads of the process right now (`/proc/PID/task` entries).
    pub fn threads(&self) -> usize {
        thread_count(self.pid())
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Open descriptors of the process (`/proc/PID/fd` entries).
    pub fn fds(&self) -> usize {
        fd_count(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_and_wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// `listening on 127.0.0.1:4242` -> the address.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("listening on ")?
        .strip_suffix('\n')?
        .parse()
        .ok()
}

/// The `key=value` fields of a `stats:` or `final stats:` log line.
pub fn parse_stats(line: &str) -> HashMap<String, u64> {
    let at = line.find("stats: ").expect("a stats line") + "stats: ".len();
    line[at..]
        .split_whitespace()
        .filter_map(|field| {
            let (key, value) = field.split_once('=')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Runs the binary to completion (for flags that make it exit at once) and
/// returns its output; kills it and panics if it is still running after
/// `START_TIMEOUT` (e.g. a bad flag that was accepted and started a server).
pub fn run_to_exit(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
    let deadline = Instant::now() + START_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!(
                "`{BIN} {args:?}` still running after {START_TIMEOUT:?}; stdout: {:?} stderr: {:?}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

// ---------------------------------------------------------------------------
// Clients

/// Connects with a timeout and sets `IO_TIMEOUT` for reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads exactly `n` bytes; panics with what did arrive on timeout or EOF.
pub fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    let mut have = 0;
    while have < n {
        match stream.read(&mut got[have..]) {
            Ok(0) => panic!("EOF after {have} of {n} bytes: {:?}", show(&got[..have])),
            Ok(k) => have += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "reading {n} bytes: {e} after {have} bytes: {:?}",
                show(&got[..have])
            ),
        }
    }
    got
}

/// Reads until EOF. An error (timeout, reset) is returned with what arrived.
pub fn try_read_to_eof(stream: &mut TcpStream) -> Result<Vec<u8>, (io::Error, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((e, got)),
        }
    }
}

/// Reads until EOF; panics on a timeout or a reset instead of a clean FIN.
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    try_read_to_eof(stream).unwrap_or_else(|(e, got)| {
        panic!(
            "no clean EOF: {e} ({:?}) after {} bytes: {:?}",
            e.kind(),
            got.len(),
            show(&got)
        )
    })
}

/// Writes `msg` and expects exactly `msg` back.
pub fn echo(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).expect("write");
    let got = read_exactly(stream, msg.len());
    assert_eq!(show(&got), show(msg), "echo differs");
}

/// Asserts that nothing (no byte, no EOF) arrives within `wait`.
pub fn assert_silent(stream: &mut TcpStream, wait: Duration) {
    let old = stream.read_timeout().unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    let result = stream.read(&mut buf);
    stream.set_read_timeout(old).unwrap();
    match result {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("expected silence, got EOF"),
        Ok(n) => panic!("expected silence, got {:?}", show(&buf[..n])),
        Err(e) => panic!("expected silence, got error {e}"),
    }
}

/// Bytes for assertion messages: text stays readable, binary is escaped,
/// long data is cut.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let mut s: String = bytes[..bytes.len().min(MAX)]
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > MAX {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

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

// ---------------------------------------------------------------------------
// /proc

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

// ---------------------------------------------------------------------------
// Data

/// A deterministic byte stream (xorshift64*) covering every byte value, so
/// large payloads need no storage: the sender and the checker regenerate it.
#[derive(Clone)]
pub struct Payload(u64);

impl Payload {
    pub fn new(seed: u64) -> Self {
        Payload(seed.max(1))
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.fill(&mut buf);
        buf
    }
}

/// FNV-1a over a stream, plus its length: equal digests of two streams fed
/// in different chunkings mean equal bytes (up to a 64-bit collision).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Digest {
    pub len: u64,
    pub hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn of(bytes: &[u8]) -> Digest {
        let mut d = Digest::default();
        d.update(bytes);
        d
    }
}

/// Whether `bytes` (a whole stream) has a line starting with `quit`; such a
/// payload would end the session under the quit rule.
pub fn has_quit_line(bytes: &[u8]) -> bool {
    bytes.starts_with(b"quit") || bytes.windows(5).any(|w| w == b"\nquit")
}
