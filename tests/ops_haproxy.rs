//! Beyond one machine: HAProxy (`mode tcp`, `option tcp-check`)
//! in front of two echo-reactor backends. Traffic through the balancer is
//! echoed exactly; when one backend dies, new clients are served by the
//! other; health checks cause no warnings in the backends' logs.
//!
//! HAProxy must be installed (Debian: `apt-get install haproxy`; `.ci/run`
//! does it). A missing haproxy fails these tests; it does not skip them.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// The health check of the backend section.
#[derive(Clone, Copy)]
enum Check {
    /// `option tcp-check` alone: connect, then close; no data.
    Connect,
    /// Connect, send `ping`, expect its echo, close.
    Echo,
}

/// A running haproxy (foreground, `-db`), killed on drop.
struct Haproxy {
    child: Child,
    frontend: SocketAddr,
    admin: PathBuf,
    log: Arc<Log>,
    _dir: TempDir,
}

impl Haproxy {
    fn start(backends: &[SocketAddr], check: Check) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let admin = dir.0.join("admin.sock");
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let checks = match check {
            Check::Connect => "",
            Check::Echo => "    tcp-check send \"ping\\n\"\n    tcp-check expect string ping\n",
        };
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("    server echo{i} {addr} check inter 200ms fall 2 rise 1\n"))
            .collect();
        let config = format!(
            "global\n\
             \x20   stats socket {admin} level admin\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 500ms\n\
             \x20   timeout client 30s\n\
             \x20   timeout server 30s\n\
             \x20   timeout check 1s\n\
             \x20   retries 2\n\
             \x20   option redispatch\n\
             frontend echo\n\
             \x20   bind {frontend}\n\
             \x20   default_backend echo_servers\n\
             backend echo_servers\n\
             \x20   balance roundrobin\n\
             \x20   option tcp-check\n\
             {checks}{servers}",
            admin = admin.display()
        );
        let (child, log) = start_haproxy(&dir.0, &config);
        let mut proxy = Haproxy {
            child,
            frontend,
            admin,
            log,
            _dir: dir,
        };
        // Ready once its admin socket answers and every server has had a
        // successful check.
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("haproxy exited: {status}\n{}", proxy.log.dump());
            }
            let servers = proxy.servers();
            servers.len() == backends.len()
                && servers.iter().all(|s| s.status == "UP" && s.checked())
        });
        assert!(
            ready,
            "haproxy's servers never all came UP: {:?}\n{}",
            proxy.servers(),
            proxy.log.dump()
        );
        proxy
    }

    /// `show stat` over the admin socket: one entry per server.
    fn servers(&self) -> Vec<ServerState> {
        admin_command(&self.admin, "show stat")
            .map(|csv| ServerState::parse(&csv))
            .unwrap_or_default()
    }

    fn server(&self, name: &str) -> ServerState {
        self.servers()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name} in haproxy's stats"))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_command(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

#[derive(Debug, Clone)]
struct ServerState {
    name: String,
    status: String,
    check_status: String,
}

impl ServerState {
    fn parse(csv: &str) -> Vec<ServerState> {
        let mut lines = csv.lines();
        let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
            return Vec::new();
        };
        let col = |name: &str| header.split(',').position(|c| c == name).unwrap();
        let (px, sv, status, check) = (
            col("pxname"),
            col("svname"),
            col("status"),
            col("check_status"),
        );
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > check && f[px] == "echo_servers")
            .filter(|f| f[sv] != "BACKEND")
            .map(|f| ServerState {
                name: f[sv].to_string(),
                status: f[status].to_string(),
                check_status: f[check].to_string(),
            })
            .collect()
    }

    /// A check has completed (not still `INI`tial).
    fn checked(&self) -> bool {
        self.check_status.starts_with('L')
    }
}

/// A backend at the default log level (RUST_LOG unset), so the warnings
/// assertion sees exactly what an operator would.
fn backend() -> ServerProcess {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0"]).env_remove("RUST_LOG");
    ServerProcess::spawn(cmd)
}

/// `clients` concurrent clients through the balancer, each sending a few
/// lines and a 64 KiB block and checking every byte of echo. Returns the
/// bytes each sent.
fn traffic(frontend: SocketAddr, clients: u64, seed: u64) -> u64 {
    let per_client = {
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut stream = connect(frontend);
                    let mut sent = 0;
                    for line in 0..3 {
                        let msg = format!("client {i} line {line}\n");
                        echo(&mut stream, msg.as_bytes());
                        sent += msg.len() as u64;
                    }
                    let block = pattern(64 * 1024, seed + i);
                    echo(&mut stream, &block);
                    sent += block.len() as u64;
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                    expect_eof(&mut stream);
                    sent
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a client through haproxy failed"))
            .collect::<Vec<_>>()
    };
    per_client.iter().sum()
}

