//! What a socket the server listens on is for.

/// The three kinds of socket the server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A TCP listener whose clients are echoed from their first byte.
    Tcp,
    /// A TCP listener whose clients begin with a PROXY protocol header.
    Proxy,
    /// A UDP socket: each datagram is echoed to its sender.
    Udp,
}

impl SocketKind {
    /// What follows an address to name the kind, after `separator`: nothing
    /// for plain TCP (`listening on ADDR`), else `proxy` or `udp`
    /// (`listening on ADDR udp`).
    pub fn suffix(self, separator: &str) -> String {
        match self {
            SocketKind::Tcp => String::new(),
            SocketKind::Proxy => format!("{separator}proxy"),
            SocketKind::Udp => format!("{separator}udp"),
        }
    }

    /// The flag that asks for a socket of this kind.
    pub fn flag(self) -> &'static str {
        match self {
            SocketKind::Tcp => "--listen",
            SocketKind::Proxy => "--proxy-listen",
            SocketKind::Udp => "--udp",
        }
    }
}
