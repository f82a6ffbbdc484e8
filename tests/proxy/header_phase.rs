//! Where the header phase meets the rest of the server: the idle timeout
//! takes over the moment the header is whole, urgent data inside a header
//! is refused at once (Linux ends every read at the urgent mark, so the
//! header would look unfinished until its 3 s deadline), and a connection
//! still in its header when SIGTERM comes is served through the drain and
//! counted as closed by the shutdown.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use super::{
    expect_closed_silently, proxy_server, v1, wait_connection_line, write_and_wait_queued, CLIENT,
};
use crate::common::*;

/// A finished header, then silence: `--idle-timeout 0.3` closes it about
/// 0.3 s after the header came, not at the header's 3 s deadline.
#[test]
fn the_idle_timeout_runs_from_the_header_not_its_deadline() {
    let (server, addr) = proxy_server(&["--idle-timeout", "0.3"]);
    let mut stream = connect(addr);
    stream.write_all(&v1(CLIENT, "127.0.0.1:7007")).unwrap();
    let sent = Instant::now();
    expect_closed_silently(&mut stream, Duration::from_secs(10), "a silent client");
    let took = sent.elapsed();
    eprintln!("closed {took:?} after the header");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "closed {took:?} after the header: the idle timeout is 0.3 s, the header's deadline 3 s"
    );
    wait_connection_line(&server, &format!(" from {CLIENT} via "));
    let stats = server.stats_until(Duration::from_secs(10), |s| s.get("active") == 0);
    assert_eq!(
        (stats.get("closed_idle"), stats.get("proxy_errors")),
        (1, 0),
        "{stats:?}"
    );
}

/// A valid v1 header with one byte in the middle sent as urgent data: the
/// server refuses it at once, well before the header's 3 s deadline.
#[test]
fn urgent_data_inside_a_header_is_refused_at_once() {
    let (server, addr) = proxy_server(&[]);
    let header = v1(CLIENT, "127.0.0.1:7007");
    let mid = header.len() / 2;
    let mut stream = connect(addr);
    stream.write_all(&header[..mid]).unwrap();
    let t0 = Instant::now();
    let urgent = socket2::SockRef::from(&stream).send_out_of_band(&header[mid..=mid]);
    assert_eq!(urgent.expect("send urgent data"), 1);
    // The server may have closed already: only what comes back matters.
    let _ = stream.write_all(&[&header[mid + 1..], b"hello\n"].concat());
    expect_closed_silently(
        &mut stream,
        Duration::from_secs(10),
        "urgent data in a header",
    );
    let took = t0.elapsed();
    eprintln!("closed {took:?} after the urgent byte");
    assert!(
        took < Duration::from_millis(1500),
        "closed {took:?} after the urgent byte: it waited for the header's deadline"
    );
    let line = wait_connection_line(
        &server,
        &format!(" from {}: bad PROXY header: ", stream.local_addr().unwrap()),
    );
    assert!(line.contains("urgent"), "{line}");
    let stats = server.stats_until(Duration::from_secs(10), |s| s.get("active") == 0);
    assert_eq!(
        (stats.get("proxy_errors"), stats.get("bytes_out")),
        (1, 0),
        "{stats:?}"
    );
}

/// Half a header, then SIGTERM, then the rest of it, a line and a
/// half-close: the drain serves the connection like any other (the line is
/// echoed), and `final stats:` counts it closed by the shutdown.
#[test]
fn a_header_half_there_at_sigterm_is_served_through_the_drain() {
    let (mut server, addr) = proxy_server(&["--shutdown-timeout", "10"]);
    let header = v1(CLIENT, "127.0.0.1:7007");
    let half = header.len() / 2;
    let mut stream = connect(addr);
    write_and_wait_queued(&mut stream, &header[..half], half, "half a header");
    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no `shutting down` line:\n{}", server.log.dump()));
    stream
        .write_all(&[&header[half..], b"hello\n"].concat())
        .expect("the rest of the header during the drain");
    stream.shutdown(Shutdown::Write).unwrap();
    let got = read_to_eof(&mut stream);
    assert_eq!(show(&got), "hello\\n", "the echo during the drain");
    let status = server.expect_exit(IO_TIMEOUT);
    assert!(status.success(), "{status:?}\n{}", server.log.dump());
    let stats = server.final_stats();
    assert_eq!(
        (
            stats.get("closed_shutdown"),
            stats.get("closed_client"),
            stats.get("proxy_errors")
        ),
        (1, 0, 0),
        "{stats:?}"
    );
}
