//! Clients of a `--proxy-listen` socket over the slow link with loss: each
//! sends its PROXY header (v1 text or v2 binary, alternately) in two
//! segments, the first one queued at the server before the second leaves,
//! then streams q-free random data while reading its echo. Every byte after
//! the header must come back exactly (both directions hashed), however the
//! loss and the queue delay the header's second half and cut the data.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    connect, figure, mib, qfree_fill, scale, tcp_queues, wait_until, Rng, ServerProcess,
    StreamHash, IO_TIMEOUT,
};
use crate::netns::Netns;

const KIB: u64 = 1024;
const CHUNK: usize = 16 * 1024;

/// Client `i`'s header for a connection from 203.0.113.9:`5000 + i` to
/// `to`: v1 for even `i`, v2 for odd.
fn header(i: usize, to: SocketAddr) -> Vec<u8> {
    let port = 5000 + i as u16;
    if i % 2 == 0 {
        return format!(
            "PROXY TCP4 203.0.113.9 {} {port} {}\r\n",
            to.ip(),
            to.port()
        )
        .into_bytes();
    }
    let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&to.port().to_be_bytes());
    h
}

/// What one client sent and got back (after the header), or what failed.
struct Outcome {
    sent: StreamHash,
    echoed: StreamHash,
    err: Option<String>,
}

fn client(i: usize, to: SocketAddr, total: u64) -> Outcome {
    let mut stream = connect(to);
    let header = header(i, to);
    // Anywhere inside the header, a different place for each client.
    let split = 1 + (i * 7) % (header.len() - 1);
    stream
        .write_all(&header[..split])
        .expect("first part of the header");
    // The server peeks at a header until it is whole, so the part stays
    // queued on its side: wait until it is all there and acknowledged.
    let (local, peer) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    let delivered = wait_until(IO_TIMEOUT, Duration::from_millis(2), || {
        tcp_queues(local, peer).map(|q| q.0) == Some(0)
            && tcp_queues(peer, local).map(|q| q.1) == Some(split as u64)
    });
    assert!(
        delivered,
        "client {i}: the header's first {split} bytes never arrived whole"
    );
    stream
        .write_all(&header[split..])
        .expect("rest of the header");
    let mut reader = stream.try_clone().expect("clone");
    let echo = thread::spawn(move || {
        let mut hash = StreamHash::default();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return (hash, None),
                Ok(n) => hash.update(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("read after {} bytes: {e}", hash.len);
                    return (hash, Some(why));
                }
            }
        }
    });
    let mut rng = Rng::new(0x9e0c_0000 + i as u64);
    let mut sent = StreamHash::default();
    let mut chunk = vec![0; CHUNK];
    let mut err = None;
    while sent.len < total {
        let len = (total - sent.len).min(CHUNK as u64) as usize;
        qfree_fill(&mut rng, &mut chunk[..len]);
        if let Err(e) = stream.write_all(&chunk[..len]) {
            err = Some(format!("write after {} bytes: {e}", sent.len));
            break;
        }
        sent.update(&chunk[..len]);
    }
    let _ = stream.shutdown(Shutdown::Write);
    let (echoed, read_err) = echo.join().expect("reader thread");
    Outcome {
        sent,
        echoed,
        err: err.or(read_err),
    }
}

pub fn proxy_split_header(ns: &mut Netns) {
    ns.slow_link();
    ns.set_loss(2);
    let n = scale(32, 64);
    let each = scale(256, 1024) * KIB;
    let server = ServerProcess::start(&["--proxy-listen", "127.0.0.1:0"]);
    let to = server.addr;
    let t0 = Instant::now();
    let clients: Vec<_> = (0..n)
        .map(|i| thread::spawn(move || client(i, to, each)))
        .collect();
    let outcomes: Vec<Outcome> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let elapsed = t0.elapsed();
    let failures: Vec<String> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let exact = o.echoed.len == o.sent.len && o.echoed.finish() == o.sent.finish();
            match (&o.err, exact) {
                (Some(e), _) => Some(format!("#{i}: {e}")),
                (None, false) => Some(format!(
                    "#{i}: sent {} bytes, echo {} bytes{}",
                    o.sent.len,
                    o.echoed.len,
                    if o.echoed.len == o.sent.len {
                        " that differ"
                    } else {
                        ""
                    }
                )),
                (None, true) => None,
            }
        })
        .collect();
    let echoed: u64 = outcomes.iter().map(|o| o.echoed.len).sum();
    let st = server.stats_until(Duration::from_secs(10), |st| st["active"] == 0);
    figure(
        "faults-proxy-split-header",
        &format!(
            "{n} PROXY clients (v1 and v2 headers in two segments) x {} KiB over {}: {:.1} MiB echoed, {} failed; {:.1} s; proxy_errors={} accepted={} bytes_out={}; {}",
            each / KIB,
            ns.describe(),
            mib(echoed),
            failures.len(),
            elapsed.as_secs_f64(),
            st["proxy_errors"],
            st["accepted"],
            st["bytes_out"],
            ns.describe_drops(),
        ),
    );
    assert!(failures.is_empty(), "failed clients: {failures:?}");
    assert_eq!(st["proxy_errors"], 0, "{st:?}");
    assert_eq!(st["accepted"], n as u64);
    assert_eq!(
        st["bytes_out"],
        n as u64 * each,
        "bytes_out: the data, no header"
    );
}
