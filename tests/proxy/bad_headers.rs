//! What is not a header: garbage, malformed, too long, or unfinished 3 s
//! after accept. Closed with nothing echoed, counted in `proxy_errors`,
//! logged at debug only.

use std::io::Write;
use std::time::{Duration, Instant};

use super::{
    echo_session_through, expect_closed_silently, finish, proxy_server, v1, v2_proxy,
    wait_connection_line, CLIENT, V2_SIGNATURE,
};
use crate::common::*;

/// What is not a header, with the bytes after which the server knows.
fn bad_headers() -> Vec<(&'static str, Vec<u8>)> {
    let mut wrong_version = v2_proxy(CLIENT, "127.0.0.1:7007", &[]);
    wrong_version[12] = 0x11;
    let mut too_long_v1 = b"PROXY TCP4 ".to_vec();
    too_long_v1.resize(200, b'1');
    // Says 5000 bytes follow: too long, refused without waiting for them.
    let declares_too_much = [V2_SIGNATURE, &[0x21, 0x11], &5000u16.to_be_bytes()].concat();
    vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("a plain line", b"hello\n".to_vec()),
        ("v2 signature, version 1", wrong_version),
        (
            "v1 with a bad port",
            b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 7007\r\n".to_vec(),
        ),
        (
            "v1 with a bad address",
            b"PROXY TCP4 192.0.2.300 127.0.0.1 1 2\r\nhi\n".to_vec(),
        ),
        (
            "v1 without CR",
            b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 7007\nhi\n".to_vec(),
        ),
        ("v1 too long", too_long_v1),
        ("v2 declaring 5000 bytes", declares_too_much),
    ]
}

/// Closed before the header timeout could have closed it: the server saw
/// the header was bad from the bytes.
const AT_ONCE: Duration = Duration::from_secs(2);

#[test]
fn bad_headers_close_at_once_echo_nothing_and_are_counted() {
    let (server, addr) = proxy_server(&[]);
    let cases = bad_headers();
    for (name, bytes) in &cases {
        let mut stream = connect(addr);
        stream.write_all(bytes).unwrap();
        expect_closed_silently(&mut stream, AT_ONCE, name);
        let line = wait_connection_line(
            &server,
            &format!(" from {}: bad PROXY header: ", stream.local_addr().unwrap()),
        );
        assert!(line.contains(" DEBUG "), "{name}: {line}");
    }
    let stats = server.stats_until(Duration::from_secs(10), |s| {
        s.get("proxy_errors") == cases.len() as u64 && s.get("active") == 0
    });
    assert_eq!(stats.get("bytes_out"), 0, "{stats:?}");
    echo_session_through(addr, &v1(CLIENT, "127.0.0.1:1"), b"still serving\n");
}

/// At the default log level, a bad header is no log line at all: anyone
/// can connect and send garbage.
#[test]
fn bad_headers_are_not_logged_at_the_default_level() {
    let server = ServerProcess::start(&["--proxy-listen", "127.0.0.1:0"]);
    let cases = bad_headers();
    let mut ports = Vec::new();
    for (name, bytes) in &cases {
        let mut stream = connect(server.addr);
        ports.push(stream.local_addr().unwrap().to_string());
        stream.write_all(bytes).unwrap();
        expect_closed_silently(&mut stream, AT_ONCE, name);
    }
    server.stats_until(Duration::from_secs(10), |s| {
        s.get("proxy_errors") == cases.len() as u64
    });
    let log = server.log.dump();
    for port in &ports {
        assert!(!log.contains(port.as_str()), "{port} logged:\n{log}");
    }
    assert!(!log.contains("PROXY header"), "logged:\n{log}");
}

/// A header still unfinished 3 s after accept closes the connection; a
/// finished one with no data after it stays open.
#[test]
fn an_unfinished_header_is_closed_after_about_3_s() {
    let (server, addr) = proxy_server(&[]);
    let v2_header = v2_proxy(CLIENT, "127.0.0.1:7007", &[]);
    let unfinished: Vec<(&str, Vec<u8>)> = vec![
        ("nothing sent", Vec::new()),
        (
            "half a v1 header",
            b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 ".to_vec(),
        ),
        (
            "v1 without its LF",
            b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 7007\r".to_vec(),
        ),
        ("half a v2 header", v2_header[..20].to_vec()),
    ];
    let mut complete = connect(addr);
    complete.write_all(&v1(CLIENT, "127.0.0.1:7007")).unwrap();
    let waiters: Vec<_> = unfinished
        .into_iter()
        .map(|(name, bytes)| {
            std::thread::spawn(move || {
                let mut stream = connect(addr);
                let t0 = Instant::now();
                stream.write_all(&bytes).unwrap();
                expect_closed_silently(&mut stream, Duration::from_secs(10), name);
                let took = t0.elapsed();
                eprintln!("{name}: closed after {took:?}");
                assert!(
                    took >= Duration::from_secs(2),
                    "{name}: closed after {took:?}"
                );
            })
        })
        .collect();
    for waiter in waiters {
        waiter.join().expect("an unfinished header");
    }
    // The others waited past 3 s; the finished header still serves.
    echo(&mut complete, b"still here\n");
    finish(complete);
    let stats = server.stats_until(Duration::from_secs(10), |s| s.get("proxy_errors") == 4);
    assert_eq!(stats.get("bytes_out"), 11, "{stats:?}");
}
