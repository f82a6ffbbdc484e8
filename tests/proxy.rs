//! PROXY listeners (`--proxy-listen`): every client begins with a PROXY
//! protocol header (v1 text or v2 binary) that the server removes; the rest
//! is echoed exactly as on a plain listener, quit rule included. A bad,
//! too long or unfinished header closes the connection with nothing echoed
//! (`proxy_errors`, a debug line); `--proxy-trust` refuses peers outside its
//! networks at accept (`proxy_refused`). The headers are written out by
//! hand. `proxy/bad_headers.rs` has what is not a header,
//! `proxy/header_phase.rs` where the header phase meets idle timeouts,
//! urgent data and shutdown, `proxy/haproxy.rs` checks the good ones against
//! real HAProxy.

#[path = "proxy/bad_headers.rs"]
mod bad_headers;
mod common;
#[path = "proxy/haproxy.rs"]
mod haproxy;
#[path = "proxy/header_phase.rs"]
mod header_phase;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The client the tests' proxy claims to forward.
const CLIENT: &str = "203.0.113.9:5555";

/// A v1 header for a connection from `source` to `destination`.
fn v1(source: &str, destination: &str) -> Vec<u8> {
    let (s, d): (SocketAddr, SocketAddr) = (source.parse().unwrap(), destination.parse().unwrap());
    let family = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    let (sip, dip, sp, dp) = (s.ip(), d.ip(), s.port(), d.port());
    format!("PROXY {family} {sip} {dip} {sp} {dp}\r\n").into_bytes()
}

/// A v2 header: version 2 with `command` (0 LOCAL, 1 PROXY), the family and
/// protocol byte, then `payload` after its length.
fn v2(command: u8, family_protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend([0x20 | command, family_protocol]);
    out.extend((payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A v2 PROXY header for a TCP connection from `source` to `destination`,
/// with `tlvs` after the addresses.
fn v2_proxy(source: &str, destination: &str, tlvs: &[u8]) -> Vec<u8> {
    let (s, d): (SocketAddr, SocketAddr) = (source.parse().unwrap(), destination.parse().unwrap());
    let mut payload = Vec::new();
    let family = match (s, d) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            payload.extend(s.ip().octets());
            payload.extend(d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            payload.extend(s.ip().octets());
            payload.extend(d.ip().octets());
            0x21
        }
        _ => panic!("one family for both addresses"),
    };
    payload.extend(s.port().to_be_bytes());
    payload.extend(d.port().to_be_bytes());
    payload.extend_from_slice(tlvs);
    v2(1, family, &payload)
}

/// Every kind of valid header with addresses, and the `(PROXY vN)` the log
/// names it by.
fn headers() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    // An ALPN TLV (`h2`) and a 3-byte NOOP TLV.
    let tlvs = [0x01, 0, 2, b'h', b'2', 0x04, 0, 3, 0, 0, 0];
    vec![
        ("v1 TCP4", v1(CLIENT, "127.0.0.1:7007"), CLIENT, "v1"),
        (
            "v1 TCP6",
            v1("[2001:db8::9]:5555", "[::1]:7007"),
            "[2001:db8::9]:5555",
            "v1",
        ),
        (
            "v2 IPv4",
            v2_proxy(CLIENT, "127.0.0.1:7007", &[]),
            CLIENT,
            "v2",
        ),
        (
            "v2 IPv6",
            v2_proxy("[2001:db8::9]:5555", "[::1]:7007", &[]),
            "[2001:db8::9]:5555",
            "v2",
        ),
        (
            "v2 with TLVs",
            v2_proxy(CLIENT, "127.0.0.1:7007", &tlvs),
            CLIENT,
            "v2",
        ),
    ]
}

/// A server with one PROXY listener on 127.0.0.1 (plus `extra` flags),
/// logging at debug; returns it with the listener's address.
fn proxy_server(extra: &[&str]) -> (ServerProcess, SocketAddr) {
    let mut args = vec!["--proxy-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = ServerProcess::start_with_env(&args, &[("RUST_LOG", "debug")]);
    let (addr, kind) = server.endpoints(1).remove(0);
    assert_eq!(
        kind, "proxy",
        "the first socket should be the PROXY listener"
    );
    (server, addr)
}

/// Binary data with every byte value and no `q` (so no quit line).
fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    qfree_fill(&mut Rng::new(seed), &mut data);
    data
}

/// Waits for the log line `connection N<rest>` (N any number); panics with
/// the log if it does not come.
fn wait_connection_line(server: &ServerProcess, rest: &str) -> String {
    let names = |line: &str| {
        line.split("connection ").skip(1).any(|after| {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && after[digits..].starts_with(rest)
        })
    };
    server
        .log
        .wait_nth(1, names, Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "no log line `connection N{rest}`; log:\n{}",
                server.log.dump()
            )
        })
}

