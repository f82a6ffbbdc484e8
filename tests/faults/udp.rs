//! Numbered datagrams under 2% random loss. The loss is an nftables drop on
//! the output hook, so a dropped datagram never leaves its sender, and the
//! sender is told: `sendto` fails with EPERM. That makes every loss
//! accountable: the client's failed sends were lost on its side, the
//! server's failed echoes are its `udp_dropped`, and nothing else may go
//! missing (no receive buffer overflows: the client sends in small batches
//! and waits for each to be served).
//!
//! Asserted: every echo that comes back is byte-exact (sequence number,
//! checksum and the whole datagram), none twice; `udp_in` is exactly what
//! the client sent, `udp_in == udp_out + udp_dropped`, the client received
//! exactly `udp_out`; the loss rule's counter is the client's failed sends
//! plus `udp_dropped`; and the server did drop some (2% of its echoes fail)
//! and kept serving the batches after them.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::common::{figure, scale, Digest, Rng, ServerProcess, IO_TIMEOUT};
use crate::netns::Netns;

/// Datagrams in flight at once: their echoes fit any receive buffer
/// (at most 4 KiB each, in three fragments at MTU 1500).
const BATCH: u64 = 20;
const LARGEST_BODY: u64 = 4096;
const HEADER: usize = 16;

/// Datagram `seq`: its number, a checksum of the body, then a body of 0 to
/// 4096 bytes that only `seq` determines.
fn datagram(seq: u64) -> Vec<u8> {
    let mut rng = Rng::new(0x0d47_0000 ^ seq);
    let mut body = vec![0; rng.log_size(LARGEST_BODY + 1) as usize - 1];
    rng.fill(&mut body);
    let mut out = seq.to_le_bytes().to_vec();
    out.extend_from_slice(&Digest::of(&body).hash.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The echo's sequence number, if its checksum holds and it is exactly
/// the datagram of that number.
fn check(echo: &[u8]) -> Result<u64, String> {
    if echo.len() < HEADER {
        return Err(format!("{} bytes, shorter than the header", echo.len()));
    }
    let seq = u64::from_le_bytes(echo[..8].try_into().unwrap());
    let sum = u64::from_le_bytes(echo[8..HEADER].try_into().unwrap());
    if Digest::of(&echo[HEADER..]).hash != sum {
        return Err(format!("#{seq}: checksum differs ({} bytes)", echo.len()));
    }
    if echo != datagram(seq) {
        return Err(format!("#{seq}: not the datagram sent"));
    }
    Ok(seq)
}

/// `field` of the `Udp:` line of /proc/net/snmp (this namespace's).
fn udp_snmp(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").expect("read /proc/net/snmp");
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == field)
        .unwrap_or_else(|| panic!("no {field} in /proc/net/snmp"));
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

pub fn udp_loss(ns: &mut Netns) {
    ns.set_loss(2);
    let n = scale(2000, 20_000);
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"]);
    let to: SocketAddr = server.addr;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let t0 = Instant::now();
    let (mut sent, mut refused_here) = (0u64, 0u64);
    let mut seen = HashSet::new();
    let mut echoed_before = 0;
    let mut buf = vec![0; 65_536];
    for first in (0..n).step_by(BATCH as usize) {
        for seq in first..(first + BATCH).min(n) {
            match client.send_to(&datagram(seq), to) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == ErrorKind::PermissionDenied => refused_here += 1,
                Err(e) => panic!("send #{seq}: {e}"),
            }
        }
        // Served: the server has received all that left, and echoed what
        // it could.
        let st = server.stats_until(Duration::from_secs(10), |st| st["udp_in"] >= sent);
        assert_eq!(st["udp_in"], sent, "server received more than was sent");
        for _ in echoed_before..st["udp_out"] {
            let (len, from) = client
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{} echoes of {}: {e}", seen.len(), st["udp_out"]));
            assert_eq!(from, to, "echo source");
            let seq = check(&buf[..len]).unwrap_or_else(|e| panic!("echo: {e}"));
            assert!(
                (first..first + BATCH).contains(&seq),
                "#{seq} in batch {first}"
            );
            assert!(seen.insert(seq), "#{seq} echoed twice");
        }
        echoed_before = st["udp_out"];
    }
    let elapsed = t0.elapsed();
    let st = server.stats();
    let received = seen.len() as u64;
    let (lost, _) = ns.dropped();
    let buffer_errors = udp_snmp("RcvbufErrors");
    figure(
        "faults-udp-loss",
        &format!(
            "{n} numbered datagrams of 16..{} B over {}: {received} echoed byte-exact; {refused_here} sends failed at the client (EPERM), server udp_in={} udp_out={} udp_dropped={}; {lost} datagrams dropped by the rule, {buffer_errors} receive buffer overflows; {:.1} s",
            HEADER as u64 + LARGEST_BODY,
            ns.describe(),
            st["udp_in"],
            st["udp_out"],
            st["udp_dropped"],
            elapsed.as_secs_f64()
        ),
    );
    assert_eq!(sent + refused_here, n);
    assert_eq!(
        st["udp_in"], sent,
        "udp_in: every datagram that left arrived"
    );
    assert_eq!(
        st["udp_in"],
        st["udp_out"] + st["udp_dropped"],
        "udp_in = udp_out + udp_dropped"
    );
    assert_eq!(
        received, st["udp_out"],
        "the client received every echo sent"
    );
    assert_eq!(st["udp_refused"], 0);
    assert_eq!(buffer_errors, 0, "receive buffer overflows");
    assert_eq!(
        lost,
        refused_here + st["udp_dropped"],
        "every datagram the rule dropped is a failed send of the client or the server"
    );
    assert!(
        st["udp_dropped"] > 0,
        "none of {} echoes failed at 2% loss",
        st["udp_in"]
    );
}
