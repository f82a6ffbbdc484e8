//! Graceful shutdown: SIGTERM/SIGINT stop accepting and echo every
//! connection until its client closes its side (or quits); the process
//! exits 0 with a `final stats:` line. A deliberate second signal exits at
//! once; `--shutdown-timeout` bounds the drain, after which what is left is
//! closed cleanly (write side shut, lingering). Real binary, real sockets.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// A client has up to 8 MiB in the pipe and has read none of its echo when
/// the signal comes: it still gets every byte, new clients are refused from
/// then on, and the process exits 0 soon after the client, done, closes.
fn drains_echo_in_flight(sig: &str) {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "10"]);
    let addr = server.addr;
    let mut client = server.connect();
    let data = pattern(8 * MIB, 1);
    // Everything written here is in the kernel: in the client's send buffer,
    // the server's receive buffer, its echo buffer, its send buffer or the
    // client's receive buffer. 8 MiB does not always fit; what does is the
    // echo in flight.
    let written = write_until_full(&mut client, &data, Duration::from_millis(500));
    assert!(
        written >= MIB,
        "only {written} bytes fit in the pipe; expected at least 1 MiB in flight"
    );
    eprintln!("{written} bytes in flight at SIG{sig}");

    server.signal(sig);
    let signalled = Instant::now();
    server
        .log
        .wait_for("shutting down", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no `shutting down` line; stderr:\n{}", server.log.dump()));
    // The client has not read, so the drain cannot have finished: the
    // process is alive and its listener is closed.
    assert!(server.try_status().is_none(), "exited before the drain");
    assert_refused_soon(addr, Duration::from_secs(1));
    server.assert_one_thread("while draining");

    client.shutdown(Shutdown::Write).unwrap();
    let echo = read_to_eof(&mut client);
    assert_eq!(echo.len(), written, "echo length after SIG{sig}");
    assert!(echo == data[..written], "echo differs from what was sent");
    drop(client);

    let status = server.expect_exit(Duration::from_secs(12));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?} after SIG{sig}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} to exit, longer than --shutdown-timeout 10"
    );
    let fin = server.final_stats();
    assert_eq!(fin.get("accepted"), 1);
    assert_eq!(fin.get("active"), 0);
    assert_eq!(fin.get("closed_shutdown"), 1);
    assert_eq!(fin.get("bytes_in"), written as u64);
    assert_eq!(fin.get("bytes_out"), written as u64);
    assert_refused(addr);
}

#[test]
fn sigterm_drains_echo_in_flight_and_exits_zero() {
    drains_echo_in_flight("TERM");
}

#[test]
fn sigint_drains_echo_in_flight_and_exits_zero() {
    drains_echo_in_flight("INT");
}

/// The signal lands while a client streams and reads at full speed: the
/// client gets its whole stream back, then a clean EOF after it closes its
/// side.
#[test]
fn sigterm_mid_stream_echoes_everything_written_before_it() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "10"]);
    let client = server.connect();
    let mut reader = client.try_clone().unwrap();
    let mut writer = client;
    let total = 64 * MIB;
    let data = Arc::new(pattern(total, 2));
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer_thread = {
        let (data, written, stop) = (data.clone(), written.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut at = 0;
            while at < data.len() && !stop.load(Ordering::SeqCst) {
                let end = data.len().min(at + 16 * 1024);
                match writer.write(&data[at..end]) {
                    Ok(n) => {
                        at += n;
                        written.store(at as u64, Ordering::SeqCst);
                    }
                    Err(err) => panic!("write after {at} bytes: {err}"),
                }
            }
            writer.shutdown(Shutdown::Write).unwrap();
            writer
        })
    };

    let mut echoed = 0;
    let mut buf = vec![0; 256 * 1024];
    let mut written_before_signal = None;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!("read after {echoed} echoed bytes: {e}"),
        };
        if n == 0 {
            break;
        }
        assert!(
            buf[..n] == data[echoed..echoed + n],
            "echo differs at byte {echoed}"
        );
        echoed += n;
        if written_before_signal.is_none() && echoed >= 2 * MIB {
            written_before_signal = Some(written.load(Ordering::SeqCst) as usize);
            server.signal("TERM");
        }
    }
    stop.store(true, Ordering::SeqCst);
    let written_before_signal = written_before_signal.expect("the stream ended before 2 MiB");
    eprintln!(
        "written before SIGTERM: {written_before_signal}, echoed: {echoed}, written in all: {}",
        written.load(Ordering::SeqCst)
    );
    assert!(
        echoed >= written_before_signal,
        "only {echoed} bytes echoed, but {written_before_signal} were written before SIGTERM"
    );
    assert_eq!(
        echoed as u64,
        written.load(Ordering::SeqCst),
        "the drain must echo until the client closes"
    );
    let writer = writer_thread.join().unwrap();
    drop(writer);
    drop(reader);
    let status = server.expect_exit(Duration::from_secs(12));
    assert!(status.success(), "exit status {status:?}");
    let fin = server.final_stats();
    assert_eq!(fin.get("closed_shutdown"), 1, "{fin:?}");
    assert_eq!(fin.get("bytes_out"), echoed as u64, "{fin:?}");
}

