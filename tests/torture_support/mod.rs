//! Helpers for `tests/torture.rs`: start the real server binary, read its
//! log, ask it for stats (SIGUSR1), count its fds and RSS through /proc, and
//! a small deterministic PRNG, data stream and stream hash (no extra crates).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_echo-reactor");

/// `TORTURE_FULL=1` selects the full sizes of issue 5.
pub fn full() -> bool {
    matches!(
        std::env::var("TORTURE_FULL").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// Pick the short or the full value.
pub fn scale<T>(short: T, full_value: T) -> T {
    if full() {
        full_value
    } else {
        short
    }
}

/// Torture scenarios measure fds, RSS and timing of one server; run them one
/// at a time even when the test harness uses several threads.
/// Also raises this process's soft fd limit to the hard limit (the server
/// inherits it): thousands of client sockets must not hit EMFILE here.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Print one figure line (stdout, so `--nocapture` shows it).
pub fn figure(name: &str, text: &str) {
    println!("FIGURE {name}: {text}");
}

// ---------------------------------------------------------------------------
// Server process

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    eof: bool,
}

/// Every stderr line of the server, as it arrives.
#[derive(Default)]
pub struct Log {
    state: Mutex<LogState>,
    cv: Condvar,
}

impl Log {
    fn push(&self, line: String) {
        let mut st = self.state.lock().unwrap();
        st.lines.push(line);
        self.cv.notify_all();
    }

    fn close(&self) {
        let mut st = self.state.lock().unwrap();
        st.eof = true;
        self.cv.notify_all();
    }

    pub fn lines(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.state
            .lock()
            .unwrap()
            .lines
            .iter()
            .filter(|l| pred(l))
            .count()
    }

    /// Wait until at least `n` lines satisfy `pred`; returns the n-th such line.
    pub fn wait_nth(
        &self,
        n: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            let found: Vec<&String> = st.lines.iter().filter(|l| pred(l)).collect();
            if found.len() >= n {
                return Some(found[n - 1].clone());
            }
            if st.eof {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Wait until the server closed its stderr (it exited).
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

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let st = self.state.lock().unwrap();
        let start = st.lines.len().saturating_sub(n);
        st.lines[start..].join("\n")
    }
}

/// One field set of a `stats:` / `final stats:` line.
#[derive(Debug, Clone, Default)]
pub struct Stats(pub HashMap<String, u64>);

impl Stats {
    pub fn parse(line: &str) -> Option<Stats> {
        let at = line.find("stats: ")?;
        let mut map = HashMap::new();
        for tok in line[at + 7..].split_whitespace() {
            if let Some((k, v)) = tok.split_once('=') {
                if let Ok(v) = v.parse::<u64>() {
                    map.insert(k.to_string(), v);
                }
            }
        }
        if map.is_empty() {
            None
        } else {
            Some(Stats(map))
        }
    }

    pub fn get(&self, key: &str) -> u64 {
        match self.0.get(key) {
            Some(v) => *v,
            None => panic!("stats line has no field {key}: {:?}", self.0),
        }
    }
}

pub fn is_stats_line(l: &str) -> bool {
    l.contains("stats: accepted=") && !l.contains("final stats:")
}

pub fn is_final_stats_line(l: &str) -> bool {
    l.contains("final stats: accepted=")
}

/// The real server binary, started on 127.0.0.1:0; killed on drop.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    stats_lock: Mutex<()>,
    status: Option<ExitStatus>,
}

impl Server {
    /// Start with `--listen 127.0.0.1:0` plus `args`; waits for `listening on`.
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let pid = child.id();
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let s = String::from_utf8_lossy(&buf);
                            log.push(s.trim_end().to_string());
                        }
                    }
                }
                log.close();
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let first = r.read_line(&mut line).map(|_| line.clone());
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full stdout pipe.
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(l)) => l,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server gave no `listening on` line: {other:?}\nstderr:\n{}",
                    log.tail(20)
                );
            }
        };
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad first stdout line {line:?}"));
        Server {
            child,
            pid,
            addr,
            log,
            stats_lock: Mutex::new(()),
            status: None,
        }
    }

    /// Blocking client with 20 s timeouts, so a hang fails instead of blocking.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// `kill -SIG pid`.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid);
    }

    /// SIGUSR1 and parse the `stats:` line it logs.
    pub fn stats(&self) -> Stats {
        let _g = self.stats_lock.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.log.count(is_stats_line);
        self.signal("USR1");
        match self
            .log
            .wait_nth(before + 1, is_stats_line, Duration::from_secs(10))
        {
            Some(l) => Stats::parse(&l).unwrap(),
            None => panic!(
                "no stats line after SIGUSR1 within 10 s; stderr tail:\n{}",
                self.log.tail(20)
            ),
        }
    }

    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn alive(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                false
            }
            _ => true,
        }
    }

    /// Wait for the process to exit (its stderr closes first).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.status {
            return Some(st);
        }
        if !self.log.wait_eof(timeout) {
            return None;
        }
        // stderr is closed; the exit follows at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait until `active == 0` and the fd count equals `fds`.
    pub fn wait_settled(&self, fds: usize, timeout: Duration) -> (Stats, usize, Duration) {
        let t0 = Instant::now();
        loop {
            let st = self.stats();
            let n = self.fd_count();
            if st.get("active") == 0 && n == fds {
                return (st, n, t0.elapsed());
            }
            if t0.elapsed() > timeout {
                return (st, n, t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A fresh client echoes `msg` exactly.
    pub fn echo_check(&self, msg: &[u8]) -> io::Result<()> {
        let mut s = self.connect();
        echo_roundtrip(&mut s, msg)?;
        s.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
        if !rest.is_empty() {
            return Err(io::Error::other(format!(
                "{} unexpected bytes after echo",
                rest.len()
            )));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Write `msg`, read the same number of bytes back and compare.
pub fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(io::Error::other("echo differs from what was sent"));
    }
    Ok(())
}

/// Poll `f` every `every` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(every);
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

// ---------------------------------------------------------------------------
// Deterministic randomness, data and hashing

/// SplitMix64: tiny, fast, good enough for test data and schedules.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Log-uniform in 1..=max: small sizes are as common as large ones.
    pub fn log_size(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros() as u64; // 1..=64
        let b = self.range(0, bits - 1);
        let lo = 1u64 << b;
        let hi = ((lo << 1) - 1).min(max);
        self.range(lo, hi)
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&w[..n]);
        }
    }
}

/// Random bytes with every `q` replaced, so the quit rule never triggers.
pub fn qfree_fill(rng: &mut Rng, out: &mut [u8]) {
    rng.fill(out);
    for b in out.iter_mut() {
        if *b == b'q' {
            *b = b'Q';
        }
    }
}

/// Chunking-independent 64-bit stream hash (word-wise, with a tail buffer).
#[derive(Clone)]
pub struct StreamHash {
    h: u64,
    tail: [u8; 8],
    n: usize,
    pub len: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            h: 0xcbf2_9ce4_8422_2325,
            tail: [0; 8],
            n: 0,
            len: 0,
        }
    }
}

