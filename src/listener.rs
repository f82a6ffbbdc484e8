//! Setting up at start: the listening socket (bound, or passed in by
//! systemd) with the options every accepted socket inherits, and the
//! connection limit the descriptor limit allows.

use std::io;

use log::{info, warn};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::config::Config;

/// Descriptors the server needs besides connections: stdio, epoll, listener,
/// the signal pipe, and slack.
const RESERVED_FDS: u64 = 16;

/// The listening socket systemd passed in (when `LISTEN_FDS`/`LISTEN_PID`
/// name this process), else a new one bound to `--listen`. Errors say which.
pub fn open(config: &Config) -> io::Result<std::net::TcpListener> {
    let inherited = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .map_err(|err| context(err, "cannot use the socket passed in LISTEN_FDS"))?;
    let listener = match inherited {
        Some(listener) => {
            // accept on a socket that is not listening fails every time.
            if !SockRef::from(&listener).is_listener()? {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the socket passed in LISTEN_FDS is not listening",
                ));
            }
            info!(
                "serving the listening socket passed in LISTEN_FDS ({}) instead of \
                 --listen {}: --listen, --backlog and --reuse-port are ignored",
                listener.local_addr()?,
                config.listen
            );
            listener
        }
        None => bind(config)
            .map_err(|err| context(err, &format!("cannot listen on {}", config.listen)))?,
    };
    listener.set_nonblocking(true)?;
    // Linux copies these to every accepted socket, which saves a setsockopt
    // per connection (a test checks that it does):
    // - Echo is request/response: Nagle would hold small echoes back
    //   waiting for the client's ACK.
    // - Urgent data (telnet's interrupt) stays in the stream, so its byte is
    //   echoed in order like any other.
    let socket = SockRef::from(&listener);
    socket.set_tcp_nodelay(true)?;
    socket.set_out_of_band_inline(true)?;
    Ok(listener)
}

fn bind(config: &Config) -> io::Result<std::net::TcpListener> {
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
pub fn connection_limit(wanted: u32) -> io::Result<usize> {
    let fds_wanted = u64::from(wanted) + RESERVED_FDS;
    let fds = rlimit::increase_nofile_limit(fds_wanted)
        .map_err(|err| context(err, "cannot read RLIMIT_NOFILE"))?;
    let limit = u64::from(wanted)
        .min(fds.saturating_sub(RESERVED_FDS))
        .max(1);
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

    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let config = Config::with_listen("127.0.0.1:0".parse().unwrap());
        let listener = open(&config).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // On loopback, connect returns once the handshake is done, so the
        // client is already queued.
        let (accepted, _) = listener.accept().unwrap();
        let socket = SockRef::from(&accepted);
        assert!(socket.tcp_nodelay().unwrap(), "TCP_NODELAY");
        assert!(socket.out_of_band_inline().unwrap(), "SO_OOBINLINE");
    }
}
