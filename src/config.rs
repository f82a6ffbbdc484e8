//! Command-line options: every knob the server has, with its default.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use clap_complete::Shell;

use crate::endpoint::SocketKind;
use crate::proxy_header::Cidr;

/// What `--help` and the man page say beyond the flags: the echo and quit
/// rules and the output contract.
const LONG_ABOUT: &str = "\
A TCP and UDP echo server: one thread, one mio poll loop. Every byte a client sends \
comes back to it, in order, binary included.

The quit rule (off with --no-quit): a line whose first four bytes are `quit` \
ends the session. Everything before that line is echoed, nothing from it on; \
the server then shuts its write side (the client reads EOF) and discards \
input until the client closes or 2 s pass. `xquit`, ` quit` and `QUIT` are \
ordinary lines. A client that half-closes gets all its echo, then the close.

UDP (--udp): every datagram goes back to its sender, whole; no quit rule. \
Datagrams from port 0, 7, 13, 17, 19 or 37 are never answered (two \
always-answering services would bounce one forever). PROXY listeners \
(--proxy-listen): each client is a load balancer that begins with a PROXY \
protocol v1 or v2 header; the header is removed and the rest echoed as on a \
plain listener. A connection without a valid header within 3 s is closed \
with nothing echoed.

Stdout lists every socket before anything is served, one line each in \
command-line order: `listening on ADDR`, `listening on ADDR proxy` or \
`listening on ADDR udp`, with the real port (so --listen 127.0.0.1:0 suits \
scripts); the log goes to stderr.";

/// Signals, environment and exit status, after the flags.
const AFTER_HELP: &str = "\
Signals: SIGINT, SIGTERM and SIGHUP start a graceful shutdown: stop \
accepting, echo each connection until its client closes (at most \
--shutdown-timeout), log `final stats:`, exit 0. Stop signals less than 1 s \
apart are one request; one later closes every connection at once. SIGUSR1 \
logs a `stats:` line. Both stats lines are printed whatever RUST_LOG filters.

RUST_LOG: the log filter for stderr: off, error, warn, info (the default: \
start-up and shutdown), debug (each connection).

Socket activation (systemd): when LISTEN_PID is this process, the server \
serves every socket passed in LISTEN_FDS (from fd 3): TCP listening sockets \
as listeners, UDP sockets as UDP echo, a TCP socket named `proxy` in \
LISTEN_FDNAMES (FileDescriptorName=proxy) as a PROXY listener. The socket \
flags, --backlog and --reuse-port are then ignored, and the log says so. A \
socket of another kind, or more than the descriptor limit, is refused at \
start (exit 1).

Exit status: 0 after a shutdown, 1 if it cannot listen, 2 for bad flags.";

/// A single-threaded mio reactor that echoes every byte back.
#[derive(Debug, Clone, Parser)]
#[command(name = "echo-reactor", version, about, long_about = LONG_ABOUT,
          after_help = AFTER_HELP, allow_negative_numbers = true)]
pub struct Config {
    /// A TCP listener: IP:PORT, or HOST:PORT for every address the name
    /// resolves to (localhost:7007); port 0 lets the kernel choose (one port
    /// for all of a name's addresses). IPv6: [::1]:7007. Repeatable. When no
    /// --listen, --proxy-listen or --udp is given: 127.0.0.1:7007.
    #[arg(long, value_name = "ADDR", value_parser = parse_addresses)]
    pub listen: Vec<Addresses>,

    /// A TCP listener whose clients are load balancers that begin every
    /// connection with a PROXY protocol header (v1 or v2): the header is
    /// removed and the rest echoed. Repeatable; addresses as for --listen.
    #[arg(long, value_name = "ADDR", value_parser = parse_addresses)]
    pub proxy_listen: Vec<Addresses>,

    /// A UDP socket: every datagram is sent back to its sender. Repeatable;
    /// addresses as for --listen.
    #[arg(long, value_name = "ADDR", value_parser = parse_addresses)]
    pub udp: Vec<Addresses>,

    /// Only peers in this network may use --proxy-listen sockets (others
    /// could forge a client address): 10.0.0.0/8, ::1/128 or one address.
    /// Repeatable. Without it every peer is trusted.
    #[arg(long, value_name = "CIDR")]
    pub proxy_trust: Vec<Cidr>,

    /// Probe a connection after this many seconds of silence (TCP keepalive:
    /// 3 probes, SECS/3 apart), so a client that vanished is closed even
    /// without --idle-timeout. 0 turns it off.
    #[arg(long, default_value_t = 300, value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(0..=32767))]
    pub keepalive: u32,

