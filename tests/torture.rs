//! Torture suite (issue 5): load, faults and hostile clients against the real
//! server binary, each scenario printing one `FIGURE name: ...` line.
//!
//! Default sizes are short (for `make test`); `TORTURE_FULL=1` runs the full
//! sizes of the issue (`make torture`: release build, `--test-threads=1`).
//! Every loop is bounded in count and in time; sockets carry timeouts so a
//! hang fails the test instead of blocking it.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use socket2::SockRef;

use common::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------------------
// Random-chunking driver: many nonblocking clients on one mio poll, each
// sending q-free random bytes in random chunks with random pauses while
// reading its echo concurrently; both directions hashed.

struct ChunkConn {
    stream: Option<MioStream>,
    total: u64,
    sent: u64,
    data: Rng,
    sched: Rng,
    chunk: Vec<u8>,
    off: usize,
    resume_at: Option<Instant>,
    can_write: bool,
    sent_hash: StreamHash,
    recv_hash: StreamHash,
    wr_shut: bool,
    eof: bool,
    err: Option<String>,
    chunks: u64,
    pauses: u64,
}

impl ChunkConn {
    fn finished(&self) -> bool {
        self.eof || self.err.is_some()
    }
}

struct ChunkRun {
    poll: Poll,
    events: Events,
    conns: Vec<ChunkConn>,
    buf: Vec<u8>,
    max_pause_ms: u64,
    stopped: bool,
    live: usize,
}

impl ChunkRun {
    fn new(addr: SocketAddr, n: usize, max_total: u64, max_pause_ms: u64, seed: u64) -> ChunkRun {
        let poll = Poll::new().unwrap();
        let mut seeds = Rng::new(seed);
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let s = try_connect(addr, Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("connect client {i}: {e}"));
            s.set_nonblocking(true).unwrap();
            let mut stream = MioStream::from_std(s);
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .unwrap();
            let total = seeds.range(0, max_total);
            conns.push(ChunkConn {
                stream: Some(stream),
                total,
                sent: 0,
                data: Rng::new(seeds.next_u64()),
                sched: Rng::new(seeds.next_u64()),
                chunk: Vec::new(),
                off: 0,
                resume_at: None,
                can_write: false,
                sent_hash: StreamHash::default(),
                recv_hash: StreamHash::default(),
                wr_shut: false,
                eof: false,
                err: None,
                chunks: 0,
                pauses: 0,
            });
        }
        ChunkRun {
            poll,
            events: Events::with_capacity(1024),
            conns,
            buf: vec![0u8; 64 * 1024],
            max_pause_ms,
            stopped: false,
            live: n,
        }
    }

    fn write_some(&mut self, i: usize, now: Instant) {
        let max_pause = self.max_pause_ms;
        let stopped = self.stopped;
        let c = &mut self.conns[i];
        loop {
            if stopped || c.wr_shut || !c.can_write || c.finished() {
                return;
            }
            if let Some(t) = c.resume_at {
                if now < t {
                    return;
                }
                c.resume_at = None;
            }
            if c.off == c.chunk.len() {
                if c.sent == c.total {
                    let _ = c.stream.as_ref().unwrap().shutdown(Shutdown::Write);
                    c.wr_shut = true;
                    return;
                }
                let len = c.sched.log_size(64 * KIB).min(c.total - c.sent) as usize;
                c.chunk.resize(len, 0);
                qfree_fill(&mut c.data, &mut c.chunk);
                c.off = 0;
                c.chunks += 1;
            }
            match c.stream.as_mut().unwrap().write(&c.chunk[c.off..]) {
                Ok(n) => {
                    c.sent_hash.update(&c.chunk[c.off..c.off + n]);
                    c.off += n;
                    c.sent += n as u64;
                    if c.off == c.chunk.len() && c.sched.chance(1, 4) {
                        c.pauses += 1;
                        c.resume_at =
                            Some(now + Duration::from_millis(c.sched.range(0, max_pause)));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.can_write = false;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    c.err = Some(format!("write after {} bytes: {e}", c.sent));
                    return;
                }
            }
        }
    }

    fn read_some(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.finished() {
            return;
        }
        loop {
            match c.stream.as_mut().unwrap().read(&mut self.buf) {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                Ok(n) => c.recv_hash.update(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    c.err = Some(format!(
                        "read after {} of {} sent bytes echoed: {e}",
                        c.recv_hash.len, c.sent
                    ));
                    break;
                }
            }
        }
        // Finished: release the socket at once.
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.live -= 1;
    }

    /// One poll round; services every ready connection and every pause that ended.
    fn step(&mut self, max_wait: Duration) {
        let now = Instant::now();
        let mut wait = max_wait;
        if !self.stopped {
            for c in &self.conns {
                if let Some(t) = c.resume_at {
                    if c.can_write && !c.finished() {
                        wait = wait.min(t.saturating_duration_since(now));
                    }
                }
            }
        }
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|ev| {
                (
                    ev.token().0,
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable() || ev.is_error(),
                )
            })
            .collect();
        let now = Instant::now();
        for (i, r, w) in ready {
            if r {
                self.read_some(i);
            }
            if w && !self.conns[i].finished() {
                self.conns[i].can_write = true;
                self.write_some(i, now);
            }
        }
        if !self.stopped {
            for i in 0..self.conns.len() {
                let c = &self.conns[i];
                if c.can_write && !c.finished() && c.resume_at.is_none_or(|t| t <= now) {
                    self.write_some(i, now);
                }
            }
        }
    }

    fn run_until(&mut self, deadline: Instant, mut stop: impl FnMut(&ChunkRun) -> bool) {
        while self.live > 0 && !stop(self) {
            if Instant::now() > deadline {
                let stuck: Vec<String> = self
                    .conns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.finished())
                    .take(5)
                    .map(|(i, c)| {
                        format!(
                            "#{i}: total {} sent {} echoed {} wr_shut {}",
                            c.total, c.sent, c.recv_hash.len, c.wr_shut
                        )
                    })
                    .collect();
                panic!(
                    "{} of {} connections not finished by the deadline; first: {stuck:?}",
                    self.live,
                    self.conns.len()
                );
            }
            self.step(Duration::from_millis(50));
        }
    }

    fn sent(&self) -> u64 {
        self.conns.iter().map(|c| c.sent).sum()
    }

    fn echoed(&self) -> u64 {
        self.conns.iter().map(|c| c.recv_hash.len).sum()
    }

    /// Every connection: no error, EOF seen, echo identical to what was sent.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, c) in self.conns.iter().enumerate() {
            if let Some(e) = &c.err {
                out.push(format!("#{i}: {e}"));
            } else if !c.eof {
                out.push(format!("#{i}: no EOF"));
            } else if c.recv_hash.len != c.sent_hash.len {
                out.push(format!(
                    "#{i}: sent {} bytes, echo {} bytes",
                    c.sent_hash.len, c.recv_hash.len
                ));
            } else if c.recv_hash.finish() != c.sent_hash.finish() {
                out.push(format!("#{i}: echo hash differs ({} bytes)", c.sent));
            }
        }
        out
    }
}

