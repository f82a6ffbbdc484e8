//! Helpers for the operations tests of issue 3 (`tests/ops_*.rs`): start the
//! real `echo-reactor` binary (directly or through a wrapper command), follow
//! its stderr log, send it signals, ask it for stats (SIGUSR1), wait for its
//! exit, and talk to it over real sockets. No `unsafe`, no extra crates.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_echo-reactor");

/// How long any single blocking socket call may take before the test fails
/// instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The server's stderr, line by line

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    eof: bool,
}

/// Every stderr line of a child process, as it arrives.
#[derive(Default)]
pub struct Log {
    state: Mutex<LogState>,
    cv: Condvar,
}

impl Log {
    /// Follows `reader` on a thread until it ends.
    pub fn follow(reader: impl Read + Send + 'static) -> Arc<Log> {
        let log = Arc::new(Log::default());
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => sink.push(String::from_utf8_lossy(&buf).trim_end().to_string()),
                }
            }
            sink.close();
        });
        log
    }

    fn push(&self, line: String) {
        self.state.lock().unwrap().lines.push(line);
        self.cv.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap().eof = true;
        self.cv.notify_all();
    }

    pub fn lines(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        let st = self.state.lock().unwrap();
        st.lines.iter().filter(|l| pred(l)).count()
    }

    /// Waits until `n` lines satisfy `pred` and returns the n-th; `None` if
    /// the stream ends or `timeout` passes first.
    pub fn wait_nth(
        &self,
        n: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(line) = st.lines.iter().filter(|l| pred(l)).nth(n - 1) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if st.eof || now >= deadline {
                return None;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// The first line containing `needle`, waiting for it up to `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_nth(1, |l| l.contains(needle), timeout)
    }

    /// Waits until the writer closed the stream (the process exited).
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        while !st.eof {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
        true
    }

    /// The whole log, for failure messages.
    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }

    /// Lines at WARN or ERROR level (env_logger's `[time LEVEL target]`).
    pub fn warnings(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Stats lines

/// The `key=value` fields of a `stats:` or `final stats:` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats(pub HashMap<String, u64>);

/// Every field the contract lists, in order.
pub const STATS_FIELDS: [&str; 14] = [
    "accepted",
    "active",
    "closed_client",
    "closed_quit",
    "closed_idle",
    "closed_error",
    "closed_shutdown",
    "bytes_in",
    "bytes_out",
    "accept_batches",
    "largest_batch",
    "accept_pauses_fd",
    "accept_pauses_limit",
    "backpressure_pauses",
];

impl Stats {
    /// Parses the fields after `stats: `; every field of the contract must be there.
    pub fn parse(line: &str) -> Stats {
        let at = line
            .find("stats: ")
            .unwrap_or_else(|| panic!("not a stats line: {line:?}"));
        let mut map = HashMap::new();
        for token in line[at + "stats: ".len()..].split_whitespace() {
            let (key, value) = token
                .split_once('=')
                .unwrap_or_else(|| panic!("bad field {token:?} in {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value {token:?} in {line:?}"));
            map.insert(key.to_string(), value);
        }
        for field in STATS_FIELDS {
            assert!(map.contains_key(field), "no {field}= in {line:?}");
        }
        Stats(map)
    }

    pub fn get(&self, key: &str) -> u64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no field {key} in {:?}", self.0))
    }
}

/// A SIGUSR1 snapshot line (not the exit line).
pub fn is_stats_line(line: &str) -> bool {
    line.contains(" stats: accepted=") && !line.contains("final stats:")
}

pub fn is_final_stats_line(line: &str) -> bool {
    line.contains("final stats: accepted=")
}

// ---------------------------------------------------------------------------
// The server process

/// A running server (or a wrapper that `exec`s it); killed on drop.
pub struct Server {
    child: Child,
    pub pid: u32,
    /// From the `listening on` line.
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    status: Option<ExitStatus>,
    stats_lock: Mutex<()>,
}

