//! Setting up at start: the sockets to serve (bound to the socket flags, or
//! passed in by systemd) with the options every accepted socket inherits,
//! and the connection limit the descriptor limit allows.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{info, warn};
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use crate::config::{Config, Endpoint};
use crate::endpoint::SocketKind;

/// Descriptors the server needs besides connections: stdio, epoll, the
/// signal pipe, and slack (listeners are counted apart).
const RESERVED_FDS: u64 = 16;

/// TCP keepalive probes before a silent peer is given up (as Redis).
const KEEPALIVE_PROBES: u32 = 3;

/// A socket ready to serve.
pub struct Opened {
    pub kind: SocketKind,
    pub addr: SocketAddr,
    pub socket: Socket,
}

/// Where the sockets came from, for the start-up line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flags,
    ListenFds,
}

/// The sockets systemd passed in (when `LISTEN_FDS`/`LISTEN_PID` name this
/// process), else new ones bound to the socket flags, in their order.
/// Errors say which socket failed.
pub fn open(config: &Config) -> io::Result<(Vec<Opened>, Source)> {
    let inherited = crate::activation::inherited()
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let (sockets, source) = match inherited {
        Some(sockets) => (sockets, Source::ListenFds),
        None => (bind_all(config)?, Source::Flags),
    };
    let mut opened = Vec::with_capacity(sockets.len());
    for (kind, socket) in sockets {
        let addr = local_addr(&socket)?;
        prepare(&socket, kind, config.keepalive)
            .map_err(|err| context(err, &format!("cannot set up {addr}{}", kind.suffix(" "))))?;
        opened.push(Opened { kind, addr, socket });
    }
    if source == Source::ListenFds {
        info!(
            "serving the sockets passed in LISTEN_FDS ({}) instead of {}: the socket flags, \
             --backlog and --reuse-port are ignored",
            names(opened.iter().map(|o| (o.kind, o.addr))),
            flags_given(config)
        );
    }
    Ok((opened, source))
}

/// `127.0.0.1:7007,127.0.0.1:7007/udp`: sockets for one log field.
pub fn names(sockets: impl Iterator<Item = (SocketKind, SocketAddr)>) -> String {
    let names: Vec<String> = sockets
        .map(|(kind, addr)| format!("{addr}{}", kind.suffix("/")))
        .collect();
    names.join(",")
}

/// The socket flags as given, for the line saying they were ignored.
fn flags_given(config: &Config) -> String {
    if config.listen.is_empty() && config.proxy_listen.is_empty() && config.udp.is_empty() {
        return "the default --listen".to_string();
    }
    let flags: Vec<String> = config
        .endpoints()
        .iter()
        .map(|e| format!("{} {}", e.kind.flag(), e.addresses.text))
        .collect();
    flags.join(" ")
}

/// Every address of every socket flag, in command-line order.
fn bind_all(config: &Config) -> io::Result<Vec<(SocketKind, Socket)>> {
    let mut sockets = Vec::new();
    for Endpoint { kind, addresses } in config.endpoints() {
        // Port 0 with several addresses: all take the port the kernel
        // chose for the first, so one name is one port.
        let mut port = None;
        for &addr in &addresses.addrs {
            let mut addr = addr;
            if let (0, Some(chosen)) = (addr.port(), port) {
                addr.set_port(chosen);
            }
            let socket = bind(addr, kind, config).map_err(|err| {
                let what = match kind {
                    SocketKind::Udp => format!("cannot listen on {addr} (udp)"),
                    _ => format!("cannot listen on {addr}"),
                };
                context(err, &what)
            })?;
            port.get_or_insert(local_addr(&socket)?.port());
            sockets.push((kind, socket));
        }
    }
    Ok(sockets)
}

