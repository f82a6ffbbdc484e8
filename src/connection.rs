//! One connection: its socket, the echo it still owes, and where it is in its
//! life. It knows nothing of the poll loop: the reactor tells it what the
//! kernel reported, and it answers with what the reactor should do next.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::deadlines::Kind;
use crate::logging::WarnLimiter;
use crate::pending::PendingEcho;
use crate::quit::QuitFilter;
use crate::stats::Stats;

/// Most reads one connection may make in one turn of the loop. Its share
/// of a turn is also bounded in bytes, by the size of the shared read
/// buffer (`Shared::buf`): one buffer's worth, then the others get their
/// turn. The count matters when reads come back short yet the socket is
/// not drained (a FIN or urgent data), or when `--max-buffer` leaves room
/// for less than a buffer.
pub const READS_PER_TURN: u32 = 16;

/// How long a closing connection may keep sending before we close anyway.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long a PROXY listener's client has to send its whole header. A load
/// balancer sends it at once; a client still short of it after this is not
/// one.
pub const HEADER_WAIT: Duration = Duration::from_secs(3);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// On a PROXY listener: waiting for the header, nothing echoed yet.
    Header,
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
    /// Input is waiting, but the memory budget across connections is spent:
    /// come back when it frees (or on the next event).
    WaitForMemory,
    /// Work is left but this turn's share is spent: come back next turn.
    Yield,
    /// Close the socket now.
    Close(CloseReason),
}

/// What serving a connection needs besides the connection itself. The loop
/// owns one, shared by every connection.
pub struct Shared {
    /// Scratch space for reads: a connection only keeps memory of its own
    /// for echo the socket would not take. Its size is each connection's
    /// share of a turn, in bytes.
    pub buf: Vec<u8>,
    pub stats: Stats,
    /// The time of this turn, read once per turn rather than per connection.
    pub now: Instant,
    /// `--max-buffer`.
    pub max_buffer: usize,
    /// `--max-memory`: the most memory held for pending echo across all
    /// connections.
    pub max_memory: u64,
    /// One fault can fail thousands of connections at once.
    pub warnings: WarnLimiter,
}

pub struct Connection {
    stream: TcpStream,
    /// Unique for the process's life: a timer armed for an earlier connection
    /// in the same slab slot must not act on this one.
    pub id: u64,
    /// Echo the socket has not taken yet.
    pending: PendingEcho,
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
    /// The peer sent urgent data. Linux ends a read at the urgent mark, so
    /// a short read no longer proves the socket drained: read on until
    /// `WouldBlock`. (The byte itself stays in the stream: the listener sets
    /// SO_OOBINLINE.)
    urgent: bool,
    /// Reading stopped because `pending` reached `--max-buffer`, or the
    /// budget across connections is spent; set once per pause so the stats
    /// count pauses, not turns.
    backpressured: bool,
    /// When bytes last moved either way: what the idle timeout measures.
    /// Once lingering (when nothing is sent and input is dropped), when
    /// lingering began: one field for both keeps an idle connection small.
    last_active: Instant,
    /// The reactor's run queue holds this connection: it is in it at most
    /// once.
    pub queued: bool,
    /// A new phase brought a deadline of another kind (the header came,
    /// lingering began): the reactor re-arms the timer and clears this.
    pub deadline_moved: bool,
    /// The reactor's list of connections waiting for the memory budget
    /// holds it: at most once too.
    pub awaiting_memory: bool,
}

impl Connection {
    /// `proxied`: the client begins with a PROXY header.
    pub fn new(stream: TcpStream, id: u64, quit_rule: bool, proxied: bool, now: Instant) -> Self {
        Connection {
            stream,
            id,
            pending: PendingEcho::default(),
            quit: quit_rule.then(QuitFilter::new),
            phase: if proxied { Phase::Header } else { Phase::Open },
            reason: CloseReason::Client,
            // Registering reports input that is already there, so the first
            // event says whether there is anything to read.
            readable: false,
            read_closed: false,
            eof: false,
            urgent: false,
            backpressured: false,
            last_active: now,
            queued: false,
            deadline_moved: false,
            awaiting_memory: false,
        }
    }

    pub fn close_reason(&self) -> CloseReason {
        self.reason
    }

