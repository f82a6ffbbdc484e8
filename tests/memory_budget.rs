//! The memory budget (`--max-memory`): the most echo held in memory across
//! all connections. Clients that never read their echo fill it and are then
//! held back by TCP flow control (nothing lost), while clients whose echo
//! goes straight into their socket, old and new, are still served; once the
//! never-readers read, every byte comes back. A connection paused for the
//! budget goes on once the budget frees; below the budget nothing pauses for
//! it. Also the K/M/G byte suffixes of the command line.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use common::drivers::exchange;
use common::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// The server's read share of one connection in one turn: the most one
/// connection can add to the held echo after the budget check let it read.
const READ_SHARE: u64 = 4 * KIB;
/// How long an echo may take while the budget is spent: a correctness
/// bound (the client is served at all), not a performance target.
const ECHO_BOUND: Duration = Duration::from_secs(2);
/// The never-readers' data repeats with this period: a prime, so that no
/// read or write size lines up with it and misplaced bytes differ.
const PERIOD: usize = 65_521;
const CHUNK: usize = 32 * 1024;

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

    /// Every connection goes away with a reset (its unread echo is lost).
    fn reset_all(self) {
        for conn in &self.conns {
            socket2::SockRef::from(&conn.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
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
    let deadline = Instant::now() + Duration::from_secs(60);
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
            "the never-readers were not held back as expected within 60 s: wrote {} bytes; \
             {stats:?}",
            fleet.sent()
        );
    }
}

/// The budget (1 MiB) is spent, and overshot by at most one read share
/// per never-reader.
fn assert_spent(stats: &Stats, never_readers: usize) {
    let limit = MIB + never_readers as u64 * READ_SHARE;
    let (now, peak) = (stats["pending_bytes"], stats["pending_peak"]);
    assert!(now >= MIB, "held back with the budget not spent: {stats:?}");
    assert!(peak <= limit, "pending_peak {peak} > {limit}: {stats:?}");
}

/// Echo held, bytes in and bytes out, from the server's stats.
fn held_in_out(stats: &Stats) -> (u64, u64, u64) {
    (
        stats["pending_bytes"],
        stats["bytes_in"],
        stats["bytes_out"],
    )
}

/// The server's start-up line.
fn started_line(server: &ServerProcess) -> String {
    let line = server.log.wait_for(" started: ", START_TIMEOUT);
    line.unwrap_or_else(|| panic!("no start-up line: {}", server.log.dump()))
}

/// A client that reads its echo as it writes moves `len` bytes through.
fn stream_through(addr: SocketAddr, len: usize) {
    let stream = pattern(len, len as u64);
    assert!(
        exchange(addr, &stream) == stream,
        "the streamed echo differs"
    );
}

/// One 64-byte round trip, timed; the read fails (and the test with it)
/// when the echo is not back within `ECHO_BOUND`.
fn timed_echo(stream: &mut TcpStream, seq: usize) -> Duration {
    let msg = format!("interactive {seq:06} {:.<44}\n", "");
    stream.set_read_timeout(Some(ECHO_BOUND)).unwrap();
    let at = Instant::now();
    echo(stream, msg.as_bytes());
    at.elapsed()
}

#[test]
fn never_readers_are_held_at_the_budget_while_others_are_served() {
    const NEVER_READERS: usize = 100;
    let server = ServerProcess::start(&["--max-memory", "1M"]);
    let mut interactive = server.connect();
    timed_echo(&mut interactive, 0);

    let mut fleet = Fleet::connect(server.addr, NEVER_READERS);
    let held = fill_until_held(&server, &mut fleet, |s| s["memory_pauses"] > 0);
    assert_spent(&held, NEVER_READERS);

    // The budget is spent: the interactive client, a newcomer and a
    // client streaming 1 MiB (reading as it goes) are all still served.
    let mut worst = Duration::ZERO;
    for seq in 1..=20 {
        worst = worst.max(timed_echo(&mut interactive, seq));
    }
    let at = Instant::now();
    let mut newcomer = server.connect();
    timed_echo(&mut newcomer, 0);
    newcomer.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut newcomer);
    let newcomer_took = at.elapsed();
    let at = Instant::now();
    stream_through(server.addr, MIB as usize);
    let streamed_in = at.elapsed();
    println!("interactive worst {worst:?}, newcomer {newcomer_took:?}, 1 MiB in {streamed_in:?}");
    let worst = worst.max(newcomer_took);
    assert!(
        worst <= ECHO_BOUND,
        "an echo took {worst:?} with the budget spent"
    );
    assert!(streamed_in.as_secs() < 10, "1 MiB took {streamed_in:?}");
    assert_spent(&server.stats(), NEVER_READERS);

    // One never-reader reads while the others still hold the budget: it
    // is not stuck behind them.
    fleet.drain(&[0], Duration::from_secs(20)).unwrap();
    // Then all of them: every byte comes back, and nothing is held.
    let rest: Vec<usize> = (1..NEVER_READERS).collect();
    fleet.drain(&rest, Duration::from_secs(60)).unwrap();
    timed_echo(&mut interactive, 21);
    // 23 round trips of 64 bytes, 1 MiB streamed, and the fleet's bytes.
    let moved = 23 * 64 + MIB + fleet.sent();
    let after = server.stats_until(IO_TIMEOUT, |s| s["active"] == 1);
    assert_eq!(held_in_out(&after), (0, moved, moved), "{after:?}");
}

