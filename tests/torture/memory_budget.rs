//! Memory budget: thousands of clients that write without ever reading
//! their echo, against `--max-memory`, beside a probe (a 64-byte ping-pong
//! every 5 ms) and newcomers connecting once the budget is spent; then the
//! never-readers read everything back.
//!
//! Figures: the server's RSS growth (its peak, `VmHWM`, over the whole run,
//! the never-readers' reading included; also the peak by the time they were
//! held back) against the budget, `pending_peak`, `memory_pauses`, the
//! probe's and the newcomers' echo times while the budget is spent, and how
//! long all the echo takes to come back once the never-readers read.
//!
//! Asserts: RSS growth within the budget + one read share (4 KiB) per
//! never-reader + `RSS_SLACK`; `pending_peak` within the budget + one read
//! share per never-reader; every byte back byte-exact; the probe's and the
//! newcomers' echo within `ECHO_BOUND` while the budget is spent; the
//! server alive and holding nothing at the end.
//!
//! The never-reader fleet is the one of `tests/memory_budget.rs`, at scale.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::common::drivers::Probe;
use crate::common::*;
use crate::{ms, secs, KIB, MIB};

/// The server's read share of one connection in one turn: the most one
/// connection can add to the held echo after the budget check let it read.
const READ_SHARE: u64 = 4 * KIB;
/// What the server may allocate beyond the echo it holds, whatever the
/// budget: each connection's state (2000 idle connections add 0.25 MiB of
/// RSS), the slab's doubling, the poll's event buffer, and the allocator's
/// chunk headers and free chunks between held buffers. Not room for echo
/// buffers' spare capacity: that grows with the budget.
const RSS_SLACK: u64 = 8 * MIB;
/// How long an echo may take while the budget is spent: a correctness
/// bound (the client is served at all), not a performance target.
const ECHO_BOUND: Duration = Duration::from_secs(2);
/// The never-readers' data repeats with this period: a prime, so that no
/// read or write size lines up with it and misplaced bytes differ.
const PERIOD: usize = 65_521;
const CHUNK: usize = 32 * 1024;
/// The most the fleet may take to fill the budget.
const FILL_LIMIT: Duration = Duration::from_secs(180);

/// One client that writes and does not read until told to.
struct NeverReader {
    stream: MioStream,
    /// Where in the fleet's block this connection's stream starts: each
    /// connection's bytes differ from its neighbours'.
    start: usize,
    sent: u64,
    echoed: u64,
    /// Told to read its echo (and half-closed).
    reading: bool,
    eof: bool,
}

/// Never-readers on one thread, nonblocking, driven by one poll.
struct Fleet {
    poll: Poll,
    events: Events,
    /// `PERIOD` bytes with no newline (the quit rule stays out of it), then
    /// their first `CHUNK` again, so any chunk of the stream is one slice.
    block: Vec<u8>,
    conns: Vec<NeverReader>,
}

