//! Accept policy: when to take new clients off the listeners and how many.
//!
//! A listener is edge-triggered: one event says "the queue is no longer
//! empty", not how many are waiting. So its `ready` stays set until an
//! accept says `WouldBlock`, and the loop comes back by itself after a batch
//! cut short, a pause after running out of descriptors, or a turn spent at
//! the connection limit.
//!
//! Each listener takes at most one batch per turn, and the listener that
//! goes first moves on every turn, so a burst on one cannot starve another,
//! not even at the connection limit. The limit, the pause and the shutdown
//! cover them all.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;
use mio::net::{TcpListener, TcpStream};

use crate::endpoint::SocketKind;
use crate::logging::WarnLimiter;
use crate::stats::Stats;

/// How long accepting rests after the process ran out of descriptors or memory.
const PAUSE: Duration = Duration::from_millis(100);

/// One listening socket.
struct Listener {
    socket: TcpListener,
    /// `Tcp` or `Proxy`: what its clients begin with.
    kind: SocketKind,
    /// Its listen queue may hold clients (see the module doc).
    ready: bool,
}

pub struct Acceptor {
    /// Empty once shutdown has begun: new clients are refused.
    listeners: Vec<Listener>,
    /// Most clients taken per listener per turn, so a burst cannot starve
    /// the echo.
    batch: u32,
    max_connections: usize,
    /// The listener the current batch takes from, and the one that goes
    /// first next turn.
    current: usize,
    first: usize,
    /// Listeners the current turn has not visited yet, including `current`.
    visits_left: usize,
    /// Clients each listener may take this turn (the whole backlog at
    /// shutdown); those the current one may still take; those taken this
    /// turn in all.
    turn_batch: u32,
    batch_left: u32,
    taken: u64,
    /// Accepting rests until then after EMFILE and friends.
    paused_until: Option<Instant>,
    /// Set while the connection limit holds accepting back, so each such
    /// pause is counted once.
    at_limit: bool,
    /// Under pressure the reasons to warn repeat every turn: one limiter
    /// each, so that one cannot hide the other.
    limit_warnings: WarnLimiter,
    pause_warnings: WarnLimiter,
}

impl Acceptor {
    /// `listeners` with their kinds; their index is how events name them.
    pub fn new(
        listeners: Vec<(TcpListener, SocketKind)>,
        batch: u32,
        max_connections: usize,
    ) -> Self {
        let listeners = listeners
            .into_iter()
            .map(|(socket, kind)| Listener {
                socket,
                kind,
                ready: false,
            })
            .collect();
        Acceptor {
            listeners,
            batch,
            max_connections,
            current: 0,
            first: 0,
            visits_left: 0,
            turn_batch: batch,
            batch_left: 0,
            taken: 0,
            paused_until: None,
            at_limit: false,
            limit_warnings: WarnLimiter::default(),
            pause_warnings: WarnLimiter::default(),
        }
    }

    /// Listener `index` reported new clients while `open` connections are
    /// open.
    pub fn handle_event(&mut self, index: usize, open: usize, now: Instant) {
        // None when closed earlier in this turn (shutdown): nothing to accept.
        let Some(listener) = self.listeners.get_mut(index) else {
            return;
        };
        listener.ready = true;
        if open >= self.max_connections {
            // Said here, where a client is known to be waiting, so that an
            // operator can tell why it hangs.
            crate::warn_limited!(
                self.limit_warnings,
                now,
                "{} open (--max-connections): new clients wait in the backlog",
                crate::connections(self.max_connections)
            );
        }
    }

    /// Whether the next poll must not block: clients are waiting and may be
    /// taken now.
    pub fn wants_turn(&self, open: usize, now: Instant) -> bool {
        self.any_ready()
            && open < self.max_connections
            && self.paused_until.is_none_or(|until| until <= now)
    }

    /// When a pause ends that holds waiting clients back.
    pub fn resume_at(&self) -> Option<Instant> {
        self.paused_until.filter(|_| self.any_ready())
    }

    fn any_ready(&self) -> bool {
        self.listeners.iter().any(|listener| listener.ready)
    }

