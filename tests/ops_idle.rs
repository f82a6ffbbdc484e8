//! Idle timeout: no bytes either way for `--idle-timeout` seconds
//! closes a connection; traffic keeps it open; 0 turns it off.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn idle_client_is_closed_within_a_few_seconds() {
    let server = ServerProcess::start(&["--idle-timeout", "0.5"]);
    let mut client = server.connect();
    let connected = Instant::now();
    // The server closes with a FIN: the client reads EOF.
    expect_eof(&mut client);
    let took = connected.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "idle client closed after {took:?} with --idle-timeout 0.5"
    );
    let stats = server.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    assert_eq!(stats.get("closed_idle"), 1, "{stats:?}");
    assert_eq!(stats.get("closed_client"), 0, "{stats:?}");
}

/// The clock starts again with each byte: closed ~0.5 s after the last echo.
#[test]
fn idle_after_traffic_is_closed_from_the_last_byte() {
    let server = ServerProcess::start(&["--idle-timeout", "0.5"]);
    let mut client = server.connect();
    for _ in 0..3 {
        echo(&mut client, b"some traffic\n");
    }
    let last = Instant::now();
    expect_eof(&mut client);
    let took = last.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "closed {took:?} after the last byte with --idle-timeout 0.5"
    );
}

/// A line every 0.2 s keeps the connection open for 2 s (four timeouts),
/// while an idle neighbour is closed meanwhile.
#[test]
fn client_sending_every_200ms_stays_open() {
    let server = ServerProcess::start(&["--idle-timeout", "0.5"]);
    let mut client = server.connect();
    let mut idle = server.connect();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(2) {
        echo(&mut client, format!("line {n}\n").as_bytes());
        n += 1;
        // Pacing of the client, not synchronisation: 0.2 s between lines.
        std::thread::sleep(Duration::from_millis(200));
    }
    echo(&mut client, b"still open\n");
    let stats = server.stats();
    assert_eq!(stats.get("closed_idle"), 1, "{stats:?}");
    assert_eq!(stats.get("active"), 1, "{stats:?}");
    echo(&mut client, b"and still\n");
    // The neighbour was closed long ago: EOF is already there.
    let got = read_within(&mut idle, Duration::from_millis(1)).expect("read");
    assert_eq!(got, Some(vec![]), "idle neighbour not closed");
}

/// Waiting for echo the client never reads counts as idle.
#[test]
fn client_not_reading_its_echo_counts_as_idle() {
    // Long enough that a loaded machine's scheduling gaps do not pass for
    // idleness while the pipe is still filling.
    let server = ServerProcess::start(&["--idle-timeout", "2"]);
    let mut client = server.connect();
    let written = write_until_full(
        &mut client,
        &pattern(8 << 20, 7),
        Duration::from_millis(300),
    );
    assert!(written > 0);
    let stats = server.stats_until(Duration::from_secs(10), |s| s.get("active") == 0);
    assert_eq!(stats.get("closed_idle"), 1, "{stats:?}");
    assert!(stats.get("backpressure_pauses") >= 1, "{stats:?}");
    assert!(server.log.warnings().is_empty(), "{}", server.log.dump());
}

/// Many idle connections expire together, each within a few seconds.
#[test]
fn many_idle_clients_all_expire() {
    let server = ServerProcess::start(&["--idle-timeout", "0.5"]);
    let mut clients: Vec<_> = (0..200).map(|_| server.connect()).collect();
    let started = Instant::now();
    for client in &mut clients {
        expect_eof(client);
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    let stats = server.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    assert_eq!(stats.get("closed_idle"), 200, "{stats:?}");
}

/// `--idle-timeout 0` turns the timer off.
#[test]
fn zero_turns_the_idle_timeout_off() {
    let server = ServerProcess::start(&["--idle-timeout", "0"]);
    let mut client = server.connect();
    echo(&mut client, b"hello\n");
    let got = read_within(&mut client, Duration::from_millis(1500)).expect("read");
    assert!(
        got.is_none(),
        "idle connection got {got:?} with the timeout off"
    );
    echo(&mut client, b"still open\n");
    assert_eq!(server.stats().get("closed_idle"), 0);
}

/// With nothing to do the loop blocks: no wake-ups while no deadline is near
/// (default `--idle-timeout 300`, one idle connection).
#[test]
fn idle_server_does_not_wake_up() {
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    echo(&mut client, b"hello\n");
    // Wait (bounded) until the loop is back asleep in epoll_wait.
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || state(server.pid) == 'S'
    ));
    let before = wakeups(server.pid);
    std::thread::sleep(Duration::from_secs(1));
    let after = wakeups(server.pid);
    assert!(
        after - before <= 1,
        "{} context switches in 1 s of idleness",
        after - before
    );
    client.write_all(b"bye\n").unwrap();
}

/// Voluntary plus involuntary context switches of the process's only thread.
fn wakeups(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The process state letter from /proc (R running, S sleeping, ...).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[test]
fn input_that_arrived_before_the_deadline_counts_when_served_after_it() {
    // The server is stopped (a long turn, or descheduled) while the client
    // sends a line well inside the timeout, and resumes past the deadline:
    // the line came in time, so it is echoed, not reset by an idle close.
    let server = ServerProcess::start(&["--idle-timeout", "1"]);
    let mut c = server.connect();
    echo(&mut c, b"first\n");
    server.signal("STOP");
    c.write_all(b"in time\n").unwrap();
    // The stop is the scenario: the deadline passes while the server sleeps.
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("CONT");
    assert_eq!(read_exactly(&mut c, 8), b"in time\n");
    let stats = server.stats();
    assert_eq!(stats.get("closed_idle"), 0, "{stats:?}");
    assert_eq!(stats.get("closed_error"), 0, "{stats:?}");
}

#[test]
fn a_deadline_that_passed_while_the_server_was_stopped_fires_on_resume() {
    // A stop and resume (Ctrl-Z then fg, or `strace -p` attaching) makes the
    // blocked epoll_wait fail with EINTR; the wait that follows must count
    // from the real time, not start the whole timeout again.
    let server = ServerProcess::start(&["--idle-timeout", "2"]);
    let mut c = server.connect();
    echo(&mut c, b"hi\n");
    // The stop is the scenario: the deadline passes while the server sleeps.
    std::thread::sleep(Duration::from_millis(300));
    server.signal("STOP");
    std::thread::sleep(Duration::from_millis(2500));
    server.signal("CONT");
    let resumed = Instant::now();
    expect_eof(&mut c);
    let late = resumed.elapsed();
    assert!(
        late < Duration::from_millis(1000),
        "the idle close came {late:?} after the resume; its deadline had passed during the stop"
    );
}
