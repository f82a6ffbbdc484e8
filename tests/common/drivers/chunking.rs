//! The random-chunking driver: many nonblocking clients on one mio poll,
//! each sending q-free random bytes in random chunks with random pauses while
//! reading its echo concurrently; both directions are hashed, so a lost,
//! duplicated or reordered byte anywhere shows.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::super::{qfree_fill, try_connect, Rng, StreamHash};

const KIB: u64 = 1024;

/// One client of a `ChunkRun`.
pub struct ChunkConn {
    stream: Option<MioStream>,
    /// Bytes this client sends in all (random, up to the run's maximum).
    pub total: u64,
    /// Bytes written so far.
    pub sent: u64,
    data: Rng,
    sched: Rng,
    chunk: Vec<u8>,
    off: usize,
    resume_at: Option<Instant>,
    can_write: bool,
    /// What was sent and what came back, hashed as streams.
    pub sent_hash: StreamHash,
    pub recv_hash: StreamHash,
    /// Everything is sent and the write side is shut.
    pub wr_shut: bool,
    /// The server closed after the whole echo.
    pub eof: bool,
    /// The first error (write, read); the connection stops there.
    pub err: Option<String>,
    /// Chunks started and pauses taken (for the figures).
    pub chunks: u64,
    pub pauses: u64,
}

impl ChunkConn {
    pub fn finished(&self) -> bool {
        self.eof || self.err.is_some()
    }
}

/// Many nonblocking clients on one mio poll, each sending q-free random
/// bytes in random chunks (1 B..64 KiB) with random pauses while reading its
/// echo concurrently; both directions hashed.
pub struct ChunkRun {
    poll: Poll,
    events: Events,
    pub conns: Vec<ChunkConn>,
    buf: Vec<u8>,
    max_pause_ms: u64,
    /// Set by a scenario to stop every client from writing (reads go on).
    pub stopped: bool,
    live: usize,
}

