//! One connection: its socket, the echo it still owes, and where it is in its
//! life. It knows nothing of the poll loop: the reactor tells it what the
//! kernel reported, and it answers with what the reactor should do next.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::quit::QuitFilter;
use crate::stats::Stats;
use crate::timers::TimerHandle;

/// Reads one connection may make in one turn of the loop before the others
/// get their turn: a fast sender cannot starve the rest.
const READS_PER_TURN: u32 = 16;

/// While the server shuts down, a connection that has moved no bytes for this
/// long is taken to have received everything its client sent before the
/// signal. Draining stops at a quiet spell rather than at the first drained
/// read because a client's kernel may still hold data it has sent, waiting
/// for window space that only our reads open.
pub const DRAIN_QUIET: Duration = Duration::from_millis(200);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading and echoing.
    Open,
    /// No more input will be echoed (client EOF, quit line or shutdown):
    /// sending what is pending, then closing.
    Flushing,
    /// Write side shut: discarding input until the client closes (or the
    /// linger timer fires), so that closing sends FIN, not an RST that could
    /// make the client drop the echo it has not read yet.
    Lingering,
}

/// Why a connection closed, for the stats and the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Client,
    Quit,
    Idle,
    Error,
    Shutdown,
}

/// What the reactor should do with the connection after `advance`.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the next readiness event.
    Wait,
    /// Work is left but this turn's share is spent: come back next turn.
    Yield,
    /// Close the socket now.
    Close(CloseReason),
}

/// What `advance` needs from the reactor besides the connection itself.
pub struct Io<'a> {
    /// Scratch space for reads, shared by all connections: a connection only
    /// keeps memory of its own for echo the socket would not take.
    pub buf: &'a mut [u8],
    pub stats: &'a mut Stats,
    /// The time of this turn, read once per turn rather than per connection.
    pub now: Instant,
    pub max_buffer: usize,
}

pub struct Connection {
    stream: TcpStream,
    /// Unique for the process's life: a timer armed for an earlier connection
    /// in the same slab slot must not act on this one.
    pub id: u64,
    /// Echo the socket has not taken yet. Empty, with nothing allocated,
    /// unless the client reads slower than it writes.
    pending: Vec<u8>,
    /// How much of `pending` is already written: a partial write moves this
    /// mark instead of moving bytes.
    pending_sent: usize,
    /// The quit rule's state; `None` under `--no-quit`.
    quit: Option<QuitFilter>,
    phase: Phase,
    /// Why the connection closes once it has flushed and lingered.
    reason: CloseReason,
    /// The kernel may hold input not read yet. Edge-triggered polling reports
    /// new input once, so this stays set until a read shows the socket drained.
    readable: bool,
    /// The peer's FIN was reported. A short read then no longer proves the
    /// socket drained: the FIN brings no further edge, so only one more read
    /// sees the EOF (skipping it would leave the socket in CLOSE-WAIT).
    read_closed: bool,
    /// The client sent EOF: nothing unread can be left, so closing sends FIN.
    eof: bool,
    /// Reading stopped because `pending` reached the limit; set once per
    /// pause so the stats count pauses, not turns.
    backpressured: bool,
    /// The server is shutting down: stop once the input received so far is
    /// echoed.
    shutting_down: bool,
    /// When bytes last moved either way: what the idle timer measures.
    pub last_active: Instant,
    /// The reactor's idle timer for this connection, cancelled when it closes.
    pub idle_timer: Option<TimerHandle>,
    /// The reactor's linger timer, armed while lingering.
    pub linger_timer: Option<TimerHandle>,
}

impl Connection {
    pub fn new(stream: TcpStream, id: u64, quit_rule: bool, now: Instant) -> Self {
        Connection {
            stream,
            id,
            pending: Vec::new(),
            pending_sent: 0,
            quit: quit_rule.then(QuitFilter::new),
            phase: Phase::Open,
            reason: CloseReason::Client,
            // Registering reports input that is already there, so the first
            // event says whether there is anything to read.
            readable: false,
            read_closed: false,
            eof: false,
            backpressured: false,
            shutting_down: false,
            last_active: now,
            idle_timer: None,
            linger_timer: None,
        }
    }

