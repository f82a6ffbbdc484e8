//! The poll loop: one `mio::Poll` owns the listeners, the UDP sockets, the
//! signal pipe and every connection. It is mechanism only: accept policy
//! lives in `accept`, when to look at a connection without an event in
//! `deadlines`, the shutdown's stages in `shutdown`, the echo protocol in
//! `connection` and `udp`.
//!
//! # A turn
//! `run` repeats these steps; their order is the design:
//! 1. **wait** for events, no longer than the nearest deadline, and not at all
//!    while the run queue holds work.
//! 2. **collect due timers** before anything arms one: a timing wheel only
//!    reaches one horizon ahead of where it last collected.
//! 3. **signals** before the events, so that a shutdown refuses new clients
//!    without waiting for the turn's work. Its last accepts take only slab
//!    keys that were free before the poll, which no event of this turn names.
//! 4. **events**: each ready connection or UDP socket is served once, up to
//!    its share (one read buffer's worth, or 64 datagrams). One still
//!    queued from the last turn is left to step 5, so it never gets two
//!    shares in one turn.
//! 5. **run queue**: what used its share last turn with work left. Whoever
//!    uses its share now is queued for the *next* turn: between two polls
//!    nothing reads more than its share.
//! 6. **act on due timers** after the events, so that input which came with
//!    a deadline counts before an idle close; then wake connections waiting
//!    for the memory budget if this turn freed some (served next turn).
//! 7. **accept** a batch per listener last: keys freed by this turn's closes
//!    are reused only now, after every event that could name them.
//! 8. **shutdown**: past the drain deadline, close what is left; exit when
//!    nothing is left or the closing stage ends.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::accept::Acceptor;
use crate::config::Config;
use crate::connection::{CloseReason, Connection, Next, Shared, HEADER_WAIT, LINGER};
use crate::deadlines::{Deadlines, Kind};
use crate::endpoint::SocketKind;
use crate::listener::{self, context, Source};
use crate::logging::WarnLimiter;
use crate::proxy_header::Cidr;
use crate::run_queue::{Entry, MemoryWaiters, RunQueue};
use crate::shutdown::{Mode, Request, Shutdown};
use crate::stats::Stats;
use crate::udp::{self, UdpEcho};

/// Connections use their slab key as token; the others sit where no key
/// reaches: listener `i` is `FIRST_LISTENER + i`, UDP socket `i` is
/// `FIRST_UDP + i`.
const SIGNALS: Token = Token(usize::MAX);
const FIRST_LISTENER: usize = usize::MAX / 4;
const FIRST_UDP: usize = usize::MAX / 2;

/// What an event's token names.
enum Target {
    Connection(usize),
    Listener(usize),
    Udp(usize),
    Signals,
}

impl Target {
    fn of(token: Token) -> Target {
        match token.0 {
            key if key < FIRST_LISTENER => Target::Connection(key),
            n if n < FIRST_UDP => Target::Listener(n - FIRST_LISTENER),
            n if Token(n) == SIGNALS => Target::Signals,
            n => Target::Udp(n - FIRST_UDP),
        }
    }
}

/// The shared read buffer, and so each connection's share of a turn: one
/// full buffer, then it waits in the run queue while the others are served.
/// Measured beside a bulk client (the torture scenario `bulk_neighbour`):
/// 4 KiB keeps a 64-byte ping-pong's p99 at 0.13-0.2 ms where 64 KiB let it
/// reach 1.1 ms and 1 MiB 2 ms (docs/design.md).
const READ_BUFFER_BYTES: usize = 4 * 1024;
// A PROXY header is peeked into the read buffer whole.
const _: () = assert!(READ_BUFFER_BYTES >= crate::proxy_header::MAX_HEADER);
const EVENTS_PER_POLL: usize = 1024;

pub struct Reactor {
    poll: Poll,
    /// What is served, in the order the operator asked for it.
    endpoints: Vec<(SocketKind, SocketAddr)>,
    source: Source,
    signals: Signals,
    acceptor: Acceptor,
    connections: Slab<Connection>,
    /// Emptied at shutdown, like the listeners.
    udp: Vec<UdpEcho>,
    /// One datagram at a time, of any size: shared by the UDP sockets.
    udp_buf: Vec<u8>,
    run_queue: RunQueue,
    memory_waiters: MemoryWaiters,
    deadlines: Deadlines,
    idle_timeout: Option<Duration>,
    shutdown: Shutdown,
    /// The read buffer, counters and time every connection's serving
    /// shares; `shared.now` is read once after each poll.
    shared: Shared,
    quit_rule: bool,
    /// `--proxy-trust`; empty: every peer may use a PROXY listener.
    proxy_trust: Vec<Cidr>,
    max_connections: usize,
    /// Connection ids: unique for the process's life, for the log.
    next_id: u64,
}

