//! Several listeners served as one: accept turns and the connection limit
//! span every listener, keepalive is set on accepted sockets, SIGTERM closes
//! every listener (addresses and flags: `endpoints.rs`). `ss` is needed: a
//! missing one fails the keepalive test.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

/// A server's start-up log line.
fn started_line(server: &ServerProcess) -> String {
    server
        .log
        .wait_for(" started: ", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no start-up line:\n{}", server.log.dump()))
}

/// Waits until the listen queue of `listener` holds `n` clients (a
/// listening socket's rx_queue in /proc/net/tcp is its accept backlog).
fn wait_backlog(listener: SocketAddr, n: u64) {
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let mut last = None;
    let queued = wait_until(IO_TIMEOUT, Duration::from_millis(2), || {
        last = tcp_queues(listener, any).map(|q| q.1);
        last == Some(n)
    });
    assert!(queued, "{listener}: {last:?} clients queued, expected {n}");
}

/// `--accept-batch 1`, listeners A and B, both with clients waiting when
/// the loop starts: hundreds on A, one on B (queued while the server was
/// stopped). B's client is among the first few accepted: each listener
/// takes its own batch per turn, so A's queue cannot hold B back.
#[test]
fn accept_turns_are_fair_across_listeners() {
    const ON_A: usize = 500;
    let server = ServerProcess::start_with_env(
        &[
            "--accept-batch",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("RUST_LOG", "debug")],
    );
    let endpoints = server.endpoints(2);
    let (a, b) = (endpoints[0].0, endpoints[1].0);
    server.pause();
    // The handshakes complete in the kernel: the clients wait in the
    // listen queues, none accepted yet.
    let fleet: Vec<TcpStream> = (0..ON_A).map(|_| connect(a)).collect();
    wait_backlog(a, ON_A as u64);
    let mut quiet = connect(b);
    wait_backlog(b, 1);
    let port = quiet.local_addr().unwrap().port();
    server.resume();
    let opened = format!(" from 127.0.0.1:{port} opened");
    let line = server
        .log
        .wait_nth(1, |l| l.contains(&opened), IO_TIMEOUT)
        .unwrap_or_else(|| panic!("B's client never accepted:\n{}", server.log.tail(20)));
    let id: u64 = line
        .split("connection ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no connection id in {line:?}"));
    echo(&mut quiet, b"on the quiet listener\n");
    figure(
        "endpoints_fair_accept",
        &format!("B's client was connection {id} of {} queued", ON_A + 1),
    );
    // Ids count from 0: at most a few of A's clients went before it.
    assert!(
        id <= 3,
        "B's client was connection {id}: A's queue of {ON_A} went first"
    );
    drop(fleet);
}