impl StreamHash {
    #[inline]
    fn mix(&mut self, w: u64) {
        self.h = (self.h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.n > 0 {
            let take = (8 - self.n).min(data.len());
            self.tail[self.n..self.n + take].copy_from_slice(&data[..take]);
            self.n += take;
            data = &data[take..];
            if self.n < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.tail);
            self.mix(w);
            self.n = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }

    pub fn finish(&self) -> u64 {
        let mut c = self.clone();
        let mut t = [0u8; 8];
        t[..c.n].copy_from_slice(&c.tail[..c.n]);
        c.mix(u64::from_le_bytes(t));
        c.mix(c.len);
        c.h ^ (c.h >> 29)
    }
}

// ---------------------------------------------------------------------------
// The quit rule, written plainly (reference for expected echo)

/// Expected echo of a whole client stream under the quit rule:
/// (bytes echoed, whether the stream held a quit line). When there is no
/// quit line the held-back prefix is echoed at end of stream, so the echo is
/// the whole input.
pub fn quit_reference(input: &[u8]) -> (Vec<u8>, bool) {
    let mut start = 0;
    loop {
        if input[start..].starts_with(b"quit") {
            return (input[..start].to_vec(), true);
        }
        match input[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => return (input.to_vec(), false),
        }
    }
}
