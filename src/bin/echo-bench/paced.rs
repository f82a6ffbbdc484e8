//! A light interactive client and a heavy bulk one, each on its own threads,
//! for measuring what a bulk transfer does to its neighbours:
//!
//! - `Probe`: 64 bytes out, wait for their echo, record the round trip, wait
//!   for the next tick of a fixed clock; every echo compared byte for byte.
//! - `Bulk`: one connection writing and reading large chunks as fast as it
//!   can, both directions at once; every echoed byte compared.
//!
//! Both can pin their threads to a CPU (`pin_current_thread`).
//!
//! One copy for the benchmark (`fairness`) and the integration tests
//! (`tests/common/drivers/paced.rs` includes this file), so it needs
//! nothing but std.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Connect, read and write timeout of both clients: long enough for a
/// loaded machine, short enough that a hang fails instead of blocking.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Connects within `timeout`, with `IO_TIMEOUT` on reads and writes and
/// TCP_NODELAY, so each write leaves at once.
fn try_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Random bytes (SplitMix64 from `seed`) with every `q` replaced, so the
/// server's quit rule never triggers.
fn qfree_fill(seed: u64, out: &mut [u8]) {
    let mut state = seed ^ 0x6a09_e667_f3bc_c909;
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let word = (z ^ (z >> 31)).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    for b in out.iter_mut() {
        if *b == b'q' {
            *b = b'Q';
        }
    }
}

/// Pins the calling thread to `cpu` with taskset(1) (its thread id from
/// /proc/thread-self); false when that is not possible.
pub fn pin_current_thread(cpu: usize) -> bool {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return false;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return false;
    };
    Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One round trip of the probe: when its 64 bytes were sent and how long
/// their echo took.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSample {
    pub at: Instant,
    pub rtt: Duration,
}

/// What a probe saw over its whole life.
#[derive(Debug, Default)]
pub struct ProbeLog {
    pub samples: Vec<ProbeSample>,
    /// Bytes sent (all echoed when `err` is `None`).
    pub sent: u64,
    /// Ticks skipped because a round trip outlasted its tick.
    pub missed_ticks: u64,
    /// The first failure: connect, write, read, a differing echo, or
    /// anything but a clean EOF after the half-close.
    pub err: Option<String>,
}

impl ProbeLog {
    /// Round trips of the requests sent in `from..to`, sorted.
    pub fn rtts_between(&self, from: Instant, to: Instant) -> Vec<Duration> {
        let mut rtts: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .map(|s| s.rtt)
            .collect();
        rtts.sort();
        rtts
    }
}

/// A 64-byte ping-pong on a fixed tick, on its own thread.
pub struct Probe {
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    handle: JoinHandle<ProbeLog>,
}

impl Probe {
    /// Connects and starts the ticks; runs until `finish` or `limit`.
    pub fn start(addr: SocketAddr, tick: Duration, limit: Duration, cpu: Option<usize>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, echoed) = (stop.clone(), echoed.clone());
            thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu);
                }
                let mut log = ProbeLog::default();
                if let Err(e) = probe_loop(addr, tick, limit, &stop, &echoed, &mut log) {
                    log.err = Some(e);
                }
                log
            })
        };
        Probe {
            stop,
            echoed,
            handle,
        }
    }

    /// Round trips completed so far.
    pub fn echoes(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// Stops after the round trip in flight, half-closes, checks the clean
    /// EOF and returns the log.
    pub fn finish(self) -> ProbeLog {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("probe thread panicked")
    }
}

fn probe_loop(
    addr: SocketAddr,
    tick: Duration,
    limit: Duration,
    stop: &AtomicBool,
    echoed: &AtomicU64,
    log: &mut ProbeLog,
) -> Result<(), String> {
    let mut s = try_connect(addr, IO_TIMEOUT).map_err(|e| format!("probe connect: {e}"))?;
    let hard = Instant::now() + limit;
    let mut back = [0u8; 64];
    let mut next = Instant::now();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
        let mut msg = format!("probe {seq:012} ").into_bytes();
        msg.resize(63, b'.');
        msg.push(b'\n');
        let at = Instant::now();
        s.write_all(&msg)
            .map_err(|e| format!("probe write #{seq}: {e}"))?;
        log.sent += msg.len() as u64;
        s.read_exact(&mut back)
            .map_err(|e| format!("probe read #{seq}: {e}"))?;
        let rtt = at.elapsed();
        if back[..] != msg[..] {
            return Err(format!(
                "probe echo #{seq} differs: {:?}",
                String::from_utf8_lossy(&back)
            ));
        }
        log.samples.push(ProbeSample { at, rtt });
        echoed.fetch_add(1, Ordering::Relaxed);
        seq += 1;
        // The next tick still ahead: a slow round trip skips ticks rather
        // than sending a burst to catch up.
        next += tick;
        let now = Instant::now();
        if next <= now {
            let behind = (now - next).as_nanos() / tick.as_nanos() + 1;
            log.missed_ticks += behind as u64;
            next += tick * behind as u32;
        }
        // Pacing, not synchronisation: the probe is a client with a clock.
        thread::sleep(next - now);
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("probe shutdown: {e}"))?;
    match s.read(&mut back) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("probe: {n} bytes after the last echo")),
        Err(e) => Err(format!("probe: no clean EOF: {e}")),
    }
}

