//! Streaming clients for lossy links: many nonblocking connections on one
//! mio poll that all connect at once (a lost SYN costs one client its
//! retry, not everyone behind it), each writing its q-free random bytes as
//! fast as the connection takes them while reading its echo; both
//! directions hashed. When a client has sent everything it half-closes at
//! once, when released, or never (then the server's close ends it).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use crate::common::{qfree_fill, Rng, StreamHash};

/// When a client that has sent everything shuts its write side.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shut {
    /// At once.
    WhenSent,
    /// Once `release` is called.
    Held,
    /// Never: the client reads until the server closes.
    Never,
}

pub struct Flow {
    stream: Option<MioStream>,
    pub started: Instant,
    pub connected: Option<Instant>,
    pub total: u64,
    pub sent: u64,
    data: Rng,
    chunk: Vec<u8>,
    off: usize,
    can_write: bool,
    pub sent_hash: StreamHash,
    pub recv_hash: StreamHash,
    pub wr_shut: bool,
    /// When the last byte of the echo arrived.
    pub echoed_at: Option<Instant>,
    /// When the server's FIN arrived.
    pub eof_at: Option<Instant>,
    pub err: Option<String>,
}

impl Flow {
    pub fn finished(&self) -> bool {
        self.eof_at.is_some() || self.err.is_some()
    }

    pub fn connect_time(&self) -> Option<Duration> {
        self.connected.map(|t| t - self.started)
    }

    /// Everything sent came back, byte for byte (so far: before `finished`
    /// more may still be owed).
    pub fn echo_complete(&self) -> bool {
        self.sent == self.total
            && self.recv_hash.len == self.sent_hash.len
            && self.recv_hash.finish() == self.sent_hash.finish()
    }

    /// What went wrong, if anything: an error, no EOF, or an echo that is
    /// not exactly what was sent.
    pub fn failure(&self) -> Option<String> {
        if let Some(e) = &self.err {
            Some(e.clone())
        } else if self.eof_at.is_none() {
            Some(format!(
                "no EOF (sent {} of {}, echo {})",
                self.sent, self.total, self.recv_hash.len
            ))
        } else if self.sent < self.total {
            Some(format!("EOF after sending {} of {}", self.sent, self.total))
        } else if !self.echo_complete() {
            Some(format!(
                "sent {} bytes, echo {} bytes{}, then EOF",
                self.sent_hash.len,
                self.recv_hash.len,
                if self.recv_hash.len == self.sent_hash.len {
                    " that differ"
                } else {
                    ""
                }
            ))
        } else {
            None
        }
    }

    /// Bytes sent and never echoed.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.recv_hash.len)
    }
}

pub struct Flows {
    poll: Poll,
    events: Events,
    pub flows: Vec<Flow>,
    buf: Vec<u8>,
    chunk_size: usize,
    shut: Shut,
    live: usize,
}

impl Flows {
    /// Starts `n` nonblocking connects to `addr` back to back; each client
    /// will send `total` bytes in writes of up to `chunk_size`. The clients
    /// already connected are served between batches of connects, so their
    /// connect times are not stretched by the issuing of the rest.
    pub fn connect(
        addr: SocketAddr,
        n: usize,
        total: u64,
        chunk_size: usize,
        shut: Shut,
        seed: u64,
    ) -> Flows {
        let mut run = Flows {
            poll: Poll::new().expect("mio poll"),
            events: Events::with_capacity(1024),
            flows: Vec::with_capacity(n),
            buf: vec![0u8; 256 * 1024],
            chunk_size,
            shut,
            live: 0,
        };
        let mut seeds = Rng::new(seed);
        for i in 0..n {
            let started = Instant::now();
            let mut stream =
                MioStream::connect(addr).unwrap_or_else(|e| panic!("connect client {i}: {e}"));
            stream.set_nodelay(true).expect("nodelay");
            run.poll
                .registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .expect("register");
            run.flows.push(Flow {
                stream: Some(stream),
                started,
                connected: None,
                total,
                sent: 0,
                data: Rng::new(seeds.next_u64()),
                chunk: Vec::new(),
                off: 0,
                can_write: false,
                sent_hash: StreamHash::default(),
                recv_hash: StreamHash::default(),
                wr_shut: false,
                echoed_at: None,
                eof_at: None,
                err: None,
            });
            run.live += 1;
            if i % 32 == 31 {
                run.step(Duration::ZERO);
            }
        }
        run
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Every client has handed all its bytes to the kernel.
    pub fn all_sent(&self) -> bool {
        self.flows.iter().all(|f| f.sent == f.total)
    }

    pub fn sent(&self) -> u64 {
        self.flows.iter().map(|f| f.sent).sum()
    }

    pub fn echoed(&self) -> u64 {
        self.flows.iter().map(|f| f.recv_hash.len).sum()
    }

    /// Held clients half-close now (those done sending) or once done.
    pub fn release(&mut self) {
        self.shut = Shut::WhenSent;
        for i in 0..self.flows.len() {
            self.write_some(i);
        }
    }

    fn fail(&mut self, i: usize, e: String) {
        let f = &mut self.flows[i];
        if f.finished() {
            return;
        }
        f.err = Some(e);
        self.close(i);
    }

    fn close(&mut self, i: usize) {
        if let Some(mut s) = self.flows[i].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
            self.live -= 1;
        }
    }