    /// Most unsent echo bytes held for one connection; past this the server
    /// stops reading it until the client drains its echo. A number, or with
    /// a K, M or G suffix (powers of 1024).
    #[arg(long, default_value = "64K", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_buffer: u64,

    /// Most unsent echo bytes held across all connections; past this,
    /// connections whose echo would have to wait in memory stop reading
    /// (echo that goes straight into a socket keeps flowing). May be
    /// overshot by one read (4 KiB) per connection whose socket fills just
    /// then. A number, or with a K, M or G suffix (powers of 1024).
    #[arg(long, default_value = "256M", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_memory: u64,

    /// Most connections accepted per loop turn before other events are served.
    #[arg(long, default_value_t = 128, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub accept_batch: u32,

    /// Listen backlog (the kernel clamps it to net.core.somaxconn). A full
    /// backlog drops SYNs, which costs clients a one-second retry.
    #[arg(long, default_value_t = 4096, value_name = "N",
          value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,

    /// Pure RFC 862 echo: a line starting with `quit` is echoed like any other.
    #[arg(long)]
    pub no_quit: bool,

    /// Most open connections; at the limit new clients wait in the backlog.
    /// Never more than RLIMIT_NOFILE allows.
    #[arg(long, default_value_t = 10000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Close a connection after this many seconds with no bytes either way
    /// (fractions allowed; 0 turns it off).
    #[arg(long, default_value = "300", value_name = "SECS", value_parser = parse_seconds)]
    pub idle_timeout: Duration,

    /// On SIGINT/SIGTERM, how long to let connections drain before closing
    /// the rest (fractions allowed).
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,

    /// Set SO_REUSEPORT so several processes can share the port (one per core).
    #[arg(long)]
    pub reuse_port: bool,

    /// Print the man page or a shell completion script to stdout and exit
    /// (what `make install` installs).
    #[arg(long, value_name = "KIND", value_enum)]
    pub generate: Option<Generate>,

    /// The socket flags as (kind, nth of that kind), in command-line order:
    /// stdout lists the sockets in the order they were asked for.
    #[arg(skip)]
    order: Vec<(SocketKind, usize)>,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page (roff): man1/echo-reactor.1.
    Man,
    /// Bash completions.
    Bash,
    /// Zsh completions (`_echo-reactor`).
    Zsh,
    /// Fish completions.
    Fish,
}

impl Generate {
    /// Writes the man page or completion script, made from the flags' own
    /// definitions.
    pub fn write(self, out: &mut dyn Write) -> io::Result<()> {
        let mut command = Config::command();
        let name = command.get_name().to_string();
        let shell = match self {
            Generate::Man => return clap_mangen::Man::new(command).render(out),
            Generate::Bash => Shell::Bash,
            Generate::Zsh => Shell::Zsh,
            Generate::Fish => Shell::Fish,
        };
        clap_complete::generate(shell, &mut command, name, out);
        Ok(())
    }
}

/// The addresses one `--listen`, `--proxy-listen` or `--udp` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// As given, for messages.
    pub text: String,
    /// Resolved at start, deduplicated, in the resolver's order.
    pub addrs: Vec<SocketAddr>,
}

/// One socket flag of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: SocketKind,
    pub addresses: Addresses,
}