impl Reactor {
    /// Serves until a signal ends it; returns the final counters (the
    /// caller logs them: the loop no longer runs, so the log may wait).
    pub fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            self.wait(&mut events)?;
            if let Some(stats) = self.turn(&events) {
                return Ok(stats);
            }
        }
    }

    /// Step 1: blocks until events arrive or the nearest deadline, then
    /// reads the clock once for the whole turn.
    fn wait(&mut self, events: &mut Events) -> io::Result<()> {
        loop {
            match self.poll.poll(events, self.poll_timeout()) {
                Ok(()) => break,
                // A signal arrived while blocked (it is read from the pipe),
                // or a stop and resume: the deadlines count from the real
                // time, which the stop may have moved far on.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    self.shared.now = Instant::now()
                }
                Err(err) => return Err(err),
            }
        }
        self.shared.now = Instant::now();
        Ok(())
    }

    /// Steps 2 to 8 (see the module doc). `Some` when the loop is done.
    fn turn(&mut self, events: &Events) -> Option<Stats> {
        let now = self.shared.now;
        self.deadlines.collect(now);
        self.run_queue.start_turn();
        if events.iter().any(|event| event.token() == SIGNALS) && self.handle_signals(now) {
            warn!(
                "second signal: closing {} now",
                crate::connections(self.connections.len())
            );
            return Some(self.finish());
        }
        for event in events.iter() {
            self.handle_event(event, now);
        }
        self.serve_run_queue();
        self.fire_due_timers(now);
        self.wake_memory_waiters();
        self.accept(now, false);
        self.poll_shutdown(now)
    }

    /// Step 4 for one event.
    fn handle_event(&mut self, event: &Event, now: Instant) {
        match Target::of(event.token()) {
            Target::Listener(index) => {
                let open = self.connections.len();
                self.acceptor.handle_event(index, open, now);
            }
            Target::Udp(index) => {
                // None once closed by the shutdown earlier in this turn.
                let Some(socket) = self.udp.get_mut(index) else {
                    return;
                };
                socket.note_readable();
                if !socket.queued {
                    self.serve_udp(index);
                }
            }
            Target::Signals => {}
            Target::Connection(key) => {
                // An event for a connection closed earlier in this batch
                // finds no entry: keys freed now are reused only by step 7.
                let Some(connection) = self.connections.get_mut(key) else {
                    return;
                };
                connection.note_event(
                    event.is_readable() || event.is_error(),
                    event.is_read_closed(),
                    event.is_priority(),
                );
                if !connection.queued {
                    self.serve(key);
                }
            }
        }
    }

    /// Step 5: serves last turn's run queue.
    fn serve_run_queue(&mut self) {
        let current = self.run_queue.take_current();
        for &entry in &current {
            match entry {
                Entry::Connection((key, id)) => {
                    let Some(connection) = self.connections.get_mut(key).filter(|c| c.id == id)
                    else {
                        continue;
                    };
                    connection.queued = false;
                    self.serve(key);
                }
                Entry::Udp(index) => {
                    let Some(socket) = self.udp.get_mut(index) else {
                        continue;
                    };
                    socket.queued = false;
                    self.serve_udp(index);
                }
            }
        }
        self.run_queue.finish_turn(current);
    }

    /// Echoes what UDP socket `index` has, up to its share.
    fn serve_udp(&mut self, index: usize) {
        let socket = &mut self.udp[index];
        if socket.serve(&mut self.udp_buf, &mut self.shared.stats) == udp::Next::Yield {
            self.run_queue.push_udp(index, socket);
        }
    }

    /// Lets one connection do what its socket allows, and acts on its answer.
    fn serve(&mut self, key: usize) {
        let connection = &mut self.connections[key];
        let next = connection.advance(&mut self.shared);
        // The common answer, settled here without a second slab lookup.
        if next == Next::Wait && !connection.deadline_moved {
            return;
        }
        self.after_serving(key, next);
    }

    /// Acts on what a connection answered.
    fn after_serving(&mut self, key: usize, next: Next) {
        let connection = &mut self.connections[key];
        match next {
            Next::Close(reason) => return self.close(key, reason),
            Next::Yield => self.run_queue.push(key, connection),
            Next::WaitForMemory => self.memory_waiters.push(key, connection),
            Next::Wait => {}
        }
        // The header came or lingering began: the new phase's deadline
        // replaces the old one (a turn that moved it may end in a yield).
        if std::mem::take(&mut connection.deadline_moved) {
            let deadline = connection.deadline(self.idle_timeout);
            self.deadlines.set(key, deadline);
        }
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        // Dropping the stream closes it, which also takes it out of epoll.
        let connection = self.connections.remove(key);
        self.deadlines.cancel(key);
        self.shared
            .stats
            .note_pending(connection.pending_footprint(), 0);
        self.shared.stats.record_close(reason);
        debug!("connection {} closed ({reason:?})", connection.id);
    }

    /// Step 6: a due timer is a reason to look, not a verdict.
    fn fire_due_timers(&mut self, now: Instant) {
        while let Some((key, kind)) = self.deadlines.pop_due() {
            let connection = &mut self.connections[key];
            match connection.deadline(self.idle_timeout) {
                // Active since the timer was armed, or lingering now: look
                // again at the new deadline.
                Some((at, now_kind)) if at > now || now_kind != kind => {
                    self.deadlines.set(key, Some((at, now_kind)));
                }
                Some((_, Kind::Linger)) => {
                    let reason = connection.close_reason();
                    self.close(key, reason);
                }
                Some((_, Kind::Idle)) if connection.input_waiting() => {
                    // Its event is still queued in the kernel (a stall
                    // left more than one poll's worth): serve it next turn,
                    // do not close it.
                    connection.note_input_waiting(now);
                    let deadline = connection.deadline(self.idle_timeout);
                    self.run_queue.push(key, connection);
                    self.deadlines.set(key, deadline);
                }
                Some((_, Kind::Idle)) => {
                    debug!("connection {}: idle", connection.id);
                    self.close(key, CloseReason::Idle);
                }
                Some((_, Kind::Header)) => {
                    self.shared.stats.proxy_errors += 1;
                    debug!(
                        "connection {} from {}: bad PROXY header: incomplete after {}s",
                        connection.id,
                        connection.peer(),
                        HEADER_WAIT.as_secs_f64()
                    );
                    self.close(key, CloseReason::Error);
                }
                None => {}
            }
        }
    }

    /// Step 6 too: once the budget frees, queues as many connections waiting
    /// for it as the room could serve a share each, oldest first, for the
    /// next turn.
    fn wake_memory_waiters(&mut self) {
        let room = self
            .shared
            .max_memory
            .saturating_sub(self.shared.stats.pending_bytes);
        let share = self.shared.buf.len() as u64;
        let (connections, run_queue) = (&mut self.connections, &mut self.run_queue);
        self.memory_waiters
            .wake(room, share, connections, run_queue);
    }

    /// Step 7; at shutdown, the whole backlog.
    fn accept(&mut self, now: Instant, whole_backlog: bool) {
        if !self.acceptor.start_batch(now, whole_backlog) {
            return;
        }
        while let Some((stream, peer, kind)) =
            self.acceptor
                .next(self.connections.len(), now, &mut self.shared.stats)
        {
            let proxied = kind == SocketKind::Proxy;
            if proxied && !self.trusts(peer.ip()) {
                // Dropped: closed before a byte is read.
                self.shared.stats.proxy_refused += 1;
                debug!("connection from {peer} refused: not in --proxy-trust");
                continue;
            }
            if let Err(err) = self.add_connection(stream, peer, proxied, now) {
                // Out of epoll watches or kernel memory: the next client
                // would fare no better.
                let what = "cannot register a connection with the poll";
                self.acceptor.pause(what, &err, now, &mut self.shared.stats);
            }
        }
        self.acceptor.end_batch(&mut self.shared.stats);
    }

    /// Whether a PROXY listener's peer may say who its clients are.
    fn trusts(&self, peer: IpAddr) -> bool {
        self.proxy_trust.is_empty() || self.proxy_trust.iter().any(|net| net.contains(peer))
    }

    /// Registers and keeps a new connection (`proxied`: it begins with a
    /// PROXY header); on error it is dropped (closed).
    fn add_connection(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        proxied: bool,
        now: Instant,
    ) -> io::Result<()> {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        // Registered once for every direction: no epoll_ctl per message.
        // PRIORITY reports urgent data, which cuts reads short.
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        self.shared.stats.accepted += 1;
        let connection = Connection::new(stream, id, self.quit_rule, proxied, now);
        self.deadlines
            .set(key, connection.deadline(self.idle_timeout));
        entry.insert(connection);
        debug!("connection {id} from {peer} opened");
        Ok(())
    }

    /// Step 3. True when the loop must end now.
    fn handle_signals(&mut self, now: Instant) -> bool {
        let pending: Vec<i32> = self.signals.pending().collect();
        let mut exit_now = false;
        for signal in pending {
            if signal == SIGUSR1 {
                crate::info_requested!("stats: {}", self.stats());
                continue;
            }
            match self.shutdown.request(now) {
                Request::Drain => self.begin_shutdown(now),
                Request::Same => debug!("signal {signal}: already shutting down"),
                Request::ExitNow => exit_now = true,
            }
        }
        exit_now
    }

    /// How long the next poll may block: not at all when work is waiting,
    /// else until the nearest deadline, else forever.
    fn poll_timeout(&self) -> Option<Duration> {
        let open = self.connections.len();
        if !self.run_queue.is_empty() || self.acceptor.wants_turn(open, self.shared.now) {
            return Some(Duration::ZERO);
        }
        [
            self.deadlines.next_deadline(),
            self.acceptor.resume_at(),
            self.shutdown.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(self.shared.now))
    }

    /// The counters, with `active` read off the slab.
    fn stats(&self) -> Stats {
        Stats {
            active: self.connections.len() as u64,
            ..self.shared.stats.clone()
        }
    }
}

mod setup;
mod shutdown;
#[cfg(test)]
mod tests;