fn balancer_fails_over(check: Check) {
    let a = backend();
    let mut b = backend();
    let proxy = Haproxy::start(&[a.addr, b.addr], check);

    // Both backends serve, every echo is exact.
    let sent = traffic(proxy.frontend, 20, 100);
    let sa = a.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    let sb = b.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    // Echo checks send `ping\n`, read its echo and reset: 5 bytes out and
    // one `closed_error` each. Clients close cleanly.
    let check_bytes = |s: &Stats| match check {
        Check::Connect => 0,
        Check::Echo => 5 * s.get("closed_error"),
    };
    assert!(
        sa.get("bytes_out") > check_bytes(&sa) && sb.get("bytes_out") > check_bytes(&sb),
        "round robin should use both backends:\nA {sa:?}\nB {sb:?}"
    );
    if let Check::Connect = check {
        assert_eq!(sa.get("bytes_in") + sb.get("bytes_in"), sent);
        assert_eq!(sa.get("accepted") + sb.get("accepted"), 20);
    }

    // One backend dies. New clients keep being served (HAProxy retries the
    // refused connection on the other server), every echo exact.
    b.signal("KILL");
    assert!(b.expect_exit(Duration::from_secs(5)).code().is_none());
    let before = a.stats();
    let killed_at = Instant::now();
    let sent_during = traffic(proxy.frontend, 10, 200);
    // Then HAProxy's checks mark it DOWN and everything goes to A directly.
    let marked_down = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        proxy.server("echo1").status.starts_with("DOWN")
    });
    assert!(
        marked_down,
        "haproxy never marked the dead backend DOWN: {:?}",
        proxy.servers()
    );
    eprintln!(
        "dead backend marked DOWN {:?} after the kill",
        killed_at.elapsed()
    );
    assert!(proxy.server("echo0").status == "UP");
    let sent_after = traffic(proxy.frontend, 20, 300);
    let after = a.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    let client_bytes = |s: &Stats| s.get("bytes_out") - check_bytes(s);
    assert_eq!(
        client_bytes(&after) - client_bytes(&before),
        sent_during + sent_after,
        "the survivor must have echoed everything sent after the kill"
    );

    match check {
        // HAProxy's connect-only check answers the SYN-ACK with a reset: the
        // handshake never completes and the server never accepts it.
        Check::Connect => assert_eq!(after.get("closed_error"), 0, "{after:?}"),
        // Echo checks do reach the server; let a few more land.
        Check::Echo => {
            let seen = after.get("closed_error");
            a.stats_until(Duration::from_secs(10), |s| {
                s.get("closed_error") >= seen + 5
            });
        }
    }
    // Health checks caused no warnings or errors at the default log level,
    // on either backend.
    for (name, server) in [("survivor", &a), ("killed backend", &b)] {
        let warnings = server.log.warnings();
        assert!(
            warnings.is_empty(),
            "{name} logged warnings:\n{}",
            warnings.join("\n")
        );
    }
    assert_eq!(after.get("closed_quit"), 0, "{after:?}");
    a.assert_one_thread("behind haproxy");
}

#[test]
fn haproxy_connect_checks_fail_over_to_the_surviving_backend() {
    balancer_fails_over(Check::Connect);
}

#[test]
fn haproxy_echo_checks_fail_over_to_the_surviving_backend() {
    balancer_fails_over(Check::Echo);
}

/// What health checkers do to a backend, done by hand so the server really
/// sees it (HAProxy's connect-only check resets before the handshake
/// completes, so the server never accepts it): connections that open and
/// close without data, with a FIN or with a reset. None is a warning at the
/// default log level.
#[test]
fn connections_closed_without_data_log_no_warnings() {
    let server = backend();
    for i in 0..40 {
        let stream = server.connect();
        if i % 2 == 1 {
            // SO_LINGER 0: close() sends RST.
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(stream);
    }
    let stats = server.stats_until(Duration::from_secs(5), |s| {
        s.get("accepted") == 40 && s.get("active") == 0
    });
    assert_eq!(
        stats.get("closed_client") + stats.get("closed_error"),
        40,
        "{stats:?}"
    );
    let warnings = server.log.warnings();
    assert!(warnings.is_empty(), "warnings:\n{}", warnings.join("\n"));
    // Still serving.
    echo_session(server.addr, b"after the checks\n");
}
