//! The PROXY protocol header that every client of a PROXY listener sends
//! before its data (v1 text or v2 binary), and the `--proxy-trust` list.
//!
//! The `ppp` crate does the parsing. This module is the thin layer a server
//! reading a stream needs on top of it:
//! - one three-way answer for the bytes so far ([`Parsed`]): wait for more,
//!   never a header, or a header of `len` bytes to remove from the stream;
//! - every prefix of a valid header is [`Parsed::Incomplete`], never
//!   `Invalid` (ppp has one exception, handled here: see [`parse_v1`]);
//! - a bound on the length ([`MAX_HEADER`]), so a connection in the header
//!   phase holds at most that much;
//! - the addresses as std types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::IntErrorKind;
use std::str::FromStr;

use ppp::{v1, v2, PartialResult};

/// The longest header accepted, in bytes. A v1 header is at most 107 bytes;
/// a v2 header may declare up to 64 KiB of addresses and TLVs, but proxies
/// send a few hundred bytes at most, and the bound is what a client in the
/// header phase can make the server hold.
pub const MAX_HEADER: usize = 4096;

/// The fixed part of a v2 header: signature, version and command, family
/// and protocol, length (ppp keeps its own constant private).
const V2_FIXED: usize = 16;

/// What the first bytes a client sent are, so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes may complete it.
    Incomplete,
    /// Never a header, whatever follows: the reason, for the debug log.
    Invalid(String),
    /// A whole header of `len` bytes (to remove from the stream).
    Complete(Header),
}

/// A whole header: how long it is and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header takes at the start of the stream; what follows is
    /// the client's data.
    pub len: usize,
    /// 1 (text) or 2 (binary), for the log.
    pub version: u8,
    pub addresses: Addresses,
}

/// The connection the proxy forwards, as its header describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// The client as the proxy saw it, and the address it connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 LOCAL: the proxy's own connection (a health check); the peer
    /// address is the one to use.
    Local,
    /// v1 UNKNOWN, or v2 PROXY without IP addresses (unspecified family,
    /// unix sockets): nothing usable, the peer address is the one to use.
    Unknown,
}

/// Parses the first bytes a PROXY listener's client sent. Call it again
/// with all the bytes so far whenever more arrive; bytes after the header
/// are allowed and are not part of [`Header::len`].
pub fn parse(bytes: &[u8]) -> Parsed {
    let parsed = if starts_like_v2(bytes) {
        parse_v2(bytes)
    } else {
        parse_v1(bytes)
    };
    bounded(parsed, bytes.len())
}

/// The v2 signature starts with `\r\n`, v1 with `PROXY`: the first byte
/// decides, and while the bytes are a prefix of the v2 signature they are
/// read as v2 (so `\r\n` alone is incomplete, not a bad v1 header).
fn starts_like_v2(bytes: &[u8]) -> bool {
    let n = bytes.len().min(v2::PROTOCOL_PREFIX.len());
    bytes[..n] == v2::PROTOCOL_PREFIX[..n]
}

/// Applies [`MAX_HEADER`]: a header longer than that is invalid, and so are
/// that many bytes that still do not make one.
fn bounded(parsed: Parsed, given: usize) -> Parsed {
    match parsed {
        Parsed::Incomplete if given >= MAX_HEADER => Parsed::Invalid("too long".to_string()),
        Parsed::Complete(header) if header.len > MAX_HEADER => Parsed::Invalid(format!(
            "too long: {} bytes, at most {MAX_HEADER}",
            header.len
        )),
        other => other,
    }
}

fn parse_v1(bytes: &[u8]) -> Parsed {
    match v1::Header::try_from(bytes) {
        Ok(header) => Parsed::Complete(Header {
            len: header.header.len(),
            version: 1,
            addresses: match header.addresses {
                v1::Addresses::Tcp4(ip) => Addresses::Proxied {
                    source: (ip.source_address, ip.source_port).into(),
                    destination: (ip.destination_address, ip.destination_port).into(),
                },
                v1::Addresses::Tcp6(ip) => Addresses::Proxied {
                    source: (ip.source_address, ip.source_port).into(),
                    destination: (ip.destination_address, ip.destination_port).into(),
                },
                v1::Addresses::Unknown => Addresses::Unknown,
            },
        }),
        Err(error) if error.is_incomplete() || awaits_destination_port(bytes, &error) => {
            Parsed::Incomplete
        }
        Err(v1::BinaryParseError::Parse(v1::ParseError::InvalidPrefix)) => {
            Parsed::Invalid("no PROXY signature (neither v1 nor v2)".to_string())
        }
        Err(error) => Parsed::Invalid(format!("v1: {error}")),
    }
}

/// `PROXY TCP4 192.0.2.1 127.0.0.1 5555 ` (cut right after the source
/// port): ppp reads the empty destination port as an invalid one, while the
/// next bytes may well be the port. Without a `\r` the line is not over.
fn awaits_destination_port(bytes: &[u8], error: &v1::BinaryParseError) -> bool {
    matches!(
        error,
        v1::BinaryParseError::Parse(v1::ParseError::InvalidDestinationPort(Some(e)))
            if *e.kind() == IntErrorKind::Empty
    ) && !bytes.contains(&b'\r')
}

fn parse_v2(bytes: &[u8]) -> Parsed {
    match v2::Header::try_from(bytes) {
        Ok(header) => Parsed::Complete(Header {
            len: header.header.len(),
            version: 2,
            addresses: match (header.command, header.addresses) {
                (v2::Command::Local, _) => Addresses::Local,
                (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => Addresses::Proxied {
                    source: (ip.source_address, ip.source_port).into(),
                    destination: (ip.destination_address, ip.destination_port).into(),
                },
                (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => Addresses::Proxied {
                    source: (ip.source_address, ip.source_port).into(),
                    destination: (ip.destination_address, ip.destination_port).into(),
                },
                (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => {
                    Addresses::Unknown
                }
            },
        }),
        // The length field says how long it will be: no need to wait for
        // bytes that would be refused anyway.
        Err(v2::ParseError::Partial(_, declared)) if V2_FIXED + declared > MAX_HEADER => {
            Parsed::Invalid(format!(
                "too long: v2 header declares {} bytes, at most {MAX_HEADER}",
                V2_FIXED + declared
            ))
        }
        Err(error) if error.is_incomplete() => Parsed::Incomplete,
        Err(error) => Parsed::Invalid(format!("v2: {error}")),
    }
}

/// One entry of `--proxy-trust`: a network (`127.0.0.0/8`, `::1/128`) or a
/// single host (`10.1.2.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, host bits zero; IPv4 for IPv4-mapped input.
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:127.0.0.1`, what a dual-stack socket reports for an IPv4
    /// peer) counts as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let expected = || {
            format!(
                "expected an IP address or a network ADDRESS/PREFIX \
                 (e.g. 127.0.0.0/8, ::1/128, 10.1.2.3), got `{text}`"
            )
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| expected())?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            // Digits only: `u8::from_str` would also take `+8`.
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= width && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "{}: the prefix length must be 0 to {width}",
                        expected()
                    ))
                }
            },
        };
        // A mapped address names an IPv4 host or network; stored as IPv4 so
        // `contains` compares like with like.
        let (address, prefix) = match address {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (canonical(address), prefix - 96)
            }
            _ => (address, prefix),
        };
        let network = masked(address, prefix);
        if network != address {
            return Err(format!(
                "`{text}` has bits set after the prefix: did you mean {network}/{prefix}?"
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `ip` with every bit after the first `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests;
