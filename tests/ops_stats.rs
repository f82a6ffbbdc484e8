//! Stats: SIGUSR1 logs a `stats:` snapshot at info, the exit logs
//! `final stats:`, and the numbers match what the clients did. Also: one
//! thread throughout.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[test]
fn sigusr1_snapshot_and_final_stats_match_what_clients_did() {
    let mut server = ServerProcess::start(&[]);

    // A: one line echoed, then `quit` ends the session.
    let mut a = server.connect();
    echo(&mut a, b"hello\n");
    a.write_all(b"quit\n").unwrap();
    expect_eof(&mut a);
    drop(a);

    // B: 100 000 bytes, half-close, all echo, clean EOF.
    let data = pattern(100_000, 11);
    let mut b = server.connect();
    echo(&mut b, &data);
    b.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut b);
    drop(b);

    // C: stays open.
    let mut c = server.connect();
    echo(&mut c, b"abc\n");

    let stats = server.stats_until(Duration::from_secs(5), |s| s.get("active") == 1);
    let line = server
        .log
        .wait_nth(1, is_stats_line, Duration::ZERO)
        .unwrap();
    assert!(line.contains(" INFO "), "stats line not at info: {line}");
    let expect = [
        ("accepted", 3),
        ("active", 1),
        ("closed_client", 1),
        ("closed_quit", 1),
        ("closed_idle", 0),
        ("closed_error", 0),
        ("closed_shutdown", 0),
        ("bytes_in", 6 + 5 + 100_000 + 4),
        ("bytes_out", 6 + 100_000 + 4),
        ("accept_pauses_fd", 0),
        ("accept_pauses_limit", 0),
    ];
    for (key, value) in expect {
        assert_eq!(stats.get(key), value, "{key} in {stats:?}");
    }
    assert!((1..=3).contains(&stats.get("accept_batches")), "{stats:?}");
    assert_eq!(stats.get("largest_batch"), 1, "{stats:?}");

    // The fields come in the documented order.
    let keys: Vec<&str> = line
        .split("stats: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(keys, STATS_FIELDS, "field order in {line}");

    // The exit line: the same totals, plus C closed by the shutdown.
    server.signal("TERM");
    expect_eof(&mut c);
    drop(c);
    assert!(server.expect_exit(Duration::from_secs(10)).success());
    let fin = server.final_stats();
    for key in STATS_FIELDS {
        let want = match key {
            "active" => 0,
            "closed_shutdown" => 1,
            _ => stats.get(key),
        };
        assert_eq!(fin.get(key), want, "final {key} in {fin:?}");
    }
    let final_line = server
        .log
        .wait_nth(1, is_final_stats_line, Duration::ZERO)
        .unwrap();
    assert!(final_line.contains(" INFO "), "{final_line}");
    assert_eq!(
        server.log.count(is_final_stats_line),
        1,
        "{}",
        server.log.dump()
    );
}

/// Backpressure pauses are counted: a client that does not read its echo.
#[test]
fn backpressure_pause_is_counted() {
    let server = ServerProcess::start(&["--max-buffer", "4096"]);
    let mut client = server.connect();
    let data = pattern(8 << 20, 12);
    let written = write_until_full(&mut client, &data, Duration::from_millis(300));
    // The client stalled; the server, reading a share per turn, may still
    // be catching up before its echo buffer fills.
    server.stats_until(Duration::from_secs(10), |s| {
        s.get("backpressure_pauses") >= 1
    });
    // Reading resumes the flow: every byte comes back.
    let mut echo = vec![0; written];
    client.read_exact(&mut echo).unwrap();
    assert!(echo == data[..written]);
    let stats = server.stats();
    assert_eq!(stats.get("bytes_in"), written as u64, "{stats:?}");
    assert_eq!(stats.get("bytes_out"), written as u64, "{stats:?}");
}

/// Many SIGUSR1s during a transfer: one line each, and the echo is intact.
#[test]
fn sigusr1_does_not_disturb_traffic() {
    let server = ServerProcess::start(&[]);
    let client = server.connect();
    let mut reader = client.try_clone().unwrap();
    let mut writer = client;
    let data = Arc::new(pattern(4 << 20, 13));
    let writing = {
        let data = data.clone();
        std::thread::spawn(move || {
            for chunk in data.chunks(8192) {
                writer.write_all(chunk).unwrap();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        })
    };
    let done = Arc::new(AtomicBool::new(false));
    let signals = {
        let (done, pid) = (done.clone(), server.pid);
        std::thread::spawn(move || {
            let mut sent = 0;
            loop {
                send_signal(pid, "USR1");
                sent += 1;
                if done.load(Ordering::SeqCst) || sent == 20 {
                    return sent;
                }
            }
        })
    };
    let echo = read_to_eof(&mut reader);
    done.store(true, Ordering::SeqCst);
    writing.join().unwrap();
    let sent = signals.join().unwrap();
    assert_eq!(echo.len(), data.len());
    assert!(echo == *data, "echo differs");
    // Signals sent close together may be merged into one wake-up, but each
    // wake-up logs one line, and every one of them is a full stats line.
    let lines = server.stats();
    assert_eq!(lines.get("closed_error"), 0);
    let count = server.log.count(is_stats_line);
    assert!(
        count >= 1 && count <= sent + 1,
        "{count} stats lines for {sent} + 1 SIGUSR1"
    );
    assert!(server.log.warnings().is_empty(), "{}", server.log.dump());
}

/// One thread at start, under load, after SIGUSR1, during the drain.
#[test]
fn one_thread_throughout() {
    let mut server = ServerProcess::start(&[]);
    server.assert_one_thread("at start");
    let mut clients: Vec<_> = (0..50).map(|_| server.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        echo(client, &pattern(10_000, i as u64));
    }
    server.assert_one_thread("with 50 clients");
    server.stats();
    server.assert_one_thread("after SIGUSR1");
    let mut slow = server.connect();
    let written = write_until_full(&mut slow, &pattern(8 << 20, 99), Duration::from_millis(300));
    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", Duration::from_secs(5))
        .expect("shutting down");
    server.assert_one_thread("while draining");
    drop(clients);
    let mut echo = vec![0; written];
    slow.read_exact(&mut echo).ok();
    drop(slow);
    assert!(server.expect_exit(Duration::from_secs(10)).success());
}