#[test]
fn never_readers_that_reset_give_their_share_of_the_budget_back() {
    const NEVER_READERS: usize = 50;
    let server = ServerProcess::start(&["--max-memory", "1M"]);
    let mut fleet = Fleet::connect(server.addr, NEVER_READERS);
    let held = fill_until_held(&server, &mut fleet, |s| s["memory_pauses"] > 0);
    assert_spent(&held, NEVER_READERS);
    fleet.reset_all();
    let gone = server.stats_until(IO_TIMEOUT, |s| s["active"] == 0);
    assert_eq!(
        gone["pending_bytes"], 0,
        "echo of reset connections still counted: {gone:?}"
    );
    assert_eq!(gone["closed_error"], NEVER_READERS as u64, "{gone:?}");
}

/// A client that writes a burst before it reads: more than the kernel
/// buffers take, well within `--max-buffer`. Paused for the budget, it is
/// stuck until the server reads on, which it may once the budget frees:
/// nothing else will wake it (its client is blocked writing).
#[test]
fn a_connection_paused_for_the_budget_resumes_when_the_budget_frees() {
    const NEVER_READERS: usize = 20;
    const BURST: usize = 600 * KIB as usize;
    let server = ServerProcess::start(&["--max-memory", "1M", "--max-buffer", "1M"]);
    let mut fleet = Fleet::connect(server.addr, NEVER_READERS);
    let held = fill_until_held(&server, &mut fleet, |s| s["memory_pauses"] > 0);
    let mut client = small_client_socket(server.addr).unwrap();
    client.set_nonblocking(false).unwrap();
    client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let burst = pattern(BURST, 0x6275_7273);
        let result = client.write_all(&burst).and_then(|()| {
            let mut back = vec![0u8; BURST];
            client.read_exact(&mut back)?;
            Ok(back == burst)
        });
        let _ = done_tx.send(result);
    });
    let paused = server.stats_until(IO_TIMEOUT, |s| s["memory_pauses"] > held["memory_pauses"]);
    fleet.reset_all();
    let freed = server.stats_until(IO_TIMEOUT, |s| s["closed_error"] == NEVER_READERS as u64);
    let bound = Duration::from_secs(10);
    match done.recv_timeout(bound) {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => panic!("the burst's echo differs"),
        Ok(Err(e)) => panic!("the burst client failed: {e}"),
        Err(_) => panic!(
            "a client paused for the budget was still stuck {bound:?} after the budget \
             freed: paused {paused:?}, freed {freed:?}, now {:?}",
            server.stats()
        ),
    }
}

#[test]
fn below_the_budget_nothing_pauses_for_it_and_nothing_stays_held() {
    const NEVER_READERS: u64 = 4;
    const MAX_BUFFER: u64 = 64 * KIB;
    let server = ServerProcess::start(&["--max-memory", "1M"]);
    let mut fleet = Fleet::connect(server.addr, NEVER_READERS as usize);
    // Each never-reader fills its own buffer: 4 x 64 KiB, under 1 MiB.
    let held = fill_until_held(&server, &mut fleet, |s| {
        s["backpressure_pauses"] >= NEVER_READERS
    });
    let full = NEVER_READERS * MAX_BUFFER;
    let pending = (held["pending_bytes"], held["pending_peak"]);
    assert_eq!(pending, (full, full), "{held:?}");
    // A client that reads its echo as it goes moves 4 MiB meanwhile.
    stream_through(server.addr, 4 * MIB as usize);
    let all: Vec<usize> = (0..NEVER_READERS as usize).collect();
    fleet.drain(&all, Duration::from_secs(30)).unwrap();
    let after = server.stats_until(IO_TIMEOUT, |s| s["active"] == 0);
    let moved = fleet.sent() + 4 * MIB;
    assert_eq!(
        after["memory_pauses"], 0,
        "paused for a budget never reached: {after:?}"
    );
    assert!(after["pending_peak"] <= MIB, "{after:?}");
    assert_eq!(held_in_out(&after), (0, moved, moved), "{after:?}");
}

#[test]
fn byte_options_take_k_m_g_suffixes_in_powers_of_1024() {
    let server = ServerProcess::start(&["--max-buffer", "64K", "--max-memory", "32M"]);
    let started = started_line(&server);
    assert!(
        started.contains(" max_buffer=65536 max_memory=33554432 "),
        "{started}"
    );
    echo_session(server.addr, b"suffixes\n");
    let server = ServerProcess::start(&["--max-buffer", "1KiB", "--max-memory", "1g"]);
    let started = started_line(&server);
    assert!(
        started.contains(" max_buffer=1024 max_memory=1073741824 "),
        "{started}"
    );

    // (A negative value with a suffix needs `=`: alone, clap reads `-1M` as
    // short flags.)
    for args in [
        &["--max-memory", "0"][..],
        &["--max-memory", "1T"],
        &["--max-memory=-1M"],
        &["--max-buffer", "x"],
        &["--max-buffer", "0K"],
    ] {
        let flag = args[0].split('=').next().unwrap();
        let out = run_to_exit(&[&["--listen", "127.0.0.1:0"], args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = format!("{args:?}: {:?}, stderr: {stderr}", out.status);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(
            stderr.contains(flag),
            "the error does not name {flag}: {said}"
        );
        assert!(out.stdout.is_empty(), "started anyway: {said}");
    }
}