    /// When the loop must look at this connection without an event: the
    /// end of its lingering close, the end of the wait for its PROXY header,
    /// else when it has been idle for `idle_timeout` (if there is one).
    /// Lingering and the header wait are bounded alone: an idle close there
    /// would only count it wrongly.
    pub fn deadline(&self, idle_timeout: Option<Duration>) -> Option<(Instant, Kind)> {
        match self.phase {
            Phase::Lingering => Some((self.last_active + LINGER, Kind::Linger)),
            Phase::Header => Some((self.last_active + HEADER_WAIT, Kind::Header)),
            _ => idle_timeout.map(|timeout| (self.last_active + timeout, Kind::Idle)),
        }
    }

    /// Memory held for echo owed to the socket.
    pub fn pending_footprint(&self) -> usize {
        self.pending.footprint()
    }

    /// Write side shut, discarding input until `deadline`.
    pub fn is_lingering(&self) -> bool {
        self.phase == Phase::Lingering
    }

    /// Records what a readiness event said about input.
    pub fn note_event(&mut self, readable: bool, read_closed: bool, urgent: bool) {
        self.readable |= readable || read_closed || urgent;
        self.read_closed |= read_closed;
        self.urgent |= urgent;
    }

    /// Whether input waits that this connection would read now (or an EOF
    /// or error to report). Asked before an idle close: after a stall (the
    /// process was stopped) the events of many connections can wait beyond
    /// one poll's worth, and closing one of those would discard its input.
    /// Input left unread on purpose (backpressure, or after `quit`) does
    /// not count.
    pub fn input_waiting(&self) -> bool {
        if self.phase != Phase::Open || self.backpressured {
            return false;
        }
        self.readable
            || !matches!(
                self.stream.peek(&mut [0; 1]),
                Err(ref err) if err.kind() == io::ErrorKind::WouldBlock
            )
    }

    /// Treats the input as waiting, as if an event had said so, and as
    /// activity: it arrived before the idle deadline.
    pub fn note_input_waiting(&mut self, now: Instant) {
        self.readable = true;
        self.last_active = now;
    }

    /// The server is shutting down: echo on until the client closes its
    /// side or quits (only that proves its input is over), or the drain's
    /// deadline calls `end_input`.
    pub fn begin_shutdown(&mut self) {
        if matches!(self.phase, Phase::Header | Phase::Open) {
            // However it ends from here, the shutdown ended it.
            self.reason = CloseReason::Shutdown;
        }
    }

    /// The drain's deadline passed: echo nothing more. The next `advance`
    /// flushes what is owed, shuts the write side and lingers. `Some` when
    /// the connection must close now (it failed, or it had not even sent
    /// its PROXY header: nothing was echoed to protect).
    pub fn end_input(&mut self, shared: &mut Shared) -> Option<Next> {
        match self.phase {
            Phase::Header => return Some(Next::Close(CloseReason::Shutdown)),
            Phase::Open => {}
            Phase::Flushing | Phase::Lingering => return None,
        }
        self.stop_echoing(shared)
            .err()
            .map(|err| self.fail(shared, &err))
    }

    /// Does whatever the socket allows now: flush pending echo, read and
    /// echo input, or discard input while lingering.
    pub fn advance(&mut self, shared: &mut Shared) -> Next {
        match self.phase {
            Phase::Lingering => return self.discard_input(shared),
            Phase::Header => {
                if let Some(next) = self.read_header(shared) {
                    return next;
                }
            }
            Phase::Open | Phase::Flushing => {}
        }
        if !self.pending.is_empty() {
            let before = self.pending.footprint();
            match self.pending.flush(&mut self.stream) {
                Ok(written) => self.note_written(written, &mut shared.stats, shared.now),
                Err(err) => return self.fail(shared, &err),
            }
            shared.stats.note_pending(before, self.pending.footprint());
        }
        if self.phase == Phase::Open {
            if let Some(next) = self.read_and_echo(shared) {
                return next;
            }
        }
        if self.phase == Phase::Flushing && self.pending.is_empty() {
            return self.finish_flushed(shared);
        }
        Next::Wait
    }