fn bind(addr: SocketAddr, kind: SocketKind, config: &Config) -> io::Result<Socket> {
    let (ty, protocol) = match kind {
        SocketKind::Udp => (Type::DGRAM, Protocol::UDP),
        SocketKind::Tcp | SocketKind::Proxy => (Type::STREAM, Protocol::TCP),
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // IPv6 only, so that `0.0.0.0:P` and `[::]:P` can both be bound
        // (and mean what they say) whatever net.ipv6.bindv6only is. (Not
        // on other IPv6 addresses: an IPv4-mapped one needs it off.)
        socket.set_only_v6(true)?;
    }
    if kind != SocketKind::Udp {
        // Restart without waiting for TIME_WAIT to clear; a live listener
        // on the port still makes bind fail.
        socket.set_reuse_address(true)?;
    }
    if config.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    if kind != SocketKind::Udp {
        socket.listen(config.backlog)?;
    }
    Ok(socket)
}

/// Options for serving from one loop, set once per socket. Linux copies a
/// listener's options to every accepted socket, which saves setsockopt
/// calls per connection (a test checks that it does):
/// - Echo is request/response: Nagle would hold small echoes back waiting
///   for the client's ACK.
/// - Urgent data (telnet's interrupt) stays in the stream, so its byte is
///   echoed in order like any other.
/// - Keepalive finds peers that vanished without a FIN or RST.
fn prepare(socket: &Socket, kind: SocketKind, keepalive_secs: u32) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    if kind == SocketKind::Udp {
        return Ok(());
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_out_of_band_inline(true)?;
    if keepalive_secs > 0 {
        let idle = Duration::from_secs(keepalive_secs.into());
        let keepalive = TcpKeepalive::new()
            .with_time(idle)
            .with_interval((idle / 3).max(Duration::from_secs(1)))
            .with_retries(KEEPALIVE_PROBES);
        socket.set_tcp_keepalive(&keepalive)?;
    }
    Ok(())
}

fn local_addr(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}

/// Warns about PROXY listeners anyone may reach while every peer is
/// trusted: a client there could claim any address.
pub fn warn_untrusted(opened: &[Opened], config: &Config) {
    if !config.proxy_trust.is_empty() {
        return;
    }
    for socket in opened {
        if socket.kind == SocketKind::Proxy && !socket.addr.ip().is_loopback() {
            warn!(
                "PROXY listener {} trusts every peer: any client that reaches it can claim \
                 any address; limit it with --proxy-trust CIDR",
                socket.addr
            );
        }
    }
}

/// `--max-connections`, lowered to what RLIMIT_NOFILE allows (after raising
/// the soft limit toward the hard one if it is short) besides the server's
/// own descriptors and its `sockets`.
pub fn connection_limit(wanted: u32, sockets: usize) -> io::Result<usize> {
    let reserved = RESERVED_FDS + sockets as u64;
    let fds_wanted = u64::from(wanted) + reserved;
    let fds = rlimit::increase_nofile_limit(fds_wanted)
        .map_err(|err| context(err, "cannot read RLIMIT_NOFILE"))?;
    let limit = u64::from(wanted).min(fds.saturating_sub(reserved)).max(1);
    if limit < u64::from(wanted) {
        warn!(
            "RLIMIT_NOFILE is {fds}: accepting at most {}, not {wanted}",
            crate::connections(limit as usize)
        );
    } else {
        info!("accepting at most {}", crate::connections(limit as usize));
    }
    Ok(limit as usize)
}

pub fn context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
        config.keepalive = 60;
        let (mut opened, _) = open(&config).unwrap();
        let listener = std::net::TcpListener::from(opened.remove(0).socket);
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // On loopback, connect returns once the handshake is done, so the
        // client is already queued.
        let (accepted, _) = listener.accept().unwrap();
        let socket = SockRef::from(&accepted);
        assert!(socket.tcp_nodelay().unwrap(), "TCP_NODELAY");
        assert!(socket.out_of_band_inline().unwrap(), "SO_OOBINLINE");
        assert!(socket.keepalive().unwrap(), "SO_KEEPALIVE");
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(20)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
    }

    #[test]
    fn an_ipv4_mapped_address_binds_and_serves_ipv4_clients() {
        let config = Config::with_listen("[::ffff:127.0.0.1]:0".parse().unwrap());
        let (mut opened, _) = open(&config).unwrap();
        let listener = std::net::TcpListener::from(opened.remove(0).socket);
        let port = listener.local_addr().unwrap().port();
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    }
}