    /// Begins this turn's batch; false when no client is to be taken now.
    /// `whole_backlog` (at shutdown) takes every client the kernel holds,
    /// up to the connection limit, and ends a pause.
    pub fn start_batch(&mut self, now: Instant, whole_backlog: bool) -> bool {
        if whole_backlog {
            self.listeners.iter_mut().for_each(|l| l.ready = true);
            self.paused_until = None;
        }
        if !self.any_ready() {
            return false;
        }
        if self.paused_until.is_some_and(|until| now < until) {
            return false;
        }
        self.paused_until = None;
        self.turn_batch = if whole_backlog { u32::MAX } else { self.batch };
        self.current = self.first;
        self.first = (self.first + 1) % self.listeners.len();
        self.visits_left = self.listeners.len();
        self.batch_left = self.turn_batch;
        self.taken = 0;
        true
    }

    /// The next client of the batch and the kind of its listener, while
    /// `open` connections are open.
    pub fn next(
        &mut self,
        open: usize,
        now: Instant,
        stats: &mut Stats,
    ) -> Option<(TcpStream, SocketAddr, SocketKind)> {
        while self.visits_left > 0 {
            let listener = &mut self.listeners[self.current];
            if listener.ready && self.batch_left > 0 {
                if open >= self.max_connections {
                    // Leave the rest in the backlog, on every listener; a
                    // close resumes accepting on the turn it happens.
                    if !self.at_limit {
                        self.at_limit = true;
                        stats.accept_pauses_limit += 1;
                    }
                    return None;
                }
                // A client skipped for its own trouble counts too, so a
                // storm of them cannot hold the turn.
                self.batch_left -= 1;
                match listener.accept() {
                    Accepted::Client(stream, peer) => {
                        self.at_limit = false;
                        self.taken += 1;
                        return Some((stream, peer, listener.kind));
                    }
                    Accepted::Skipped => continue,
                    Accepted::Empty => {}
                    Accepted::Failed(err) => {
                        self.pause("accept", &err, now, stats);
                        return None;
                    }
                }
            }
            // This listener is done for the turn: the next one.
            self.visits_left -= 1;
            self.current = (self.current + 1) % self.listeners.len();
            self.batch_left = self.turn_batch;
        }
        None
    }

    /// Ends the batch, for the stats.
    pub fn end_batch(&mut self, stats: &mut Stats) {
        if self.taken > 0 {
            stats.accept_batches += 1;
            stats.largest_batch = stats.largest_batch.max(self.taken);
        }
        self.visits_left = 0;
    }

    /// Closes the listeners: new clients are refused from now on, and
    /// nothing is left to accept or to wait for.
    pub fn close(&mut self) {
        self.listeners.clear();
        self.paused_until = None;
        self.at_limit = false;
    }

    /// Rests accepting for a while: `err` would only repeat at once.
    pub fn pause(&mut self, what: &str, err: &io::Error, now: Instant, stats: &mut Stats) {
        self.visits_left = 0;
        if is_resource_exhaustion(err) {
            stats.accept_pauses_fd += 1;
        }
        self.paused_until = Some(now + PAUSE);
        crate::warn_limited!(
            self.pause_warnings,
            now,
            "{what}: {err}; pausing accepts for {} ms",
            PAUSE.as_millis()
        );
    }
}

/// What one accept came to.
enum Accepted {
    Client(TcpStream, SocketAddr),
    /// One client's trouble: skipped, the next may be fine.
    Skipped,
    /// The queue is empty.
    Empty,
    /// Trouble that would repeat at once.
    Failed(io::Error),
}

impl Listener {
    fn accept(&mut self) -> Accepted {
        match self.socket.accept() {
            Ok((stream, peer)) => Accepted::Client(stream, peer),
            // The queue is empty: the next client brings a new edge.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.ready = false;
                Accepted::Empty
            }
            Err(err) if is_one_clients_failure(&err) => {
                debug!("accept: {err}");
                Accepted::Skipped
            }
            // Out of descriptors or memory (or a listener gone bad):
            // retrying at once would fail again and spin.
            Err(err) => Accepted::Failed(err),
        }
    }
}

/// Errors that belong to one queued client, not to the listener:
/// ECONNABORTED (the client gave up while queued), EINTR, and the network
/// errors Linux passes on from the new socket (accept(2)). Not EPERM: a
/// security module can refuse every accept, and retrying at once would spin.
fn is_one_clients_failure(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Out of descriptors, kernel memory or epoll watches (ENOSPC): waiting
/// helps, exiting does not.
fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ENOSPC)
    )
}