    pub fn close_reason(&self) -> CloseReason {
        self.reason
    }

    /// Write side shut, discarding input: the reactor bounds this with the
    /// linger timer.
    pub fn is_lingering(&self) -> bool {
        self.phase == Phase::Lingering
    }

    /// Records what a readiness event said about input.
    pub fn note_event(&mut self, readable: bool, read_closed: bool) {
        self.readable |= readable || read_closed;
        self.read_closed |= read_closed;
    }

    /// Asks the connection to finish: echo what the client has sent, then
    /// close once it has gone quiet (see `DRAIN_QUIET`).
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        if self.phase == Phase::Open {
            // However it ends from here (quiet spell, client EOF, timeout),
            // the shutdown ended it.
            self.reason = CloseReason::Shutdown;
        }
    }

    /// Does whatever the socket allows now: flush pending echo, read and
    /// echo input, or discard input while lingering.
    pub fn advance(&mut self, io: &mut Io) -> Next {
        if self.phase == Phase::Lingering {
            return self.discard_input(io);
        }
        if let Err(err) = self.flush(io.stats, io.now) {
            return self.fail(&err);
        }
        if self.phase == Phase::Open {
            if let Some(next) = self.read_and_echo(io) {
                return next;
            }
        }
        if self.phase == Phase::Flushing && self.pending_len() == 0 {
            return self.finish_flushed(io);
        }
        Next::Wait
    }

    /// Reads and echoes until the socket is drained. Returns `Some` when the
    /// connection must stop here (yield, backpressure or failure).
    fn read_and_echo(&mut self, io: &mut Io) -> Option<Next> {
        let mut reads_left = READS_PER_TURN;
        while self.readable && self.phase == Phase::Open {
            let room = io.max_buffer.saturating_sub(self.pending_len());
            if room == 0 {
                // The client is not reading its echo: leave its input in the
                // kernel so TCP flow control slows it down. The writable edge
                // that comes when it drains resumes reading.
                if !self.backpressured {
                    self.backpressured = true;
                    io.stats.backpressure_pauses += 1;
                }
                return Some(Next::Wait);
            }
            self.backpressured = false;
            if reads_left == 0 {
                return Some(Next::Yield);
            }
            reads_left -= 1;
            let want = room.min(io.buf.len());
            match self.stream.read(&mut io.buf[..want]) {
                Ok(0) => {
                    self.readable = false;
                    self.eof = true;
                    if let Err(err) = self.stop_echoing(io) {
                        return Some(self.fail(&err));
                    }
                }
                Ok(n) => {
                    io.stats.bytes_in += n as u64;
                    self.last_active = io.now;
                    if n < want && !self.read_closed {
                        // A short read drained the socket; the next byte
                        // brings a new edge, so skip the read that would
                        // only say WouldBlock.
                        self.readable = false;
                    }
                    let data = &io.buf[..n];
                    let (released, echo, quit) = match &mut self.quit {
                        Some(filter) => {
                            let out = filter.feed(data);
                            (out.released, out.echo, out.quit)
                        }
                        None => (&b""[..], data, false),
                    };
                    if let Err(err) = self.send(released, echo, io.stats, io.now) {
                        return Some(self.fail(&err));
                    }
                    if quit {
                        self.reason = CloseReason::Quit;
                        self.phase = Phase::Flushing;
                    }
                }
                // Drained: the next byte brings a new edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                // A signal arrived mid-call: nothing was read, try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Some(self.fail(&err)),
            }
        }
        if self.shutting_down
            && self.phase == Phase::Open
            && !self.readable
            && io.now.saturating_duration_since(self.last_active) >= DRAIN_QUIET
        {
            // Everything the client sent is echoed or queued. Held bytes never
            // became `quit`, so they are echoed too.
            if let Err(err) = self.stop_echoing(io) {
                return Some(self.fail(&err));
            }
        }
        None
    }

    /// The input ends here (EOF or shutdown): bytes held back as a possible
    /// `quit` never became one, so they are echoed, and then nothing more.
    fn stop_echoing(&mut self, io: &mut Io) -> io::Result<()> {
        self.phase = Phase::Flushing;
        let held = self.quit.as_mut().map_or(&b""[..], QuitFilter::finish);
        self.send(held, b"", io.stats, io.now)
    }

    /// All echo is out and no more will be echoed.
    fn finish_flushed(&mut self, io: &mut Io) -> Next {
        if self.eof {
            // The client closed its side and all its input is read: closing
            // now sends a clean FIN.
            return Next::Close(self.reason);
        }
        // The client may still send: shut our side so it sees EOF, then
        // read and drop its input until it closes.
        match self.stream.shutdown(Shutdown::Write) {
            Ok(()) => {}
            // The client already went away.
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                return Next::Close(self.reason)
            }
            Err(err) => return self.fail(&err),
        }
        self.phase = Phase::Lingering;
        self.discard_input(io)
    }

    /// Lingering: reads and drops input until the client closes.
    fn discard_input(&mut self, io: &mut Io) -> Next {
        let mut reads_left = READS_PER_TURN;
        while self.readable {
            if reads_left == 0 {
                return Next::Yield;
            }
            reads_left -= 1;
            match self.stream.read(io.buf) {
                Ok(0) => return Next::Close(self.reason),
                Ok(n) => {
                    io.stats.bytes_in += n as u64;
                    if n < io.buf.len() && !self.read_closed {
                        self.readable = false;
                    }
                }
                // Drained: the next byte (or the FIN) brings a new edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // The client reset instead of closing: our echo was already
                // flushed, and there is nothing left to protect.
                Err(_) => return Next::Close(self.reason),
            }
        }
        Next::Wait
    }

    /// Sends `first` then `second` (the quit rule's released bytes and the
    /// echo), queueing whatever the socket does not take now.
    fn send(
        &mut self,
        first: &[u8],
        second: &[u8],
        stats: &mut Stats,
        now: Instant,
    ) -> io::Result<()> {
        if first.is_empty() && second.is_empty() {
            return Ok(());
        }
        if self.pending_len() > 0 {
            // The socket is full (or this would overtake queued bytes).
            self.queue(first, second);
            return Ok(());
        }
        let written = loop {
            let result = if first.is_empty() {
                self.stream.write(second)
            } else {
                self.stream
                    .write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
            };
            match result {
                Ok(n) => break n,
                // Full: the writable edge will flush the queue.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        };
        if written > 0 {
            stats.bytes_out += written as u64;
            self.last_active = now;
        }
        // A short write means the socket buffer is full; retrying now would
        // only return WouldBlock.
        let (first, second) = if written < first.len() {
            (&first[written..], second)
        } else {
            (&b""[..], &second[written - first.len()..])
        };
        self.queue(first, second);
        Ok(())
    }

    fn queue(&mut self, first: &[u8], second: &[u8]) {
        if first.is_empty() && second.is_empty() {
            return;
        }
        if self.pending_sent > 0 {
            // Reclaim the written prefix so the buffer stays within bounds.
            self.pending.drain(..self.pending_sent);
            self.pending_sent = 0;
        }
        self.pending.extend_from_slice(first);
        self.pending.extend_from_slice(second);
    }

    /// Writes queued echo until it is all out or the socket is full.
    fn flush(&mut self, stats: &mut Stats, now: Instant) -> io::Result<()> {
        while self.pending_len() > 0 {
            match self.stream.write(&self.pending[self.pending_sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    stats.bytes_out += n as u64;
                    self.last_active = now;
                    self.pending_sent += n;
                    if self.pending_len() > 0 {
                        // Short write: the socket is full again.
                        break;
                    }
                }
                // Full: wait for the next writable edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if self.pending_len() == 0 && self.pending.capacity() > 0 {
            // Give the memory back: an idle connection should cost no buffer.
            self.pending = Vec::new();
            self.pending_sent = 0;
        }
        Ok(())
    }

    fn pending_len(&self) -> usize {
        self.pending.len() - self.pending_sent
    }

    fn fail(&mut self, err: &io::Error) -> Next {
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                log::debug!("connection {}: {err}", self.id)
            }
            _ => log::warn!("connection {}: {err}", self.id),
        }
        Next::Close(CloseReason::Error)
    }
}