impl Server {
    /// `echo-reactor --listen 127.0.0.1:0 ARGS` at log level info.
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info");
        Server::spawn(cmd)
    }

    /// Runs a prepared command whose process is (or `exec`s into) the server;
    /// its stdout and stderr are taken here. Waits for `listening on`.
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if cmd.get_envs().all(|(k, _)| k != "LISTEN_FDS") {
            cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        let pid = child.id();
        let log = Log::follow(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line.clone()));
            // Keep draining so the server never blocks on a full pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok(line)) if line.starts_with("listening on ") => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                log.wait_eof(Duration::from_secs(2));
                panic!(
                    "no `listening on` line from the server: {other:?}\nstderr:\n{}",
                    log.dump()
                );
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad `listening on` line {line:?}"));
        Server {
            child,
            pid,
            addr,
            log,
            status: None,
            stats_lock: Mutex::new(()),
        }
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// `kill -SIG pid` (SIG without the prefix: TERM, INT, USR1, KILL).
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid, sig);
    }

    /// Sends SIGUSR1 and returns the snapshot it logs.
    pub fn stats(&self) -> Stats {
        let _serial = self.stats_lock.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.log.count(is_stats_line);
        self.signal("USR1");
        let line = self
            .log
            .wait_nth(before + 1, is_stats_line, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no `stats:` line within 10 s of SIGUSR1; stderr:\n{}",
                    self.log.dump()
                )
            });
        Stats::parse(&line)
    }

    /// Asks for stats until `pred` holds; panics after `timeout`.
    pub fn stats_until(&self, timeout: Duration, pred: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if pred(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "stats never reached the expected state; last: {stats:?}\nstderr:\n{}",
                self.log.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Threads of the server process (from /proc).
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    pub fn assert_one_thread(&self, when: &str) {
        assert_eq!(self.threads(), 1, "server has more than one thread {when}");
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Polls for the exit, every few ms, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                // The log thread sees EOF right after.
                self.log.wait_eof(Duration::from_secs(5));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Like `wait_exit` but panics (with the log) if the process is still
    /// running after `timeout`.
    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "server still running {timeout:?} later; stderr:\n{}",
                self.log.dump()
            ),
        }
    }

    /// The `final stats:` line, which must be there once the process exited.
    pub fn final_stats(&self) -> Stats {
        let line = self
            .log
            .wait_nth(1, is_final_stats_line, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no `final stats:` line; stderr:\n{}", self.log.dump()));
        Stats::parse(&line)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `kill -SIG pid`.
pub fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

// ---------------------------------------------------------------------------
// Clients

/// A blocking client with timeouts, so a hang fails the test instead.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes `msg` and reads exactly as many bytes back; they must match.
pub fn roundtrip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).expect("write");
    let mut back = vec![0; msg.len()];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("reading the echo of {} bytes: {e}", msg.len()));
    assert!(back == msg, "echo differs from what was sent");
}

/// One whole session: connect, echo `msg`, half-close, expect a clean EOF.
pub fn echo_session(addr: SocketAddr, msg: &[u8]) {
    let mut stream = connect(addr);
    roundtrip(&mut stream, msg);
    stream.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut stream);
}

/// The server closes its side: the next read returns 0 (not data, not an error).
pub fn expect_eof(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => {}
        Ok(_) => panic!("{} unexpected bytes before EOF", rest.len()),
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

/// Reads until EOF; returns what came. Errors (reset, timeout) are returned.
pub fn read_to_eof(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    Ok(all)
}

/// Waits up to `timeout` for at least one byte. `Ok(None)` if none came in
/// time, `Ok(Some(vec![]))` on EOF.
pub fn read_within(stream: &mut TcpStream, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = vec![0; 64 * 1024];
    let result = match stream.read(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    };
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    result
}

/// Connecting is refused within `within` (polled every 5 ms). The server
/// logs `shutting down` just before it closes its listener, so a connect
/// right after that line can still land in the backlog; such a connection
/// must then be reset, never served.
pub fn assert_refused_soon(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connect {addr}: expected `connection refused`, got {e}"),
            Ok(mut stream) => {
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let _ = stream.write_all(b"probe\n");
                let mut buf = [0; 16];
                if let Ok(n) = stream.read(&mut buf) {
                    assert_eq!(n, 0, "a connection made after the signal was served");
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "connect {addr}: still accepted {within:?} after the signal was handled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connecting must fail with "connection refused".
pub fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connect {addr}: expected `connection refused`, got {e}"),
        Ok(_) => panic!("connect {addr}: accepted, expected `connection refused`"),
    }
}

/// Deterministic bytes with no line starting with `quit` (there are no
/// newlines at all), different for each `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// Writes as much of `data` as the connection takes without anyone reading
/// the echo: stops when a write makes no progress for `stall` (the pipe
/// client -> server -> client is full) or all of it is written. Returns the
/// bytes written, all of them in the kernel now.
pub fn write_until_full(stream: &mut TcpStream, data: &[u8], stall: Duration) -> usize {
    stream.set_write_timeout(Some(stall)).unwrap();
    let mut written = 0;
    while written < data.len() {
        let end = data.len().min(written + 64 * 1024);
        match stream.write(&data[written..end]) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("write after {written} bytes: {e}"),
        }
    }
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    written
}

/// Polls `f` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A port nobody listens on right now (for configs that need a number up
/// front, such as HAProxy's frontend).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "echo-reactor-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