/// A client socket with small buffers and segments: with loopback's 64 KiB
/// segments the kernel holds about 8 MiB of a never-reader's data before
/// the server holds any echo, with these about 0.3 MiB, so thousands reach
/// the budget without pushing the machine's TCP memory into pressure.
fn small_client_socket(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_recv_buffer_size(4096)?;
    socket.set_send_buffer_size(4096)?;
    socket.set_tcp_mss(1000)?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Fleet {
    fn connect(addr: SocketAddr, n: usize) -> Fleet {
        let poll = Poll::new().unwrap();
        let mut block = pattern(PERIOD, 0x6d65_6d6f);
        block.extend_from_within(..CHUNK);
        let conns = (0..n)
            .map(|i| {
                let std = small_client_socket(addr)
                    .unwrap_or_else(|e| panic!("never-reader {i}: connect: {e}"));
                let mut stream = MioStream::from_std(std);
                let interest = Interest::READABLE | Interest::WRITABLE;
                poll.registry()
                    .register(&mut stream, Token(i), interest)
                    .unwrap();
                NeverReader {
                    stream,
                    start: i * 7919 % PERIOD,
                    sent: 0,
                    echoed: 0,
                    reading: false,
                    eof: false,
                }
            })
            .collect();
        let events = Events::with_capacity(1024);
        Fleet {
            poll,
            events,
            block,
            conns,
        }
    }

    /// Waits up to `timeout` for events (none if a signal interrupts it).
    fn wait(&mut self, timeout: Duration) {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => self.events.clear(),
            result => result.expect("poll"),
        }
    }

    /// The connections the last wait reported.
    fn ready(&self) -> Vec<usize> {
        self.events.iter().map(|e| e.token().0).collect()
    }

    fn sent(&self) -> u64 {
        self.conns.iter().map(|c| c.sent).sum()
    }

    /// Writes whatever the connections take for `span`, never reading.
    fn write_for(&mut self, span: Duration) {
        let until = Instant::now() + span;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.wait(left);
            for i in self.ready() {
                self.write_all_taken(i);
            }
        }
    }

    /// Writes to connection `i` until the socket takes no more.
    fn write_all_taken(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        loop {
            let at = (conn.start + (conn.sent % PERIOD as u64) as usize) % PERIOD;
            match conn.stream.write(&self.block[at..at + CHUNK]) {
                Ok(n) => conn.sent += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("never-reader {i}: write after {} bytes: {e}", conn.sent),
            }
        }
    }

    /// Connections `which` stop writing (half-close) and read their echo
    /// to EOF, checking every byte; the others go on not reading. Returns
    /// the first failure, if any.
    fn drain(&mut self, which: &[usize], within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        for &i in which {
            let conn = &mut self.conns[i];
            conn.reading = true;
            let shut = conn.stream.shutdown(Shutdown::Write);
            shut.map_err(|e| format!("never-reader {i}: shutdown: {e}"))?;
        }
        let mut open = which.len();
        let mut buf = vec![0u8; CHUNK];
        // What arrived before now brings no new edge: read it first.
        let mut ready: Vec<usize> = which.to_vec();
        loop {
            for i in ready {
                if self.conns[i].reading && !self.conns[i].eof {
                    self.read_available(i, &mut buf)?;
                    open -= usize::from(self.conns[i].eof);
                }
            }
            if open == 0 {
                return Ok(());
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| {
                    format!("{open} never-readers still without EOF after {within:?}")
                })?;
            self.wait(left);
            ready = self.ready();
        }
    }

    /// Reads connection `i` until `WouldBlock` or EOF, comparing each byte
    /// with what it sent.
    fn read_available(&mut self, i: usize, buf: &mut [u8]) -> Result<(), String> {
        let conn = &mut self.conns[i];
        while !conn.eof {
            match conn.stream.read(buf) {
                Ok(0) if conn.echoed == conn.sent => conn.eof = true,
                Ok(0) => {
                    return Err(format!(
                        "never-reader {i}: EOF after {} of {} bytes",
                        conn.echoed, conn.sent
                    ))
                }
                Ok(n) => {
                    let at = (conn.start + (conn.echoed % PERIOD as u64) as usize) % PERIOD;
                    let past_end = conn.echoed + n as u64 > conn.sent;
                    if past_end || buf[..n] != self.block[at..at + n] {
                        let at = conn.echoed;
                        return Err(format!("never-reader {i}: echo differs at byte {at}"));
                    }
                    conn.echoed += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("never-reader {i}: read: {e}")),
            }
        }
        Ok(())
    }
}