/// `--max-connections 2` counts both listeners: with two clients on A, a
/// client on B (and another on A) waits unanswered; once both first clients
/// close, both waiting ones are echoed.
#[test]
fn the_connection_limit_covers_every_listener() {
    let server = ServerProcess::start(&[
        "--max-connections",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    let endpoints = server.endpoints(2);
    let (a, b) = (endpoints[0].0, endpoints[1].0);
    let mut first: Vec<TcpStream> = (0..2).map(|_| connect(a)).collect();
    for s in &mut first {
        echo(s, b"served\n");
    }
    let mut waiting = [connect(b), connect(a)];
    for s in &mut waiting {
        s.write_all(b"waiting\n").unwrap();
        assert_silent(s, Duration::from_millis(300));
    }
    for s in &mut first {
        s.shutdown(std::net::Shutdown::Write).unwrap();
        expect_eof(s);
    }
    drop(first);
    for s in &mut waiting {
        assert_eq!(read_exactly(s, 8), b"waiting\n");
    }
}

/// The `ss -tno` line of the server's side of `client` (polled briefly:
/// the accept may still be on its way).
fn server_side_ss_line(server: SocketAddr, client: &TcpStream) -> String {
    let peer = client.local_addr().unwrap().to_string();
    let filter = format!("( sport = :{} )", server.port());
    let mut last = String::new();
    let found = wait_until(IO_TIMEOUT, Duration::from_millis(20), || {
        let out = Command::new("ss")
            .args(["-tno", "state", "established", &filter])
            .output()
            .expect("run ss");
        last = String::from_utf8_lossy(&out.stdout).to_string();
        last.lines()
            .any(|l| l.contains(&server.to_string()) && l.contains(&peer))
    });
    assert!(found, "no ss line for {server} <- {peer}:\n{last}");
    let line = last.lines().find(|l| l.contains(&peer)).unwrap();
    line.to_string()
}

/// `ss`'s time: `59sec`, `4min59sec`, `120min`, `500ms`, `1.500sec`.
fn ss_seconds(text: &str) -> f64 {
    let (mins, rest) = match text.split_once("min") {
        Some((m, rest)) => (m.parse::<f64>().unwrap(), rest),
        None => (0.0, text),
    };
    let secs = if let Some(ms) = rest.strip_suffix("ms") {
        ms.parse::<f64>().unwrap() / 1000.0
    } else if let Some(s) = rest.strip_suffix("sec") {
        s.parse::<f64>().unwrap()
    } else {
        assert!(rest.is_empty(), "ss time {text:?}");
        0.0
    };
    mins * 60.0 + secs
}

#[test]
fn keepalive_is_set_on_accepted_sockets_and_logged() {
    for (flag, logged) in [(Some("60"), "60s"), (Some("0"), "off"), (None, "300s")] {
        let args: Vec<&str> = flag.map_or(vec![], |secs| vec!["--keepalive", secs]);
        let server = ServerProcess::start(&args);
        let line = started_line(&server);
        assert!(
            line.contains(&format!(" keepalive={logged}")),
            "{flag:?}: {line}"
        );
        let mut client = server.connect();
        echo(&mut client, b"kept alive?\n");
        let ss = server_side_ss_line(server.addr, &client);
        let timer = ss.split("timer:(keepalive,").nth(1);
        let Some(secs) = flag
            .map_or(Some(300.0), |f| f.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
        else {
            assert!(timer.is_none(), "--keepalive 0: {ss}");
            continue;
        };
        let left = timer.unwrap_or_else(|| panic!("{flag:?}: no keepalive timer: {ss}"));
        let left = ss_seconds(left.split(',').next().unwrap());
        // TCP_KEEPIDLE as asked, not the system's 2 hours.
        assert!(
            left > 0.0 && left <= secs,
            "{flag:?}: {left} s left in {ss}"
        );
    }
    for bad in ["-1", "abc", "1.5x"] {
        assert_usage_error(&[&format!("--keepalive={bad}")], "--keepalive");
    }
}

/// SIGTERM: every listener is closed (connects refused) while a client
/// still holds the server in its drain, then it exits 0.
#[test]
fn sigterm_closes_every_listener_and_exits_0() {
    let mut server = ServerProcess::start(&[
        "--shutdown-timeout",
        "30",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--udp",
        "127.0.0.1:0",
    ]);
    let endpoints = server.endpoints(3);
    let mut holder = connect(endpoints[0].0);
    echo(&mut holder, b"holding\n");
    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no `shutting down` line:\n{}", server.log.dump()));
    for (addr, _) in endpoints.iter().filter(|(_, kind)| kind == "tcp") {
        assert_refused_soon(*addr, IO_TIMEOUT);
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(endpoints[2].0).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let closed = wait_until(IO_TIMEOUT, Duration::from_millis(5), || {
        let _ = udp.send(b"probe");
        let mut buf = [0u8; 16];
        // The kernel's port unreachable comes back as a refused receive.
        matches!(udp.recv(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(
        closed,
        "the UDP socket {} still open after SIGTERM",
        endpoints[2].0
    );
    assert!(
        server.is_running(),
        "the held client should keep the drain going"
    );
    holder.shutdown(std::net::Shutdown::Write).unwrap();
    expect_eof(&mut holder);
    let status = server.expect_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", server.log.dump());
}
