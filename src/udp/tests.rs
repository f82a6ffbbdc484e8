//! `UdpEcho` on real loopback sockets: the test plays the reactor (a mio
//! poll for the readiness edge, then `serve`) and a plain std socket plays
//! the client. Every wait is bounded.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::*;

const BOUND: Duration = Duration::from_secs(10);

/// The echo socket on `addr`, registered with its own poll.
struct Server {
    echo: UdpEcho,
    addr: SocketAddr,
    poll: Poll,
    events: Events,
    buf: Vec<u8>,
    stats: Stats,
}

impl Server {
    fn bind(addr: &str) -> Server {
        let addr: SocketAddr = addr.parse().unwrap();
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            None,
        )
        .unwrap();
        // Room for the share test's 100 small datagrams at once.
        socket.set_recv_buffer_size(1 << 20).unwrap();
        socket.set_nonblocking(true).unwrap();
        socket.bind(&addr.into()).unwrap();
        let std: StdUdpSocket = socket.into();
        let addr = std.local_addr().unwrap();
        let mut echo = UdpEcho::new(UdpSocket::from_std(std));
        let poll = Poll::new().unwrap();
        poll.registry()
            .register(echo.socket_mut(), Token(0), Interest::READABLE)
            .unwrap();
        Server {
            echo,
            addr,
            poll,
            events: Events::with_capacity(8),
            buf: vec![0; BUFFER_BYTES],
            stats: Stats::default(),
        }
    }

    /// Waits (bounded) for the next readiness event and returns whether it
    /// said error; the socket is noted readable, as the reactor would.
    fn wait_event(&mut self) -> bool {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no readiness event within {BOUND:?}");
            match self.poll.poll(&mut self.events, Some(left)) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                result => result.unwrap(),
            }
            if let Some(event) = self.events.iter().next() {
                self.echo.note_readable();
                return event.is_error();
            }
        }
    }

    fn serve(&mut self) -> Next {
        self.echo.serve(&mut self.buf, &mut self.stats)
    }

    /// Bytes queued for reading (`rx_queue` of /proc/net/udp{,6}): the
    /// kernel's memory for them, which is the same for equal datagrams.
    fn rx_queue(&self) -> u64 {
        let table = if self.addr.is_ipv4() { "udp" } else { "udp6" };
        let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap();
        let port = format!(":{:04X}", self.addr.port());
        let line = text
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(&port))
            })
            .unwrap_or_else(|| panic!("no socket on port {} in /proc/net/{table}", self.addr));
        let queues = line.split_whitespace().nth(4).unwrap();
        u64::from_str_radix(queues.split(':').nth(1).unwrap(), 16).unwrap()
    }

    fn wait_rx_queue(&self, at_least: u64) -> u64 {
        let deadline = Instant::now() + BOUND;
        loop {
            let queued = self.rx_queue();
            if queued >= at_least {
                return queued;
            }
            assert!(
                Instant::now() < deadline,
                "only {queued} of {at_least} bytes queued after {BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn client(addr: &str) -> StdUdpSocket {
    let socket = StdUdpSocket::bind(addr).unwrap();
    socket.set_read_timeout(Some(BOUND)).unwrap();
    socket
}

/// The next datagram `client` receives, and where it came from.
fn receive(client: &StdUdpSocket) -> (Vec<u8>, SocketAddr) {
    // One byte more than any datagram: a longer echo would show.
    let mut buf = vec![0; BUFFER_BYTES + 1];
    let (n, from) = client
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no echo within {BOUND:?}: {e}"));
    buf.truncate(n);
    (buf, from)
}

/// Every byte value, in a pattern that differs from one size to the next.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

fn echoes_each_size(server: &str, client_addr: &str, sizes: &[usize]) {
    let mut server = Server::bind(server);
    let client = client(client_addr);
    for (i, &size) in sizes.iter().enumerate() {
        let sent = payload(size);
        client.send_to(&sent, server.addr).unwrap();
        server.wait_event();
        assert_eq!(server.serve(), Next::Wait, "{size} bytes: drained");
        let (got, from) = receive(&client);
        assert_eq!(from, server.addr, "{size} bytes: echo source");
        assert_eq!(got.len(), size, "{size} bytes: echo length");
        assert!(got == sent, "{size} bytes: echo differs");
        let n = i as u64 + 1;
        assert_eq!((server.stats.udp_in, server.stats.udp_out), (n, n));
    }
    assert_eq!(server.stats.udp_dropped + server.stats.udp_refused, 0);
}

#[test]
fn echoes_every_size_byte_exact_over_ipv4() {
    echoes_each_size("127.0.0.1:0", "127.0.0.1:0", &[0, 1, 1472, 65507]);
}

#[test]
fn echoes_every_size_byte_exact_over_ipv6() {
    echoes_each_size("[::1]:0", "[::1]:0", &[0, 1, 1232, 65507, 65527]);
}

/// The buffer is exactly the largest datagram: one byte more cannot be sent
/// over either family, so none can arrive cut.
#[test]
fn no_datagram_is_larger_than_the_buffer() {
    for (to, largest) in [("127.0.0.1:9", 65507), ("[::1]:9", BUFFER_BYTES)] {
        let to: SocketAddr = to.parse().unwrap();
        let from = if to.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let socket = client(from);
        let err = socket.send_to(&vec![0; largest + 1], to).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EMSGSIZE),
            "sending {} bytes to {to}: {err}",
            largest + 1
        );
    }
}