    /// A connect in progress reports writable (or an error) when it ends.
    fn check_connected(&mut self, i: usize) -> bool {
        let f = &mut self.flows[i];
        if f.connected.is_some() {
            return true;
        }
        let Some(s) = f.stream.as_ref() else {
            return false;
        };
        let result = match s.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => s.peer_addr().map(|_| ()),
        };
        match result {
            Ok(()) => {
                f.connected = Some(Instant::now());
                true
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => false,
            Err(e) => {
                let e = format!("connect: {e}");
                self.fail(i, e);
                false
            }
        }
    }

    fn write_some(&mut self, i: usize) {
        let (shut, chunk_size) = (self.shut, self.chunk_size);
        let f = &mut self.flows[i];
        while f.can_write && !f.wr_shut && !f.finished() {
            if f.off == f.chunk.len() {
                if f.sent == f.total {
                    if shut == Shut::WhenSent {
                        if let Err(e) = f.stream.as_ref().unwrap().shutdown(Shutdown::Write) {
                            let e = format!("shutdown(Write): {e}");
                            self.fail(i, e);
                            return;
                        }
                        f.wr_shut = true;
                    }
                    return;
                }
                let len = (f.total - f.sent).min(chunk_size as u64) as usize;
                f.chunk.resize(len, 0);
                qfree_fill(&mut f.data, &mut f.chunk);
                f.off = 0;
            }
            match f.stream.as_mut().unwrap().write(&f.chunk[f.off..]) {
                Ok(n) => {
                    f.sent_hash.update(&f.chunk[f.off..f.off + n]);
                    f.off += n;
                    f.sent += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => f.can_write = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let e = format!("write after {} bytes: {e}", f.sent);
                    self.fail(i, e);
                    return;
                }
            }
        }
    }

    fn read_some(&mut self, i: usize) {
        loop {
            let f = &mut self.flows[i];
            let Some(s) = f.stream.as_mut() else {
                return;
            };
            match s.read(&mut self.buf) {
                Ok(0) => {
                    f.eof_at = Some(Instant::now());
                    self.close(i);
                    return;
                }
                Ok(n) => {
                    f.recv_hash.update(&self.buf[..n]);
                    if f.sent == f.total && f.recv_hash.len == f.total {
                        f.echoed_at = Some(Instant::now());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let e = format!(
                        "read after {} of {} sent bytes echoed: {e}",
                        f.recv_hash.len, f.sent
                    );
                    self.fail(i, e);
                    return;
                }
            }
        }
    }

    /// One poll round, at most `wait` long.
    pub fn step(&mut self, wait: Duration) {
        let ready = crate::common::drivers::poll_ready(&mut self.poll, &mut self.events, wait);
        for (i, readable, writable) in ready {
            if !self.check_connected(i) {
                continue;
            }
            if readable {
                self.read_some(i);
            }
            if writable && !self.flows[i].finished() {
                self.flows[i].can_write = true;
                self.write_some(i);
            }
        }
    }

    /// Runs until every client finished, `stop` holds (true), or `deadline`
    /// passes (false).
    pub fn run_until(&mut self, deadline: Instant, mut stop: impl FnMut(&Flows) -> bool) -> bool {
        loop {
            if self.live == 0 || stop(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.step((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// The clients that did not end well, described (at most `max`), and
    /// how many there are.
    pub fn failures(&self, max: usize) -> (usize, Vec<String>) {
        let all: Vec<String> = self
            .flows
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.failure().map(|e| format!("#{i}: {e}")))
            .collect();
        (all.len(), all.into_iter().take(max).collect())
    }
}
