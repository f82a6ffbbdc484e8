//! Accept policy: when to take new clients off the listener and how many.
//!
//! The listener is edge-triggered: one event says "the queue is no longer
//! empty", not how many are waiting. So `ready` stays set until an accept
//! says `WouldBlock`, and the loop comes back by itself after a batch cut
//! short, a pause after running out of descriptors, or a turn spent at the
//! connection limit.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;
use mio::net::{TcpListener, TcpStream};

use crate::logging::WarnLimiter;
use crate::stats::Stats;

/// How long accepting rests after the process ran out of descriptors or memory.
const PAUSE: Duration = Duration::from_millis(100);

pub struct Acceptor {
    /// `None` once shutdown has begun: new clients are refused.
    listener: Option<TcpListener>,
    /// The listen queue may hold clients (see the module doc).
    ready: bool,
    /// Most clients taken per turn, so a burst cannot starve the echo.
    batch: u32,
    max_connections: usize,
    /// Clients the current batch may still take, and has taken.
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
    pub fn new(listener: TcpListener, batch: u32, max_connections: usize) -> Self {
        Acceptor {
            listener: Some(listener),
            ready: false,
            batch,
            max_connections,
            batch_left: 0,
            taken: 0,
            paused_until: None,
            at_limit: false,
            limit_warnings: WarnLimiter::default(),
            pause_warnings: WarnLimiter::default(),
        }
    }

    /// The listener reported new clients while `open` connections are open.
    pub fn handle_event(&mut self, open: usize, now: Instant) {
        if self.listener.is_none() {
            // Closed earlier in this turn (shutdown): nothing to accept.
            return;
        }
        self.ready = true;
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
        self.ready
            && self.listener.is_some()
            && open < self.max_connections
            && self.paused_until.is_none_or(|until| until <= now)
    }

    /// When a pause ends that holds waiting clients back.
    pub fn resume_at(&self) -> Option<Instant> {
        self.paused_until
            .filter(|_| self.ready && self.listener.is_some())
    }

    /// Begins this turn's batch; false when no client is to be taken now.
    /// `whole_backlog` (at shutdown) takes every client the kernel holds,
    /// up to the connection limit, and ends a pause.
    pub fn start_batch(&mut self, now: Instant, whole_backlog: bool) -> bool {
        if whole_backlog {
            self.ready = true;
            self.paused_until = None;
        }
        if !self.ready || self.listener.is_none() {
            return false;
        }
        if self.paused_until.is_some_and(|until| now < until) {
            return false;
        }
        self.paused_until = None;
        self.batch_left = if whole_backlog { u32::MAX } else { self.batch };
        self.taken = 0;
        true
    }

    /// The next client of the batch, while `open` connections are open.
    pub fn next(
        &mut self,
        open: usize,
        now: Instant,
        stats: &mut Stats,
    ) -> Option<(TcpStream, SocketAddr)> {
        let listener = self.listener.as_ref()?;
        while self.batch_left > 0 {
            if open >= self.max_connections {
                // Leave the rest in the backlog; a close resumes accepting
                // on the turn it happens.
                if !self.at_limit {
                    self.at_limit = true;
                    stats.accept_pauses_limit += 1;
                }
                return None;
            }
            match listener.accept() {
                Ok(client) => {
                    self.at_limit = false;
                    self.batch_left -= 1;
                    self.taken += 1;
                    return Some(client);
                }
                // The queue is empty: the next client brings a new edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return None;
                }
                // One client's trouble: skip it and take the next (it
                // counts against the batch, so a storm of them cannot
                // hold the turn).
                Err(err) if is_one_clients_failure(&err) => {
                    self.batch_left -= 1;
                    debug!("accept: {err}");
                }
                // Out of descriptors or memory (or a listener gone bad):
                // retrying at once would fail again and spin.
                Err(err) => {
                    self.pause("accept", &err, now, stats);
                    return None;
                }
            }
        }
        None
    }

    /// Ends the batch, for the stats.
    pub fn end_batch(&mut self, stats: &mut Stats) {
        if self.taken > 0 {
            stats.accept_batches += 1;
            stats.largest_batch = stats.largest_batch.max(self.taken);
        }
        self.batch_left = 0;
    }

    /// Closes the listener: new clients are refused from now on, and nothing
    /// is left to accept or to wait for.
    pub fn close(&mut self) {
        self.listener = None;
        self.ready = false;
        self.paused_until = None;
        self.at_limit = false;
    }

    /// Rests accepting for a while: `err` would only repeat at once.
    pub fn pause(&mut self, what: &str, err: &io::Error, now: Instant, stats: &mut Stats) {
        self.batch_left = 0;
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
