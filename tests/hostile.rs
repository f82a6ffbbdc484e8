//! Clients and faults that break the contract in ways ordinary traffic does
//! not: urgent (out-of-band) data, a stalled server facing thousands of
//! lines at once, sockets destroyed under the server, a quit line left
//! lingering past the idle timeout, and a drain that outlasts a silence.
//! Real binary, real sockets, loopback only.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use socket2::SockRef;

use common::*;

/// Reads until `n` bytes arrived, the peer closed, an error, or `within`
/// passed. Returns what arrived and how the read ended, for messages.
fn read_for(stream: &mut TcpStream, n: usize, within: Duration) -> (Vec<u8>, String) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let ending = loop {
        if got.len() >= n {
            break "complete".to_string();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break format!("nothing more within {within:?}");
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf[..(n - got.len()).min(64 * 1024)]) {
            Ok(0) => break "EOF".to_string(),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => break format!("error: {e}"),
        }
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    (got, ending)
}

/// Bytes the server's end of `client`'s connection holds unread.
fn server_unread(client: &TcpStream) -> Option<u64> {
    tcp_queues(client.peer_addr().unwrap(), client.local_addr().unwrap()).map(|q| q.1)
}

// ---------------------------------------------------------------------------
// Urgent data

/// `hello\nAAAA`, the urgent byte `B`, then `CCCC\n`: echoed in order, the
/// urgent byte in its place, as any other byte.
const URGENT_ECHO: &[u8] = b"hello\nAAAABCCCC\n";

fn send_urgent(client: &TcpStream) {
    let sent = SockRef::from(client)
        .send_with_flags(b"B", libc::MSG_OOB)
        .expect("send with MSG_OOB");
    assert_eq!(sent, 1);
}

#[test]
fn urgent_byte_sent_back_to_back_is_echoed_in_order() {
    // A read stops at the urgent mark: the bytes behind it are still in the
    // socket, and no new edge will say so.
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    client.write_all(b"hello\nAAAA").unwrap();
    send_urgent(&client);
    client.write_all(b"CCCC\n").unwrap();
    let (got, ending) = read_for(&mut client, URGENT_ECHO.len(), Duration::from_secs(5));
    assert_eq!(
        show(&got),
        show(URGENT_ECHO),
        "echo of `hello\\nAAAA`, urgent `B`, `CCCC\\n` ({ending}); the server's socket \
         holds {:?} unread bytes",
        server_unread(&client)
    );
    client.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut client);
}

#[test]
fn urgent_byte_between_reads_is_echoed_in_order() {
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    // The echo proves the server has read the first part.
    echo(&mut client, b"hello\nAAAA");
    send_urgent(&client);
    // A server that takes the urgent byte as data echoes it at once; one
    // that leaves it out of band never reads it. Go on either way.
    let (urgent, _) = read_for(&mut client, 1, Duration::from_secs(2));
    let unread_after_urgent = server_unread(&client);
    client.write_all(b"CCCC\n").unwrap();
    let (rest, ending) = read_for(&mut client, 6 - urgent.len(), Duration::from_secs(3));
    let got = [&b"hello\nAAAA"[..], &urgent, &rest].concat();
    assert_eq!(
        show(&got),
        show(URGENT_ECHO),
        "echo of `hello\\nAAAA`, urgent `B`, `CCCC\\n` sent one at a time ({ending}); \
         2 s after the urgent byte its echo was {:?} and the server's socket held \
         {unread_after_urgent:?} unread bytes",
        show(&urgent)
    );
    client.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut client);
}

// ---------------------------------------------------------------------------
// A stall with thousands of lines waiting

/// Many nonblocking clients on one poll: each sends its message and waits
/// for its echo, all at once.
struct Crowd {
    poll: Poll,
    clients: Vec<MioStream>,
}

/// How each client's wait for its echo ended.
#[derive(Debug, Default)]
struct Tally {
    echoed: usize,
    reset: usize,
    eof: usize,
    wrong: usize,
    other_errors: usize,
    waiting: usize,
}

fn message(round: &str, i: usize) -> Vec<u8> {
    format!("{round} {i}\n").into_bytes()
}