#[test]
fn refuses_exactly_the_ports_of_services_that_answer() {
    for port in 0..=u16::MAX {
        let expected = [0, 7, 13, 17, 19, 37].contains(&port);
        for ip in ["127.0.0.1", "::1"] {
            let source = SocketAddr::new(ip.parse().unwrap(), port);
            assert_eq!(refuses(source), expected, "source {source}");
        }
    }
}

/// 100 datagrams queued: one serve echoes exactly 64 and yields, the next
/// the other 36 and waits; a third (no new event) touches nothing.
#[test]
fn serves_at_most_its_share_per_turn() {
    let mut server = Server::bind("127.0.0.1:0");
    let client = client("127.0.0.1:0");
    let datagram = |i: u32| format!("datagram {i:03}").into_bytes();
    client.send_to(&datagram(0), server.addr).unwrap();
    let each = server.wait_rx_queue(1);
    for i in 1..100 {
        client.send_to(&datagram(i), server.addr).unwrap();
    }
    server.wait_rx_queue(100 * each);
    server.wait_event();
    assert_eq!(server.serve(), Next::Yield);
    assert_eq!(server.stats.udp_out, u64::from(DATAGRAMS_PER_TURN));
    assert_eq!(server.serve(), Next::Wait);
    assert_eq!((server.stats.udp_in, server.stats.udp_out), (100, 100));
    assert_eq!(server.serve(), Next::Wait);
    assert_eq!(server.stats.udp_in, 100);
    for i in 0..100 {
        assert_eq!(receive(&client).0, datagram(i), "echo {i}, in order");
    }
}

/// An ICMP error an echo provoked is reported by the next receive (first,
/// before the datagrams queued behind it); serving goes on past it.
#[test]
fn a_pending_socket_error_does_not_stop_serving() {
    let mut server = Server::bind("127.0.0.1:0");
    let gone = client("127.0.0.1:0");
    let port_of_gone = gone.local_addr().unwrap();
    drop(gone);
    // Only a connected UDP socket is told of ICMP errors.
    server.echo.socket_mut().connect(port_of_gone).unwrap();
    server
        .echo
        .socket_mut()
        .send_to(b"to a closed port", port_of_gone)
        .unwrap();
    assert!(server.wait_event(), "no error event after port unreachable");
    let back = client(&port_of_gone.to_string());
    back.send_to(b"after the error", server.addr).unwrap();
    server.wait_rx_queue(1);
    assert_eq!(server.serve(), Next::Wait);
    let (got, _) = receive(&back);
    assert_eq!(got, b"after the error");
    assert_eq!((server.stats.udp_in, server.stats.udp_out), (1, 1));
}
