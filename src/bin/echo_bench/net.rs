//! Client-side socket helpers shared by the modes: non-blocking connects
//! through socket2 handed to mio, the message pattern, small stats helpers.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Refuse anything but loopback: this tool is a local benchmark only.
pub fn check_loopback(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address; echo-bench only targets 127.0.0.0/8 or ::1"
        ))
    }
}

/// Raise RLIMIT_NOFILE (soft) to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// A fresh non-blocking TCP socket for `addr`'s family (no connect yet).
pub fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    Ok(s)
}

/// Start a non-blocking connect; the result becomes writable once connected.
pub fn start_connect(sock: Socket, addr: SocketAddr) -> io::Result<TcpStream> {
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) /* EINPROGRESS */ => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
}

/// Non-blocking connect outcome, checked on a writable/readable event:
/// Ok(true) connected, Ok(false) still in progress, Err failed.
pub fn connect_done(s: &TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

const ALPHA: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

/// Fill `msg` with request `seq` of connection `conn`: `len - 1` letters then
/// `\n`. Consecutive letters ascend, so no line can ever start with `quit`
/// (the server's quit rule never triggers) and each request differs.
pub fn fill_message(msg: &mut Vec<u8>, len: usize, conn: usize, seq: u64) {
    msg.clear();
    let n = len.saturating_sub(1);
    let mut pos = ((conn.wrapping_mul(7) as u64).wrapping_add(seq.wrapping_mul(13)) % 26) as usize;
    while msg.len() < n {
        let take = (26 - pos).min(n - msg.len());
        msg.extend_from_slice(&ALPHA[pos..pos + take]);
        pos = 0;
    }
    msg.push(b'\n');
}

/// Percentile of an already sorted slice (nearest rank); None if empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of the values present (NaN-free); None if empty.
pub fn median(vals: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_start_with_quit() {
        let mut m = Vec::new();
        for conn in 0..30 {
            for seq in 0..30 {
                fill_message(&mut m, 64, conn, seq);
                assert_eq!(m.len(), 64);
                assert_eq!(*m.last().unwrap(), b'\n');
                assert!(!m.starts_with(b"quit"));
                let start = m[0] - b'a';
                for (i, b) in m[..63].iter().enumerate() {
                    assert_eq!(*b, b'a' + (start + i as u8) % 26);
                }
            }
        }
        fill_message(&mut m, 1, 3, 4);
        assert_eq!(m, b"\n");
    }

    #[test]
    fn stats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 100.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
