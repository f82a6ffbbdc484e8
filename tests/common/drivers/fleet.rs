//! `Fleet`: never-readers, many nonblocking clients on one poll that write
//! and do not read their echo until told to, each stream checked byte by
//! byte when it comes back. Small socket buffers and segments keep the
//! kernel's share small, so the server's memory budget is what holds them.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::super::{pattern, ServerProcess, Stats, IO_TIMEOUT};

/// The never-readers' data repeats with this period: a prime, so that no
/// read or write size lines up with it and misplaced bytes differ.
pub const PERIOD: usize = 65_521;
pub const CHUNK: usize = 32 * 1024;

/// One client that writes and does not read until told to.
pub struct NeverReader {
    pub stream: MioStream,
    /// Where in the fleet's block this connection's stream starts: each
    /// connection's bytes differ from its neighbours'.
    pub start: usize,
    pub sent: u64,
    pub echoed: u64,
    /// Told to read its echo (and half-closed).
    pub reading: bool,
    pub eof: bool,
}

/// Never-readers on one thread, nonblocking, driven by one poll.
pub struct Fleet {
    pub poll: Poll,
    pub events: Events,
    /// `PERIOD` bytes with no newline (the quit rule stays out of it), then
    /// their first `CHUNK` again, so any chunk of the stream is one slice.
    pub block: Vec<u8>,
    pub conns: Vec<NeverReader>,
}

/// A client socket with small buffers and segments: with loopback's 64 KiB
/// segments the kernel holds about 8 MiB of a never-reader's data before
/// the server holds any echo, with these about 0.3 MiB, so thousands reach
/// the budget without pushing the machine's TCP memory into pressure.
pub fn small_client_socket(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_recv_buffer_size(4096)?;
    socket.set_send_buffer_size(4096)?;
    socket.set_tcp_mss(1000)?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Fleet {
    pub fn connect(addr: SocketAddr, n: usize) -> Fleet {
        let poll = Poll::new().unwrap();
        let mut block = pattern(PERIOD, 0x6d65_6d6f);
        block.extend_from_within(..CHUNK);
        let conns = (0..n)
            .map(|i| {
                let std = small_client_socket(addr)
                    .unwrap_or_else(|e| panic!("never-reader {i}: connect: {e}"));
                let mut stream = MioStream::from_std(std);
                let interest = Interest::READABLE | Interest::WRITABLE;
                poll.registry()
                    .register(&mut stream, Token(i), interest)
                    .unwrap();
                NeverReader {
                    stream,
                    start: i * 7919 % PERIOD,
                    sent: 0,
                    echoed: 0,
                    reading: false,
                    eof: false,
                }
            })
            .collect();
        let events = Events::with_capacity(1024);
        Fleet {
            poll,
            events,
            block,
            conns,
        }
    }

    /// Waits up to `timeout` for events (none if a signal interrupts it).
    pub fn wait(&mut self, timeout: Duration) {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => self.events.clear(),
            result => result.expect("poll"),
        }
    }

    /// The connections the last wait reported.
    pub fn ready(&self) -> Vec<usize> {
        self.events.iter().map(|e| e.token().0).collect()
    }

    pub fn sent(&self) -> u64 {
        self.conns.iter().map(|c| c.sent).sum()
    }

    /// Writes whatever the connections take for `span`, never reading.
    pub fn write_for(&mut self, span: Duration) {
        let until = Instant::now() + span;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.wait(left);
            for i in self.ready() {
                self.write_all_taken(i);
            }
        }
    }

    /// Writes to connection `i` until the socket takes no more.
    pub fn write_all_taken(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        loop {
            let at = (conn.start + (conn.sent % PERIOD as u64) as usize) % PERIOD;
            match conn.stream.write(&self.block[at..at + CHUNK]) {
                Ok(n) => conn.sent += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("never-reader {i}: write after {} bytes: {e}", conn.sent),
            }
        }
    }

    /// Connections `which` stop writing (half-close) and read their echo
    /// to EOF, checking every byte; the others go on not reading. Returns
    /// the first failure, if any.
    pub fn drain(&mut self, which: &[usize], within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        for &i in which {
            let conn = &mut self.conns[i];
            conn.reading = true;
            let shut = conn.stream.shutdown(Shutdown::Write);
            shut.map_err(|e| format!("never-reader {i}: shutdown: {e}"))?;
        }
        let mut open = which.len();
        let mut buf = vec![0u8; CHUNK];
        // What arrived before now brings no new edge: read it first.
        let mut ready: Vec<usize> = which.to_vec();
        loop {
            for i in ready {
                if self.conns[i].reading && !self.conns[i].eof {
                    self.read_available(i, &mut buf)?;
                    open -= usize::from(self.conns[i].eof);
                }
            }
            if open == 0 {
                return Ok(());
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| {
                    format!("{open} never-readers still without EOF after {within:?}")
                })?;
            self.wait(left);
            ready = self.ready();
        }
    }

    /// Every connection goes away with a reset (its unread echo is lost).
    pub fn reset_all(self) {
        for conn in &self.conns {
            socket2::SockRef::from(&conn.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }

    /// Reads connection `i` until `WouldBlock` or EOF, comparing each byte
    /// with what it sent.
    pub fn read_available(&mut self, i: usize, buf: &mut [u8]) -> Result<(), String> {
        let conn = &mut self.conns[i];
        while !conn.eof {
            match conn.stream.read(buf) {
                Ok(0) if conn.echoed == conn.sent => conn.eof = true,
                Ok(0) => {
                    return Err(format!(
                        "never-reader {i}: EOF after {} of {} bytes",
                        conn.echoed, conn.sent
                    ))
                }
                Ok(n) => {
                    let at = (conn.start + (conn.echoed % PERIOD as u64) as usize) % PERIOD;
                    let past_end = conn.echoed + n as u64 > conn.sent;
                    if past_end || buf[..n] != self.block[at..at + n] {
                        let at = conn.echoed;
                        return Err(format!("never-reader {i}: echo differs at byte {at}"));
                    }
                    conn.echoed += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("never-reader {i}: read: {e}")),
            }
        }
        Ok(())
    }

    /// Writes until the server holds the fleet back: `held` holds and
    /// neither the server's held echo nor what the fleet wrote changed over
    /// two 100 ms stretches in a row. Returns the stats then; panics after
    /// `limit`, or after a second without progress that `held` does not
    /// explain.
    pub fn fill_until_held(
        &mut self,
        server: &ServerProcess,
        limit: Duration,
        held: impl Fn(&Stats) -> bool,
    ) -> Stats {
        const STRETCH: Duration = Duration::from_millis(100);
        let deadline = Instant::now() + limit;
        let mut last = None;
        let mut same = 0;
        loop {
            self.write_for(STRETCH);
            let stats = server.stats();
            let now = (stats["pending_bytes"], self.sent());
            same = if last == Some(now) { same + 1 } else { 0 };
            if held(&stats) && same >= 2 {
                return stats;
            }
            last = Some(now);
            assert!(
                same < 10 && Instant::now() < deadline,
                "the never-readers were not held back as expected within {limit:?}: \
                 wrote {} bytes; {stats:?}",
                self.sent()
            );
        }
    }
}
