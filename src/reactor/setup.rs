//! Setting the reactor up: the sockets, the poll and the state of the loop.

use super::*;

impl Reactor {
    /// Binds the sockets (or takes the ones systemd passed in) and prepares
    /// the loop. Nothing is served until `run`.
    pub fn bind(config: &Config) -> io::Result<Reactor> {
        Reactor::bind_with_signals(config, &[SIGINT, SIGTERM, SIGHUP, SIGUSR1])
    }

    /// `bind`, handling only `signals`: unit tests take none, so that no
    /// handler outlives them in the test process.
    pub(super) fn bind_with_signals(
        config: &Config,
        signals: &[libc::c_int],
    ) -> io::Result<Reactor> {
        let (opened, source) = listener::open(config)?;
        listener::warn_untrusted(&opened, config);
        let poll = Poll::new().map_err(|err| context(err, "cannot create the poll"))?;
        let endpoints = opened.iter().map(|o| (o.kind, o.addr)).collect();
        let (mut listeners, mut udp) = (Vec::new(), Vec::new());
        for opened in opened {
            if opened.kind == SocketKind::Udp {
                let mut socket = mio::net::UdpSocket::from_std(opened.socket.into());
                let token = Token(FIRST_UDP + udp.len());
                poll.registry()
                    .register(&mut socket, token, Interest::READABLE)?;
                udp.push(UdpEcho::new(socket));
            } else {
                let mut socket = mio::net::TcpListener::from_std(opened.socket.into());
                let token = Token(FIRST_LISTENER + listeners.len());
                poll.registry()
                    .register(&mut socket, token, Interest::READABLE)?;
                listeners.push((socket, opened.kind));
            }
        }
        let mut signals =
            Signals::new(signals).map_err(|err| context(err, "cannot install signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let sockets = listeners.len() + udp.len();
        let max_connections = listener::connection_limit(config.max_connections, sockets)?;

        let now = Instant::now();
        let idle_timeout = (!config.idle_timeout.is_zero()).then_some(config.idle_timeout);
        Ok(Reactor {
            poll,
            endpoints,
            source,
            signals,
            acceptor: Acceptor::new(listeners, config.accept_batch, max_connections),
            connections: Slab::new(),
            udp_buf: match udp.is_empty() {
                true => Vec::new(),
                false => vec![0; udp::BUFFER_BYTES],
            },
            udp,
            run_queue: RunQueue::default(),
            memory_waiters: MemoryWaiters::default(),
            deadlines: Deadlines::new(idle_timeout, LINGER.max(HEADER_WAIT), now),
            idle_timeout,
            shutdown: Shutdown::new(config.shutdown_timeout, LINGER),
            shared: Shared {
                buf: vec![0; READ_BUFFER_BYTES],
                stats: Stats::default(),
                now,
                max_buffer: config.max_buffer as usize,
                max_memory: config.max_memory,
                // Per-connection warnings, limited together.
                warnings: WarnLimiter::default(),
            },
            quit_rule: !config.no_quit,
            proxy_trust: config.proxy_trust.clone(),
            max_connections,
            next_id: 0,
        })
    }

    /// The sockets served, in order, with the addresses actually bound
    /// (with port 0, the port the kernel chose).
    pub fn endpoints(&self) -> &[(SocketKind, SocketAddr)] {
        &self.endpoints
    }

    /// Whether the sockets came from the flags or from `LISTEN_FDS`.
    pub fn source(&self) -> Source {
        self.source
    }

    /// `--max-connections`, as lowered to what the descriptor limit allows.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}
