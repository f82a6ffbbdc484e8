//! Several listeners served as one: accept turns and the connection limit
//! span every listener, keepalive is set on accepted sockets, SIGTERM closes
//! every listener (addresses and flags: `endpoints.rs`). `ss` is needed: a
//! missing one fails the keepalive test.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server's start-up log line.
fn started_line(server: &ServerProcess) -> String {
    server
        .log
        .wait_for(" started: ", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no start-up line:\n{}", server.log.dump()))
}

/// `--accept-batch 1`, listeners A and B: while a client fleet keeps
/// connecting to A, one client on B is accepted and echoed before the fleet
/// is done (it stops itself after `CAP` connects). Starvation of B would
/// make the echo come only after that.
#[test]
fn accept_turns_are_fair_across_listeners() {
    const CAP: usize = 20_000;
    const HELD: usize = 200;
    let server = ServerProcess::start(&[
        "--accept-batch",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    let endpoints = server.endpoints(2);
    let (a, b) = (endpoints[0].0, endpoints[1].0);
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let fleet = {
        let (stop, made) = (Arc::clone(&stop), Arc::clone(&made));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut open = std::collections::VecDeque::new();
            while !stop.load(Ordering::SeqCst) && made.load(Ordering::SeqCst) < CAP {
                if Instant::now() > deadline {
                    break;
                }
                if let Ok(s) = TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                    open.push_back(s);
                }
                made.fetch_add(1, Ordering::SeqCst);
                if open.len() > HELD {
                    open.pop_front();
                }
            }
        })
    };
    assert!(wait_until(IO_TIMEOUT, Duration::from_millis(2), || {
        made.load(Ordering::SeqCst) >= HELD
    }));
    let t0 = Instant::now();
    echo_session(b, b"on the quiet listener\n");
    let took = t0.elapsed();
    let at = made.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    fleet.join().unwrap();
    figure(
        "endpoints_fair_accept",
        &format!("B echoed in {took:?}, after {at} connects to A"),
    );
    assert!(
        at < CAP,
        "B was served only after the whole fleet ({at} connects) in {took:?}"
    );
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
