//! Clients: blocking sockets with timeouts (a hang fails the test instead of
//! blocking it), reads that explain what did arrive, echo checks, and checks
//! that a listener is gone.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// Connects within `timeout`, sets `IO_TIMEOUT` for reads and writes, and
/// TCP_NODELAY so each write leaves at once.
pub fn try_connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Like `try_connect` with `IO_TIMEOUT`; panics when it fails.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Reads exactly `n` bytes; panics with what did arrive on timeout or EOF.
pub fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    let mut have = 0;
    while have < n {
        match stream.read(&mut got[have..]) {
            Ok(0) => panic!("EOF after {have} of {n} bytes: {:?}", show(&got[..have])),
            Ok(k) => have += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "reading {n} bytes: {e} after {have} bytes: {:?}",
                show(&got[..have])
            ),
        }
    }
    got
}

/// Reads until EOF. An error (timeout, reset) is returned with what arrived.
pub fn try_read_to_eof(stream: &mut TcpStream) -> Result<Vec<u8>, (io::Error, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((e, got)),
        }
    }
}

/// Reads until EOF; panics on a timeout or a reset instead of a clean FIN.
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    try_read_to_eof(stream).unwrap_or_else(|(e, got)| {
        panic!(
            "no clean EOF: {e} ({:?}) after {} bytes: {:?}",
            e.kind(),
            got.len(),
            show(&got)
        )
    })
}

/// The server closes its side: the next read returns 0 (not data, not an
/// error).
pub fn expect_eof(stream: &mut TcpStream) {
    match try_read_to_eof(stream) {
        Ok(rest) if rest.is_empty() => {}
        Ok(rest) => panic!(
            "{} unexpected bytes before EOF: {:?}",
            rest.len(),
            show(&rest)
        ),
        Err((e, _)) => panic!("expected EOF, got {e}"),
    }
}

/// Writes `msg` and expects exactly `msg` back.
pub fn echo(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).expect("write");
    let got = read_exactly(stream, msg.len());
    assert_eq!(show(&got), show(msg), "echo differs");
}

/// Writes `msg`, reads the same number of bytes back and compares; errors
/// (including a different echo) are returned, not panicked on.
pub fn try_echo(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    stream.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back)?;
    if back != msg {
        return Err(io::Error::other("echo differs from what was sent"));
    }
    Ok(())
}

/// One whole session: connect, echo `msg`, half-close, expect a clean EOF.
pub fn echo_session(addr: SocketAddr, msg: &[u8]) {
    let mut stream = connect(addr);
    echo(&mut stream, msg);
    stream.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut stream);
}

/// Asserts that nothing (no byte, no EOF) arrives within `wait`.
pub fn assert_silent(stream: &mut TcpStream, wait: Duration) {
    let old = stream.read_timeout().unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    let result = stream.read(&mut buf);
    stream.set_read_timeout(old).unwrap();
    match result {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("expected silence, got EOF"),
        Ok(n) => panic!("expected silence, got {:?}", show(&buf[..n])),
        Err(e) => panic!("expected silence, got error {e}"),
    }
}

/// Waits up to `timeout` for at least one byte. `Ok(None)` if none came in
/// time, `Ok(Some(vec![]))` on EOF.
pub fn read_within(stream: &mut TcpStream, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = vec![0; 64 * 1024];
    let result = match stream.read(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Err(e) => Err(e),
    };
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    result
}

/// Writes as much of `data` as the connection takes without anyone reading
/// the echo: stops when a write makes no progress for `stall` (the pipe
/// client -> server -> client is full) or all of it is written. Returns the
/// bytes written, all of them in the kernel now.
pub fn write_until_full(stream: &mut TcpStream, data: &[u8], stall: Duration) -> usize {
    stream.set_write_timeout(Some(stall)).unwrap();
    let mut written = 0;
    while written < data.len() {
        let end = data.len().min(written + 64 * 1024);
        match stream.write(&data[written..end]) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write after {written} bytes: {e}"),
        }
    }
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    written
}

/// Connecting must fail with "connection refused".
pub fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connect {addr}: expected `connection refused`, got {e}"),
        Ok(_) => panic!("connect {addr}: accepted, expected `connection refused`"),
    }
}

/// Connecting is refused within `within` (polled every 5 ms). The server
/// logs `shutting down` just before it closes its listener, so a connect
/// right after that line can still land in the backlog; such a connection
/// must then be reset, never served.
pub fn assert_refused_soon(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connect {addr}: expected `connection refused`, got {e}"),
            Ok(mut stream) => {
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let _ = stream.write_all(b"probe\n");
                let mut buf = [0; 16];
                if let Ok(n) = stream.read(&mut buf) {
                    assert_eq!(n, 0, "a connection made after the signal was served");
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "connect {addr}: still accepted {within:?} after the signal was handled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Bytes for assertion messages: text stays readable, binary is escaped,
/// long data is cut.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let mut s: String = bytes[..bytes.len().min(MAX)]
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > MAX {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}