    /// Reads and echoes until the socket is drained. Returns `Some` when the
    /// connection must stop here (yield, backpressure or failure).
    fn read_and_echo(&mut self, shared: &mut Shared) -> Option<Next> {
        let mut reads_left = READS_PER_TURN;
        let mut share_left = shared.buf.len();
        while self.readable && self.phase == Phase::Open {
            let room = shared.max_buffer.saturating_sub(self.pending.len());
            // Echo read now would wait in memory behind what the socket
            // refused, and the budget across connections is spent.
            let over_budget =
                !self.pending.is_empty() && shared.stats.pending_bytes >= shared.max_memory;
            if room == 0 || over_budget {
                // The client is not reading its echo: leave its input in the
                // kernel so TCP flow control slows it down. The writable edge
                // that comes when it drains resumes reading. (A connection
                // whose echo goes straight into its socket reads on.)
                if !self.backpressured {
                    self.backpressured = true;
                    match room {
                        0 => shared.stats.backpressure_pauses += 1,
                        _ => shared.stats.memory_pauses += 1,
                    }
                }
                // Its own socket draining wakes it (a writable edge), or,
                // for the budget, other connections giving memory back.
                return Some(match room {
                    0 => Next::Wait,
                    _ => Next::WaitForMemory,
                });
            }
            self.backpressured = false;
            if reads_left == 0 || share_left == 0 {
                return Some(Next::Yield);
            }
            reads_left -= 1;
            let want = room.min(share_left);
            match self.stream.read(&mut shared.buf[..want]) {
                Ok(0) => {
                    self.readable = false;
                    self.eof = true;
                    if let Err(err) = self.stop_echoing(shared) {
                        return Some(self.fail(shared, &err));
                    }
                }
                Ok(n) => {
                    shared.stats.bytes_in += n as u64;
                    self.last_active = shared.now;
                    share_left -= n;
                    self.note_read(n, want);
                    let data = &shared.buf[..n];
                    let (released, echo, quit) = match &mut self.quit {
                        Some(filter) => {
                            let out = filter.feed(data);
                            (out.released, out.echo, out.quit)
                        }
                        None => (&b""[..], data, false),
                    };
                    if let Err(err) = self.send(
                        released,
                        echo,
                        shared.max_buffer,
                        &mut shared.stats,
                        shared.now,
                    ) {
                        return Some(self.fail(shared, &err));
                    }
                    if quit {
                        self.reason = CloseReason::Quit;
                        self.phase = Phase::Flushing;
                    }
                }
                // Drained: the next byte brings a new edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.note_drained(),
                // A signal arrived mid-call: nothing was read, try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Some(self.fail(shared, &err)),
            }
        }
        None
    }

    /// The input ends here (EOF or shutdown): bytes held back as a possible
    /// `quit` never became one, so they are echoed, and then nothing more.
    fn stop_echoing(&mut self, shared: &mut Shared) -> io::Result<()> {
        self.phase = Phase::Flushing;
        let held = self.quit.as_mut().map_or(&b""[..], QuitFilter::finish);
        self.send(held, b"", shared.max_buffer, &mut shared.stats, shared.now)
    }

    /// Sends `first` then `second` (the quit rule's released bytes and the
    /// echo), keeping whatever the socket does not take now.
    /// (The stats and the time come apart from the rest of the turn: the
    /// echo may be a slice of the turn's read buffer.)
    fn send(
        &mut self,
        first: &[u8],
        second: &[u8],
        limit: usize,
        stats: &mut Stats,
        now: Instant,
    ) -> io::Result<()> {
        let before = self.pending.footprint();
        let written = self.pending.send(&mut self.stream, first, second, limit)?;
        self.note_written(written, stats, now);
        let after = self.pending.footprint();
        if after != before {
            stats.note_pending(before, after);
        }
        Ok(())
    }

    fn note_written(&mut self, written: usize, stats: &mut Stats, now: Instant) {
        if written > 0 {
            stats.bytes_out += written as u64;
            self.last_active = now;
        }
    }

    /// A read of `n` bytes where `wanted` would fit. A short one drained the
    /// socket, so the read that would only say `WouldBlock` is skipped (the
    /// next byte brings a new edge), unless the peer's FIN was reported (no
    /// further edge comes: only another read sees the EOF) or urgent data
    /// cut it short.
    fn note_read(&mut self, n: usize, wanted: usize) {
        if n < wanted && !self.read_closed && !self.urgent {
            self.readable = false;
        }
    }

    fn note_drained(&mut self) {
        self.readable = false;
        self.urgent = false;
    }

    fn fail(&self, shared: &mut Shared, err: &io::Error) -> Next {
        match err.kind() {
            // The client went away (keepalive found it gone: timed out):
            // its own business.
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::TimedOut => {
                log::debug!("connection {}: {err}", self.id)
            }
            _ => crate::warn_limited!(shared.warnings, shared.now, "connection {}: {err}", self.id),
        }
        Next::Close(CloseReason::Error)
    }
}

mod closing;
mod header;
