//! The command line and the process: flags, exit codes, the listening
//! address (IPv4 and IPv6), timeouts and shutdown.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "--bogus"),
        (&["--max-buffer", "0"], "--max-buffer"),
        (&["--max-buffer", "-5"], "-5"),
        (&["--max-buffer", "lots"], "--max-buffer"),
        (&["--listen", "nonsense"], "nonsense"),
        (&["--listen", "127.0.0.1"], "--listen"),
        (&["--listen"], "--listen"),
        (&["--idle-timeout", "soon"], "soon"),
        (&["--idle-timeout", "-1"], "-1"),
        (&["--idle-timeout", "inf"], "inf"),
        (&["--shutdown-timeout", "later"], "later"),
        (&["--idle-timeout", "1e19"], "longer than a year"),
        (&["--shutdown-timeout", "1e19"], "longer than a year"),
        (&["--accept-batch", "0"], "--accept-batch"),
        (&["--backlog", "x"], "--backlog"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["stray-argument"], "stray-argument"),
    ];
    for (args, mentions) in cases {
        let out = run_to_exit(args);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: status {:?}, stderr {stderr:?}",
            out.status
        );
        assert!(
            stderr.contains(mentions),
            "{args:?}: stderr does not mention {mentions:?}: {stderr:?}"
        );
        assert!(
            !text(&out.stdout).contains("listening on"),
            "{args:?} started listening"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    let out = run_to_exit(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = text(&out.stdout);
    for flag in [
        "--listen",
        "--max-buffer",
        "--accept-batch",
        "--backlog",
        "--no-quit",
        "--max-connections",
        "--idle-timeout",
        "--shutdown-timeout",
        "--reuse-port",
        "--help",
        "--version",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }

    let out = run_to_exit(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("echo-reactor {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Exit 1 with exactly one stderr line that names the address.
fn assert_cannot_bind(addr: &str) {
    let out = run_to_exit(&["--listen", addr]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--listen {addr}: status {:?}, stderr {stderr:?}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "--listen {addr}: stderr {stderr:?}");
    assert!(
        lines[0].contains(addr),
        "stderr does not name {addr}: {stderr:?}"
    );
    assert!(
        text(&out.stdout).is_empty(),
        "stdout: {:?}",
        text(&out.stdout)
    );
}

#[test]
fn busy_port_exits_1_with_one_line_naming_the_address() {
    // Held by another echo-reactor.
    let server = ServerProcess::start(&[]);
    assert_cannot_bind(&server.addr.to_string());
    let mut c = server.connect();
    echo(&mut c, b"the first server is unharmed\n");

    // Held by a plain listener.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_cannot_bind(&holder.local_addr().unwrap().to_string());

    // An address this machine does not have (TEST-NET-1).
    assert_cannot_bind("192.0.2.1:7007");
}

#[test]
fn ipv6_loopback_echoes() {
    // Must work on this machine: if ::1 is unavailable this fails, loudly.
    let server = ServerProcess::start(&["--listen", "[::1]:0"]);
    let addr = server.addr;
    assert!(
        matches!(addr, SocketAddr::V6(v6) if v6.ip().is_loopback()),
        "listening on {addr}, not [::1]"
    );
    assert_ne!(addr.port(), 0);
    let mut c = server.connect();
    echo(&mut c, b"hello over IPv6\n");
    echo(&mut c, &(0..=255u8).collect::<Vec<u8>>());
    c.write_all(b"last\nquit\n").unwrap();
    assert_eq!(read_to_eof(&mut c), b"last\n");

    let mut c = server.connect();
    c.write_all(b"half\nqu").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"half\nqu");
}

#[test]
fn listening_line_names_the_real_port() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    // Nothing but the log goes to stderr, and the log is on by default.
    assert!(
        server.log.wait_for("INFO", IO_TIMEOUT).is_some(),
        "no info log line on stderr: {:?}",
        server.log.text()
    );
    assert!(!server.log.text().contains("listening on"));
}

#[test]
fn listening_on_all_interfaces_serves_loopback() {
    let server = ServerProcess::start(&["--listen", "0.0.0.0:0"]);
    assert_eq!(server.addr.ip().to_string(), "0.0.0.0");
    let mut c = connect(SocketAddr::from(([127, 0, 0, 1], server.addr.port())));
    echo(&mut c, b"via 127.0.0.1\n");
}

#[test]
fn listen_takes_a_host_name() {
    // As in the README's telnet session: `localhost` rather than an IP.
    let server = ServerProcess::start(&["--listen", "localhost:0"]);
    assert!(
        server.addr.ip().is_loopback(),
        "listening on {}",
        server.addr
    );
    let mut c = server.connect();
    echo(&mut c, b"via localhost\n");
}

#[test]
fn rust_log_debug_logs_connections() {
    let server = ServerProcess::start_with_env(&[], &[("RUST_LOG", "debug")]);
    let mut c = server.connect();
    echo(&mut c, b"hi\n");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"");
    assert!(
        server.log.wait_for("closed", IO_TIMEOUT).is_some(),
        "no debug line for the close: {:?}",
        server.log.text()
    );
}

#[test]
fn idle_timeout_closes_silent_clients_only() {
    let server = ServerProcess::start(&["--idle-timeout", "0.5"]);
    let mut idle = server.connect();
    echo(&mut idle, b"then silence\n");
    let since = Instant::now();

    // A client that keeps talking is not idle. The gaps are the scenario
    // (activity spaced below the timeout), not a synchronisation.
    let mut busy = server.connect();
    for i in 0..15 {
        echo(&mut busy, format!("still here {i}\n").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_eq!(read_to_eof(&mut idle), b"", "idle client");
    let after = since.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "closed after {after:?}, timeout 0.5 s"
    );
    echo(&mut busy, b"not idle\n");
    let stats = server.stats();
    assert!(stats["closed_idle"] >= 1, "{stats:?}");
}

#[test]
fn sigterm_drains_and_exits_0() {
    let mut server = ServerProcess::start(&[]);
    let mut c = server.connect();
    echo(&mut c, b"before shutdown\n");
    let addr = server.addr;
    server.signal("TERM");
    // The connection is finished: the client sees EOF, not a reset.
    assert_eq!(read_to_eof(&mut c), b"");
    // The listener is closed before connections are told to finish.
    match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("connect after SIGTERM: {other:?}"),
    }
    drop(c);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server still running 10 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log.text());
    assert!(
        server.wait_output_closed(IO_TIMEOUT),
        "stdout/stderr still open"
    );
    assert_eq!(
        text(&server.stdout_after_first_line()),
        "",
        "stdout after the `listening on` line"
    );
    assert!(
        server
            .log
            .wait_for("final stats: accepted=1", IO_TIMEOUT)
            .is_some(),
        "{}",
        server.log.text()
    );
}