impl Crowd {
    fn join(&mut self, addr: SocketAddr) {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("client {}: connect: {e}", self.clients.len()));
        stream.set_nodelay(true).unwrap();
        stream.set_nonblocking(true).unwrap();
        let mut stream = MioStream::from_std(stream);
        let token = Token(self.clients.len());
        self.poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .unwrap();
        self.clients.push(stream);
    }

    /// Every client writes its line of `round` (a few bytes: the socket
    /// takes them at once, even while the server is stopped).
    fn send(&mut self, round: &str) {
        for (i, client) in self.clients.iter_mut().enumerate() {
            let msg = message(round, i);
            let n = client
                .write(&msg)
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            assert_eq!(n, msg.len(), "client {i}: short write");
        }
    }

    /// Waits up to `within` for every client's echo of its line of `round`.
    fn collect(&mut self, round: &str, within: Duration) -> Tally {
        let expected: Vec<Vec<u8>> = (0..self.clients.len()).map(|i| message(round, i)).collect();
        let mut got = vec![Vec::new(); self.clients.len()];
        let mut done = vec![false; self.clients.len()];
        let mut tally = Tally::default();
        let mut events = Events::with_capacity(1024);
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + within;
        let mut left = self.clients.len();
        while left > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            self.poll.poll(&mut events, Some(wait)).unwrap();
            for event in events.iter() {
                let i = event.token().0;
                // Edge-triggered: read until the socket says it is empty.
                while !done[i] {
                    match self.clients[i].read(&mut buf) {
                        Ok(0) => tally.eof += 1,
                        Ok(n) => {
                            got[i].extend_from_slice(&buf[..n]);
                            if got[i].len() < expected[i].len() {
                                continue;
                            }
                            if got[i] == expected[i] {
                                tally.echoed += 1;
                            } else {
                                tally.wrong += 1;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => tally.reset += 1,
                        Err(_) => tally.other_errors += 1,
                    }
                    done[i] = true;
                    left -= 1;
                }
            }
        }
        tally.waiting = left;
        tally
    }

    /// One line per client, all echoed, or the setup failed.
    fn round(&mut self, round: &str) {
        self.send(round);
        let tally = self.collect(round, IO_TIMEOUT);
        assert_eq!(
            tally.echoed,
            self.clients.len(),
            "setup round `{round}` with {} clients: {tally:?}",
            self.clients.len()
        );
    }
}

/// The process state letter from /proc/PID/stat (`T` once stopped).
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[test]
fn lines_that_arrived_during_a_stall_are_echoed_not_closed_as_idle() {
    // Thousands of idle deadlines pass while the server is stopped, and
    // every connection has a line waiting when it resumes. Each line came
    // in time, so each must be echoed; an idle close of a socket with
    // unread input also resets it.
    const WANTED: usize = 3000;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let clients = WANTED.min(limit.saturating_sub(64) as usize);
    if clients < WANTED {
        eprintln!("RLIMIT_NOFILE is {limit}: {clients} clients instead of {WANTED}");
    }
    assert!(
        clients >= 2048,
        "RLIMIT_NOFILE {limit} allows only {clients} clients; the scenario needs 2048 or more"
    );
    let server = ServerProcess::start(&["--idle-timeout", "1"]);
    let mut crowd = Crowd {
        poll: Poll::new().unwrap(),
        clients: Vec::new(),
    };
    // A round trip every 300 ms keeps the first clients from going idle
    // while the rest connect.
    let mut last_round = Instant::now();
    for _ in 0..clients {
        crowd.join(server.addr);
        if last_round.elapsed() > Duration::from_millis(300) {
            crowd.round("keepalive");
            last_round = Instant::now();
        }
    }
    crowd.round("ready");

    server.signal("STOP");
    assert!(
        wait_until(IO_TIMEOUT, Duration::from_millis(1), || {
            process_state(server.pid) == 'T'
        }),
        "the server did not stop"
    );
    crowd.send("stalled");
    // The stall is the scenario: every idle deadline passes meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("CONT");
    let tally = crowd.collect("stalled", IO_TIMEOUT);
    let stats = server.stats();
    eprintln!("{clients} clients after the stall: {tally:?}; {stats:?}");
    assert_eq!(
        tally.echoed, clients,
        "{clients} clients each sent a line while the server was stopped for 1.5 s \
         (--idle-timeout 1): {tally:?}; closed_idle={}",
        stats["closed_idle"]
    );
}

// ---------------------------------------------------------------------------
// Warnings under a fault

