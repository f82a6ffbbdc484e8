//! The poll loop: one `mio::Poll` owns the listener, the signal pipe and every
//! connection. Each turn it waits for events, collects the timers that fell
//! due, serves the events, revisits the work it cut short, acts on the due
//! timers and accepts a batch of new connections.
//! It knows nothing of the echo protocol: `Connection::advance` does that.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::connection::{CloseReason, Connection, Io, Next, DRAIN_QUIET};
use crate::stats::Stats;
use crate::timers::{TimerHandle, Wheel};

/// Connections use their slab key as token; these two sit where no key reaches.
const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// The shared read buffer: large enough that one read usually drains a socket.
const READ_BUFFER_BYTES: usize = 64 * 1024;
const EVENTS_PER_POLL: usize = 1024;
/// How long a closing connection may keep sending before we close anyway.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long accepting rests after the process ran out of descriptors or memory.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning about held-back accepts per this interval; the rest
/// are counted.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(1);
/// Descriptors the server needs besides connections: stdio, epoll, listener,
/// the signal pipe, and slack.
const RESERVED_FDS: u64 = 16;

/// A connection as timers name it: slab key plus id, since the key is reused.
type ConnRef = (usize, u64);

pub struct Server {
    poll: Poll,
    /// `None` once shutdown has begun: new clients are refused.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Signals,
    connections: Slab<Connection>,
    /// Reads for every connection land here; see `Io::buf`.
    read_buf: Vec<u8>,
    quit_rule: bool,
    max_buffer: usize,
    accept_batch: u32,
    max_connections: usize,
    shutdown_timeout: Duration,
    /// The listener may have connections queued. Edge-triggered polling will
    /// not report it again until the queue has been drained, so while this is
    /// set the loop comes back to it by itself: after a batch cut short, a
    /// pause, or a turn spent at the connection limit.
    listener_ready: bool,
    /// Set while the connection limit holds accepting back, so each such
    /// pause is counted once.
    at_connection_limit: bool,
    /// Accepting rests until then after EMFILE and friends.
    accept_paused_until: Option<Instant>,
    last_accept_warning: Option<Instant>,
    suppressed_accept_warnings: u64,
    /// Connections that used their share of a turn with work left; served
    /// again next turn, which then polls without blocking.
    yielded: Vec<ConnRef>,
    /// `--idle-timeout` and its deadlines (`None` when it is off), armed once
    /// per connection and re-armed lazily when one fires for a connection
    /// that was active since: O(1) per event.
    idle: Option<(Duration, Wheel<ConnRef>)>,
    linger_timers: Wheel<ConnRef>,
    /// Timers collected at the start of a turn, acted on after its events:
    /// collecting first keeps the wheels current for what the turn arms,
    /// acting last lets input that came with the deadline count.
    due_idle: Vec<ConnRef>,
    due_linger: Vec<ConnRef>,
    /// When the drain after SIGINT/SIGTERM ends; `None` while serving.
    shutdown_deadline: Option<Instant>,
    /// During the drain, when to look again at connections that are waiting
    /// for a quiet spell (they get no event when nothing happens).
    next_drain_check: Option<Instant>,
    stats: Stats,
}

/// What a batch of signals asks for.
enum SignalOutcome {
    Continue,
    ExitNow,
}

impl Server {
    /// Binds the listener (or takes the one systemd passed in) and prepares
    /// the loop. Nothing is served until `run`.
    pub fn bind(config: &Config) -> io::Result<Server> {
        Server::bind_with_signals(config, &[SIGINT, SIGTERM, SIGUSR1])
    }

