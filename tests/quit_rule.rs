//! The quit rule over real sockets: a line whose first four bytes are `quit`
//! ends the session, whatever way TCP splits the stream.
//!
//! Split segments: `wait_until_server_read` waits until /proc/net/tcp shows
//! the client's bytes acknowledged and the server socket's receive queue
//! empty, i.e. the server process has read them. Only then is the next part
//! written, so each part reaches the server in a read of its own; no sleep
//! guesses at it. The client also sets TCP_NODELAY so each write leaves at
//! once.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Writes each part as its own segment, the server reading each one before
/// the next is sent.
fn write_split(stream: &mut TcpStream, parts: &[&[u8]]) {
    stream.set_nodelay(true).unwrap();
    for part in parts {
        stream.write_all(part).unwrap();
        stream.flush().unwrap();
        wait_until_server_read(stream);
    }
}

/// The session must end: exactly `expected` comes back, then a clean EOF.
fn assert_closes_with(stream: &mut TcpStream, expected: &[u8]) {
    let got = read_to_eof(stream);
    assert_eq!(show(&got), show(expected));
}

/// The session must stay open: `expected` comes back, then a later line is
/// still echoed, and a half-close ends it cleanly.
fn assert_stays_open(stream: &mut TcpStream, expected: &[u8]) {
    let got = read_exactly(stream, expected.len());
    assert_eq!(show(&got), show(expected));
    echo(stream, b"still here\n");
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(stream), b"");
}

#[test]
fn quit_line_ends_the_session_after_echoing_earlier_lines() {
    // The seed's telnet session.
    let server = ServerProcess::start(&[]);
    let mut c = server.connect();
    c.write_all(b"hello\nlofa\nquit it\n").unwrap();
    assert_closes_with(&mut c, b"hello\nlofa\n");
}

#[test]
fn quit_cases_in_one_write() {
    let server = ServerProcess::start(&[]);
    let cases: &[(&[u8], &[u8])] = &[
        (b"quit\n", b""),
        (b"quit", b""),
        (b"quitter\n", b""),
        (b"hello\nquit", b"hello\n"),
        (b"a\n\nquit\nb\n", b"a\n\n"),
        (b"hey there\r\nquit doing that!\r\n", b"hey there\r\n"),
        (b"\0\xff\nquit\n", b"\0\xff\n"),
    ];
    for (input, expected) in cases {
        let mut c = server.connect();
        c.write_all(input).unwrap();
        let got = read_to_eof(&mut c);
        assert_eq!(show(&got), show(expected), "input {:?}", show(input));
    }
}

#[test]
fn quit_split_across_segments_still_closes() {
    let server = ServerProcess::start(&[]);
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b"qu", b"it\n"], b""),
        (&[b"q", b"u", b"i", b"t\n"], b""),
        (&[b"qui", b"t"], b""),
        (&[b"hello\nqu", b"it\n"], b"hello\n"),
        (&[b"hello\n", b"q", b"uit\n"], b"hello\n"),
        (&[b"hello", b"\n", b"quit"], b"hello\n"),
        (
            &[b"hey there\r", b"\nqu", b"it doing that!\r\n"],
            b"hey there\r\n",
        ),
    ];
    for (parts, expected) in cases {
        let mut c = server.connect();
        write_split(&mut c, parts);
        let got = read_to_eof(&mut c);
        assert_eq!(show(&got), show(expected), "parts {parts:?}");
    }
}

#[test]
fn lookalikes_do_not_close() {
    let server = ServerProcess::start(&[]);
    for line in [
        &b"xquit\n"[..],
        b" quit\n",
        b"QUIT\n",
        b"Quit\n",
        b"quiet\n",
        b"qui\n",
        b"qu it\n",
        b"say quit\n",
        b"\rquit\n",
        b"hello quit\n",
    ] {
        let mut c = server.connect();
        c.write_all(line).unwrap();
        assert_stays_open(&mut c, line);
    }
}

#[test]
fn held_prefix_split_then_decided_otherwise_is_echoed() {
    let server = ServerProcess::start(&[]);
    let cases: &[&[&[u8]]] = &[
        &[b"qu", b"een\n"],
        &[b"qui", b"et\n"],
        &[b"q", b"\n"],
        &[b"hello\nqui", b"ck\n"],
        &[b"q", b"u", b"i", b"z\n"],
    ];
    for parts in cases {
        let mut c = server.connect();
        write_split(&mut c, parts);
        let expected = parts.concat();
        assert_stays_open(&mut c, &expected);
    }
}

#[test]
fn held_prefix_is_echoed_at_client_eof() {
    let server = ServerProcess::start(&[]);
    for input in [&b"q"[..], b"qu", b"qui", b"hello\nqu", b"a\r\nqui"] {
        // In one segment with the data, and after the server holds it.
        for split in [false, true] {
            let mut c = server.connect();
            if split {
                write_split(&mut c, &[input]);
            } else {
                c.write_all(input).unwrap();
            }
            c.shutdown(Shutdown::Write).unwrap();
            let got = read_to_eof(&mut c);
            assert_eq!(show(&got), show(input), "split {split}");
        }
    }
}

