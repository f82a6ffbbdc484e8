//! Echo semantics over real sockets: lines, binary, large payloads,
//! half-close, data and FIN in one segment, and a reset client.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;
use socket2::SockRef;

#[test]
fn lines_are_echoed_one_by_one() {
    let server = ServerProcess::start(&[]);
    let mut c = server.connect();
    for i in 0..200 {
        echo(
            &mut c,
            format!("line {i}: the quick brown fox\n").as_bytes(),
        );
    }
    // Several lines in one write, and a line without its newline.
    echo(&mut c, b"one\ntwo\nthree\n");
    echo(&mut c, b"no newline yet");
    echo(&mut c, b" ... now\n");
    echo(&mut c, b"\n\n\n");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"");
}

#[test]
fn binary_bytes_are_echoed_exactly() {
    let server = ServerProcess::start(&[]);
    let mut c = server.connect();
    let every_byte: Vec<u8> = (0..=255u8).collect();
    echo(&mut c, &every_byte);
    echo(&mut c, &[0u8; 1000]);
    echo(&mut c, &[0xffu8; 1000]);
    echo(&mut c, b"\0\0\xff\xff\r\n\0q\xffquit\0\n\xff");
    let mut reversed = every_byte.clone();
    reversed.reverse();
    echo(&mut c, &reversed.repeat(64));
    // Random binary without newlines, then with the stream ended by EOF.
    let data = Payload::new(7).bytes(100_000);
    assert!(!has_quit_line(&data));
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = read_to_eof(&mut c);
    assert!(got == data, "100 kB binary payload came back different");
}

#[test]
fn sixteen_mib_written_and_read_concurrently_match_by_hash() {
    const TOTAL: usize = 16 << 20;
    let server = ServerProcess::start(&[]);
    let mut c = server.connect();
    let mut writer = c.try_clone().unwrap();
    let payload = Payload::new(0x5eed).bytes(TOTAL);
    assert!(
        !has_quit_line(&payload),
        "payload would trigger the quit rule; change the seed"
    );
    let sent = Digest::of(&payload);
    let w = std::thread::spawn(move || {
        // Odd sizes, so chunk and line boundaries fall everywhere.
        let sizes = [1usize, 7, 4096, 65_537, 199_999, 13, 100_000];
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at == TOTAL {
                break;
            }
            let end = (at + size).min(TOTAL);
            writer.write_all(&payload[at..end]).unwrap();
            at = end;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Digest::default();
    let mut buf = vec![0u8; 100_000];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.update(&buf[..n]),
            Err(e) => panic!("reading the echo: {e} after {} bytes", got.len),
        }
    }
    w.join().expect("writer thread");
    assert_eq!(sent.len, TOTAL as u64);
    assert_eq!(got, sent, "echo of 16 MiB differs from what was sent");
}

#[test]
fn half_close_flushes_everything_then_closes() {
    let server = ServerProcess::start(&[]);
    let mut c = server.connect();
    c.write_all(b"a\nb\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"a\nb\n");

    // A half-close with far more pending than the socket buffers hold: the
    // client reads only after its side is shut.
    let mut c = server.connect();
    let data = Payload::new(99).bytes(3 << 20);
    assert!(!has_quit_line(&data));
    let mut writer = c.try_clone().unwrap();
    let to_send = data.clone();
    let w = std::thread::spawn(move || {
        writer.write_all(&to_send).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_to_eof(&mut c);
    w.join().unwrap();
    assert!(got == data, "3 MiB echo after half-close differs");

    // Empty session: connect and half-close at once.
    let mut c = server.connect();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"");
}

/// Data and FIN in one segment: corked, written, then shut down, so the
/// kernel sends them together. The server's read event then reports
/// readable and read-closed at once and brings no further edge; if it
/// skipped the read after a short read, it would never see the EOF (the
/// connection stays in CLOSE-WAIT and the client waits forever).
#[test]
fn data_and_fin_in_one_segment_get_echo_and_eof_promptly() {
    let server = ServerProcess::start(&[]);
    let big = [&[b'b'; 300_000][..], b"\n"].concat();
    let cases: &[(&[u8], &[u8])] = &[
        (b"hello\n", b"hello\n"),
        (b"no newline", b"no newline"),
        (b"qui", b"qui"),
        (b"a\nb\nqu", b"a\nb\nqu"),
        (b"x", b"x"),
        (b"quit\n", b""),
        (b"bye\nquit", b"bye\n"),
        // More than one read: only the last segment carries the FIN.
        (&big, &big),
    ];
    for round in 0..10 {
        for (input, expected) in cases {
            // `warm`: the server has accepted and waits in epoll when the
            // segment comes; cold: it arrives before the accept.
            for warm in [false, true] {
                let mut c = server.connect();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                if warm {
                    echo(&mut c, b"ping\n");
                }
                let sock = SockRef::from(&c);
                sock.set_tcp_cork(true).unwrap();
                c.write_all(input).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let start = Instant::now();
                let got = try_read_to_eof(&mut c).unwrap_or_else(|(e, got)| {
                    panic!(
                        "round {round}, input {:?}, warm {warm}: no EOF within 5 s ({e}); \
                         got {:?}",
                        show(input),
                        show(&got)
                    )
                });
                assert_eq!(show(&got), show(expected), "input {:?}", show(input));
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "echo and EOF took {:?}",
                    start.elapsed()
                );
            }
        }
    }
}

#[test]
fn a_reset_client_does_not_disturb_another() {
    let server = ServerProcess::start(&[]);
    let mut good = server.connect();
    echo(&mut good, b"before\n");

    // A client that sends a lot, never reads (so the server holds echo for
    // it), then resets: the server's next write to it fails.
    for _ in 0..3 {
        let mut bad = server.connect();
        let data = [&[b'z'; 1 << 20][..], b"\n"].concat();
        bad.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // Partial writes are fine: the point is pending echo in the server.
        let _ = bad.write(&data);
        echo(&mut good, b"during\n");
        SockRef::from(&bad)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(bad); // RST
        echo(&mut good, b"after reset\n");
    }

    // A client that resets right after connecting, with nothing sent.
    let bad = server.connect();
    SockRef::from(&bad)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(bad);

    echo(&mut good, b"still fine\n");
    let mut fresh = server.connect();
    echo(&mut fresh, b"new client\n");
    good.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut good), b"");
    assert_eq!(server.threads(), 1);
}

#[test]
fn many_clients_interleaved_on_one_server() {
    let server = ServerProcess::start(&[]);
    let mut clients: Vec<_> = (0..50).map(|_| server.connect()).collect();
    for round in 0..20 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("client {i} round {round}\n").as_bytes())
                .unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let want = format!("client {i} round {round}\n");
            let got = read_exactly(c, want.len());
            assert_eq!(show(&got), show(want.as_bytes()));
        }
    }
    for c in &mut clients {
        c.shutdown(Shutdown::Write).unwrap();
        match c.read(&mut [0u8; 16]) {
            Ok(0) => {}
            Ok(n) => panic!("{n} extra bytes"),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("no EOF: {e}"),
        }
    }
}