    /// `bind`, handling only `signals`: unit tests take none, so that no
    /// handler outlives them in the test process.
    fn bind_with_signals(config: &Config, signals: &[libc::c_int]) -> io::Result<Server> {
        let listener = open_listener(config)?;
        let mut listener = TcpListener::from_std(listener);
        let local_addr = listener.local_addr()?;

        let poll = Poll::new().map_err(|err| context(err, "cannot create the poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals =
            Signals::new(signals).map_err(|err| context(err, "cannot install signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let max_connections = connection_limit(config.max_connections)
            .map_err(|err| context(err, "cannot read RLIMIT_NOFILE"))?;

        let now = Instant::now();
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            signals,
            connections: Slab::new(),
            read_buf: vec![0; READ_BUFFER_BYTES],
            quit_rule: !config.no_quit,
            max_buffer: config.max_buffer as usize,
            accept_batch: config.accept_batch,
            max_connections,
            shutdown_timeout: config.shutdown_timeout,
            listener_ready: false,
            at_connection_limit: false,
            accept_paused_until: None,
            last_accept_warning: None,
            suppressed_accept_warnings: 0,
            yielded: Vec::new(),
            idle: (!config.idle_timeout.is_zero())
                .then(|| (config.idle_timeout, Wheel::new(config.idle_timeout, now))),
            linger_timers: Wheel::new(LINGER_TIMEOUT, now),
            due_idle: Vec::new(),
            due_linger: Vec::new(),
            shutdown_deadline: None,
            next_drain_check: None,
            stats: Stats::default(),
        })
    }

    /// The address actually bound: with port 0, the port the kernel chose.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until a signal ends it; returns the final counters.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut now = Instant::now();
        loop {
            // `now` is as old as this turn's work (microseconds): one clock
            // read per turn is enough for deadlines measured in milliseconds.
            let timeout = self.poll_timeout(now);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                // A signal arrived while blocked (it is read from the pipe),
                // or a stop and resume: the deadlines count from the real
                // time, which the stop may have moved far on.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    now = Instant::now();
                    continue;
                }
                Err(err) => return Err(err),
            }
            now = Instant::now();
            self.collect_due_timers(now);
            // Signals first, so that a shutdown refuses new clients without
            // waiting for this turn's work. Its last accepts take only keys
            // that were free before the poll, which no event of it names.
            if events.iter().any(|event| event.token() == SIGNALS) {
                if let SignalOutcome::ExitNow = self.handle_signals(now) {
                    warn!(
                        "second signal: closing {} now",
                        connections(self.connections.len())
                    );
                    return Ok(self.finish());
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.listener_event(now),
                    SIGNALS => {}
                    Token(key) => {
                        // An event for a connection closed earlier in this
                        // batch finds no entry: keys freed now are reused
                        // only by accepts, which come after the events.
                        if let Some(connection) = self.connections.get_mut(key) {
                            connection.note_event(
                                event.is_readable() || event.is_error(),
                                event.is_read_closed(),
                            );
                            self.serve(key, now);
                        }
                    }
                }
            }
            for (key, id) in std::mem::take(&mut self.yielded) {
                if self.connections.get(key).is_some_and(|c| c.id == id) {
                    self.serve(key, now);
                }
            }
            self.fire_due_timers(now);
            self.accept_batch(now);
            if let Some(deadline) = self.shutdown_deadline {
                if self.next_drain_check.is_some_and(|at| at <= now) {
                    self.revisit_all(now);
                }
                if self.connections.is_empty() {
                    return Ok(self.finish());
                }
                if now >= deadline {
                    info!(
                        "shutdown timeout: closing {} that did not finish",
                        connections(self.connections.len())
                    );
                    return Ok(self.finish());
                }
            }
        }
    }

    /// Lets one connection do what its socket allows, and acts on its answer.
    fn serve(&mut self, key: usize, now: Instant) {
        let connection = &mut self.connections[key];
        let mut io = Io {
            buf: &mut self.read_buf,
            stats: &mut self.stats,
            now,
            max_buffer: self.max_buffer,
        };
        let next = connection.advance(&mut io);
        if let Next::Close(reason) = next {
            return self.close(key, reason);
        }
        // Armed from the phase, not from the turn lingering began: that turn
        // may end in a yield (a flood to discard) rather than a wait.
        if connection.is_lingering() && connection.linger_timer.is_none() {
            let timer = self
                .linger_timers
                .insert(now + LINGER_TIMEOUT, (key, connection.id));
            connection.linger_timer = Some(timer);
        }
        if next == Next::Yield {
            self.yielded.push((key, connection.id));
        }
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        // Dropping the stream closes it, which also takes it out of epoll.
        let connection = self.connections.remove(key);
        if let (Some(timer), Some((_, timers))) = (connection.idle_timer, &mut self.idle) {
            cancel_timer(timers, timer, &mut self.connections, |c| &mut c.idle_timer);
        }
        if let Some(timer) = connection.linger_timer {
            cancel_timer(&mut self.linger_timers, timer, &mut self.connections, |c| {
                &mut c.linger_timer
            });
        }
        self.stats.record_close(reason);
        debug!("connection {} closed ({reason:?})", connection.id);
    }

    /// A client has joined the listen queue.
    fn listener_event(&mut self, now: Instant) {
        self.listener_ready = true;
        if self.connections.len() >= self.max_connections {
            // Said here, where a client is known to be waiting, so that an
            // operator can tell why it hangs.
            let open = connections(self.max_connections);
            self.warn_accept(now, || {
                format!("{open} open (--max-connections): new clients wait in the backlog")
            });
        }
    }

    /// Accepts until the kernel's queue is empty or the batch is full.
    fn accept_batch(&mut self, now: Instant) {
        if !self.listener_ready || self.listener.is_none() {
            return;
        }
        if let Some(until) = self.accept_paused_until {
            if now < until {
                return;
            }
            self.accept_paused_until = None;
        }
        let mut accepted = 0;
        for _ in 0..self.accept_batch {
            if self.connections.len() >= self.max_connections {
                // Leave the rest waiting in the backlog; a close resumes
                // accepting on the turn it happens.
                if !self.at_connection_limit {
                    self.at_connection_limit = true;
                    self.stats.accept_pauses_limit += 1;
                }
                break;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.at_connection_limit = false;
                    if let Err(err) = self.add_connection(stream, peer, now) {
                        // Out of epoll watches or kernel memory: the next
                        // connection would fare no better.
                        self.pause_accepting(
                            "cannot register a connection with the poll",
                            &err,
                            now,
                        );
                        break;
                    }
                    accepted += 1;
                }
                // The queue is empty: the next connection brings a new edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    break;
                }
                // One connection's trouble: skip it and take the next.
                Err(err) if is_one_connections_failure(&err) => debug!("accept: {err}"),
                // Out of descriptors or memory (or a listener gone bad):
                // retrying at once would fail again and spin.
                Err(err) => {
                    self.pause_accepting("accept", &err, now);
                    break;
                }
            }
        }
        if accepted > 0 {
            self.stats.accept_batches += 1;
            self.stats.largest_batch = self.stats.largest_batch.max(accepted);
        }
    }

    /// Registers and keeps a new connection; on error it is dropped (closed).
    fn add_connection(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
    ) -> io::Result<()> {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        // Registered once for both directions: no epoll_ctl per message.
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let id = self.stats.accepted;
        self.stats.accepted += 1;
        let mut connection = Connection::new(stream, id, self.quit_rule, now);
        if let Some((timeout, timers)) = &mut self.idle {
            connection.idle_timer = Some(timers.insert(now + *timeout, (key, id)));
        }
        entry.insert(connection);
        debug!("connection {id} from {peer} opened");
        Ok(())
    }

    fn pause_accepting(&mut self, what: &str, err: &io::Error, now: Instant) {
        if is_resource_exhaustion(err) {
            self.stats.accept_pauses_fd += 1;
        }
        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
        self.warn_accept(now, || {
            format!(
                "{what}: {err}; pausing accepts for {} ms",
                ACCEPT_PAUSE.as_millis()
            )
        });
    }

    /// Warns that accepting is held back, at most once per
    /// `ACCEPT_WARNING_INTERVAL`: under pressure this happens every turn, and
    /// the log must not become the next thing to fill up.
    fn warn_accept(&mut self, now: Instant, message: impl FnOnce() -> String) {
        let recently = self
            .last_accept_warning
            .is_some_and(|at| now.duration_since(at) < ACCEPT_WARNING_INTERVAL);
        if recently {
            self.suppressed_accept_warnings += 1;
            return;
        }
        let suppressed = match self.suppressed_accept_warnings {
            0 => String::new(),
            n => format!(" ({n} similar warnings suppressed)"),
        };
        warn!("{}{suppressed}", message());
        self.last_accept_warning = Some(now);
        self.suppressed_accept_warnings = 0;
    }

    /// Moves the wheels up to `now` and takes out what fell due, before the
    /// turn arms anything: a wheel reaches only one horizon ahead of where it
    /// last collected, so arming from a stale position would fire early.
    fn collect_due_timers(&mut self, now: Instant) {
        if let Some((_, timers)) = &mut self.idle {
            timers.expire(now, &mut self.due_idle);
        }
        self.linger_timers.expire(now, &mut self.due_linger);
        // Out of the wheels now: `close` must not cancel them again.
        for &(key, id) in &self.due_idle {
            if let Some(connection) = self.connections.get_mut(key).filter(|c| c.id == id) {
                connection.idle_timer = None;
            }
        }
        for &(key, id) in &self.due_linger {
            if let Some(connection) = self.connections.get_mut(key).filter(|c| c.id == id) {
                connection.linger_timer = None;
            }
        }
    }

    /// Acts on the timers collected at the start of the turn, now that its
    /// events have been served.
    fn fire_due_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due_idle);
        for (key, id) in due.drain(..) {
            let Some(connection) = self.connections.get_mut(key).filter(|c| c.id == id) else {
                continue;
            };
            let Some((timeout, timers)) = &mut self.idle else {
                break;
            };
            let deadline = connection.last_active + *timeout;
            if deadline > now {
                // Active since the timer was armed: arm it for the new
                // deadline instead of touching timers on every event.
                connection.idle_timer = Some(timers.insert(deadline, (key, id)));
                continue;
            }
            debug!("connection {id}: idle for {timeout:?}");
            self.close(key, CloseReason::Idle);
        }
        self.due_idle = due;
        let mut due = std::mem::take(&mut self.due_linger);
        for (key, id) in due.drain(..) {
            if let Some(connection) = self.connections.get(key).filter(|c| c.id == id) {
                let reason = connection.close_reason();
                self.close(key, reason);
            }
        }
        self.due_linger = due;
    }

    /// How long the next poll may block: not at all when work is waiting,
    /// else until the nearest deadline, else forever.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let can_accept = self.listener.is_some()
            && self.connections.len() < self.max_connections
            && self.accept_paused_until.is_none_or(|until| until <= now);
        if !self.yielded.is_empty() || (self.listener_ready && can_accept) {
            return Some(Duration::ZERO);
        }
        let accept_resume = self
            .accept_paused_until
            .filter(|_| self.listener_ready && self.listener.is_some());
        [
            self.idle
                .as_ref()
                .and_then(|(_, timers)| timers.next_deadline()),
            self.linger_timers.next_deadline(),
            accept_resume,
            self.shutdown_deadline,
            self.next_drain_check,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn handle_signals(&mut self, now: Instant) -> SignalOutcome {
        let mut outcome = SignalOutcome::Continue;
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGUSR1 => info!("stats: {}", self.stats()),
                _ if self.shutdown_deadline.is_some() => outcome = SignalOutcome::ExitNow,
                _ => self.begin_shutdown(now),
            }
        }
        outcome
    }

    /// The counters, with `active` read off the slab.
    fn stats(&self) -> Stats {
        Stats {
            active: self.connections.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Stops accepting and lets every connection finish what it was sent.
    fn begin_shutdown(&mut self, now: Instant) {
        // Clients whose handshake the kernel has completed already think
        // they are connected, and may have sent data: closing the listener
        // would reset them. Take them in (up to the limit) to be drained.
        self.listener_ready = true;
        loop {
            let accepted = self.stats.accepted;
            self.accept_batch(now);
            if !self.listener_ready || self.stats.accepted == accepted {
                break;
            }
        }
        info!(
            "shutting down: draining {} (at most {}s)",
            connections(self.connections.len()),
            self.shutdown_timeout.as_secs_f64()
        );
        // Closing the listener refuses new clients at once; nothing is left
        // to accept, or to wait for before accepting.
        self.listener = None;
        self.listener_ready = false;
        self.accept_paused_until = None;
        self.at_connection_limit = false;
        self.shutdown_deadline = Some(now + self.shutdown_timeout);
        for (_, connection) in self.connections.iter_mut() {
            connection.begin_shutdown();
        }
        self.revisit_all(now);
    }

    /// Serves every connection next turn, and again a little later: during
    /// the drain, a quiet connection is closed by a visit, not by an event.
    fn revisit_all(&mut self, now: Instant) {
        // Every connection, once: those already yielded are among them.
        self.yielded.clear();
        self.yielded
            .extend(self.connections.iter().map(|(key, c)| (key, c.id)));
        self.next_drain_check = Some(now + DRAIN_QUIET / 2);
    }

    /// Closes what is left and reports the totals.
    fn finish(mut self) -> Stats {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, CloseReason::Shutdown);
        }
        let stats = self.stats();
        info!("final stats: {stats}");
        stats
    }
}