#[test]
fn random_chunking() {
    let _g = serial();
    let n = scale(100, 1000);
    let max_total = scale(128 * KIB, 1600 * KIB);
    let server = ServerProcess::start(&[]);
    let t0 = Instant::now();
    let mut run = ChunkRun::new(server.addr, n, max_total, scale(5, 20), 0x5eed_0001);
    let deadline = t0 + secs(scale(40.0, 120.0));
    run.run_until(deadline, |_| false);
    let elapsed = t0.elapsed();
    let failures = run.failures();
    let verified = run.echoed();
    let chunks: u64 = run.conns.iter().map(|c| c.chunks).sum();
    let pauses: u64 = run.conns.iter().map(|c| c.pauses).sum();
    let st = server.stats();
    figure(
        "random-chunking",
        &format!(
            "{n} conns, {:.1} MiB verified by hash, {} lost ({} failed conns), {chunks} chunks of 1 B..64 KiB, {pauses} pauses, {:.1} s ({:.0} MiB/s each way); server bytes_in={} bytes_out={}",
            mib(verified),
            run.sent() - verified.min(run.sent()),
            failures.len(),
            elapsed.as_secs_f64(),
            mib(verified) / elapsed.as_secs_f64(),
            st.get("bytes_in"),
            st.get("bytes_out"),
        ),
    );
    assert!(failures.is_empty(), "failed connections: {failures:?}");
    assert_eq!(st.get("bytes_in"), run.sent(), "server bytes_in");
    assert_eq!(st.get("bytes_out"), verified, "server bytes_out");
    assert_eq!(st.get("active"), 0);
}

// ---------------------------------------------------------------------------