/// The server closes the connection within `within` and sends nothing: a
/// clean EOF, or a reset when it closed with input unread.
fn expect_closed_silently(stream: &mut TcpStream, within: Duration, what: &str) {
    match read_within(stream, within) {
        Ok(Some(bytes)) if bytes.is_empty() => {}
        Ok(Some(bytes)) => panic!("{what}: echoed {:?}, expected nothing", show(&bytes)),
        Ok(None) => panic!("{what}: still open after {within:?}"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: expected a close, got {e}"),
    }
}

/// Half-closes and expects a clean EOF with nothing more.
fn finish(mut stream: TcpStream) {
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    expect_eof(&mut stream);
}

#[test]
fn v1_and_v2_headers_are_removed_and_the_rest_echoed_exactly() {
    let (server, addr) = proxy_server(&[]);
    let all_bytes: Vec<u8> = (0..=255).collect();
    for (i, (name, header, source, version)) in headers().into_iter().enumerate() {
        let mut stream = connect(addr);
        stream.write_all(&header).unwrap();
        echo(&mut stream, b"hello\n");
        echo(&mut stream, &all_bytes);
        echo(&mut stream, &binary(256 * 1024, i as u64 + 1));
        let via = stream.local_addr().unwrap();
        finish(stream);
        let line = wait_connection_line(
            &server,
            &format!(" from {source} via {via} (PROXY {version})"),
        );
        assert!(line.contains(" DEBUG "), "{name}: {line}");
    }
    let stats = server.stats();
    assert_eq!(stats.get("proxy_errors"), 0, "{stats:?}");
    assert_eq!(stats.get("proxy_refused"), 0, "{stats:?}");
}

/// Writes `bytes` and waits until the server's socket holds `queued`
/// unread bytes: a server still waiting for the rest of a header peeks and
/// leaves what it has queued, so the next write reaches it apart. (One
/// /proc read a check: each reads the whole TCP table.)
fn write_and_wait_queued(stream: &mut TcpStream, bytes: &[u8], queued: usize, what: &str) {
    let (local, peer) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let mut last = None;
    wait_until(IO_TIMEOUT, Duration::from_millis(1), || {
        last = tcp_queues(peer, local).map(|q| q.1);
        // None: the server's socket is gone (closed).
        last.is_none_or(|unread| unread == queued as u64)
    });
    assert_eq!(last, Some(queued as u64), "{what}: unread at the server");
}

/// The header in two writes at every byte, and one byte a write, each part
/// queued at the server before the next is sent: the server sees every
/// split apart.
#[test]
fn a_header_split_anywhere_is_still_one_header() {
    let (server, addr) = proxy_server(&[]);
    for (name, header, source, version) in headers() {
        for cut in 1..header.len() {
            let what = format!("{name} cut at {cut}");
            let mut stream = connect(addr);
            write_and_wait_queued(&mut stream, &header[..cut], cut, &what);
            let rest = stream.write_all(&header[cut..]);
            rest.unwrap_or_else(|e| panic!("{what}: the rest: {e}"));
            echo(&mut stream, format!("{what}\n").as_bytes());
            finish(stream);
        }
        let mut stream = connect(addr);
        let what = format!("{name} a byte at a time");
        for (i, byte) in header[..header.len() - 1].iter().enumerate() {
            write_and_wait_queued(&mut stream, std::slice::from_ref(byte), i + 1, &what);
        }
        let last = stream.write_all(&header[header.len() - 1..]);
        last.unwrap_or_else(|e| panic!("{what}: the last byte: {e}"));
        echo(&mut stream, b"after a byte at a time\n");
        let via = stream.local_addr().unwrap();
        finish(stream);
        wait_connection_line(
            &server,
            &format!(" from {source} via {via} (PROXY {version})"),
        );
    }
    assert_eq!(server.stats().get("proxy_errors"), 0);
}

#[test]
fn header_and_first_data_in_one_write() {
    let (_server, addr) = proxy_server(&[]);
    for (name, header, _, _) in headers() {
        let data = binary(10_000, 7);
        let mut stream = connect(addr);
        let mut first = header.clone();
        first.extend_from_slice(b"first line\n");
        first.extend_from_slice(&data);
        stream.write_all(&first).unwrap();
        let got = read_exactly(&mut stream, 11 + data.len());
        assert_eq!(&got[..11], b"first line\n", "{name}");
        assert!(got[11..] == data[..], "{name}: binary data differs");
        finish(stream);
    }
}

/// A line starts right after the header, also after a v2 header, whose last
/// byte is no newline.
#[test]
fn the_quit_rule_starts_right_after_the_header() {
    let (server, addr) = proxy_server(&[]);
    for (name, header, _, _) in headers() {
        let mut stream = connect(addr);
        stream
            .write_all(&[&header[..], b"quit\n"].concat())
            .unwrap();
        let got = read_to_eof(&mut stream);
        assert!(got.is_empty(), "{name} then quit: echoed {:?}", show(&got));

        let mut stream = connect(addr);
        let session = [&header[..], b"hello\nquit\nafter\n"].concat();
        stream.write_all(&session).unwrap();
        let got = read_to_eof(&mut stream);
        assert_eq!(show(&got), "hello\\n", "{name} then hello, quit");
    }
    let n = headers().len() as u64;
    server.stats_until(Duration::from_secs(10), |s| s.get("closed_quit") == 2 * n);
}

#[test]
fn local_and_unknown_headers_echo_as_usual() {
    let (server, addr) = proxy_server(&[]);
    let cases: [(&[u8], &str); 4] = [
        (&v2(0, 0x00, &[]), " (PROXY v2 LOCAL)"),
        (b"PROXY UNKNOWN\r\n", " (PROXY v1 UNKNOWN)"),
        (b"PROXY UNKNOWN ::1 ::1 1 2\r\n", " (PROXY v1 UNKNOWN)"),
        // PROXY without addresses (unspecified family): the peer is named.
        (&v2(1, 0x00, &[]), " (PROXY v2"),
    ];
    for (header, label) in cases {
        let mut stream = connect(addr);
        stream.write_all(header).unwrap();
        echo(&mut stream, b"as usual\n");
        let peer = stream.local_addr().unwrap();
        finish(stream);
        wait_connection_line(&server, &format!(" from {peer}{label}"));
    }
    assert_eq!(server.stats().get("proxy_errors"), 0);
}

fn echo_session_through(addr: SocketAddr, header: &[u8], msg: &[u8]) {
    let mut stream = connect(addr);
    stream.write_all(header).unwrap();
    echo(&mut stream, msg);
    finish(stream);
}

#[test]
fn proxy_trust_refuses_other_peers_at_accept() {
    let (server, addr) = proxy_server(&["--listen", "127.0.0.1:0", "--proxy-trust", "10.0.0.0/8"]);
    let mut stream = connect(addr);
    // The server may have closed before this write: its result is no
    // matter, only that nothing comes back.
    let _ = stream.write_all(&[&v1(CLIENT, "127.0.0.1:7007")[..], b"hello\n"].concat());
    expect_closed_silently(&mut stream, Duration::from_secs(5), "an untrusted peer");
    let stats = server.stats_until(Duration::from_secs(10), |s| s.get("proxy_refused") == 1);
    assert_eq!(stats.get("proxy_errors"), 0, "{stats:?}");
    assert_eq!(stats.get("bytes_out"), 0, "{stats:?}");
    // The trust list is about PROXY listeners only.
    let plain = server.endpoints(2)[1].0;
    echo_session(plain, b"plain clients are not refused\n");

    for trust in [
        &["127.0.0.0/8"][..],
        &["10.0.0.0/8", "127.0.0.1"],
        &["::1", "127.0.0.1"],
    ] {
        let mut args = Vec::new();
        for cidr in trust {
            args.extend(["--proxy-trust", cidr]);
        }
        let (server, addr) = proxy_server(&args);
        echo_session_through(addr, &v1(CLIENT, "127.0.0.1:7007"), b"trusted\n");
        assert_eq!(server.stats().get("proxy_refused"), 0, "{trust:?}");
    }
}

#[test]
fn a_bad_proxy_trust_is_a_usage_error() {
    for bad in ["10.0.0.0/33", "localhost", "10.0.0.1/8", ""] {
        let out = run_to_exit(&["--proxy-listen", "127.0.0.1:0", "--proxy-trust", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("--proxy-trust"), "{bad:?}: {stderr}");
    }
}

/// A plain listener in the same process knows nothing of PROXY: a header
/// sent to it is data, echoed from the first byte.
#[test]
fn a_plain_listener_beside_echoes_headers_as_data() {
    let server = ServerProcess::start_with_env(
        &["--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"],
        &[("RUST_LOG", "debug")],
    );
    let endpoints = server.endpoints(2);
    assert_eq!(endpoints[0].1, "tcp");
    assert_eq!(endpoints[1].1, "proxy");
    let (plain, proxy) = (endpoints[0].0, endpoints[1].0);
    for (_, header, _, _) in headers() {
        echo_session(plain, &[&header[..], b"hello\n"].concat());
        echo_session_through(proxy, &header, b"hello\n");
    }
    echo_session(plain, b"hello\n");
    let stats = server.stats();
    assert_eq!(stats.get("proxy_errors"), 0, "{stats:?}");
}

/// Without --proxy-trust every peer is trusted: on a non-loopback address
/// that deserves a warning at start; on loopback, or with a trust list, not.
#[test]
fn a_wildcard_proxy_listener_without_trust_warns() {
    let server = ServerProcess::start(&["--proxy-listen", "0.0.0.0:0"]);
    // Bound on every address; the test talks to loopback only.
    let port = server.addr.port();
    let loopback: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    echo_session_through(loopback, &v1(CLIENT, "127.0.0.1:7007"), b"hi\n");
    let warnings = server.log.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("proxy") || w.contains("PROXY")),
        "no warning about the untrusted PROXY listener:\n{}",
        server.log.dump()
    );

    for args in [
        &["--proxy-listen", "127.0.0.1:0"][..],
        &[
            "--proxy-listen",
            "0.0.0.0:0",
            "--proxy-trust",
            "127.0.0.0/8",
        ],
    ] {
        let server = ServerProcess::start(args);
        let port = server.addr.port();
        let loopback: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        echo_session_through(loopback, &v1(CLIENT, "127.0.0.1:7007"), b"hi\n");
        let warnings = server.log.warnings();
        assert!(warnings.is_empty(), "{args:?}: {warnings:?}");
    }
}