/// Cancels `timer`. The connection whose timer the wheel moved into its
/// place learns its new handle through `field`.
fn cancel_timer(
    timers: &mut Wheel<ConnRef>,
    timer: TimerHandle,
    connections: &mut Slab<Connection>,
    field: fn(&mut Connection) -> &mut Option<TimerHandle>,
) {
    if let Some(((key, id), timer)) = timers.cancel(timer) {
        // Every armed entry names a live connection (closing cancels its
        // timers), so this always finds it; the id check keeps a broken
        // invariant from touching another connection's timer.
        let moved = connections.get_mut(key).filter(|c| c.id == id);
        debug_assert!(moved.is_some(), "timer entry for a closed connection");
        if let Some(moved) = moved {
            *field(moved) = Some(timer);
        }
    }
}

/// The listening socket systemd passed in (when `LISTEN_FDS`/`LISTEN_PID`
/// name this process), else a new one bound to `--listen`. Errors say which.
fn open_listener(config: &Config) -> io::Result<std::net::TcpListener> {
    let inherited = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .map_err(|err| context(err, "cannot use the socket passed in LISTEN_FDS"))?;
    let listener = match inherited {
        Some(listener) => {
            // accept on a socket that is not listening fails every time.
            if !socket2::SockRef::from(&listener).is_listener()? {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the socket passed in LISTEN_FDS is not listening",
                ));
            }
            info!("serving the listening socket passed in LISTEN_FDS");
            listener
        }
        None => bind_listener(config)
            .map_err(|err| context(err, &format!("cannot listen on {}", config.listen)))?,
    };
    listener.set_nonblocking(true)?;
    // Echo is request/response: Nagle would hold small echoes back waiting
    // for the client's ACK. Accepted sockets inherit TCP_NODELAY from the
    // listener on Linux, which saves a setsockopt per connection.
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    Ok(listener)
}

