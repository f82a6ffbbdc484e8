//! Small things many tests need: polling with a deadline, a free port, a
//! scratch directory, and the torture suite's sizes, serialisation and
//! `FIGURE` lines.

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Polls `f` every `every` until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// A port nobody uses right now, for configs that need a number up front
/// (HAProxy's frontend, one number for a TCP and a UDP socket). It is taken
/// from the 12000 ports below the kernel's ephemeral range (32768 and up by
/// default), where no `connect()` and no bind to port 0 can take it between
/// this check and the test's own bind. Each call tries the next number, so
/// tests running at once get different ones; the start depends on the pid
/// (times 97, which shares no factor with 12000, so nearby pids start far
/// apart). Where the ephemeral range leaves no such room, any free port.
pub fn free_port() -> u16 {
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let first = ephemeral_low.saturating_sub(SPAN).max(1024);
    let count = ephemeral_low.saturating_sub(first);
    if count >= 1000 {
        let start = std::process::id().wrapping_mul(97);
        for _ in 0..count {
            let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % count;
            let port = u16::try_from(first + offset).expect("below the ephemeral range");
            if TcpListener::bind(("127.0.0.1", port)).is_ok()
                && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            {
                return port;
            }
        }
    }
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

// ---------------------------------------------------------------------------
// Torture suite

/// `TORTURE_FULL=1` selects the torture suite's full sizes.
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

/// The `p` quantile (0..=1) of sorted durations; zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}