/// What a bulk client moved.
#[derive(Debug)]
pub struct BulkReport {
    pub sent: u64,
    pub echoed: u64,
    /// The server closed after the whole echo.
    pub eof: bool,
    /// The first failure of either direction (a differing byte included).
    pub err: Option<String>,
}

/// One connection writing and reading `chunk`-byte blocks as fast as it can,
/// both directions concurrently (a writer and a reader thread).
pub struct Bulk {
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    local: SocketAddr,
    writer: JoinHandle<(u64, Option<String>)>,
    reader: JoinHandle<(bool, Option<String>)>,
}

/// The data repeats with this period: not a multiple of any chunk size, so
/// a block echoed at the wrong offset differs.
const BULK_PERIOD: usize = 1024 * 1024 + 4093;

impl Bulk {
    /// Connects and starts both directions; they run until `finish` or
    /// `limit`.
    pub fn start(addr: SocketAddr, chunk: usize, limit: Duration, cpu: Option<usize>) -> Bulk {
        let stream = try_connect(addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("bulk connect: {e}"));
        let local = stream.local_addr().unwrap();
        // q-free random bytes, one period plus a chunk, so a block at any
        // offset of the period is one slice.
        let mut data = vec![0u8; BULK_PERIOD + chunk];
        qfree_fill(0xb01c_0256, &mut data[..BULK_PERIOD]);
        data.copy_within(..chunk, BULK_PERIOD);
        let data = Arc::new(data);
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU64::new(0));
        let hard = Instant::now() + limit;
        let writer = {
            let (mut s, data, stop) = (stream.try_clone().unwrap(), data.clone(), stop.clone());
            thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu);
                }
                bulk_write(&mut s, &data, chunk, &stop, hard)
            })
        };
        let reader = {
            let mut s = stream;
            let echoed = echoed.clone();
            thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu);
                }
                bulk_read(&mut s, &data, chunk, &echoed, hard)
            })
        };
        Bulk {
            stop,
            echoed,
            local,
            writer,
            reader,
        }
    }

    /// The client's address (the server's peer address of this connection).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Bytes echoed back (and checked) so far.
    pub fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// Stops writing, half-closes, reads the echo to EOF and reports.
    pub fn finish(self) -> BulkReport {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, werr) = self.writer.join().expect("bulk writer panicked");
        let (eof, rerr) = self.reader.join().expect("bulk reader panicked");
        BulkReport {
            sent,
            echoed: self.echoed.load(Ordering::Relaxed),
            eof,
            err: werr.or(rerr),
        }
    }
}

fn bulk_write(
    s: &mut TcpStream,
    data: &[u8],
    chunk: usize,
    stop: &AtomicBool,
    hard: Instant,
) -> (u64, Option<String>) {
    // A short timeout only so that `stop` is seen while the server holds
    // the flow back; a timed-out write wrote nothing and is retried.
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
        let at = (sent % BULK_PERIOD as u64) as usize;
        match s.write(&data[at..at + chunk]) {
            Ok(0) => {
                return (
                    sent,
                    Some(format!("bulk write returned 0 after {sent} bytes")),
                )
            }
            Ok(n) => sent += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (sent, Some(format!("bulk write after {sent} bytes: {e}"))),
        }
    }
    let err = s
        .shutdown(Shutdown::Write)
        .err()
        .map(|e| format!("bulk shutdown: {e}"));
    (sent, err)
}

fn bulk_read(
    s: &mut TcpStream,
    data: &[u8],
    chunk: usize,
    echoed: &AtomicU64,
    hard: Instant,
) -> (bool, Option<String>) {
    let mut buf = vec![0u8; chunk];
    let mut got = 0u64;
    // The reader outlives the writer by the time the echo takes to drain.
    let hard = hard + IO_TIMEOUT;
    while Instant::now() < hard {
        match s.read(&mut buf) {
            Ok(0) => return (true, None),
            Ok(n) => {
                let at = (got % BULK_PERIOD as u64) as usize;
                if buf[..n] != data[at..at + n] {
                    let k = (0..n).find(|&k| buf[k] != data[at + k]).unwrap_or(0);
                    return (
                        false,
                        Some(format!("bulk echo differs at byte {}", got + k as u64)),
                    );
                }
                got += n as u64;
                echoed.store(got, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (false, Some(format!("bulk read after {got} bytes: {e}"))),
        }
    }
    (
        false,
        Some(format!(
            "bulk echo not finished by the deadline ({got} bytes)"
        )),
    )
}
