//! UDP echo through the real binary: byte-exact echo of every size over
//! both families, each echo to its own source, no state per sender, the
//! loop guard, UDP beside TCP in one process, a socket's share of a turn
//! and the run queue, TCP served beside a flood, and the socket closing at
//! shutdown.
//!
//! A send the server's socket will not take (`udp_dropped`) cannot be
//! provoked from here: loopback hands a datagram to its receiver within
//! the send, so the server's send buffer never fills. The fault suite
//! provokes it (`tests/faults/udp.rs`, where a firewall drop fails the send).

mod common;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Largest UDP payload over IPv4 (65535 less the IP and UDP headers).
const LARGEST_V4: usize = 65_507;
/// Over IPv6 (65535 less the UDP header; the IPv6 header is not counted).
const LARGEST_V6: usize = 65_527;

/// A client socket on the loopback of `to`'s family, with `IO_TIMEOUT`.
fn udp_client(to: SocketAddr) -> UdpSocket {
    let local = if to.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// The next datagram and its source; panics with `what` on timeout.
fn receive(socket: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; LARGEST_V6 + 1];
    let (n, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: no datagram: {e}"));
    buf.truncate(n);
    (buf, from)
}

/// Sends `msg` to `to` and expects exactly `msg` back, from `to`.
fn udp_echo(socket: &UdpSocket, to: SocketAddr, msg: &[u8]) {
    socket.send_to(msg, to).expect("send_to");
    let what = format!("echo of {} bytes from {to}", msg.len());
    let (got, from) = receive(socket, &what);
    assert_eq!(from, to, "{what}: source");
    assert_eq!(got.len(), msg.len(), "{what}: length");
    assert!(got == msg, "{what}: bytes differ");
}

/// The `udp` sockets among the first `n` the server announced.
fn udp_endpoints(server: &ServerProcess, n: usize) -> Vec<SocketAddr> {
    let all = server.endpoints(n);
    all.iter()
        .filter(|(_, kind)| kind == "udp")
        .map(|(addr, _)| *addr)
        .collect()
}

#[test]
fn echo_is_byte_exact_for_every_size_over_ipv4_and_ipv6() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0", "--udp", "[::1]:0"]);
    let sockets = udp_endpoints(&server, 2);
    assert!(sockets[0].is_ipv4() && sockets[1].is_ipv6(), "{sockets:?}");
    let mut datagrams = 0;
    for to in sockets {
        let client = udp_client(to);
        let mut sizes = vec![0, 1, 512, 1472, 8192, LARGEST_V4];
        if to.is_ipv6() {
            sizes.push(LARGEST_V6);
        }
        for size in sizes {
            udp_echo(&client, to, &Payload::new(size as u64).bytes(size));
            datagrams += 1;
        }
    }
    let st = server.stats();
    assert_eq!((st["udp_in"], st["udp_out"]), (datagrams, datagrams));
    assert_eq!((st["udp_dropped"], st["udp_refused"]), (0, 0));
}

/// Two clients interleaved: each gets its own datagrams back, in order, and
/// nothing of the other's.
#[test]
fn each_echo_goes_back_to_its_own_source() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"]);
    let to = server.addr;
    let clients = [udp_client(to), udp_client(to)];
    for i in 0..20 {
        for (c, client) in clients.iter().enumerate() {
            client
                .send_to(format!("client {c} #{i}").as_bytes(), to)
                .unwrap();
        }
    }
    for (c, client) in clients.iter().enumerate() {
        for i in 0..20 {
            let (got, from) = receive(client, &format!("client {c} echo {i}"));
            assert_eq!(from, to);
            assert_eq!(show(&got), format!("client {c} #{i}"), "client {c}");
        }
    }
}