/// Lets the fleet write until the server holds it back: `held` holds and
/// neither the server's held echo nor what the fleet wrote changed over
/// two stretches of `STRETCH` in a row. Returns the stats then.
fn fill_until_held(
    server: &ServerProcess,
    fleet: &mut Fleet,
    held: impl Fn(&Stats) -> bool,
) -> Stats {
    const STRETCH: Duration = Duration::from_millis(100);
    let deadline = Instant::now() + FILL_LIMIT;
    let mut last = None;
    let mut same = 0;
    loop {
        fleet.write_for(STRETCH);
        let stats = server.stats();
        let now = (stats["pending_bytes"], fleet.sent());
        same = if last == Some(now) { same + 1 } else { 0 };
        if held(&stats) && same >= 2 {
            return stats;
        }
        last = Some(now);
        // A second without any progress: held back, but not as expected.
        assert!(
            same < 10 && Instant::now() < deadline,
            "the never-readers were not held back as expected within {FILL_LIMIT:?}: \
             wrote {} bytes; {stats:?}",
            fleet.sent()
        );
    }
}

/// `count` newcomers one after another: connect, one 64-byte echo,
/// half-close, clean EOF; each timed from the connect. Errors are returned.
fn newcomers(addr: SocketAddr, count: usize) -> Result<Vec<Duration>, String> {
    let mut times = Vec::with_capacity(count);
    for seq in 0..count {
        let mut msg = format!("newcomer {seq:06} ").into_bytes();
        msg.resize(63, b'.');
        msg.push(b'\n');
        let at = Instant::now();
        let result = (|| -> io::Result<()> {
            let mut s = try_connect(addr, IO_TIMEOUT)?;
            try_echo(&mut s, &msg)?;
            s.shutdown(Shutdown::Write)?;
            match s.read(&mut [0u8; 16])? {
                0 => Ok(()),
                n => Err(io::Error::other(format!("{n} bytes after the echo"))),
            }
        })();
        result.map_err(|e| format!("newcomer {seq}: {e}"))?;
        times.push(at.elapsed());
    }
    times.sort();
    Ok(times)
}

fn p50_p99(sorted: &[Duration]) -> String {
    format!(
        "{:.2}/{:.2} ms",
        ms(percentile(sorted, 0.50)),
        ms(percentile(sorted, 0.99))
    )
}