/// `clients` threads doing back-to-back 64-byte round trips until `until`.
fn latency_clients(addr: SocketAddr, clients: usize, dur: Duration) -> (Vec<Duration>, Vec<usize>) {
    let until = Instant::now() + dur;
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            thread::spawn(move || {
                let mut s = try_connect(addr, Duration::from_secs(10)).expect("latency connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut msg = format!("latency client {i:03} ").into_bytes();
                msg.resize(63, b'.');
                msg.push(b'\n');
                let mut back = vec![0u8; msg.len()];
                let mut rtts = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    s.write_all(&msg).expect("latency write");
                    s.read_exact(&mut back).expect("latency read");
                    assert_eq!(back, msg, "latency echo differs");
                    rtts.push(t.elapsed());
                }
                rtts
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut counts = Vec::new();
    for h in handles {
        let r = h.join().expect("latency client panicked");
        counts.push(r.len());
        all.extend(r);
    }
    all.sort();
    (all, counts)
}

#[test]
fn slow_readers() {
    let _g = serial();
    let max_buffer: u64 = 65536;
    let slow_n = 50;
    let normal_n = 50;
    let base_dur = secs(scale(1.0, 5.0));
    let load_dur = secs(scale(2.0, 10.0));
    let server = ServerProcess::start(&["--max-buffer", &max_buffer.to_string()]);
    let addr = server.addr;

    // Baseline latency without slow readers.
    let (base, _) = latency_clients(addr, normal_n, base_dur);
    let base_p50 = percentile(&base, 0.50);
    let base_p99 = percentile(&base, 0.99);
    let rss_before = server.rss_kib();

    // Slow readers: write as fast as they can, never read.
    let stop = Arc::new(AtomicBool::new(false));
    let slow_bytes = Arc::new(AtomicU64::new(0));
    let slow = {
        let stop = stop.clone();
        let slow_bytes = slow_bytes.clone();
        thread::spawn(move || {
            let mut poll = Poll::new().unwrap();
            let mut events = Events::with_capacity(256);
            let mut socks = Vec::new();
            for i in 0..slow_n {
                let s = try_connect(addr, Duration::from_secs(10)).expect("slow connect");
                s.set_nonblocking(true).unwrap();
                let mut m = MioStream::from_std(s);
                poll.registry()
                    .register(&mut m, Token(i), Interest::WRITABLE)
                    .unwrap();
                socks.push(m);
            }
            let buf = vec![b'x'; 256 * 1024];
            let mut per = vec![0u64; slow_n];
            let hard = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                poll.poll(&mut events, Some(Duration::from_millis(20))).ok();
                for ev in events.iter() {
                    let i = ev.token().0;
                    loop {
                        match socks[i].write(&buf) {
                            Ok(n) => {
                                per[i] += n as u64;
                                slow_bytes.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                }
            }
            per
        })
    };
    // RSS sampler.
    let rss_peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let stop = stop.clone();
        let rss_peak = rss_peak.clone();
        let pid = server.pid;
        thread::spawn(move || {
            let hard = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kb) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    rss_peak.fetch_max(kb, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let (loaded, counts) = latency_clients(addr, normal_n, load_dur);
    // Every slow reader must have been paused by backpressure by now (on a
    // slow machine the kernel buffers may take longer to fill: wait, bounded).
    let mut st = server.stats();
    let t_wait = Instant::now();
    while st.get("backpressure_pauses") < slow_n as u64
        && t_wait.elapsed() < Duration::from_secs(30)
    {
        thread::sleep(Duration::from_millis(50));
        st = server.stats();
    }
    let rss_during = server.rss_kib();
    stop.store(true, Ordering::Relaxed);
    let per = slow.join().expect("slow readers panicked");
    sampler.join().unwrap();
    let peak = rss_peak.load(Ordering::Relaxed).max(rss_during);
    let growth_kib = peak.saturating_sub(rss_before);
    let allowed_kib = (slow_n as u64 * max_buffer) / 1024 + 4 * 1024;
    let p50 = percentile(&loaded, 0.50);
    let p99 = percentile(&loaded, 0.99);
    let min_count = counts.iter().copied().min().unwrap_or(0);
    let max_slow = per.iter().copied().max().unwrap_or(0);
    assert!(server.echo_check(b"still serving\n").is_ok());
    figure(
        "slow-readers",
        &format!(
            "{slow_n} slow readers wrote {:.1} MiB (max {:.0} KiB each, {} backpressure pauses); server RSS {} KiB -> peak {} KiB (+{} KiB, limit {} KiB = {slow_n} x max-buffer + 4 MiB); {normal_n} normal clients p50/p99 {:.2}/{:.2} ms vs {:.2}/{:.2} ms without slow readers, {} round trips (fewest per client {min_count})",
            mib(slow_bytes.load(Ordering::Relaxed)),
            max_slow as f64 / 1024.0,
            st.get("backpressure_pauses"),
            rss_before,
            peak,
            growth_kib,
            allowed_kib,
            ms(p50),
            ms(p99),
            ms(base_p50),
            ms(base_p99),
            loaded.len(),
        ),
    );
    assert!(
        growth_kib <= allowed_kib,
        "RSS grew {growth_kib} KiB > {allowed_kib} KiB"
    );
    assert!(min_count > 0, "a normal client got no echo at all");
    assert!(
        p99 <= (base_p99 * 10).max(Duration::from_millis(100)),
        "p99 {p99:?} with slow readers vs {base_p99:?} without"
    );
    assert!(st.get("backpressure_pauses") >= slow_n as u64);
}

// ---------------------------------------------------------------------------

#[test]
fn reset_storm() {
    let _g = serial();
    let n = scale(200, 2000);
    let threads = 8;
    let server = ServerProcess::start(&[]);
    let base_fds = server.fd_count();
    let t0 = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = server.addr;
            let sent = sent.clone();
            let mine = n / threads + usize::from(t < n % threads);
            thread::spawn(move || {
                let payload = vec![b'r'; 64 * 1024];
                let mut left = mine;
                while left > 0 {
                    let batch = left.min(25);
                    let mut socks = Vec::new();
                    for _ in 0..batch {
                        socks.push(try_connect(addr, Duration::from_secs(20)).expect("connect"));
                    }
                    for s in socks.iter_mut() {
                        s.write_all(&payload).expect("write 64 KiB");
                        sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    }
                    for s in socks {
                        SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                        drop(s); // RST, nothing read
                    }
                    left -= batch;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("storm thread panicked");
    }
    let storm = t0.elapsed();
    let (st, fds, settle) = server.wait_settled(base_fds, Duration::from_secs(20));
    let alive = server.echo_check(b"after the storm\n");
    figure(
        "reset-storm",
        &format!(
            "{n} conns sent {:.0} MiB and reset in {:.2} s; server alive: {}, fds {base_fds} -> {fds}, active {} (settled {:.0} ms after), accepted={} closed_error={} closed_client={}",
            mib(sent.load(Ordering::Relaxed)),
            storm.as_secs_f64(),
            alive.is_ok(),
            st.get("active"),
            ms(settle),
            st.get("accepted"),
            st.get("closed_error"),
            st.get("closed_client"),
        ),
    );
    alive.expect("server does not echo after the storm");
    assert_eq!(fds, base_fds, "fd count not back to baseline");
    assert_eq!(st.get("active"), 0);
    assert_eq!(st.get("accepted"), n as u64);
}

// ---------------------------------------------------------------------------

fn churn_cycles(addr: SocketAddr, cycles: usize, threads: usize) -> (usize, Vec<String>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let errors = errors.clone();
            let done = done.clone();
            let mine = cycles / threads + usize::from(t < cycles % threads);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let hard = Instant::now() + Duration::from_secs(200);
                    for i in 0..mine {
                        if Instant::now() > hard {
                            errors.lock().unwrap().push("churn deadline".to_string());
                            return;
                        }
                        let msg = format!("churn {t:02} {i:06}\n");
                        let r = (|| -> io::Result<()> {
                            let mut s = try_connect(addr, Duration::from_secs(20))?;
                            try_echo(&mut s, msg.as_bytes())?;
                            s.shutdown(Shutdown::Write)?;
                            let mut rest = [0u8; 16];
                            match s.read(&mut rest)? {
                                0 => Ok(()),
                                n => Err(io::Error::other(format!("{n} bytes after echo"))),
                            }
                        })();
                        match r {
                            Ok(()) => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                let mut errs = errors.lock().unwrap();
                                if errs.len() < 20 {
                                    errs.push(format!("thread {t} cycle {i}: {e}"));
                                }
                            }
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().expect("churn thread panicked");
    }
    let errs = errors.lock().unwrap().clone();
    (done.load(Ordering::Relaxed), errs)
}

#[test]
fn churn() {
    let _g = serial();
    let cycles = scale(2000, 100_000);
    let threads = 50;
    let server = ServerProcess::start(&[]);
    // Warm up (allocator, slab) before taking the baseline.
    let (_, errs) = churn_cycles(server.addr, cycles / 20, threads);
    assert!(errs.is_empty(), "warm-up errors: {errs:?}");
    let (_, base_fds, _) = server.wait_settled(server.fd_count(), Duration::from_secs(10));
    let rss_before = server.rss_kib();
    let t0 = Instant::now();
    let (done, errs) = churn_cycles(server.addr, cycles, threads);
    let elapsed = t0.elapsed();
    let (st, fds, _) = server.wait_settled(base_fds, Duration::from_secs(20));
    let rss_after = server.rss_kib();
    figure(
        "churn",
        &format!(
            "{done}/{cycles} connect/echo/close cycles from {threads} clients in {:.1} s = {:.0} cycles/s, {} errors; fds {base_fds} -> {fds}, RSS {rss_before} -> {rss_after} KiB ({:+.1} B/cycle), active {}",
            elapsed.as_secs_f64(),
            done as f64 / elapsed.as_secs_f64(),
            errs.len(),
            (rss_after as f64 - rss_before as f64) * 1024.0 / cycles as f64,
            st.get("active"),
        ),
    );
    assert!(errs.is_empty(), "churn errors: {errs:?}");
    assert_eq!(done, cycles);
    assert_eq!(fds, base_fds, "fd leak");
    assert_eq!(st.get("active"), 0);
    assert!(
        rss_after <= rss_before + 1024,
        "RSS grew {rss_before} -> {rss_after} KiB over {cycles} cycles ({:.1} bytes per cycle): a leak",
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / cycles as f64
    );
}

// ---------------------------------------------------------------------------
// Swarm: many nonblocking clients that connect, send one line, read the echo
// and close (or hold the connection until released).

struct SwarmClient {
    stream: Option<MioStream>,
    msg: Vec<u8>,
    written: usize,
    got: Vec<u8>,
    connected: bool,
    echoed: bool,
    err: Option<String>,
}

struct Swarm {
    poll: Poll,
    events: Events,
    clients: Vec<SwarmClient>,
    hold: bool,
    echoed: usize,
    failed: usize,
}

impl Swarm {
    fn new(addr: SocketAddr, n: usize, hold: bool) -> Swarm {
        let poll = Poll::new().unwrap();
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = MioStream::connect(addr).expect("nonblocking connect");
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                .unwrap();
            clients.push(SwarmClient {
                stream: Some(s),
                msg: format!("swarm client {i:05} says hello\n").into_bytes(),
                written: 0,
                got: Vec::new(),
                connected: false,
                echoed: false,
                err: None,
            });
        }
        Swarm {
            poll,
            events: Events::with_capacity(1024),
            clients,
            hold,
            echoed: 0,
            failed: 0,
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut s) = self.clients[i].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn fail(&mut self, i: usize, e: String) {
        self.clients[i].err = Some(e);
        self.failed += 1;
        self.close(i);
    }

    fn service(&mut self, i: usize) {
        if self.clients[i].stream.is_none() || self.clients[i].echoed {
            return;
        }
        if !self.clients[i].connected {
            let s = self.clients[i].stream.as_ref().unwrap();
            match s.take_error() {
                Ok(Some(e)) | Err(e) => return self.fail(i, format!("connect: {e}")),
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => self.clients[i].connected = true,
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => return self.fail(i, format!("connect: {e}")),
            }
        }
        // Write what is left of the line.
        loop {
            let c = &mut self.clients[i];
            if c.written == c.msg.len() {
                break;
            }
            match c.stream.as_mut().unwrap().write(&c.msg[c.written..]) {
                Ok(n) => c.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("write: {e}")),
            }
        }
        // Read the echo.
        let mut buf = [0u8; 256];
        loop {
            let c = &mut self.clients[i];
            match c.stream.as_mut().unwrap().read(&mut buf) {
                Ok(0) => {
                    let got = c.got.len();
                    return self.fail(i, format!("EOF after {got} echo bytes"));
                }
                Ok(n) => {
                    c.got.extend_from_slice(&buf[..n]);
                    if c.got.len() >= c.msg.len() {
                        if c.got != c.msg {
                            return self.fail(i, "echo differs".to_string());
                        }
                        c.echoed = true;
                        self.echoed += 1;
                        if !self.hold {
                            self.close(i);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("read: {e}")),
            }
        }
    }

    fn step(&mut self, wait: Duration) {
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for i in ready {
            self.service(i);
        }
    }

    fn settled(&self) -> bool {
        self.echoed + self.failed == self.clients.len()
    }

    /// Close every held connection that got its echo; later ones close at once.
    fn release(&mut self) {
        self.hold = false;
        for i in 0..self.clients.len() {
            if self.clients[i].echoed {
                self.close(i);
            }
        }
    }

    fn errors(&self, max: usize) -> Vec<String> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.err.as_ref().map(|e| format!("#{i}: {e}")))
            .take(max)
            .collect()
    }
}

#[test]
fn fd_exhaustion() {
    let _g = serial();
    let n = scale(100, 500);
    let earlier_n = 20;
    let server = ServerProcess::start(&["--backlog", "1024"]);
    let mut earlier: Vec<TcpStream> = (0..earlier_n).map(|_| server.connect()).collect();
    for (i, s) in earlier.iter_mut().enumerate() {
        try_echo(s, format!("earlier {i} before\n").as_bytes()).expect("earlier echo");
    }
    let st = Command::new("prlimit")
        .arg("--pid")
        .arg(server.pid.to_string())
        .arg("--nofile=64:64")
        .status()
        .expect("run prlimit");
    assert!(st.success(), "prlimit failed");
    let fds_at_limit = server.fd_count();
    let t0 = Instant::now();
    // Phase 1: the new clients that get in hold their connections, so the
    // server keeps running into EMFILE for a while.
    let mut swarm = Swarm::new(server.addr, n, true);
    let pressure = secs(scale(1.5, 3.0));
    let deadline = t0 + Duration::from_secs(30);
    while swarm.echoed == 0 || t0.elapsed() < pressure {
        assert!(
            Instant::now() < deadline && swarm.failed == 0,
            "{} echoed, {} failed: {:?}",
            swarm.echoed,
            swarm.failed,
            swarm.errors(5)
        );
        swarm.step(Duration::from_millis(20));
    }
    let served_under_pressure = swarm.echoed;
    let mut earlier_ok_during = 0;
    for (i, s) in earlier.iter_mut().enumerate() {
        if try_echo(s, format!("earlier {i} during\n").as_bytes()).is_ok() {
            earlier_ok_during += 1;
        }
    }
    let pauses_under_pressure = server.stats().get("accept_pauses_fd");
    // Phase 2: they close; every new client must then be served.
    swarm.release();
    let deadline = Instant::now() + Duration::from_secs(scale(60, 120));
    while !swarm.settled() {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} new clients echoed ({} failed) by the deadline; {:?}",
            swarm.echoed,
            swarm.failed,
            swarm.errors(5)
        );
        swarm.step(Duration::from_millis(50));
    }
    let elapsed = t0.elapsed();
    let mut earlier_ok = 0;
    for (i, s) in earlier.iter_mut().enumerate() {
        if try_echo(s, format!("earlier {i} after\n").as_bytes()).is_ok() {
            earlier_ok += 1;
        }
    }
    let stats = server.stats();
    let warns = server.log.count(|l| l.contains("pausing accepts"));
    let mut server = server;
    let alive = server.is_running();
    figure(
        "fd-exhaustion",
        &format!(
            "nofile=64 with {fds_at_limit} fds in use, {n} clients: {served_under_pressure} served and holding, {pauses_under_pressure} EMFILE pauses in {:.1} s; server alive: {alive}, {earlier_ok_during}/{earlier_n} earlier clients echo during and {earlier_ok}/{earlier_n} after; {}/{n} new clients served in {:.2} s ({} failed); accept_pauses_fd={}, {warns} `pausing accepts` warn lines (rate-limited, not a flood)",
            pressure.as_secs_f64(),
            swarm.echoed,
            elapsed.as_secs_f64(),
            swarm.failed,
            stats.get("accept_pauses_fd"),
        ),
    );
    assert!(alive, "server died");
    assert_eq!(
        earlier_ok_during, earlier_n,
        "earlier clients lost during exhaustion"
    );
    assert_eq!(earlier_ok, earlier_n, "earlier clients lost");
    assert!(
        pauses_under_pressure >= 5,
        "EMFILE hit only {pauses_under_pressure} times under pressure"
    );
    assert_eq!(swarm.echoed, n, "errors: {:?}", swarm.errors(5));
    assert!(stats.get("accept_pauses_fd") >= 1, "EMFILE never hit");
    assert!(warns >= 1, "no `pausing accepts` warning logged");
    let allowed = 2 + elapsed.as_secs() as usize;
    assert!(
        warns <= allowed,
        "{warns} warn lines in {elapsed:?}: a flood, not rate-limited (allowed {allowed})"
    );
}

// ---------------------------------------------------------------------------

/// Send `input` (writer thread, then half-close) and read everything back.
fn exchange(server: &ServerProcess, input: &[u8]) -> Vec<u8> {
    let mut s = server.connect();
    let mut w = s.try_clone().unwrap();
    let data = input.to_vec();
    let writer = thread::spawn(move || {
        // After a quit line the server may stop reading; errors are fine then.
        let _ = w.write_all(&data);
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut out = Vec::new();
    let r = s.read_to_end(&mut out);
    writer.join().unwrap();
    if let Err(e) = r {
        panic!("reading echo after {} bytes: {e}", out.len());
    }
    out
}

fn check_case(server: &ServerProcess, name: &str, input: &[u8], total: &mut u64) {
    let (expected, _) = quit_reference(input);
    let got = exchange(server, input);
    *total += input.len() as u64;
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "hostile case {name}: sent {} bytes, got {} expected {} (first difference at {first:?})",
            input.len(),
            got.len(),
            expected.len()
        );
    }
}

/// Wait until the server has read `target` bytes in total (stats bytes_in).
fn wait_bytes_in(server: &ServerProcess, target: u64) {
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(2), || {
        server.stats().get("bytes_in") >= target
    });
    assert!(ok, "server never read up to byte {target}");
}

#[test]
fn hostile_input() {
    let _g = serial();
    let server = ServerProcess::start(&[]);
    let mut rng = Rng::new(0x5eed_0005);
    let mut total = 0u64;
    let mut cases = 0;

    // 1. A long stream without any newline (quit bytes anywhere but at the start).
    let big = scale(MIB, 10 * MIB) as usize;
    let mut data = vec![0u8; big];
    rng.fill(&mut data);
    for b in data.iter_mut() {
        if *b == b'\n' {
            *b = b' ';
        }
    }
    data[0] = b'x';
    check_case(&server, "no-newline", &data, &mut total);
    cases += 1;

    // 2. A 1 MiB line starting with `qui` then `x`, then a real quit line.
    let line_len = scale(256 * KIB, MIB) as usize;
    let mut line = b"quix".to_vec();
    let mut filler = vec![0u8; line_len - 5];
    rng.fill(&mut filler);
    for b in filler.iter_mut() {
        if *b == b'\n' {
            *b = b'q';
        }
    }
    line.extend_from_slice(&filler);
    line.push(b'\n');
    let mut input = line.clone();
    input.extend_from_slice(b"quit\nnever echoed\n");
    assert_eq!(quit_reference(&input).0, line);
    check_case(&server, "qui-x-line", &input, &mut total);
    cases += 1;

    // 3. Every byte value, up and down; then every byte value at a line start
    //    followed by `uit` (only `q` quits).
    let mut all: Vec<u8> = (0..=255u8).collect();
    all.extend((0..=255u8).rev());
    check_case(&server, "all-bytes", &all, &mut total);
    cases += 1;
    let mut starts = Vec::new();
    for b in 0..=255u8 {
        starts.push(b);
        starts.extend_from_slice(b"uit\n");
    }
    check_case(&server, "all-bytes-at-line-start", &starts, &mut total);
    cases += 1;

    // 4. `quit` (and `quix`) split at every position into separate segments,
    //    each segment read by the server before the next is sent.
    let mut split_cases = 0;
    for word in [&b"quit"[..], &b"quix"[..]] {
        for prefix in [&b""[..], &b"hello\n"[..], &b"\r\n"[..]] {
            for mask in 0u8..8 {
                let mut segs: Vec<Vec<u8>> = vec![prefix.to_vec()];
                let mut cur = Vec::new();
                for (k, &b) in word.iter().enumerate() {
                    cur.push(b);
                    if k < 3 && mask & (1 << k) != 0 {
                        segs.push(std::mem::take(&mut cur));
                    }
                }
                cur.extend_from_slice(b"\n");
                segs.push(cur);
                segs.push(b"tail bytes\n".to_vec());
                segs.retain(|s| !s.is_empty());
                let whole: Vec<u8> = segs.concat();
                let (expected, quit) = quit_reference(&whole);
                let mut s = server.connect();
                let mut base = server.stats().get("bytes_in");
                let last = segs.len() - 1;
                for (k, seg) in segs.iter().enumerate() {
                    if s.write_all(seg).is_err() {
                        assert!(quit, "write failed without a quit line");
                        break;
                    }
                    base += seg.len() as u64;
                    // Each segment is read by the server before the next one
                    // is sent (the tail after a quit may be discarded unread).
                    if k < last {
                        wait_bytes_in(&server, base);
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
                let mut got = Vec::new();
                s.read_to_end(&mut got)
                    .unwrap_or_else(|e| panic!("split {segs:?}: read: {e}"));
                assert_eq!(
                    got,
                    expected,
                    "split {:?}: got {:?}",
                    segs.iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<Vec<_>>(),
                    String::from_utf8_lossy(&got)
                );
                total += whole.len() as u64;
                split_cases += 1;
            }
        }
    }
    cases += split_cases;

    // 5. A client that sends only `q` and waits: nothing comes back, the
    //    connection stays open; at EOF the `q` is echoed. Same after a line.
    let wait = Duration::from_millis(scale(300, 1000));
    for (prefix, held) in [
        (&b""[..], &b"q"[..]),
        (&b"hello\n"[..], &b"qu"[..]),
        (&b"x\r\n"[..], &b"qui"[..]),
    ] {
        let mut s = server.connect();
        let st0 = server.stats();
        let mut input = prefix.to_vec();
        input.extend_from_slice(held);
        s.write_all(&input).unwrap();
        wait_bytes_in(&server, st0.get("bytes_in") + input.len() as u64);
        let mut got = vec![0u8; prefix.len()];
        s.read_exact(&mut got).expect("line before the held bytes");
        assert_eq!(got, prefix);
        s.set_read_timeout(Some(wait)).unwrap();
        let mut one = [0u8; 1];
        match s.read(&mut one) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("server closed while {held:?} held back"),
            Ok(_) => panic!("server echoed held-back {held:?} before deciding"),
            Err(e) => panic!("read: {e}"),
        }
        let st1 = server.stats();
        assert_eq!(
            st1.get("bytes_out") - st0.get("bytes_out"),
            prefix.len() as u64,
            "bytes_out while {held:?} held back"
        );
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, held, "held-back bytes at EOF");
        total += input.len() as u64;
        cases += 1;
    }
    // 6. After a quit line the client floods on without closing: the echo ends
    //    before the quit line (EOF at once) and the server drops the
    //    connection after about 2 s of discarding.
    let mut s = server.connect();
    s.write_all(b"before\nquit now\n").unwrap();
    let t_quit = Instant::now();
    let mut r = s.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let res = r.read_to_end(&mut v);
        (v, res.map_err(|e| e.to_string()), t_quit.elapsed())
    });
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let flood = vec![b'f'; 16 * 1024];
    let mut flooded = 0u64;
    let dropped_after = loop {
        assert!(
            t_quit.elapsed() < Duration::from_secs(10),
            "server still takes bytes 10 s after quit ({flooded} flooded)"
        );
        match s.write(&flood) {
            Ok(n) => flooded += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break t_quit.elapsed(),
        }
    };
    let (echo, res, eof_after) = reader.join().unwrap();
    assert_eq!(echo, b"before\n", "echo after quit + flood ({res:?})");
    assert!(res.is_ok(), "no clean EOF after quit: {res:?}");
    assert!(
        eof_after < Duration::from_secs(1),
        "EOF only {eof_after:?} after quit"
    );
    assert!(
        dropped_after >= Duration::from_millis(1500) && dropped_after <= Duration::from_secs(4),
        "connection dropped {dropped_after:?} after quit (expected ~2 s)"
    );
    total += 16;
    cases += 1;

    let mut server = server;
    assert!(server.is_running());
    figure(
        "hostile-input",
        &format!(
            "{cases} cases ({split_cases} splits of quit/quix at every position), {:.1} MiB sent, every case echoed exactly as the quit rule says; quit then flood: EOF after {:.0} ms, dropped after {:.2} s ({:.1} MiB discarded); server alive",
            mib(total),
            ms(eof_after),
            dropped_after.as_secs_f64(),
            mib(flooded)
        ),
    );
}

// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum IdleKind {
    Silent,
    Partial,
    Stuck,
}

#[test]
fn idle_and_half_open() {
    let _g = serial();
    let n = scale(500, 5000);
    let server = ServerProcess::start(&["--idle-timeout", "1", "--backlog", "1024"]);
    let base_fds = server.fd_count();
    let addr = server.addr;

    // New clients keep being served meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let side = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut served = 0u64;
            let mut worst = Duration::ZERO;
            let hard = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                let t = Instant::now();
                let r = (|| -> io::Result<()> {
                    let mut s = try_connect(addr, Duration::from_secs(5))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    try_echo(&mut s, b"a new client\n")
                })();
                r.expect("new client not served during the idle phase");
                worst = worst.max(t.elapsed());
                served += 1;
            }
            (served, worst)
        })
    };

    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut socks: Vec<Option<MioStream>> = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut last_act = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let mut s = try_connect(addr, Duration::from_secs(20)).expect("idle connect");
        let kind = match i % 50 {
            0 => IdleKind::Stuck,
            1..=4 => IdleKind::Partial,
            _ => IdleKind::Silent,
        };
        match kind {
            IdleKind::Silent => {}
            IdleKind::Partial => s.write_all(b"GET / HTTP/1.1\r\nHost: x").unwrap(),
            IdleKind::Stuck => {
                // Fill both directions, then never read nor write again.
                s.set_nonblocking(true).unwrap();
                let buf = vec![b'z'; 64 * 1024];
                let hard = Instant::now() + Duration::from_secs(5);
                loop {
                    match s.write(&buf) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("stuck writer: {e}"),
                    }
                    assert!(Instant::now() < hard, "stuck writer never blocked");
                }
            }
        }
        s.set_nonblocking(true).unwrap();
        let mut m = MioStream::from_std(s);
        poll.registry()
            .register(&mut m, Token(i), Interest::READABLE)
            .unwrap();
        socks.push(Some(m));
        kinds.push(kind);
        last_act.push(Instant::now());
    }
    let opened = t0.elapsed();
    let t_open = Instant::now();
    // Watch the client side: silent and partial clients must see EOF.
    let mut closed_after = vec![None::<Duration>; n];
    let mut open_watch = kinds.iter().filter(|k| **k != IdleKind::Stuck).count();
    let mut buf = [0u8; 4096];
    let deadline = t_open + Duration::from_secs(3);
    while open_watch > 0 && Instant::now() < deadline + Duration::from_secs(5) {
        poll.poll(&mut events, Some(Duration::from_millis(50))).ok();
        let ready: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        for i in ready {
            if kinds[i] == IdleKind::Stuck || socks[i].is_none() {
                continue;
            }
            loop {
                match socks[i].as_mut().unwrap().read(&mut buf) {
                    Ok(0) => {
                        closed_after[i] = Some(last_act[i].elapsed());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed_after[i] = Some(last_act[i].elapsed());
                        break;
                    }
                }
            }
            if closed_after[i].is_some() {
                socks[i] = None;
                open_watch -= 1;
            }
        }
    }
    let all_eof = t_open.elapsed();
    // Server side: fds back to baseline (the side thread may hold one).
    let back = wait_until(Duration::from_secs(8), Duration::from_millis(10), || {
        server.fd_count() <= base_fds + 1
    });
    let fds_back = t_open.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (served, worst) = side.join().expect("side client panicked");
    let (st, fds, _) = server.wait_settled(base_fds, Duration::from_secs(5));
    drop(socks);
    let lifetimes: Vec<Duration> = closed_after.iter().flatten().copied().collect();
    let min_life = lifetimes.iter().min().copied().unwrap_or_default();
    figure(
        "idle-half-open",
        &format!(
            "{n} idle conns (silent, partial line, stuck half-open writers) opened in {:.2} s, --idle-timeout 1: all closed {:.2} s after the last opened (no client EOF before {:.2} s idle), closed_idle={}, fds {base_fds} -> {fds}; {served} new clients served meanwhile (worst {:.0} ms)",
            opened.as_secs_f64(),
            fds_back.as_secs_f64(),
            min_life.as_secs_f64(),
            st.get("closed_idle"),
            ms(worst),
        ),
    );
    assert_eq!(
        open_watch, 0,
        "{open_watch} idle clients never saw EOF (after {all_eof:?})"
    );
    assert!(back, "server fds not back to baseline");
    assert!(
        fds_back <= Duration::from_secs(3),
        "idle connections closed only {fds_back:?} after the last was opened"
    );
    assert!(
        min_life >= Duration::from_millis(900),
        "closed before the idle timeout: {min_life:?}"
    );
    assert!(served > 0, "no new client served meanwhile");
    assert_eq!(fds, base_fds);
    assert_eq!(st.get("active"), 0);
    assert!(st.get("closed_idle") >= n as u64);
}

