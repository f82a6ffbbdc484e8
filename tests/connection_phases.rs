//! One connection's phases, `Open → Flushing → Lingering → closed`, driven
//! by hand over a real loopback socket pair: the test plays the reactor
//! (it reports readiness and calls `advance`) and the client.
//!
//! On loopback the bytes a client writes are in the server's socket by the
//! time `write` returns, so a readiness report right after it is true.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use echo_reactor::connection::{CloseReason, Connection, Next, Shared, LINGER};
use echo_reactor::deadlines::Kind;
use echo_reactor::logging::WarnLimiter;
use echo_reactor::stats::Stats;

const IDLE: Option<Duration> = Some(Duration::from_secs(300));

/// The server side as the reactor holds it, the client as a test holds it.
struct Pair {
    connection: Connection,
    client: TcpStream,
    shared: Shared,
}

impl Pair {
    fn new() -> Pair {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        // What the server's listener sets for every accepted socket.
        socket2::SockRef::from(&server)
            .set_out_of_band_inline(true)
            .unwrap();
        let stream = mio::net::TcpStream::from_std(server);
        Pair {
            connection: Connection::new(stream, 1, true, false, Instant::now()),
            client,
            shared: Shared {
                buf: vec![0; 4096],
                stats: Stats::default(),
                now: Instant::now(),
                max_buffer: 1 << 20,
                max_memory: 1 << 30,
                warnings: WarnLimiter::default(),
            },
        }
    }

    /// Reports readiness as an event would, and lets the connection work.
    fn event(&mut self, readable: bool, read_closed: bool, urgent: bool) -> Next {
        self.connection.note_event(readable, read_closed, urgent);
        self.shared.now = Instant::now();
        self.connection.advance(&mut self.shared)
    }

    fn readable(&mut self) -> Next {
        self.event(true, false, false)
    }

    /// The drain's deadline, then the next turn's serve.
    fn end_input(&mut self) -> Next {
        self.shared.now = Instant::now();
        if let Some(next) = self.connection.end_input(&mut self.shared) {
            return next;
        }
        self.connection.advance(&mut self.shared)
    }

    fn read_exactly(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        self.client.read_exact(&mut got).unwrap();
        got
    }

    fn expect_eof(&mut self) {
        let mut byte = [0; 1];
        assert_eq!(self.client.read(&mut byte).unwrap(), 0, "expected EOF");
    }
}

#[test]
fn open_echoes_and_waits_with_an_idle_deadline() {
    let mut pair = Pair::new();
    let before = Instant::now();
    pair.client.write_all(b"hello\n").unwrap();
    assert_eq!(pair.readable(), Next::Wait);
    assert_eq!(pair.read_exactly(6), b"hello\n");
    let (at, kind) = pair.connection.deadline(IDLE).unwrap();
    assert_eq!(kind, Kind::Idle);
    assert!(at >= before + IDLE.unwrap());
    assert_eq!(pair.connection.deadline(None), None, "idle timeout off");
    assert!(!pair.connection.is_lingering());
}

#[test]
fn quit_flushes_then_lingers_until_the_client_closes() {
    let mut pair = Pair::new();
    pair.client.write_all(b"bye\nquit\nignored").unwrap();
    let started = Instant::now();
    assert_eq!(pair.readable(), Next::Wait);
    // Echo out, write side shut: lingering, bounded by its own deadline.
    assert!(pair.connection.is_lingering());
    let (at, kind) = pair.connection.deadline(IDLE).unwrap();
    assert_eq!(kind, Kind::Linger);
    assert!(at >= started + LINGER && at <= Instant::now() + LINGER);
    assert_eq!(pair.read_exactly(4), b"bye\n");
    pair.expect_eof();
    // Input after quit is read and dropped, never echoed.
    pair.client.write_all(b"more after quit\n").unwrap();
    assert_eq!(pair.readable(), Next::Wait);
    pair.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        pair.event(true, true, false),
        Next::Close(CloseReason::Quit)
    );
}

#[test]
fn flushing_waits_for_a_slow_reader_before_lingering() {
    let mut pair = Pair::new();
    pair.shared.max_buffer = 64 << 20;
    // Far more than the kernel buffers between the two sides hold while the
    // client reads nothing, so most of the echo waits in the connection.
    let body = 16 << 20;
    let writer = {
        let mut client = pair.client.try_clone().unwrap();
        std::thread::spawn(move || {
            client.write_all(&vec![b'x'; body]).unwrap();
            client.write_all(b"\nquit\n").unwrap();
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pair.shared.stats.bytes_in < body as u64 + 6 {
        assert!(Instant::now() < deadline, "quit line never read");
        // Wait, or Yield when a turn's share is used up.
        let next = pair.readable();
        assert!(matches!(next, Next::Wait | Next::Yield), "{next:?}");
    }
    writer.join().unwrap();
    assert!(!pair.connection.is_lingering(), "lingered with echo owed");
    // The client reads; each writable edge flushes more, and once all is
    // out the connection shuts its write side.
    let mut got = 0;
    let mut buf = vec![0; 1 << 20];
    while !pair.connection.is_lingering() {
        assert!(Instant::now() < deadline, "never finished flushing");
        got += pair.client.read(&mut buf).unwrap();
        assert_eq!(pair.event(false, false, false), Next::Wait);
    }
    loop {
        match pair.client.read(&mut buf).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    assert_eq!(got, body + 1, "the body and the newline before `quit`");
}

#[test]
fn client_eof_echoes_a_held_prefix_and_closes() {
    let mut pair = Pair::new();
    pair.client.write_all(b"line\nqu").unwrap();
    pair.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        pair.event(true, true, false),
        Next::Close(CloseReason::Client)
    );
    assert_eq!(pair.read_exactly(7), b"line\nqu");
}

#[test]
fn a_shutdown_echoes_on_until_its_deadline_then_lingers() {
    let mut pair = Pair::new();
    pair.connection.begin_shutdown();
    pair.client.write_all(b"after the signal\n").unwrap();
    assert_eq!(pair.readable(), Next::Wait);
    assert_eq!(pair.read_exactly(17), b"after the signal\n");
    assert!(!pair.connection.is_lingering(), "silence is not the end");
    assert_eq!(pair.end_input(), Next::Wait);
    assert!(pair.connection.is_lingering());
    pair.expect_eof();
    pair.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        pair.event(true, true, false),
        Next::Close(CloseReason::Shutdown)
    );
}

#[test]
fn urgent_data_is_echoed_in_order() {
    let mut pair = Pair::new();
    pair.client.set_nodelay(true).unwrap();
    pair.client.write_all(b"hello\nAAAA").unwrap();
    socket2::SockRef::from(&pair.client)
        .send_with_flags(b"B", libc::MSG_OOB)
        .unwrap();
    pair.client.write_all(b"CCCC\n").unwrap();
    assert_eq!(pair.event(true, false, true), Next::Wait);
    assert_eq!(pair.read_exactly(16), b"hello\nAAAABCCCC\n");
}

#[test]
fn input_waiting_sees_unread_input_but_not_input_left_on_purpose() {
    let mut pair = Pair::new();
    assert!(!pair.connection.input_waiting());
    pair.client.write_all(b"x").unwrap();
    assert!(pair.connection.input_waiting(), "input nobody reported");
    assert_eq!(pair.readable(), Next::Wait);
    assert!(!pair.connection.input_waiting());
    // After quit, input is not waiting to be served: it is discarded.
    pair.client.write_all(b"\nquit\n").unwrap();
    pair.readable();
    pair.client.write_all(b"ignored").unwrap();
    assert!(!pair.connection.input_waiting());
}
