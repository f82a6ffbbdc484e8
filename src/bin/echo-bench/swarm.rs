//! The swarm: many nonblocking clients on one mio poll, each sending one
//! line and reading its echo, then closing, or holding the connection until
//! released (to keep a server at a limit: fds, connections, idle memory).
//!
//! One copy for the benchmark (`burst`, `hold`) and the integration tests
//! (`tests/common/drivers/swarm.rs` includes this file), so it needs nothing
//! but std and the package's own dependencies (mio, socket2, libc), and it
//! panics only in `Swarm::new`, the tests' constructor.
//!
//! Thousands of connects from one address to one server exhaust the
//! kernel's search for a free ephemeral port: past ~14000 sockets a
//! `connect` can take seconds (Linux gives `connect` one parity of the
//! port range). `SwarmOpts::per_source` spreads the clients over loopback
//! source addresses (127.0.0.1, 127.0.0.2, ...: all of 127.0.0.0/8 is
//! loopback): each client binds to its address with port 0 before
//! connecting, and the kernel finds a port free for that address at once,
//! since each address holds only a few thousand.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A nonblocking TCP socket for `server`'s family, with TCP_NODELAY, bound
/// to `source` (any free port of it) when one is given.
pub fn client_socket(server: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        s.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    Ok(s)
}

/// The loopback source address of client `i` when each address takes
/// `per_source` clients: 127.0.0.1 for the first ones, then .2, ... (None
/// when not spreading, or for an IPv6 server: ::1 is the only loopback).
pub fn source_of(server: SocketAddr, i: usize, per_source: usize) -> Option<IpAddr> {
    if per_source == 0 || !server.is_ipv4() {
        return None;
    }
    let n = (1 + i / per_source).min(0x00ff_fffe) as u32;
    Some(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n)))
}

/// Starts a nonblocking connect; the stream turns writable once connected.
pub fn start_connect(sock: Socket, server: SocketAddr) -> io::Result<TcpStream> {
    match sock.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
}

/// A nonblocking connect's outcome, on an event: Ok(true) connected,
/// Ok(false) still in progress, Err failed.
pub fn connect_done(s: &TcpStream) -> io::Result<bool> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// How a swarm connects and talks.
#[derive(Clone, Debug)]
pub struct SwarmOpts {
    /// Clients per loopback source address; 0 leaves the source to the kernel.
    pub per_source: usize,
    /// At most this many connects in progress at once; 0 issues them all
    /// back to back (a burst).
    pub in_flight: usize,
    /// Send the line as soon as connected; else only on `send_all`.
    pub send_on_connect: bool,
    /// Keep each connection open after its echo, until `release`.
    pub hold: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Socket made, connect not issued yet.
    Ready,
    Connecting,
    Connected,
    Echoed,
    Failed,
}

struct SwarmClient {
    sock: Option<Socket>,
    stream: Option<TcpStream>,
    msg: Vec<u8>,
    written: usize,
    /// Echo bytes received, each equal to the line's.
    matched: usize,
    phase: Phase,
    /// The line goes out once connected.
    armed: bool,
    connect_at: Option<Instant>,
    connected_at: Option<Instant>,
    echoed_at: Option<Instant>,
    err: Option<String>,
}

/// When one client connected and got its echo, from its own connect call.
#[derive(Clone, Copy, Debug)]
pub struct ClientTimes {
    pub connect_at: Instant,
    pub connected: Option<Duration>,
    pub echoed: Option<Duration>,
}

/// Many nonblocking clients on one mio poll that connect, send one line,
/// read its echo and close, or hold the connection until `release`.
pub struct Swarm {
    server: SocketAddr,
    poll: Poll,
    events: Events,
    clients: Vec<SwarmClient>,
    opts: SwarmOpts,
    next_connect: usize,
    connecting: usize,
    /// Clients that got their whole echo, and clients that failed.
    pub echoed: usize,
    pub failed: usize,
}