#[test]
fn bytes_after_the_quit_line_are_dropped_and_the_client_sees_eof_not_reset() {
    let server = ServerProcess::start(&[]);

    // Trailing lines in the same write as the quit line.
    let mut c = server.connect();
    c.write_all(b"hello\nquit\nthis is ignored\nand this\n")
        .unwrap();
    assert_closes_with(&mut c, b"hello\n");
    // The server still drains what the client sends after the EOF.
    c.write_all(b"talking after the end\n").unwrap();
    drop(c);

    // Much more than the socket buffers hold after the quit line, all
    // written before the client reads anything: closing with unread input
    // would send an RST, and the client would lose `hello\n` (ECONNRESET).
    let mut c = server.connect();
    let mut data = b"hello\nquit\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 4 << 20));
    c.write_all(&data).unwrap();
    assert_closes_with(&mut c, b"hello\n");
    // Writing on after the EOF still works: the server keeps discarding.
    c.write_all(&vec![b'y'; 1 << 20]).unwrap();
    drop(c);

    let stats = server.stats();
    assert_eq!(stats["closed_error"], 0, "{stats:?}");
}

#[test]
fn server_closes_a_lingering_quit_connection_whose_client_stays_open() {
    // After the quit line the server discards input until the client
    // closes, or about 2 s pass. A client that never closes must not keep
    // the connection (and its descriptor) forever.
    let server = ServerProcess::start(&[]);
    let idle_fds = server.fd_count();
    let mut c = server.connect();
    c.write_all(b"bye\nquit\n").unwrap();
    assert_closes_with(&mut c, b"bye\n");
    let deadline = Instant::now() + Duration::from_secs(8);
    while server.fd_count() > idle_fds {
        assert!(
            Instant::now() < deadline,
            "the quit connection was still open 8 s after the quit line"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = server.stats();
    assert_eq!(stats["closed_quit"], 1, "{stats:?}");
    drop(c);
}

#[test]
fn no_quit_echoes_quit_lines() {
    let server = ServerProcess::start(&["--no-quit"]);
    let mut c = server.connect();
    echo(&mut c, b"hello\nquit\nafter quit\n");
    write_split(&mut c, &[b"qu", b"it\n"]);
    let got = read_exactly(&mut c, 5);
    assert_eq!(got, b"quit\n");
    echo(&mut c, b"quit");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c), b"");
}

#[test]
fn quit_after_a_large_echo_flushes_all_of_it_first() {
    // Megabytes of echo are still queued (socket buffers, the server's
    // buffer) when the quit line is read: all of it must arrive before EOF.
    let server = ServerProcess::start(&[]);
    let mut c = server.connect();
    let mut before = Payload::new(11).bytes(5 << 20);
    for b in before.iter_mut().filter(|b| **b == b'\n') {
        *b = b' ';
    }
    before.push(b'\n');
    let mut input = before.clone();
    input.extend_from_slice(b"quit\n");
    input.extend(std::iter::repeat_n(b'j', 1 << 20));
    let mut writer = c.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        // The server may stop reading once it has seen `quit`; whatever it
        // does not read it discards, so this write completes either way.
        writer.write_all(&input).unwrap();
    });
    let got = read_to_eof(&mut c);
    w.join().unwrap();
    assert_eq!(got.len(), before.len(), "echo length before the quit line");
    assert!(got == before, "echo before the quit line differs");
}

#[test]
fn lingering_lasts_its_2_s_after_the_loop_sat_idle_longer() {
    // Nothing is due for minutes, so the loop blocks through the quiet
    // spell; the linger deadline armed on the next turn must still lie 2 s
    // ahead of that turn, not in the past (which closed the connection at
    // once and made a still-talking client's kernel reset its unread echo).
    let server = ServerProcess::start(&[]);
    let mut c = server.connect();
    echo(&mut c, b"hello\n");
    // The quiet spell is the scenario: the server has nothing to wait for.
    std::thread::sleep(Duration::from_millis(2500));
    c.write_all(b"bye\nquit\n").unwrap();
    assert_eq!(read_exactly(&mut c, 4), b"bye\n");
    expect_eof(&mut c);
    let eof_at = Instant::now();
    let stats = server.stats();
    assert_eq!(
        (stats.get("active"), stats.get("closed_quit")),
        (1, 0),
        "closed at once instead of lingering: {stats:?}"
    );
    // Discarded while lingering: no reset.
    c.write_all(b"still talking\n").unwrap();
    let stats = server.stats_until(Duration::from_secs(6), |s| s.get("closed_quit") == 1);
    let lingered = eof_at.elapsed();
    assert!(
        lingered >= Duration::from_millis(1500),
        "closed {lingered:?} after the EOF, not after lingering ~2 s"
    );
    assert_eq!(stats.get("closed_error"), 0, "{stats:?}");
}