/// A deliberate second signal, of either kind, ends the drain at once
/// (exit 0). Deliberate: a second or more after the first, since signals
/// closer together are one request (see `signals.rs`).
fn second_signal_exits_at_once(first: &str, second: &str) {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "30"]);
    let mut client = server.connect();
    let written = write_until_full(
        &mut client,
        &pattern(8 * MIB, 3),
        Duration::from_millis(300),
    );
    assert!(written > 0);
    server.signal(first);
    server
        .log
        .wait_for("shutting down", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no `shutting down` line; stderr:\n{}", server.log.dump()));
    assert_refused_soon(server.addr, Duration::from_secs(1));
    // The time between the two signals is the scenario.
    std::thread::sleep(Duration::from_millis(1100));
    let second_at = Instant::now();
    server.signal(second);
    let status = server.expect_exit(Duration::from_secs(5));
    let took = second_at.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?} after the second signal"
    );
    assert!(
        server
            .log
            .wait_for("second signal", Duration::ZERO)
            .is_some(),
        "no `second signal` line; stderr:\n{}",
        server.log.dump()
    );
    let fin = server.final_stats();
    assert_eq!(fin.get("closed_shutdown"), 1, "{fin:?}");
    assert_eq!(fin.get("active"), 0, "{fin:?}");
    // The connection is gone: reading ends (EOF or reset), it does not hang.
    let _ = try_read_to_eof(&mut client);
    assert_refused(server.addr);
}

#[test]
fn second_sigterm_exits_at_once() {
    second_signal_exits_at_once("TERM", "TERM");
}

#[test]
fn sigint_after_sigterm_exits_at_once() {
    second_signal_exits_at_once("TERM", "INT");
}

/// A client that never reads its large echo cannot hold the process: it
/// exits 0 when `--shutdown-timeout` (fractional) and the closing stage
/// (2 s of lingering at most) have run out.
#[test]
fn shutdown_timeout_bounds_the_drain() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "1.5"]);
    let mut client = server.connect();
    let written = write_until_full(
        &mut client,
        &pattern(8 * MIB, 4),
        Duration::from_millis(300),
    );
    assert!(written >= MIB, "only {written} bytes in flight");
    server.signal("TERM");
    let signalled = Instant::now();
    let status = server.expect_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(5500),
        "exited {took:?} after SIGTERM; --shutdown-timeout 1.5, then 2 s to close"
    );
    assert!(
        server
            .log
            .wait_for("shutdown timeout", Duration::ZERO)
            .is_some(),
        "no `shutdown timeout` line; stderr:\n{}",
        server.log.dump()
    );
    let fin = server.final_stats();
    assert_eq!(fin.get("closed_shutdown"), 1, "{fin:?}");
    assert!(fin.get("bytes_out") < written as u64, "{fin:?}");
    drop(client);
}

/// Nothing to drain: the process exits 0 at once, with a `final stats:`
/// line that counts what it served.
#[test]
fn idle_server_exits_at_once_with_final_stats() {
    for sig in ["TERM", "INT"] {
        let mut server = ServerProcess::start(&[]);
        echo_session(server.addr, b"one line\n");
        server.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
        server.signal(sig);
        let signalled = Instant::now();
        let status = server.expect_exit(Duration::from_secs(5));
        assert!(status.success(), "SIG{sig}: exit status {status:?}");
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "SIG{sig}: idle server took {:?} to exit",
            signalled.elapsed()
        );
        let fin = server.final_stats();
        assert_eq!(fin.get("accepted"), 1);
        assert_eq!(fin.get("closed_client"), 1);
        assert_eq!(fin.get("bytes_in"), 9);
        assert_eq!(fin.get("bytes_out"), 9);
        assert_refused(server.addr);
    }
}

