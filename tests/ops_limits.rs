//! Connection limit: at `--max-connections` the server stops
//! accepting (clients wait in the backlog, none is accepted and dropped) and
//! resumes on the turn a connection closes. The effective limit is logged.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// How long a client at the limit is watched to show it gets no echo.
const NO_ECHO_WINDOW: Duration = Duration::from_millis(700);

#[test]
fn eleventh_client_waits_until_one_of_ten_closes() {
    let server = ServerProcess::start(&["--max-connections", "10"]);
    assert!(
        server
            .log
            .wait_for("accepting at most 10 connections", Duration::from_secs(5))
            .is_some(),
        "the effective limit is not logged; stderr:\n{}",
        server.log.dump()
    );
    let mut ten: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
    for (i, client) in ten.iter_mut().enumerate() {
        echo(client, format!("client {i}\n").as_bytes());
    }
    // At the limit with nobody waiting: nothing to warn about.
    server.stats();
    assert!(server.log.warnings().is_empty(), "{}", server.log.dump());

    // The kernel completes the handshake (backlog), but the server does not
    // accept: the line is not echoed.
    let mut eleventh = server.connect();
    roundtrip_pending(&mut eleventh, b"eleventh\n");
    let stats = server.stats();
    assert_eq!(stats.get("accepted"), 10, "{stats:?}");
    assert_eq!(stats.get("active"), 10, "{stats:?}");
    assert!(stats.get("accept_pauses_limit") >= 1, "{stats:?}");
    // The operator is told why a client hangs, once (the warning is
    // rate-limited).
    assert!(
        server
            .log
            .wait_for("10 connections open (--max-connections)", IO_TIMEOUT)
            .is_some(),
        "no warning at the connection limit; stderr:\n{}",
        server.log.dump()
    );
    // The ten still echo while the eleventh waits.
    for client in &mut ten {
        echo(client, b"still here\n");
    }

    // One of the ten leaves: the eleventh is accepted and echoed promptly.
    let closed_at = Instant::now();
    drop(ten.remove(3));
    let echo = read_within(&mut eleventh, Duration::from_secs(5))
        .expect("read")
        .expect("no echo within 5 s of a slot freeing up");
    let took = closed_at.elapsed();
    assert_eq!(echo, b"eleventh\n");
    assert!(
        took < Duration::from_secs(1),
        "echo came {took:?} after a slot freed"
    );
    common::echo(&mut eleventh, b"and more\n");
    for client in &mut ten {
        common::echo(client, b"nine left\n");
    }
    let stats = server.stats();
    assert_eq!(stats.get("accepted"), 11, "{stats:?}");
    assert_eq!(stats.get("active"), 10, "{stats:?}");
    assert_eq!(stats.get("closed_client"), 1, "{stats:?}");
    server.assert_one_thread("at the connection limit");
}

/// Writes `msg` and checks that nothing comes back within the window.
fn roundtrip_pending(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).unwrap();
    match read_within(stream, NO_ECHO_WINDOW) {
        Ok(None) => {}
        Ok(Some(data)) if data.is_empty() => panic!("client over the limit got EOF"),
        Ok(Some(data)) => panic!(
            "client over the limit was echoed {:?}",
            String::from_utf8_lossy(&data)
        ),
        Err(e) => panic!("client over the limit: {e}"),
    }
}