/// Destroys the server's established sockets on `addr`'s port, as `ss -K`
/// (SOCK_DESTROY) does: each then fails with ECONNABORTED, a per-connection
/// error logged at warn level. Needs root and CONFIG_INET_DIAG_DESTROY.
fn destroy_server_sockets(addr: SocketAddr) {
    let filter = format!("( sport = :{} )", addr.port());
    let out = Command::new("ss")
        .args(["-K", "-t", "-n", "state", "established", &filter])
        .output()
        .expect("run ss(8)");
    assert!(
        out.status.success(),
        "ss -K failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn warnings_for_connections_failing_at_once_are_rate_limited() {
    let mut server = ServerProcess::start(&[]);
    const BURST: u64 = 100;
    let mut clients = Vec::new();
    for burst in 1..=2 {
        if burst == 2 {
            // The rate limit's interval passing between the bursts is the
            // scenario: the second burst's first warning may say how many
            // the first one suppressed.
            std::thread::sleep(Duration::from_millis(1200));
        }
        clients.extend((0..BURST).map(|_| server.connect()));
        server.stats_until(IO_TIMEOUT, |s| s.get("active") == BURST);
        destroy_server_sockets(server.addr);
        let failed = burst * BURST;
        let reached = wait_until(IO_TIMEOUT, Duration::from_millis(20), || {
            server.stats().get("closed_error") == failed
        });
        assert!(
            reached,
            "`ss -K` did not make {BURST} connections fail (root and \
             CONFIG_INET_DIAG_DESTROY are needed): {:?}",
            server.stats()
        );
    }
    server.signal("TERM");
    assert!(server.expect_exit(IO_TIMEOUT).success());
    let warnings = server.log.warnings();
    eprintln!(
        "{} WARN lines for {} failed connections",
        warnings.len(),
        2 * BURST
    );
    assert!(
        warnings.len() <= 6,
        "{} WARN lines for {} connections failing in two bursts 1.2 s apart; a few \
         per second is the most a fault may cost the log:\n{}",
        warnings.len(),
        2 * BURST,
        warnings[..warnings.len().min(10)].join("\n")
    );
    assert!(
        server.log.text().contains("similar warnings suppressed"),
        "no `similar warnings suppressed` count in the log:\n{}",
        server.log.dump()
    );
    drop(clients);
}

// ---------------------------------------------------------------------------
// Ends of connections

#[test]
fn a_quit_line_lingering_past_the_idle_timeout_counts_as_quit() {
    // The idle timeout (1 s) is shorter than the linger after a quit (2 s):
    // the connection ended because of the quit line, whichever timer closes
    // the socket.
    let server = ServerProcess::start(&["--idle-timeout", "1"]);
    let mut client = server.connect();
    client.write_all(b"hello\nquit\n").unwrap();
    assert_eq!(read_exactly(&mut client, 6), b"hello\n");
    expect_eof(&mut client);
    // The client keeps its end open, neither sending nor closing.
    let stats = server.stats_until(IO_TIMEOUT, |s| s.get("active") == 0);
    assert_eq!(
        (stats["closed_quit"], stats["closed_idle"]),
        (1, 0),
        "(closed_quit, closed_idle) of a connection that sent `quit`: {stats:?}"
    );
    drop(client);
}

#[test]
fn the_drain_goes_on_until_the_client_closes() {
    // A client silent for longer than any quiet spell the server could wait
    // for is still connected: what it sends afterwards, until its EOF, is
    // echoed. `--shutdown-timeout` is what bounds the drain.
    const MIB: usize = 1024 * 1024;
    let mut server = ServerProcess::start(&["--shutdown-timeout", "10"]);
    let mut client = server.connect();
    let data = pattern(MIB + 100, 7);
    assert!(!has_quit_line(&data));
    for chunk in data[..MIB].chunks(64 * 1024) {
        echo(&mut client, chunk);
    }
    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no `shutting down` line; stderr:\n{}", server.log.dump()));
    // The silence is the scenario.
    std::thread::sleep(Duration::from_secs(1));
    let late = &data[MIB..];
    let wrote = client.write_all(late);
    client.shutdown(Shutdown::Write).ok();
    let shut = Instant::now();
    let rest = try_read_to_eof(&mut client);
    assert!(
        matches!(&rest, Ok(echo) if echo == late),
        "after 1 s of silence in the drain the client sent 100 bytes ({wrote:?}) and \
         its EOF; expected their echo, then EOF; got {:?}",
        rest.map(|echo| show(&echo))
            .map_err(|(e, got)| (e, show(&got)))
    );
    let status = server.expect_exit(Duration::from_secs(3));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        shut.elapsed() < Duration::from_secs(3),
        "exited {:?} after the client's EOF",
        shut.elapsed()
    );
    let fin = server.final_stats();
    assert_eq!(
        (fin["bytes_in"], fin["bytes_out"]),
        (data.len() as u64, data.len() as u64),
        "{fin:?}"
    );
}
