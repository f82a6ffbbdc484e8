//! Command-line options: every knob the server has, with its default.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;

/// A single-threaded mio reactor that echoes every byte back.
#[derive(Debug, Clone, Parser)]
#[command(name = "echo-reactor", version, about, allow_negative_numbers = true)]
pub struct Config {
    /// Address to listen on: IP:PORT or HOST:PORT (localhost:7007); port 0
    /// lets the kernel choose. IPv6 works: [::1]:7007.
    #[arg(long, default_value = "127.0.0.1:7007", value_name = "ADDR",
          value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Most unsent echo bytes held for one connection; past this the server
    /// stops reading it until the client drains its echo.
    #[arg(long, default_value_t = 65536, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_buffer: u32,

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
}

impl Config {
    /// The defaults, listening on `addr`: what tests and embedders start from.
    pub fn with_listen(addr: SocketAddr) -> Self {
        let mut config = Config::parse_from(["echo-reactor"]);
        config.listen = addr;
        config
    }
}

/// An IP:PORT as is; a HOST:PORT resolved once, at start, to its first
/// address (for `localhost`, what the resolver lists first).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let usage = "expected IP:PORT or HOST:PORT, e.g. 127.0.0.1:7007, [::1]:7007, localhost:7007";
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|err| format!("`{text}`: {err} ({usage})"))?;
    addrs
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address ({usage})"))
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
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_fractions_and_reject_garbage() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("inf").is_err());
        assert_eq!(
            parse_seconds("31536000"),
            Ok(Duration::from_secs(31_536_000))
        );
        assert!(parse_seconds("31536001").is_err());
        assert!(parse_seconds("1e19").is_err());
    }

    #[test]
    fn listen_takes_addresses_and_host_names() {
        assert_eq!(
            parse_listen("[::1]:7007"),
            Ok("[::1]:7007".parse().unwrap())
        );
        let local = parse_listen("localhost:7007").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 7007, "{local}");
        for bad in ["7007", "localhost", "127.0.0.1:99999"] {
            let err = parse_listen(bad).unwrap_err();
            assert!(
                err.contains("expected IP:PORT or HOST:PORT"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn negative_values_are_rejected_naming_the_flag() {
        for (flag, value) in [("--max-buffer", "-5"), ("--idle-timeout", "-1")] {
            let err = Config::try_parse_from(["echo-reactor", flag, value]).unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = Config::parse_from(["echo-reactor"]);
        assert_eq!(config.listen, "127.0.0.1:7007".parse().unwrap());
        assert_eq!(config.max_buffer, 65536);
        assert_eq!(config.backlog, 4096);
        assert_eq!(config.max_connections, 10000);
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert!(!config.no_quit && !config.reuse_port);
    }
}