/// Connected clients that are done close their side after the signal: each
/// gets its echo and EOF, and the process exits as soon as they have.
#[test]
fn clients_that_close_end_the_drain_at_once() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "10"]);
    let mut clients: Vec<_> = (0..5).map(|_| server.connect()).collect();
    for client in &mut clients {
        echo(client, b"hi\n");
    }
    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no `shutting down` line; stderr:\n{}", server.log.dump()));
    let signalled = Instant::now();
    for client in &mut clients {
        client.write_all(b"bye\n").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(client), b"bye\n");
    }
    let status = server.expect_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "took {:?} to exit once the clients closed",
        signalled.elapsed()
    );
    let fin = server.final_stats();
    assert_eq!(fin.get("accepted"), 5);
    assert_eq!(fin.get("closed_shutdown"), 5, "{fin:?}");
}

/// Silence is not the end of input: connected clients that send nothing
/// after the signal stay open until `--shutdown-timeout`, then see a clean
/// EOF (no reset), and the process exits once they close.
#[test]
fn silent_connections_stay_open_until_the_timeout_then_see_eof() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "1"]);
    let mut clients: Vec<_> = (0..5).map(|_| server.connect()).collect();
    for client in &mut clients {
        echo(client, b"hi\n");
    }
    server.signal("TERM");
    let signalled = Instant::now();
    for client in &mut clients {
        expect_eof(client);
    }
    let saw_eof = signalled.elapsed();
    assert!(
        saw_eof >= Duration::from_millis(900),
        "silent clients closed {saw_eof:?} after the signal, before the timeout"
    );
    drop(clients);
    let status = server.expect_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let fin = server.final_stats();
    assert_eq!(fin.get("closed_shutdown"), 5, "{fin:?}");
}

/// A line start held back as a possible `quit` (`qu`) is echoed when the
/// shutdown ends the stream: nothing the client sent is lost.
#[test]
fn held_quit_prefix_is_echoed_at_shutdown() {
    let mut server = ServerProcess::start(&[]);
    let mut client = server.connect();
    client.write_all(b"hello\nqu").unwrap();
    let mut first = [0; 6];
    client.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"hello\n");
    server.signal("TERM");
    let rest = read_to_eof(&mut client);
    assert_eq!(rest, b"qu", "held bytes after SIGTERM");
    client.shutdown(Shutdown::Both).unwrap();
    drop(client);
    assert!(server.expect_exit(Duration::from_secs(5)).success());
    assert_eq!(server.final_stats().get("bytes_out"), 8);
}

#[test]
fn clients_queued_in_the_backlog_at_the_signal_are_served_not_reset() {
    // The server is stopped while a client connects (the kernel completes
    // the handshake) and sends a line; SIGTERM then arrives together with
    // the listener's event. That client counts as connected: it gets its
    // echo and a clean EOF, not a reset from the listener closing.
    let mut server = ServerProcess::start(&[]);
    server.signal("STOP");
    let mut queued = server.connect();
    queued.write_all(b"sent before the signal\n").unwrap();
    server.signal("TERM");
    server.signal("CONT");
    match try_read_to_eof(&mut queued) {
        Ok(echo) => assert_eq!(show(&echo), show(b"sent before the signal\n")),
        Err((err, got)) => panic!("{err} after {:?}", show(&got)),
    }
    drop(queued);
    assert!(server.expect_exit(Duration::from_secs(5)).success());
    let stats = server.final_stats();
    assert_eq!(stats.get("accepted"), 1, "{stats:?}");
}

#[test]
fn a_drain_that_begins_with_accepting_paused_sleeps_instead_of_spinning() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "2"]);
    // A client that never reads its echo keeps the drain going until the
    // timeout.
    let mut stuck = server.connect();
    write_until_full(
        &mut stuck,
        &vec![b'x'; 64 << 20],
        Duration::from_millis(300),
    );
    // Out of descriptors: accepting the queued clients fails with EMFILE,
    // which pauses accepting.
    let fds = server.fd_count();
    let limit = format!("--nofile={fds}:{fds}");
    let pid = server.pid.to_string();
    let st = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &limit])
        .status()
        .expect("run prlimit");
    assert!(st.success(), "prlimit failed");
    let _queued: Vec<_> = (0..3).map(|_| server.connect()).collect();
    server.stats_until(IO_TIMEOUT, |s| s.get("accept_pauses_fd") >= 1);

    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", IO_TIMEOUT)
        .expect("no shutdown log line");
    let (cpu_before, since) = (cpu_seconds(server.pid), Instant::now());
    std::thread::sleep(Duration::from_millis(1000));
    let busy = (cpu_seconds(server.pid) - cpu_before) / since.elapsed().as_secs_f64();
    // Draining one stuck client costs next to nothing; a poll loop that
    // spins on a stale accept pause costs a whole CPU.
    assert!(
        busy < 0.3,
        "server {:.0}% busy while draining",
        busy * 100.0
    );
    assert!(server.expect_exit(Duration::from_secs(5)).success());
    drop(stuck);
}