impl ChunkRun {
    /// Connects `n` clients; each will send a random total of 0..=`max_total`
    /// bytes and pause up to `max_pause_ms` after about a quarter of its
    /// chunks. `seed` fixes the data and the schedule.
    pub fn new(
        addr: SocketAddr,
        n: usize,
        max_total: u64,
        max_pause_ms: u64,
        seed: u64,
    ) -> ChunkRun {
        let poll = Poll::new().unwrap();
        let mut seeds = Rng::new(seed);
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let s = try_connect(addr, Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("connect client {i}: {e}"));
            s.set_nonblocking(true).unwrap();
            let mut stream = MioStream::from_std(s);
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .unwrap();
            let total = seeds.range(0, max_total);
            conns.push(ChunkConn {
                stream: Some(stream),
                total,
                sent: 0,
                data: Rng::new(seeds.next_u64()),
                sched: Rng::new(seeds.next_u64()),
                chunk: Vec::new(),
                off: 0,
                resume_at: None,
                can_write: false,
                sent_hash: StreamHash::default(),
                recv_hash: StreamHash::default(),
                wr_shut: false,
                eof: false,
                err: None,
                chunks: 0,
                pauses: 0,
            });
        }
        ChunkRun {
            poll,
            events: Events::with_capacity(1024),
            conns,
            buf: vec![0u8; 64 * 1024],
            max_pause_ms,
            stopped: false,
            live: n,
        }
    }

    fn write_some(&mut self, i: usize, now: Instant) {
        let max_pause = self.max_pause_ms;
        let stopped = self.stopped;
        let c = &mut self.conns[i];
        loop {
            if stopped || c.wr_shut || !c.can_write || c.finished() {
                return;
            }
            if let Some(t) = c.resume_at {
                if now < t {
                    return;
                }
                c.resume_at = None;
            }
            if c.off == c.chunk.len() {
                if c.sent == c.total {
                    let _ = c.stream.as_ref().unwrap().shutdown(Shutdown::Write);
                    c.wr_shut = true;
                    return;
                }
                let len = c.sched.log_size(64 * KIB).min(c.total - c.sent) as usize;
                c.chunk.resize(len, 0);
                qfree_fill(&mut c.data, &mut c.chunk);
                c.off = 0;
                c.chunks += 1;
            }
            match c.stream.as_mut().unwrap().write(&c.chunk[c.off..]) {
                Ok(n) => {
                    c.sent_hash.update(&c.chunk[c.off..c.off + n]);
                    c.off += n;
                    c.sent += n as u64;
                    if c.off == c.chunk.len() && c.sched.chance(1, 4) {
                        c.pauses += 1;
                        c.resume_at =
                            Some(now + Duration::from_millis(c.sched.range(0, max_pause)));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.can_write = false;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    c.err = Some(format!("write after {} bytes: {e}", c.sent));
                    return;
                }
            }
        }
    }

    fn read_some(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.finished() {
            return;
        }
        loop {
            match c.stream.as_mut().unwrap().read(&mut self.buf) {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                Ok(n) => c.recv_hash.update(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    c.err = Some(format!(
                        "read after {} of {} sent bytes echoed: {e}",
                        c.recv_hash.len, c.sent
                    ));
                    break;
                }
            }
        }
        // Finished: release the socket at once.
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.live -= 1;
    }

    /// Stops every client from writing and closes the write side of those
    /// not yet finished: they are done, and say so with a FIN.
    pub fn finish_writing(&mut self) {
        self.stopped = true;
        for c in &mut self.conns {
            if let (false, Some(stream)) = (c.wr_shut, &c.stream) {
                let _ = stream.shutdown(Shutdown::Write);
                c.wr_shut = true;
            }
        }
    }

    /// One poll round; services every ready connection and every pause that ended.
    pub fn step(&mut self, max_wait: Duration) {
        let now = Instant::now();
        let mut wait = max_wait;
        if !self.stopped {
            for c in &self.conns {
                if let Some(t) = c.resume_at {
                    if c.can_write && !c.finished() {
                        wait = wait.min(t.saturating_duration_since(now));
                    }
                }
            }
        }
        let ready = super::poll_ready(&mut self.poll, &mut self.events, wait);
        let now = Instant::now();
        for (i, r, w) in ready {
            if r {
                self.read_some(i);
            }
            if w && !self.conns[i].finished() {
                self.conns[i].can_write = true;
                self.write_some(i, now);
            }
        }
        if !self.stopped {
            for i in 0..self.conns.len() {
                let c = &self.conns[i];
                if c.can_write && !c.finished() && c.resume_at.is_none_or(|t| t <= now) {
                    self.write_some(i, now);
                }
            }
        }
    }

    /// Steps until every connection finished or `stop` says so; panics (with
    /// the first unfinished connections) at `deadline`.
    pub fn run_until(&mut self, deadline: Instant, mut stop: impl FnMut(&ChunkRun) -> bool) {
        while self.live > 0 && !stop(self) {
            if Instant::now() > deadline {
                let stuck: Vec<String> = self
                    .conns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.finished())
                    .take(5)
                    .map(|(i, c)| {
                        format!(
                            "#{i}: total {} sent {} echoed {} wr_shut {}",
                            c.total, c.sent, c.recv_hash.len, c.wr_shut
                        )
                    })
                    .collect();
                panic!(
                    "{} of {} connections not finished by the deadline; first: {stuck:?}",
                    self.live,
                    self.conns.len()
                );
            }
            self.step(Duration::from_millis(50));
        }
    }

    /// Bytes sent and bytes echoed back, over all connections.
    pub fn sent(&self) -> u64 {
        self.conns.iter().map(|c| c.sent).sum()
    }

    pub fn echoed(&self) -> u64 {
        self.conns.iter().map(|c| c.recv_hash.len).sum()
    }

    /// Every connection: no error, EOF seen, echo identical to what was sent.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, c) in self.conns.iter().enumerate() {
            if let Some(e) = &c.err {
                out.push(format!("#{i}: {e}"));
            } else if !c.eof {
                out.push(format!("#{i}: no EOF"));
            } else if c.recv_hash.len != c.sent_hash.len {
                out.push(format!(
                    "#{i}: sent {} bytes, echo {} bytes",
                    c.sent_hash.len, c.recv_hash.len
                ));
            } else if c.recv_hash.finish() != c.sent_hash.finish() {
                out.push(format!("#{i}: echo hash differs ({} bytes)", c.sent));
            }
        }
        out
    }
}