/// Several clients queue at the limit; each close lets exactly one more in,
/// and every queued client is served in the end (none accepted and dropped).
#[test]
fn queued_clients_are_served_one_per_freed_slot() {
    let server = ServerProcess::start(&["--max-connections", "2"]);
    let mut open: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    for client in &mut open {
        echo(client, b"in\n");
    }
    let mut waiting: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
    for (i, client) in waiting.iter_mut().enumerate() {
        client
            .write_all(format!("waiting {i}\n").as_bytes())
            .unwrap();
    }
    // One window for all four: the later ones have waited as long by then.
    for (i, client) in waiting.iter_mut().enumerate() {
        let window = if i == 0 {
            NO_ECHO_WINDOW
        } else {
            Duration::from_millis(1)
        };
        let got = read_within(client, window).expect("read");
        assert!(got.is_none(), "queued client {i} got {got:?}");
    }
    // Free both slots: two of the four get in; the other two still wait.
    drop(open);
    let mut served = Vec::new();
    let mut still_waiting = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, mut client) in waiting.into_iter().enumerate() {
        let window = if served.len() < 2 {
            deadline.saturating_duration_since(Instant::now())
        } else if still_waiting.is_empty() {
            NO_ECHO_WINDOW
        } else {
            Duration::from_millis(1)
        };
        match read_within(&mut client, window.max(Duration::from_millis(1))) {
            Ok(Some(echo)) => {
                assert_eq!(echo, format!("waiting {i}\n").as_bytes());
                served.push(client);
            }
            Ok(None) => still_waiting.push((i, client)),
            Err(e) => panic!("queued client {i}: {e}"),
        }
    }
    assert_eq!(served.len(), 2, "two slots freed, {} served", served.len());
    assert_eq!(still_waiting.len(), 2);
    // As the served ones leave, the rest get in.
    drop(served);
    for (i, mut client) in still_waiting {
        let echo = read_within(&mut client, Duration::from_secs(5))
            .expect("read")
            .unwrap_or_else(|| panic!("queued client {i} never served"));
        assert_eq!(echo, format!("waiting {i}\n").as_bytes());
    }
    let stats = server.stats_until(Duration::from_secs(5), |s| s.get("accepted") == 6);
    assert_eq!(stats.get("closed_error"), 0, "{stats:?}");
}

/// The limit never exceeds what RLIMIT_NOFILE allows; the effective value
/// is logged (a warning, since it is lower than asked) and enforced.
#[test]
fn limit_is_clamped_to_rlimit_nofile() {
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=40:40", "--", BIN])
        .args(["--listen", "127.0.0.1:0", "--max-connections", "1000"])
        .env("RUST_LOG", "info");
    let server = ServerProcess::spawn(cmd);
    let line = server
        .log
        .wait_for("connections, not 1000", Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "no warning about the clamped limit; stderr:\n{}",
                server.log.dump()
            )
        });
    assert!(line.contains(" WARN "), "{line}");
    let limit: usize = line
        .split("accepting at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    assert!(limit < 40, "limit {limit} with RLIMIT_NOFILE 40");
    let mut clients: Vec<TcpStream> = (0..limit).map(|_| server.connect()).collect();
    for client in &mut clients {
        echo(client, b"x\n");
    }
    let mut over = server.connect();
    roundtrip_pending(&mut over, b"over\n");
    drop(clients.pop());
    let echo = read_within(&mut over, Duration::from_secs(5))
        .expect("read")
        .expect("no echo after a slot freed");
    assert_eq!(echo, b"over\n");
    let stats = server.stats();
    assert_eq!(stats.get("accept_pauses_fd"), 0, "{stats:?}");
    // The clamp and reaching the limit are the only warnings: never EMFILE.
    let warnings = server.log.warnings();
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("RLIMIT_NOFILE is 40") || w.contains("(--max-connections)")),
        "{}",
        server.log.dump()
    );
}

/// A slot freed by the idle timer (not by a client event) also resumes
/// accepting on that turn: the waiting client is served right after the
/// idle one is closed.
#[test]
fn idle_close_frees_a_slot_for_a_waiting_client() {
    let server = ServerProcess::start(&["--max-connections", "1", "--idle-timeout", "0.5"]);
    let mut idle = server.connect();
    echo(&mut idle, b"then silence\n");
    let mut waiting = server.connect();
    waiting.write_all(b"let me in\n").unwrap();
    expect_eof(&mut idle);
    let closed_at = Instant::now();
    let echo = read_within(&mut waiting, Duration::from_secs(5))
        .expect("read")
        .expect("no echo within 5 s of the idle close");
    assert_eq!(echo, b"let me in\n");
    assert!(
        closed_at.elapsed() < Duration::from_millis(500),
        "served {:?} after the idle close",
        closed_at.elapsed()
    );
}