impl Swarm {
    /// The tests' swarm: `n` connects started at once from the default
    /// source, each line sent when connected; with `hold`, connections stay
    /// open after the echo. Panics when a socket cannot be made.
    pub fn new(addr: SocketAddr, n: usize, hold: bool) -> Swarm {
        let opts = SwarmOpts {
            per_source: 0,
            in_flight: 0,
            send_on_connect: true,
            hold,
        };
        let mut swarm = Swarm::prepare(addr, n, opts, |i| {
            format!("swarm client {i:05} says hello\n").into_bytes()
        })
        .expect("nonblocking socket");
        swarm.connect_more();
        swarm
    }

    /// Makes every client's socket (bound to its source address) without
    /// connecting: `connect_more` issues the connects, so a burst's sockets
    /// cost nothing while its connects go out.
    pub fn prepare(
        server: SocketAddr,
        n: usize,
        opts: SwarmOpts,
        line: impl Fn(usize) -> Vec<u8>,
    ) -> io::Result<Swarm> {
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let sock = client_socket(server, source_of(server, i, opts.per_source))?;
            clients.push(SwarmClient {
                sock: Some(sock),
                stream: None,
                msg: line(i),
                written: 0,
                matched: 0,
                phase: Phase::Ready,
                armed: opts.send_on_connect,
                connect_at: None,
                connected_at: None,
                echoed_at: None,
                err: None,
            });
        }
        Ok(Swarm {
            server,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            clients,
            opts,
            next_connect: 0,
            connecting: 0,
            echoed: 0,
            failed: 0,
        })
    }

    /// Issues connects, back to back, up to the in-flight bound (all of
    /// them without one). `step` calls it too.
    pub fn connect_more(&mut self) {
        while self.next_connect < self.clients.len()
            && (self.opts.in_flight == 0 || self.connecting < self.opts.in_flight)
        {
            let i = self.next_connect;
            self.next_connect += 1;
            let Some(sock) = self.clients[i].sock.take() else {
                continue;
            };
            self.clients[i].connect_at = Some(Instant::now());
            let started = start_connect(sock, self.server).and_then(|mut s| {
                self.poll
                    .registry()
                    .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .map(|()| s)
            });
            match started {
                Ok(s) => {
                    self.clients[i].stream = Some(s);
                    self.clients[i].phase = Phase::Connecting;
                    self.connecting += 1;
                }
                Err(e) => self.fail(i, format!("connect: {e}")),
            }
        }
    }

    /// Every connect issued and none in progress.
    pub fn connects_done(&self) -> bool {
        self.next_connect == self.clients.len() && self.connecting == 0
    }

    /// Clients connected now (echoed or not, still open).
    pub fn open(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.stream.is_some() && matches!(c.phase, Phase::Connected | Phase::Echoed))
            .count()
    }

    /// Closing the socket also takes it out of the poll (its token is
    /// never reused, and `service` skips a closed client's late events).
    fn close(&mut self, i: usize) {
        self.clients[i].stream = None;
    }

    fn fail(&mut self, i: usize, e: String) {
        let c = &mut self.clients[i];
        if matches!(c.phase, Phase::Failed | Phase::Echoed) {
            return;
        }
        if c.phase == Phase::Connecting {
            self.connecting -= 1;
        }
        c.phase = Phase::Failed;
        c.err = Some(e);
        self.failed += 1;
        self.close(i);
    }

    fn service(&mut self, i: usize) {
        if self.clients[i].stream.is_none() {
            return;
        }
        if self.clients[i].phase == Phase::Connecting {
            // A client with its line ready lets the write tell: it fails
            // with WouldBlock while the handshake is in flight and with the
            // connect's error if it failed. One syscall instead of two per
            // client matters when one thread drives a burst of thousands.
            let connected = if self.clients[i].armed {
                let c = &mut self.clients[i];
                match c.stream.as_mut().expect("open client").write(&c.msg) {
                    Ok(n) => {
                        c.written = n;
                        Ok(true)
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
                    Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                }
            } else {
                connect_done(self.clients[i].stream.as_ref().expect("open client"))
            };
            match connected {
                Ok(true) => {
                    let c = &mut self.clients[i];
                    c.phase = Phase::Connected;
                    c.connected_at = Some(Instant::now());
                    self.connecting -= 1;
                }
                Ok(false) => return,
                Err(e) => return self.fail(i, format!("connect: {e}")),
            }
        }
        if self.clients[i].phase != Phase::Connected || !self.clients[i].armed {
            return;
        }
        if let Err(e) = self.write_rest(i) {
            return self.fail(i, e);
        }
        self.read_echo(i);
    }

    fn write_rest(&mut self, i: usize) -> Result<(), String> {
        let c = &mut self.clients[i];
        let s = c.stream.as_mut().expect("open client");
        while c.written < c.msg.len() {
            match s.write(&c.msg[c.written..]) {
                Ok(n) => c.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    fn read_echo(&mut self, i: usize) {
        let mut buf = [0u8; 256];
        loop {
            let c = &mut self.clients[i];
            let s = c.stream.as_mut().expect("open client");
            match s.read(&mut buf) {
                Ok(0) => {
                    let got = c.matched;
                    return self.fail(i, format!("EOF after {got} echo bytes"));
                }
                Ok(n) => {
                    let end = c.matched + n;
                    if end > c.written || buf[..n] != c.msg[c.matched..end] {
                        return self.fail(i, "echo differs".to_string());
                    }
                    c.matched = end;
                    if end == c.msg.len() {
                        c.phase = Phase::Echoed;
                        c.echoed_at = Some(Instant::now());
                        self.echoed += 1;
                        if !self.opts.hold {
                            self.close(i);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("read: {e}")),
            }
        }
    }

    /// One poll round: serves every client that became ready, then issues
    /// the connects the in-flight bound now allows.
    pub fn step(&mut self, wait: Duration) {
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for i in ready {
            self.service(i);
        }
        self.connect_more();
    }

    /// Sends the line on every connected client that has not sent it yet
    /// (a swarm made without `send_on_connect`); later connects send at once.
    pub fn send_all(&mut self) {
        self.opts.send_on_connect = true;
        for i in 0..self.clients.len() {
            if self.clients[i].armed {
                continue;
            }
            self.clients[i].armed = true;
            if self.clients[i].phase == Phase::Connected {
                self.service(i);
            }
        }
    }

    /// Fails every client still without its echo `limit` after its own
    /// connect call (a client whose connect is not issued yet is not late).
    pub fn expire(&mut self, limit: Duration) {
        let now = Instant::now();
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            let late = matches!(c.phase, Phase::Connecting | Phase::Connected)
                && c.connect_at.is_some_and(|t| now.duration_since(t) >= limit);
            if late {
                self.fail(
                    i,
                    format!("no echo within {:.0} s of its connect", limit.as_secs_f64()),
                );
            }
        }
    }

    /// Every client either echoed or failed.
    pub fn settled(&self) -> bool {
        self.echoed + self.failed == self.clients.len()
    }

    /// Close every held connection that got its echo; later ones close at once.
    pub fn release(&mut self) {
        self.opts.hold = false;
        for i in 0..self.clients.len() {
            if self.clients[i].phase == Phase::Echoed {
                self.close(i);
            }
        }
    }

    /// The first `max` client errors, for assertion messages.
    pub fn errors(&self, max: usize) -> Vec<String> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.err.as_ref().map(|e| format!("#{i}: {e}")))
            .take(max)
            .collect()
    }

    /// How many clients failed for each reason.
    pub fn error_counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in self.clients.iter().filter_map(|c| c.err.as_ref()) {
            *out.entry(e.clone()).or_default() += 1;
        }
        out
    }

    /// Each client's times, for those whose connect was issued.
    pub fn times(&self) -> Vec<ClientTimes> {
        self.clients
            .iter()
            .filter_map(|c| {
                let at = c.connect_at?;
                Some(ClientTimes {
                    connect_at: at,
                    connected: c.connected_at.map(|t| t - at),
                    echoed: c.echoed_at.map(|t| t - at),
                })
            })
            .collect()
    }
}