/// Thousands of source sockets, one datagram each (half of them never read
/// their echo): the server's memory does not grow with the number of
/// senders it has seen.
#[test]
fn many_senders_leave_no_state_behind() {
    let _serial = serial();
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"]);
    let to = server.addr;
    // Touch the largest buffer and the logger first.
    let warm = udp_client(to);
    udp_echo(&warm, to, &vec![7; LARGEST_V4]);
    server.stats();
    let before = server.rss_kib();
    const WAVES: usize = 10;
    const PER_WAVE: usize = 1000;
    let mut sources = HashSet::new();
    for wave in 0..WAVES {
        let senders: Vec<UdpSocket> = (0..PER_WAVE).map(|_| udp_client(to)).collect();
        for (i, sender) in senders.iter().enumerate() {
            sources.insert(sender.local_addr().unwrap());
            sender
                .send_to(format!("w{wave} s{i}").as_bytes(), to)
                .unwrap();
            // Every other sender reads its echo, the rest never do. Waiting
            // for an echo paces the senders: the server has then served the
            // unread one before it too, and its receive buffer never fills.
            if i % 2 == 1 {
                let (got, _) = receive(sender, &format!("wave {wave} sender {i}"));
                assert_eq!(show(&got), format!("w{wave} s{i}"));
            }
        }
    }
    let total = (WAVES * PER_WAVE) as u64;
    let st = server.stats_until(IO_TIMEOUT, |st| st["udp_in"] == total + 1);
    let after = server.rss_kib();
    figure(
        "udp-many-senders",
        &format!(
            "{total} datagrams from {} distinct source addresses: RSS {before} KiB -> {after} KiB; udp_out={} udp_dropped={}",
            sources.len(),
            st["udp_out"],
            st["udp_dropped"]
        ),
    );
    assert_eq!(st["udp_out"], total + 1, "every datagram echoed");
    assert!(
        after <= before + 256,
        "RSS grew from {before} KiB to {after} KiB over {} senders",
        sources.len()
    );
}

/// Datagrams from the echo and chargen ports are counted and never
/// answered. Binding those ports needs root (or CAP_NET_BIND_SERVICE): CI
/// runs the tests as root, and a skip here would count as a pass, so a run
/// without the privilege fails and says why.
#[test]
fn datagrams_from_ports_of_answering_services_are_never_answered() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"]);
    let to = server.addr;
    let mut guarded = Vec::new();
    for port in [7, 19] {
        let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            panic!(
                "bind 127.0.0.1:{port}: {e}: this test needs root or CAP_NET_BIND_SERVICE \
                 (a skip would count as a pass)"
            )
        });
        socket.send_to(b"bounce me\n", to).unwrap();
        guarded.push(socket);
    }
    let st = server.stats_until(IO_TIMEOUT, |st| st["udp_refused"] == 2);
    assert_eq!(st["udp_out"], 0, "{st:?}");
    // A datagram sent later is echoed: the server has served past the
    // refused ones, so any answer to them would be queued by now.
    udp_echo(&udp_client(to), to, b"later\n");
    for socket in &guarded {
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0; 64];
        match socket.recv_from(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!(
                "port {}: expected nothing, got {other:?}",
                socket.local_addr().unwrap()
            ),
        }
    }
    // Refused datagrams were received: udp_in = udp_out + udp_dropped + udp_refused.
    let st = server.stats();
    assert_eq!((st["udp_in"], st["udp_refused"], st["udp_out"]), (3, 2, 1));
}

/// `--udp` and `--listen` in one process, in both orders: the stdout lines
/// follow the command line, and both sockets serve.
#[test]
fn udp_and_tcp_serve_side_by_side_announced_in_command_line_order() {
    let tcp = ["--listen", "127.0.0.1:0"];
    let udp = ["--udp", "127.0.0.1:0"];
    for (args, kinds) in [
        ([tcp, udp].concat(), ["tcp", "udp"]),
        ([udp, tcp].concat(), ["udp", "tcp"]),
    ] {
        let server = ServerProcess::start(&args);
        let endpoints = server.endpoints(2);
        let got: Vec<&str> = endpoints.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(got, kinds, "{args:?}");
        for (addr, kind) in &endpoints {
            match kind.as_str() {
                "tcp" => echo_session(*addr, b"over tcp\n"),
                _ => udp_echo(&udp_client(*addr), *addr, b"over udp\n"),
            }
        }
    }
}

