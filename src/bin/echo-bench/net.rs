//! What every mode shares: loopback only, the descriptor limit, and the
//! request pattern. (Sockets and connects are in `swarm`, shared with the
//! tests.)

use std::net::SocketAddr;

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
}
