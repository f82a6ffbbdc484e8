//! The turn, driven one at a time over real loopback sockets.

use std::io::{ErrorKind, Read, Write};

use super::*;

/// A reactor on a free loopback port with no signal handlers (they would
/// outlive the test in the test process), reading `read_buf` bytes at a
/// time.
fn reactor(read_buf: usize) -> Reactor {
    let config = Config::with_listen("127.0.0.1:0".parse().unwrap());
    let mut reactor = Reactor::bind_with_signals(&config, &[]).unwrap();
    reactor.shared.buf = vec![0; read_buf];
    reactor
}

/// One turn as `run` makes it, polling without blocking.
fn turn(reactor: &mut Reactor, events: &mut Events) {
    reactor
        .poll
        .poll(events, Some(Duration::ZERO))
        .expect("poll");
    reactor.shared.now = Instant::now();
    assert!(reactor.turn(events).is_none());
}

#[test]
fn no_connection_reads_more_than_its_share_between_two_polls() {
    const BUF: usize = 1024;
    let share = BUF as u64;
    let mut reactor = reactor(BUF);
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut client = std::net::TcpStream::connect(reactor.endpoints()[0].1).unwrap();
    client.set_nonblocking(true).unwrap();
    let chunk = [b'x'; 8 * BUF];
    let mut echo = vec![0; 64 * BUF];
    let mut most = 0;
    for _ in 0..200 {
        // New input every turn: the connection both yields (its input
        // exceeds its share) and gets a fresh event, the case where it
        // used to be served twice in one turn.
        for _ in 0..4 {
            let _ = client.write(&chunk);
        }
        let before = reactor.shared.stats.bytes_in;
        turn(&mut reactor, &mut events);
        let read = reactor.shared.stats.bytes_in - before;
        assert!(
            read <= share,
            "{read} bytes read in one turn, share {share}"
        );
        most = most.max(read);
        assert!(reactor.run_queue.len() <= 1, "queued more than once");
        loop {
            match client.read(&mut echo) {
                Ok(n) if n > 0 => {}
                Err(err) if err.kind() != ErrorKind::WouldBlock => panic!("{err}"),
                _ => break,
            }
        }
    }
    assert_eq!(most, share, "the test never filled a share");
}

#[test]
fn lingering_that_begins_in_a_yielding_turn_is_still_timed() {
    let mut reactor = reactor(1024);
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut client = std::net::TcpStream::connect(reactor.endpoints()[0].1).unwrap();
    // On loopback the bytes are in the server's socket when this returns;
    // a turn's share of 1 KiB reads does not drain what follows `quit`.
    client.write_all(b"quit\n").unwrap();
    client.write_all(&[b'x'; 64 << 10]).unwrap();
    // The first turn accepts; the next serves the connection's event.
    turn(&mut reactor, &mut events);
    turn(&mut reactor, &mut events);

    let (key, connection) = reactor.connections.iter().next().expect("accepted");
    assert!(connection.is_lingering());
    assert_eq!(reactor.run_queue.len(), 1, "the turn must end in a yield");
    assert!(
        reactor.deadlines.has_timer(key, Some(Kind::Linger)),
        "lingering with no deadline: only the client could end it"
    );
}

#[test]
fn the_drain_deadline_gives_no_second_share_in_a_turn() {
    let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
    config.shutdown_timeout = Duration::ZERO;
    let mut reactor = Reactor::bind_with_signals(&config, &[]).unwrap();
    reactor.shared.buf = vec![0; 1024];
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut client = std::net::TcpStream::connect(reactor.endpoints()[0].1).unwrap();
    turn(&mut reactor, &mut events);
    client.write_all(&[b'x'; 64 << 10]).unwrap();
    // A stop signal whose drain ends in the same turn as the event.
    let now = Instant::now();
    assert_eq!(reactor.shutdown.request(now), Request::Drain);
    reactor.begin_shutdown(now);
    let before = reactor.shared.stats.bytes_in;
    reactor
        .poll
        .poll(&mut events, Some(Duration::ZERO))
        .expect("poll");
    reactor.shared.now = Instant::now();
    assert!(reactor.turn(&events).is_none());
    let read = reactor.shared.stats.bytes_in - before;
    assert!(read <= 1024, "{read} bytes read in one turn, share 1024");
    assert_eq!(reactor.run_queue.len(), 1, "served again next turn");
}
