//! One UDP echo socket as the reactor serves it: every datagram goes back to
//! its source as one datagram, byte for byte. It knows nothing of the poll
//! loop: the reactor says when the socket became readable, and `serve`
//! answers whether to wait for the next event or come back next turn.
//!
//! Nothing is kept per sender and nothing is queued: a datagram the socket
//! will not take at once is dropped and counted, as UDP may drop it anyway,
//! and a queue would be memory any sender could make the server hold.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

use crate::stats::Stats;

/// Most datagrams one socket echoes per loop turn before the others are
/// served: a flood on one socket then delays the other sockets and the TCP
/// connections by at most this many datagrams' work (4 MiB in and out at
/// the largest size) between two of their turns.
pub const DATAGRAMS_PER_TURN: u32 = 64;

/// Receive buffer: exactly the largest UDP payload there can be. The 16-bit
/// length fields set it: IPv6's payload length (65535) less the 8-byte UDP
/// header is 65527 (over `::1`, whose MTU is 64 KiB); IPv4's total length
/// less a 20-byte IP header and the UDP header is 65507. `recv_from` cuts a
/// datagram longer than the buffer without saying so, and the cut part would
/// be echoed as if it were all: the buffer must be no smaller than this, and
/// more would never be used.
pub const BUFFER_BYTES: usize = 65_527;

/// Source ports never answered: 0 (no reply can be meant to go there) and
/// the services that answer any datagram: echo (7), daytime (13), qotd (17),
/// chargen (19), time (37). One datagram spoofed from such a service to us
/// would otherwise bounce between the two forever.
const REFUSED_PORTS: [u16; 6] = [0, 7, 13, 17, 19, 37];

/// What the reactor should do with the socket after `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Drained (`WouldBlock`): the next datagram brings a readiness edge.
    Wait,
    /// This turn's share is used and datagrams may be left: come back next
    /// turn (the run queue), after the others were served.
    Yield,
}

pub struct UdpEcho {
    socket: UdpSocket,
    /// An event said readable and no receive has said `WouldBlock` since:
    /// events are edge-triggered, so while this holds no new event will
    /// come, and serving must not stop without a `Yield`.
    readable: bool,
    /// In the reactor's run queue: set and cleared by the reactor, so that a
    /// socket that yielded is queued once and served once per turn.
    pub queued: bool,
}

impl UdpEcho {
    /// Registering the socket reports datagrams already queued on it (epoll
    /// gives a new registration its current readiness), so it starts as
    /// not readable.
    pub fn new(socket: UdpSocket) -> Self {
        UdpEcho {
            socket,
            readable: false,
            queued: false,
        }
    }

    /// The tests play the reactor: they register the socket themselves.
    #[cfg(test)]
    pub fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// An event said readable (edge-triggered: serve until `WouldBlock`).
    pub fn note_readable(&mut self) {
        self.readable = true;
    }

    /// Echoes what is queued, up to `DATAGRAMS_PER_TURN` datagrams. `buf` is
    /// the loop's receive buffer, at least `BUFFER_BYTES` long.
    pub fn serve(&mut self, buf: &mut [u8], stats: &mut Stats) -> Next {
        debug_assert!(buf.len() >= BUFFER_BYTES, "a datagram could be cut");
        if !self.readable {
            return Next::Wait;
        }
        // Every receive counts, whatever it returns, so the loop is bounded.
        for _ in 0..DATAGRAMS_PER_TURN {
            let (len, source) = match self.socket.recv_from(buf) {
                Ok(received) => received,
                // Drained: the next datagram brings a new event.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Next::Wait;
                }
                // A signal came before anything was taken: try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // A pending socket error (e.g. ECONNREFUSED from an ICMP
                // error an earlier echo provoked) is cleared by this call;
                // the datagrams behind it are still there to serve.
                Err(err) => {
                    log::debug!("udp: receive: {err}");
                    continue;
                }
            };
            stats.udp_in += 1;
            if refuses(source) {
                stats.udp_refused += 1;
                log::debug!("udp: datagram from {source} refused: port of a service that answers");
                continue;
            }
            match self.socket.send_to(&buf[..len], source) {
                Ok(sent) if sent == len => stats.udp_out += 1,
                // A datagram is sent whole or not at all; should the kernel
                // ever say otherwise, the echo was not the datagram.
                Ok(sent) => {
                    stats.udp_dropped += 1;
                    log::debug!("udp: echo to {source}: {sent} of {len} bytes sent");
                }
                // Send buffer full: UDP may drop, and a queue would be
                // memory any sender could make us hold.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    stats.udp_dropped += 1;
                    log::debug!("udp: echo to {source} dropped: send buffer full");
                }
                // Any other failure (EPERM from a firewall, ENOBUFS,
                // unreachable) loses this datagram only: serving goes on.
                Err(err) => {
                    stats.udp_dropped += 1;
                    log::debug!("udp: echo to {source} dropped: {err}");
                }
            }
        }
        Next::Yield
    }
}

/// The loop guard: datagrams from these source ports are never answered.
fn refuses(source: SocketAddr) -> bool {
    REFUSED_PORTS.contains(&source.port())
}

#[cfg(test)]
mod tests;