impl Config {
    /// Parses the command line (exiting 2 with clap's message on bad
    /// flags), keeping the order of the socket flags across kinds.
    pub fn from_args() -> Self {
        Config::try_from_args(std::env::args_os()).unwrap_or_else(|err| err.exit())
    }

    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Config::command().try_get_matches_from(args)?;
        let mut config = Config::from_arg_matches(&matches)?;
        let mut order = Vec::new();
        for (kind, flag) in [
            (SocketKind::Tcp, "listen"),
            (SocketKind::Proxy, "proxy_listen"),
            (SocketKind::Udp, "udp"),
        ] {
            let indices = matches.indices_of(flag).into_iter().flatten();
            order.extend(indices.enumerate().map(|(nth, at)| (at, kind, nth)));
        }
        order.sort_unstable_by_key(|&(at, _, _)| at);
        config.order = order
            .into_iter()
            .map(|(_, kind, nth)| (kind, nth))
            .collect();
        if let Some(twice) = config.address_given_twice() {
            // Else the second bind would fail as if another process had
            // the port.
            let message =
                format!("{twice} is given twice (--listen and --proxy-listen are both TCP)");
            return Err(Config::command().error(clap::error::ErrorKind::ArgumentConflict, message));
        }
        Ok(config)
    }

    /// An address (with a port, not 0) that two socket flags of the same
    /// protocol name.
    fn address_given_twice(&self) -> Option<SocketAddr> {
        let mut seen = std::collections::HashSet::new();
        self.endpoints().into_iter().find_map(|endpoint| {
            let udp = endpoint.kind == SocketKind::Udp;
            let addrs = endpoint.addresses.addrs.into_iter();
            addrs
                .filter(|addr| addr.port() != 0)
                .find(|&addr| !seen.insert((udp, addr)))
        })
    }

    /// The defaults, listening on `addr`: what tests and embedders start from.
    pub fn with_listen(addr: SocketAddr) -> Self {
        let mut config = Config::parse_from(["echo-reactor"]);
        config.listen = vec![Addresses {
            text: addr.to_string(),
            addrs: vec![addr],
        }];
        config
    }

    /// Every socket flag in command-line order; the default listener when
    /// there is none.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let of_kind = |kind| match kind {
            SocketKind::Tcp => &self.listen,
            SocketKind::Proxy => &self.proxy_listen,
            SocketKind::Udp => &self.udp,
        };
        let mut order = self.order.clone();
        if order.is_empty() {
            // Built without `from_args` (tests): kind by kind.
            for kind in [SocketKind::Tcp, SocketKind::Proxy, SocketKind::Udp] {
                order.extend((0..of_kind(kind).len()).map(|nth| (kind, nth)));
            }
        }
        if order.is_empty() {
            let addr = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT));
            let addresses = Addresses {
                text: addr.to_string(),
                addrs: vec![addr],
            };
            return vec![Endpoint {
                kind: SocketKind::Tcp,
                addresses,
            }];
        }
        order
            .into_iter()
            .map(|(kind, nth)| Endpoint {
                kind,
                addresses: of_kind(kind)[nth].clone(),
            })
            .collect()
    }
}

/// The port of the listener used when no socket flag is given.
const DEFAULT_PORT: u16 = 7007;

/// An IP:PORT as is; a HOST:PORT resolved once, at start, to every address
/// it names. Multicast and broadcast addresses are refused: a listener there
/// would never see a client, and UDP echo to them would answer a group.
fn parse_addresses(text: &str) -> Result<Addresses, String> {
    let usage = "expected IP:PORT or HOST:PORT, e.g. 127.0.0.1:7007, [::1]:7007, localhost:7007";
    let resolved: Vec<SocketAddr> = match text.parse() {
        Ok(addr) => vec![addr],
        Err(_) => text
            .to_socket_addrs()
            .map_err(|err| format!("`{text}`: {err} ({usage})"))?
            .collect(),
    };
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(resolved.len());
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(format!("`{text}` resolves to no address ({usage})"));
    }
    // An IPv4-mapped address (`[::ffff:224.0.0.1]`) is its IPv4 one.
    if let Some(addr) = addrs.iter().find(|addr| is_group(addr.ip().to_canonical())) {
        return Err(format!(
            "`{text}`: {} is a multicast or broadcast address; give a unicast one",
            addr.ip()
        ));
    }
    Ok(Addresses {
        text: text.to_string(),
        addrs,
    })
}

fn is_group(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_multicast() || ip.is_broadcast(),
        IpAddr::V6(ip) => ip.is_multicast(),
    }
}

/// A byte count: a plain number, or one with a K, M or G suffix (powers of
/// 1024, `KiB` and `k` accepted too). Zero is refused: nothing could be
/// echoed.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let usage = "expected a number of bytes, optionally with K, M or G (64K, 256M)";
    let lower = text.to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 10),
        Some(b'm') => (&lower[..lower.len() - 1], 20),
        Some(b'g') => (&lower[..lower.len() - 1], 30),
        _ => (lower, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("`{text}`: {usage}"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes < 1 << 48)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if bytes == 0 {
        return Err(format!("`{text}`: must be at least 1 byte"));
    }
    Ok(bytes)
}

/// Longest accepted timeout: deadlines are `now + timeout`, which must stay
/// far from where `Instant` overflows.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if secs > MAX_SECONDS {
        return Err(format!("`{text}` is longer than a year ({MAX_SECONDS} s)"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a usable duration"))
}

#[cfg(test)]
mod tests;