/// TCP and UDP are different protocols: one port number serves both.
#[test]
fn tcp_and_udp_may_use_the_same_port_number() {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(&["--listen", &addr, "--udp", &addr]);
    let endpoints = server.endpoints(2);
    assert_eq!(endpoints[0].0, endpoints[1].0, "{endpoints:?}");
    echo_session(endpoints[0].0, b"tcp\n");
    udp_echo(&udp_client(endpoints[1].0), endpoints[1].0, b"udp\n");
}

/// The quit rule is for TCP: over UDP `quit` is a datagram like any other.
#[test]
fn a_quit_datagram_is_echoed() {
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0"]);
    let client = udp_client(server.addr);
    for msg in [&b"quit\n"[..], b"quit", b"after quit\n"] {
        udp_echo(&client, server.addr, msg);
    }
    let st = server.stats();
    assert_eq!((st["udp_in"], st["udp_out"], st["closed_quit"]), (3, 3, 0));
}

/// Two threads flood the UDP socket while a TCP client ping-pongs: the
/// loop keeps coming back to TCP (each round trip under a generous 1 s; the
/// percentiles are figures). The server drains its socket faster than two
/// flooders fill it, so this passes even without the share per turn, which
/// `a_socket_serves_its_share_a_turn_and_comes_back_for_the_rest` checks.
#[test]
fn a_udp_flood_does_not_starve_a_tcp_client() {
    let _serial = serial();
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--udp", "127.0.0.1:0"]);
    let udp = udp_endpoints(&server, 2)[0];
    let stop = Arc::new(AtomicBool::new(false));
    // The largest datagrams (the most work each), and small ones.
    let flooders: Vec<_> = [LARGEST_V4, 16]
        .into_iter()
        .map(|size| {
            let stop = Arc::clone(&stop);
            let socket = udp_client(udp);
            thread::spawn(move || {
                let datagram = vec![0x5a; size];
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    // The echoes are never read: they overflow this
                    // socket's buffer and are dropped here, not there.
                    // A failed send is only a smaller flood.
                    if socket.send_to(&datagram, udp).is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    server.stats_until(IO_TIMEOUT, |st| st["udp_in"] >= 200);
    let flooded_from = server.stats()["udp_in"];
    let mut tcp = server.connect();
    let mut rtts = Vec::new();
    // Ping until the server has taken FLOODED datagrams meanwhile (so the
    // two really overlapped), bounded in round trips and time.
    const FLOODED: u64 = 20_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..1_000_000u32 {
        let ping = format!("ping {:04}{}\n", i % 10_000, ".".repeat(54));
        let t0 = Instant::now();
        echo(&mut tcp, ping.as_bytes());
        rtts.push(t0.elapsed());
        if i % 100 == 99
            && (server.stats()["udp_in"] - flooded_from >= FLOODED || Instant::now() > deadline)
        {
            break;
        }
    }
    let flooded = server.stats()["udp_in"] - flooded_from;
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = flooders.into_iter().map(|t| t.join().unwrap()).sum();
    rtts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    figure(
        "udp-flood-tcp-rtt",
        &format!(
            "{} TCP ping-pongs of 64 B beside a flood of {LARGEST_V4} B and 16 B datagrams ({flooded} received meanwhile, {sent} sent in all): p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            rtts.len(),
            ms(percentile(&rtts, 0.5)),
            ms(percentile(&rtts, 0.99)),
            ms(rtts[rtts.len() - 1])
        ),
    );
    assert!(
        flooded >= FLOODED,
        "the flood barely reached the server ({flooded} datagrams during the pings)"
    );
    let slowest = rtts[rtts.len() - 1];
    assert!(
        slowest < Duration::from_secs(1),
        "a TCP round trip took {slowest:?}"
    );
}

/// `(rx_queue, drops)` of the UDP socket on IPv4 `local` (/proc/net/udp):
/// bytes queued (buffers, more than payloads), datagrams dropped.
fn udp_queue(local: SocketAddr) -> Option<(u64, u64)> {
    let SocketAddr::V4(v4) = local else {
        return None;
    };
    let (ip, port) = (u32::from_le_bytes(v4.ip().octets()), v4.port());
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let line = table
        .lines()
        .find(|l| l.contains(&format!(" {ip:08X}:{port:04X} ")))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let rx = u64::from_str_radix(fields.get(4)?.split_once(':')?.1, 16).ok()?;
    Some((rx, fields.last()?.parse().ok()?))
}

/// 100 datagrams to socket A, then 1 to socket B, queued while the server
/// is stopped, all from one client, whose queue then holds the echoes in
/// the order the server sent them (100 small ones fit in a default buffer). Once the server runs, every echo comes
/// (A is served again after its share of 64 from the run queue: no new
/// datagram would wake it), and B's comes among the first 65 (A's share did
/// not hold B back until A was drained).
#[test]
fn a_socket_serves_its_share_a_turn_and_comes_back_for_the_rest() {
    const TO_A: usize = 100;
    let server = ServerProcess::start(&["--udp", "127.0.0.1:0", "--udp", "127.0.0.1:0"]);
    let sockets = udp_endpoints(&server, 2);
    let (a, b) = (sockets[0], sockets[1]);
    let client = udp_client(a);
    server.pause();
    let msg = |i: usize| format!("to A #{i:03}");
    for i in 0..TO_A {
        client.send_to(msg(i).as_bytes(), a).unwrap();
    }
    client.send_to(b"to B", b).unwrap();
    // All queued at the server, none dropped for want of room.
    let least = (TO_A * msg(0).len()) as u64;
    let mut last = None;
    let queued = wait_until(IO_TIMEOUT, Duration::from_millis(2), || {
        last = udp_queue(a).zip(udp_queue(b));
        last.is_some_and(|((rx, da), (rx_b, db))| rx >= least && rx_b > 0 && da + db == 0)
    });
    assert!(queued, "(rx_queue, drops) of A and B: {last:?}");
    server.resume();
    // Bounded: one receive per echo, each within 5 s.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (mut from_a, mut b_at) = (Vec::new(), None);
    for _ in 0..=TO_A {
        let mut buf = [0; 64];
        match client.recv_from(&mut buf) {
            Ok((_, from)) if from == b => b_at = Some(from_a.len()),
            Ok((n, _)) => from_a.push(show(&buf[..n])),
            Err(e) => panic!("{e} after {} of A's echoes, B's at {b_at:?}", from_a.len()),
        }
    }
    assert_eq!(from_a, (0..TO_A).map(msg).collect::<Vec<_>>());
    let b_at = b_at.expect("B's echo");
    figure("udp-share", &format!("B's echo came after {b_at} of A's"));
    assert!(b_at <= 64, "A served past its share: B after {b_at}");
    let st = server.stats();
    assert_eq!((st["udp_in"], st["udp_out"]), (101, 101), "{st:?}");
}

/// SIGTERM closes the UDP socket with the listeners, while a TCP client
/// still holds the drain: a connected UDP client is then refused (ICMP port
/// unreachable -> ECONNREFUSED). The counters are in `final stats:`.
#[test]
fn shutdown_closes_the_udp_socket_with_the_listeners() {
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--shutdown-timeout",
        "30",
    ]);
    let udp = udp_endpoints(&server, 2)[0];
    let mut held = server.connect();
    echo(&mut held, b"holding the drain\n");
    let client = udp_client(udp);
    client.connect(udp).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    udp_echo(&client, udp, b"before\n");
    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", IO_TIMEOUT)
        .expect("no `shutting down` line");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut echoed_after = 0;
    loop {
        client.send(b"after\n").unwrap();
        let mut buf = [0; 64];
        match client.recv(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            Ok(_) => echoed_after += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("after SIGTERM: expected ECONNREFUSED, got {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "UDP socket still open 10 s after SIGTERM"
        );
    }
    assert_eq!(echoed_after, 0, "datagrams echoed after `shutting down`");
    // The drain goes on for TCP: the held client is still echoed.
    echo(&mut held, b"still draining\n");
    held.shutdown(std::net::Shutdown::Write).unwrap();
    expect_eof(&mut held);
    assert!(server.expect_exit(IO_TIMEOUT).success());
    let st = server.final_stats();
    assert_eq!((st["udp_in"], st["udp_out"], st["udp_dropped"]), (1, 1, 0));
}