#[test]
fn memory_budget() {
    let _g = serial();
    let n = scale(200, 2000);
    let budget = scale(4 * MIB, 32 * MIB);
    let (nofile, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(
        nofile >= 2 * n as u64 + 64,
        "RLIMIT_NOFILE {nofile} is too low for {n} clients and the server's {n} sockets"
    );
    let mut server = ServerProcess::start(&["--max-memory", &format!("{}M", budget / MIB)]);
    let probe = Probe::start(server.addr, Duration::from_millis(5), secs(600.0), None);
    let started = wait_until(Duration::from_secs(10), Duration::from_millis(1), || {
        probe.echoes() >= 1
    });
    assert!(started, "the probe got no echo within 10 s");
    let rss_before = server.rss_kib();

    let fill_from = Instant::now();
    let mut fleet = Fleet::connect(server.addr, n);
    let held = fill_until_held(&server, &mut fleet, |s| s["memory_pauses"] > 0);
    let spent_from = Instant::now();
    let hwm_held = status_field_kib(server.pid, "VmHWM:");
    let rss_held = server.rss_kib();

    // The budget is spent: newcomers, while the probe goes on.
    let newcomer_times = newcomers(server.addr, scale(20, 100));
    // A measurement window for the probe, not a wait for an event.
    std::thread::sleep(secs(scale(1.0, 3.0)));
    let spent_to = Instant::now();
    let still = server.stats();

    let drain_from = Instant::now();
    let all: Vec<usize> = (0..n).collect();
    let drained = fleet.drain(&all, secs(scale(60.0, 240.0)));
    let drain_took = drain_from.elapsed();
    let probe = probe.finish();
    let alive = server.is_running();
    let hwm_end = status_field_kib(server.pid, "VmHWM:");
    let rss_end = server.rss_kib();
    let last_echo = server.echo_check(b"still serving\n");
    let after = server.stats_until(IO_TIMEOUT, |s| s["active"] == 0);

    let fill_rtts = probe.rtts_between(fill_from, spent_from);
    let spent_rtts = probe.rtts_between(spent_from, spent_to);
    let growth = hwm_end.saturating_sub(rss_before) * KIB;
    let rss_limit = budget + n as u64 * READ_SHARE + RSS_SLACK;
    let peak_limit = budget + n as u64 * READ_SHARE;
    let newcomer_sorted = newcomer_times.clone().unwrap_or_default();
    let mib_k = |kib: u64| mib(kib * KIB);
    figure(
        "memory-budget",
        &format!(
            "{n} never-readers, --max-memory {} MiB: held after {:.1} s having written {:.1} MiB; \
             pending {:.2} MiB held, pending_peak {:.2} MiB (limit {:.2} = budget + {n} x 4 KiB), \
             memory_pauses {}, backpressure_pauses {}; server RSS {:.1} MiB before, peak {:.1} MiB \
             (+{:.1} MiB, limit {:.1} = budget + {n} x 4 KiB + {} MiB; when held: peak {:.1} MiB, \
             RSS {:.1} MiB; after the drain, with nothing held: {:.1} MiB); probe p50/p99 {} while \
             filling, {} with the budget spent ({} round trips, longest {:.2} ms); {} newcomers \
             p50/p99 {} (longest {:.2} ms); all {:.1} MiB back byte-exact in {:.2} s once read",
            budget / MIB,
            (spent_from - fill_from).as_secs_f64(),
            mib(fleet.sent()),
            mib(held["pending_bytes"]),
            mib(after["pending_peak"]),
            mib(peak_limit),
            after["memory_pauses"],
            after["backpressure_pauses"],
            mib_k(rss_before),
            mib_k(hwm_end),
            mib(growth),
            mib(rss_limit),
            RSS_SLACK / MIB,
            mib_k(hwm_held),
            mib_k(rss_held),
            mib_k(rss_end),
            p50_p99(&fill_rtts),
            p50_p99(&spent_rtts),
            spent_rtts.len(),
            ms(spent_rtts.last().copied().unwrap_or_default()),
            newcomer_sorted.len(),
            p50_p99(&newcomer_sorted),
            ms(newcomer_sorted.last().copied().unwrap_or_default()),
            mib(fleet.sent()),
            drain_took.as_secs_f64(),
        ),
    );

    assert!(alive, "the server exited; stderr:\n{}", server.log.tail(20));
    drained.unwrap();
    if let Some(e) = probe.err {
        panic!("probe: {e}");
    }
    let newcomer_times = newcomer_times.unwrap();
    last_echo.expect("a fresh client's echo after the drain");
    assert!(
        growth <= rss_limit,
        "server RSS grew {:.1} MiB at its peak > {:.1} MiB (budget {} MiB + {n} x 4 KiB + {} MiB)",
        mib(growth),
        mib(rss_limit),
        budget / MIB,
        RSS_SLACK / MIB
    );
    assert!(
        after["pending_peak"] <= peak_limit,
        "pending_peak {} > {peak_limit}: {after:?}",
        after["pending_peak"]
    );
    assert!(
        held["pending_bytes"] >= budget,
        "held back before the budget was spent: {held:?}"
    );
    assert!(
        still["pending_bytes"] >= budget,
        "the budget was no longer spent by the end of the window: {still:?}"
    );
    assert!(
        !spent_rtts.is_empty(),
        "no probe round trip with the budget spent"
    );
    let longest = (*spent_rtts.last().unwrap()).max(*newcomer_times.last().unwrap());
    assert!(
        longest <= ECHO_BOUND,
        "an echo took {longest:?} with the budget spent (probe or newcomer)"
    );
    assert_eq!(
        after["pending_bytes"], 0,
        "echo still held after every client read: {after:?}"
    );
    let moved = fleet.sent() + probe.sent + newcomer_times.len() as u64 * 64 + 14;
    assert_eq!(
        (after["bytes_in"], after["bytes_out"]),
        (moved, moved),
        "{after:?}"
    );
}