/// "1 connection", "3 connections": for the log.
fn connections(n: usize) -> String {
    format!("{n} connection{}", if n == 1 { "" } else { "s" })
}

fn context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

fn bind_listener(config: &Config) -> io::Result<std::net::TcpListener> {
    let addr = config.listen;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restart without waiting for TIME_WAIT to clear; a live listener on the
    // port still makes bind fail.
    socket.set_reuse_address(true)?;
    if config.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(config.backlog)?;
    Ok(socket.into())
}

/// `--max-connections`, lowered to what RLIMIT_NOFILE allows (after raising
/// the soft limit toward the hard one if it is short).
fn connection_limit(wanted: u32) -> io::Result<usize> {
    let fds_wanted = u64::from(wanted) + RESERVED_FDS;
    let fds = rlimit::increase_nofile_limit(fds_wanted)?;
    let limit = u64::from(wanted)
        .min(fds.saturating_sub(RESERVED_FDS))
        .max(1);
    if limit < u64::from(wanted) {
        warn!(
            "RLIMIT_NOFILE is {fds}: accepting at most {}, not {wanted}",
            connections(limit as usize)
        );
    } else {
        info!("accepting at most {}", connections(limit as usize));
    }
    Ok(limit as usize)
}

/// Errors that belong to one queued connection, not to the listener:
/// ECONNABORTED (the client gave up while queued), EINTR, and the network
/// errors Linux passes on from the new socket (accept(2)). Not EPERM: a
/// security module can refuse every accept, and retrying at once would spin.
fn is_one_connections_failure(err: &io::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_tcp_nodelay_from_the_listener() {
        // The listener as `Server::bind` opens it, without the signal
        // handlers that would outlive this test in the test process.
        let config = Config::with_listen("127.0.0.1:0".parse().unwrap());
        let listener = open_listener(&config).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // On loopback, connect returns once the handshake is done, so the
        // connection is already queued.
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn lingering_that_begins_in_a_yielding_turn_is_still_timed() {
        use std::io::Write;
        let config = Config::with_listen("127.0.0.1:0".parse().unwrap());
        let mut server = Server::bind_with_signals(&config, &[]).unwrap();
        // A small read buffer: one turn's share of reads (16) no longer
        // drains what waits behind the quit line.
        server.read_buf = vec![0; 1024];
        let mut client = std::net::TcpStream::connect(server.local_addr()).unwrap();
        // On loopback the bytes are in the server's socket when this returns.
        client.write_all(b"quit\n").unwrap();
        client.write_all(&[b'x'; 64 << 10]).unwrap();

        let now = Instant::now();
        server.listener_ready = true;
        server.accept_batch(now);
        let key = server.connections.iter().next().expect("accepted").0;
        server.connections[key].note_event(true, false);
        // As a turn does: the wheels are brought up to `now` first.
        server.collect_due_timers(now);
        server.serve(key, now);

        let connection = &server.connections[key];
        assert!(connection.is_lingering());
        assert_eq!(server.yielded.len(), 1, "the turn must end in a yield");
        assert!(
            connection.linger_timer.is_some(),
            "lingering with no deadline: only the client could end it"
        );
    }
}