// ---------------------------------------------------------------------------

#[test]
fn concurrency_limit() {
    let _g = serial();
    let n = scale(300, 1000);
    let limit = 100usize;
    let server = Arc::new(ServerProcess::start(&[
        "--max-connections",
        &limit.to_string(),
        "--backlog",
        "2048",
    ]));
    let base_fds = server.fd_count();
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new((AtomicUsize::new(0), AtomicU64::new(0), AtomicUsize::new(0)));
    let sampler = {
        let server = server.clone();
        let stop = stop.clone();
        let peaks = peaks.clone();
        thread::spawn(move || {
            let hard = Instant::now() + Duration::from_secs(150);
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                peaks.0.fetch_max(server.fd_count(), Ordering::Relaxed);
                if k % 20 == 0 {
                    peaks
                        .1
                        .fetch_max(server.stats().get("active"), Ordering::Relaxed);
                    peaks.2.fetch_add(1, Ordering::Relaxed);
                }
                k += 1;
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let t0 = Instant::now();
    let mut swarm = Swarm::new(server.addr, n, true);
    // Phase 1: everyone holds on; exactly `limit` get served.
    let deadline = t0 + Duration::from_secs(30);
    while swarm.echoed < limit && swarm.failed == 0 {
        assert!(Instant::now() < deadline, "only {} echoed", swarm.echoed);
        swarm.step(Duration::from_millis(50));
    }
    let hold_until = Instant::now() + Duration::from_millis(scale(300, 1000));
    while Instant::now() < hold_until {
        swarm.step(Duration::from_millis(20));
    }
    let held_echoed = swarm.echoed;
    let st_held = server.stats();
    let fds_held = server.fd_count();
    // Phase 2: each closes after its echo; all must be served.
    swarm.release();
    let deadline = Instant::now() + Duration::from_secs(scale(60, 120));
    while !swarm.settled() {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} echoed",
            swarm.echoed
        );
        swarm.step(Duration::from_millis(50));
    }
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (st, _, _) = server.wait_settled(base_fds, Duration::from_secs(10));
    let peak_fds = peaks.0.load(Ordering::Relaxed);
    let peak_active = peaks.1.load(Ordering::Relaxed).max(st_held.get("active"));
    figure(
        "concurrency-limit",
        &format!(
            "--max-connections {limit}, {n} clients at once: {}/{n} echoed in {:.2} s ({} failed); while all held: {held_echoed} served, active={}, fds +{}; peak active {peak_active} ({} samples), peak fds +{}, accept_pauses_limit={}",
            swarm.echoed,
            elapsed.as_secs_f64(),
            swarm.failed,
            st_held.get("active"),
            fds_held - base_fds,
            peaks.2.load(Ordering::Relaxed),
            peak_fds.saturating_sub(base_fds),
            st.get("accept_pauses_limit"),
        ),
    );
    assert_eq!(swarm.failed, 0, "{:?}", swarm.errors(5));
    assert_eq!(swarm.echoed, n);
    assert_eq!(held_echoed, limit, "served while {limit} were held");
    assert_eq!(st_held.get("active"), limit as u64);
    assert!(
        peak_active <= limit as u64,
        "active peaked at {peak_active}"
    );
    assert!(
        peak_fds <= base_fds + limit,
        "fds peaked at {peak_fds} (base {base_fds})"
    );
    assert_eq!(st.get("accepted"), n as u64);
}

// ---------------------------------------------------------------------------

#[test]
fn signals_under_load() {
    let _g = serial();
    let n = scale(50, 1000);
    let max_total = scale(512 * KIB, 1600 * KIB);
    let mut server = ServerProcess::start(&["--shutdown-timeout", "20"]);
    let addr = server.addr;
    let mut run = ChunkRun::new(addr, n, max_total, scale(5, 20), 0x5eed_0009);
    // Burst clients: just before the signal each writes a burst without
    // reading, so at the signal part of what it sent still sits in TCP
    // buffers (flow control), not yet read by the server.
    let burst_n = scale(10, 50);
    let mut bursts: Vec<TcpStream> = (0..burst_n)
        .map(|_| try_connect(addr, Duration::from_secs(20)).expect("burst connect"))
        .collect();
    let t0 = Instant::now();
    // Signal once 40 % of the planned bytes are sent (or after a bounded time).
    let planned: u64 = run.conns.iter().map(|c| c.total).sum();
    let load_max = secs(scale(5.0, 20.0));
    run.run_until(t0 + Duration::from_secs(60), |r| {
        r.sent() >= planned / 5 * 2 || t0.elapsed() >= load_max
    });
    let load = t0.elapsed();
    // Stop every client from writing, then signal: what was sent must come back.
    run.stopped = true;
    let sent_at_signal = run.sent();
    let echoed_at_signal = run.echoed();
    let mid = run
        .conns
        .iter()
        .filter(|c| !c.finished() && !c.wr_shut)
        .count();
    let pattern = burst_pattern();
    let wbuf: Vec<u8> = pattern.iter().copied().cycle().take(65536 + 64).collect();
    let mut burst_sent = vec![0u64; burst_n];
    for (i, b) in bursts.iter_mut().enumerate() {
        b.set_nonblocking(true).unwrap();
        let hard = Instant::now() + Duration::from_secs(2);
        while burst_sent[i] < 64 * MIB && Instant::now() < hard {
            let o = (burst_sent[i] % 64) as usize;
            match b.write(&wbuf[o..o + 65536]) {
                Ok(n) => burst_sent[i] += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("burst write: {e}"),
            }
        }
    }
    let t_sig = Instant::now();
    server.signal("TERM");
    // The burst clients now read their echo to the end.
    let burst_readers: Vec<_> = bursts
        .into_iter()
        .map(|mut b| {
            let pattern = pattern.clone();
            thread::spawn(move || {
                b.set_nonblocking(false).unwrap();
                b.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut got = 0u64;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match b.read(&mut buf) {
                        Ok(0) => return (got, None),
                        Ok(n) => {
                            for (k, &x) in buf[..n].iter().enumerate() {
                                if x != pattern[((got + k as u64) % 64) as usize] {
                                    return (
                                        got,
                                        Some(format!("echo differs at byte {}", got + k as u64)),
                                    );
                                }
                            }
                            got += n as u64;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return (got, Some(format!("read after {got} bytes: {e}"))),
                    }
                }
            })
        })
        .collect();
    // New connections are refused once the listener is closed.
    let refuser = thread::spawn(move || {
        let hard = Instant::now() + Duration::from_secs(10);
        while Instant::now() < hard {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Some(t_sig.elapsed()),
                _ => thread::sleep(Duration::from_millis(5)),
            }
        }
        None
    });
    run.run_until(t_sig + Duration::from_secs(30), |_| false);
    let burst_results: Vec<(u64, Option<String>)> = burst_readers
        .into_iter()
        .map(|h| h.join().expect("burst reader panicked"))
        .collect();
    let drained = t_sig.elapsed();
    let burst_total: u64 = burst_sent.iter().sum();
    let burst_echoed: u64 = burst_results.iter().map(|r| r.0).sum();
    let burst_failures: Vec<String> = burst_results
        .iter()
        .zip(&burst_sent)
        .enumerate()
        .filter(|(_, ((got, err), sent))| err.is_some() || got != *sent)
        .map(|(i, ((got, err), sent))| format!("burst #{i}: sent {sent}, echoed {got}, {err:?}"))
        .collect();
    let status = server.wait_exit(Duration::from_secs(30));
    let exited = t_sig.elapsed();
    let refused = refuser.join().unwrap();
    let failures = run.failures();
    let final_line = server
        .log
        .lines()
        .into_iter()
        .rev()
        .find(|l| is_final_stats_line(l));
    figure(
        "signals",
        &format!(
            "SIGTERM after {:.2} s of random-chunking load ({n} conns, {mid} mid-stream, {:.1} of {:.1} MiB planned sent, {:.1} MiB echoed at signal): {:.1} MiB sent = {:.1} MiB echoed, {} lost ({} failed conns), {burst_n} burst clients (reads paused at the signal): {:.1} MiB sent, {:.1} MiB echoed, {:.1} MiB lost ({} conns failed); all closed {:.2} s and exit {:?} {:.2} s after the signal; new connects refused after {:?}",
            load.as_secs_f64(),
            mib(sent_at_signal),
            mib(planned),
            mib(echoed_at_signal),
            mib(run.sent()),
            mib(run.echoed()),
            run.sent().saturating_sub(run.echoed()),
            failures.len(),
            mib(burst_total),
            mib(burst_echoed),
            mib(burst_total.saturating_sub(burst_echoed)),
            burst_failures.len(),
            drained.as_secs_f64(),
            status.and_then(|s| s.code()),
            exited.as_secs_f64(),
            refused,
        ),
    );
    assert!(
        failures.is_empty(),
        "failed connections: {:?}",
        &failures[..failures.len().min(10)]
    );
    assert!(
        burst_failures.is_empty(),
        "bytes sent before SIGTERM not echoed: {:?}",
        &burst_failures[..burst_failures.len().min(10)]
    );
    let status = status.expect("server did not exit");
    assert_eq!(status.code(), Some(0), "exit status");
    assert!(refused.is_some(), "listener still accepting after SIGTERM");
    let fin = Stats::parse(&final_line.expect("no `final stats:` line"));
    assert_eq!(fin.get("bytes_in"), run.sent() + burst_total);
    assert_eq!(fin.get("bytes_out"), run.echoed() + burst_echoed);
}

/// 64 bytes, every line starting with `b` (never `quit`).
fn burst_pattern() -> Vec<u8> {
    let p = b"burst 0123456789 abcdefghijklmnoprstuvwxyz ABCDEFGHIJKLMNOPQRST\n".to_vec();
    assert_eq!(p.len(), 64);
    p
}
