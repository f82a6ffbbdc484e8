//! A child's output as it arrives (raw bytes and complete lines), and the
//! `stats:` / `final stats:` lines the server logs.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct LogState {
    /// Every byte so far.
    raw: Vec<u8>,
    /// Complete lines so far (trailing whitespace trimmed); at EOF also an
    /// unterminated last line.
    lines: Vec<String>,
    /// Where the current, unterminated line starts in `raw`.
    line_start: usize,
    eof: bool,
}

/// Everything a child process wrote to one pipe, growing as it writes.
#[derive(Default)]
pub struct Log {
    state: Mutex<LogState>,
    cv: Condvar,
}

impl Log {
    /// Follows `reader` on a thread until its EOF.
    pub fn follow(reader: impl Read + Send + 'static) -> Arc<Log> {
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        std::thread::spawn(move || sink.collect(reader));
        log
    }

    /// Appends what `reader` yields until its EOF (or an error), waking
    /// waiters each time.
    pub(crate) fn collect(&self, mut reader: impl Read) {
        let mut buf = [0u8; 8192];
        loop {
            let n = match reader.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Ok(n) => n,
                Err(_) => 0,
            };
            let mut guard = self.state.lock().unwrap();
            let st = &mut *guard;
            if n == 0 {
                if st.line_start < st.raw.len() {
                    let last = String::from_utf8_lossy(&st.raw[st.line_start..]);
                    st.lines.push(last.trim_end().to_string());
                    st.line_start = st.raw.len();
                }
                st.eof = true;
                self.cv.notify_all();
                return;
            }
            let mut from = st.raw.len();
            st.raw.extend_from_slice(&buf[..n]);
            while let Some(i) = st.raw[from..].iter().position(|&b| b == b'\n') {
                let end = from + i;
                let line = String::from_utf8_lossy(&st.raw[st.line_start..end]);
                st.lines.push(line.trim_end().to_string());
                st.line_start = end + 1;
                from = end + 1;
            }
            self.cv.notify_all();
        }
    }

    /// Complete lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    /// Every byte so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.state.lock().unwrap().raw.clone()
    }

    /// Every byte so far as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.state.lock().unwrap().raw).into_owned()
    }

    /// Number of complete lines so far satisfying `pred`.
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

    /// Waits until the writer closed the stream (the process exited);
    /// false on timeout.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let st = self.state.lock().unwrap();
        let (st, _) = self
            .cv
            .wait_timeout_while(st, timeout, |st| !st.eof)
            .unwrap();
        st.eof
    }

    /// The whole log, for failure messages.
    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let st = self.state.lock().unwrap();
        let start = st.lines.len().saturating_sub(n);
        st.lines[start..].join("\n")
    }

    /// Lines at WARN or ERROR level (env_logger's `[time LEVEL target]`).
    pub fn warnings(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect()
    }
}

/// `listening on 127.0.0.1:4242` (with or without its newline, and with or
/// without a kind after the address) -> the address.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    parse_endpoint_line(line).map(|(addr, _)| addr)
}

/// `listening on ADDR [proxy|udp]` -> the address and its kind: `tcp`,
/// `proxy` or `udp`.
pub fn parse_endpoint_line(line: &str) -> Option<(SocketAddr, String)> {
    let rest = line.trim_end().strip_prefix("listening on ")?;
    let (addr, kind) = match rest.split_once(' ') {
        Some((addr, kind @ ("proxy" | "udp"))) => (addr, kind),
        Some(_) => return None,
        None => (rest, "tcp"),
    };
    Some((addr.parse().ok()?, kind.to_string()))
}

/// Every field the contract lists, in order.
pub const STATS_FIELDS: [&str; 23] = [
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
    "pending_bytes",
    "pending_peak",
    "memory_pauses",
    "udp_in",
    "udp_out",
    "udp_dropped",
    "udp_refused",
    "proxy_errors",
    "proxy_refused",
];

/// The `key=value` fields of a `stats:` or `final stats:` line; `stats.get(
/// "accepted")` or `stats["accepted"]` (both panic on a missing field).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats(pub HashMap<String, u64>);

impl Stats {
    /// Parses the fields after `stats: `; every field of the contract must
    /// be there.
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
        self[key]
    }
}

impl std::ops::Index<&str> for Stats {
    type Output = u64;

    fn index(&self, key: &str) -> &u64 {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("no field {key} in {:?}", self.0))
    }
}

/// A SIGUSR1 snapshot line (not the exit line).
pub fn is_stats_line(line: &str) -> bool {
    line.contains(" stats: accepted=") && !line.contains("final stats:")
}

/// The line the server logs as it exits.
pub fn is_final_stats_line(line: &str) -> bool {
    line.contains("final stats: accepted=")
}
