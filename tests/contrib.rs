//! The files in contrib/ run as shipped: the per-core script drains every
//! server and exits 0 on Ctrl-C (SIGINT to its process group) and on
//! SIGTERM to the script, with echo in flight; HAProxy starts with the
//! shipped configuration (only addresses and the admin socket's path
//! changed) and balances byte-exact echo across two servers. The systemd
//! units are checked installed, in tests/install.rs.
//!
//! Needs bash 5.1, taskset (util-linux) and haproxy (`make test-deps`).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name)
}

/// Two CPUs where the machine has them; the script takes any list.
fn two_cpus() -> &'static str {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        1 => "0 0",
        _ => "0 1",
    }
}

/// The per-core script, run as shipped in a process group of its own (as a
/// terminal's foreground job is); its group is killed on drop.
struct PerCore {
    child: Child,
    addr: SocketAddr,
    servers: Vec<u32>,
    log: Arc<Log>,
}

impl PerCore {
    fn start(cpus: &str) -> PerCore {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(contrib("echo-reactor-per-core"));
        cmd.args(["--shutdown-timeout", "60"])
            .env("ECHO_REACTOR", BIN)
            .env("ADDR", "127.0.0.1")
            .env("PORT", addr.port().to_string())
            .env("CPUS", cpus)
            .env_remove("RUST_LOG")
            .env_remove("LISTEN_FDS")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run contrib/echo-reactor-per-core");
        let log = Log::follow(child.stderr.take().unwrap());
        let stdout = Log::follow(child.stdout.take().unwrap());
        let n = cpus.split_whitespace().count();
        let listening = |l: &str| parse_listening_line(l) == Some(addr);
        let up = stdout.wait_nth(n, listening, START_TIMEOUT).is_some();
        let pid = child.id();
        let mut per_core = PerCore {
            child,
            addr,
            servers: Vec::new(),
            log,
        };
        assert!(
            up,
            "{n} servers never all listened on {addr}; stdout:\n{}\nstderr:\n{}",
            stdout.dump(),
            per_core.log.dump()
        );
        // taskset execs the server: the script's children are the servers.
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        per_core.servers = children
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(per_core.servers.len(), n, "{:?}", per_core.servers);
        per_core
    }

    /// Connects clients until every server holds at least one (the kernel
    /// picks a server by a hash of the client's port), at most 64.
    fn clients_on_every_server(&self) -> Vec<TcpStream> {
        let base: Vec<usize> = self.servers.iter().map(|&p| fd_count(p)).collect();
        let mut clients = Vec::new();
        while clients.len() < 64 {
            let mut client = connect(self.addr);
            echo(&mut client, b"which server?\n");
            clients.push(client);
            let counts = self.servers.iter().map(|&p| fd_count(p));
            if counts.zip(&base).all(|(now, before)| now > *before) {
                return clients;
            }
        }
        panic!("64 clients, and a server still has none");
    }

    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(IO_TIMEOUT * 3, Duration::from_millis(10), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for PerCore {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Clients on every server with echo in flight; `stop` (given the script's
/// pid, which is also its process group) stops the script. Every client
/// gets all its echo and a clean EOF, every server drains once, and the
/// script exits 0 after all of them.
fn per_core_drains(stop: &str) {
    let mut per_core = PerCore::start(two_cpus());
    let mut clients: Vec<(TcpStream, Vec<u8>)> = per_core
        .clients_on_every_server()
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let mut data = pattern(4 << 20, i as u64);
            let written = write_until_full(&mut client, &data, Duration::from_millis(200));
            assert!(written > 0, "client {i} could write nothing");
            data.truncate(written);
            (client, data)
        })
        .collect();
    let pid = per_core.child.id().to_string();
    let status = Command::new("sh")
        .args(["-c", &stop.replace("{pid}", &pid)])
        .status()
        .unwrap();
    assert!(status.success(), "{stop}");
    for (i, (client, data)) in clients.iter_mut().enumerate() {
        let mut echo = vec![0; data.len()];
        let got = client.read_exact(&mut echo);
        assert!(
            got.is_ok() && echo == *data,
            "client {i}: its {} bytes of echo did not all come back after `{stop}` ({got:?}); \
             stderr:\n{}",
            data.len(),
            per_core.log.dump()
        );
        client.shutdown(Shutdown::Write).unwrap();
        expect_eof(client);
    }
    let status = per_core.wait();
    let text = per_core.log.text();
    assert!(
        status.is_some_and(|s| s.success()),
        "the script after `{stop}`: {status:?}; stderr:\n{text}"
    );
    assert!(!text.contains("second signal"), "{text}");
    let n = per_core.servers.len();
    assert_eq!(text.matches("shutting down: draining").count(), n, "{text}");
    per_core.log.wait_eof(IO_TIMEOUT);
    assert_eq!(per_core.log.count(is_final_stats_line), n, "{text}");
    for pid in &per_core.servers {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "server {pid} lives on"
        );
    }
}

#[test]
fn per_core_script_drains_every_server_on_ctrl_c() {
    // What a terminal does on Ctrl-C: SIGINT to the whole foreground group.
    per_core_drains("kill -s INT -- -{pid}");
}

#[test]
fn per_core_script_drains_every_server_on_sigterm_to_the_script() {
    per_core_drains("kill -s TERM {pid}");
}

#[test]
fn per_core_script_fails_when_its_servers_cannot_listen() {
    // The port is taken by a server without --reuse-port: none of the
    // script's servers can listen, and the script says so and fails.
    let taken = ServerProcess::start(&[]);
    let mut child = Command::new(contrib("echo-reactor-per-core"))
        .env("ECHO_REACTOR", BIN)
        .env("ADDR", "127.0.0.1")
        .env("PORT", taken.addr.port().to_string())
        .env("CPUS", two_cpus())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow(child.stderr.take().unwrap());
    let mut status = None;
    wait_until(START_TIMEOUT, Duration::from_millis(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let _ = child.kill();
    let _ = child.wait();
    log.wait_eof(IO_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", log.dump());
    assert!(log.text().contains("cannot listen on"), "{}", log.dump());
    assert!(log.text().contains("stopping the others"), "{}", log.dump());
    echo_session(taken.addr, b"still serving\n");
}

/// The shipped configuration with `from` replaced by `to`, each exactly
/// once: a change to the file that this test does not know fails it.
fn substitute(config: &str, changes: &[(&str, String)]) -> String {
    let mut out = config.to_string();
    for (from, to) in changes {
        assert_eq!(
            out.matches(from).count(),
            1,
            "{from:?} in contrib/haproxy.cfg"
        );
        out = out.replace(from, to);
    }
    out
}

/// `show stat` over the admin socket: (server name, status, check status).
fn servers(admin: &Path) -> Vec<(String, String, String)> {
    let Ok(mut stream) = UnixStream::connect(admin) else {
        return Vec::new();
    };
    let mut csv = String::new();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let asked = stream.write_all(b"show stat\n");
    if asked
        .and_then(|()| stream.read_to_string(&mut csv))
        .is_err()
    {
        return Vec::new();
    }
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name| header.iter().position(|c| *c == name).unwrap();
    let (sv, status, check) = (col("svname"), col("status"), col("check_status"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > check && f[0] == "echo_servers" && f[sv] != "BACKEND")
        .map(|f| {
            (
                f[sv].to_string(),
                f[status].to_string(),
                f[check].to_string(),
            )
        })
        .collect()
}

#[test]
fn haproxy_starts_with_the_shipped_config_and_balances_echo() {
    let bin = haproxy_binary();
    let a = ServerProcess::start(&[]);
    let b = ServerProcess::start(&[]);
    let dir = TempDir::new("haproxy-contrib");
    let admin = dir.0.join("admin.sock");
    let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let shipped = std::fs::read_to_string(contrib("haproxy.cfg")).unwrap();
    let config = substitute(
        &shipped,
        &[
            ("bind :7007", format!("bind {frontend}")),
            ("/run/haproxy/admin.sock", admin.display().to_string()),
            ("10.0.0.11:7007", a.addr.to_string()),
            ("10.0.0.12:7007", b.addr.to_string()),
        ],
    );
    let cfg = dir.0.join("haproxy.cfg");
    std::fs::write(&cfg, &config).unwrap();
    // Started for real, as its service would: `haproxy -c` alone accepted
    // a configuration that could not start.
    let mut proxy = Command::new(&bin)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Log::follow(proxy.stdout.take().unwrap());
    let err = Log::follow(proxy.stderr.take().unwrap());
    let up = wait_until(IO_TIMEOUT, Duration::from_millis(20), || {
        let s = servers(&admin);
        proxy.try_wait().unwrap().is_none()
            && s.len() == 2
            && s.iter()
                .all(|(_, st, check)| st == "UP" && check.starts_with("L"))
    });
    let running = proxy.try_wait().unwrap().is_none();
    if !(up && running) {
        let _ = proxy.kill();
        let _ = proxy.wait();
        panic!(
            "haproxy with contrib/haproxy.cfg: running {running}, servers {:?}\n{}{}",
            servers(&admin),
            err.dump(),
            out.dump()
        );
    }
    let proxy = Kill(proxy);

    let clients = 20;
    let mut sent = 0;
    for i in 0..clients {
        let data = pattern(64 * 1024 + i, i as u64);
        echo_session(frontend, &data);
        sent += data.len() as u64;
    }
    let idle = |s: &Stats| s.get("active") == 0;
    let (sa, sb) = (
        a.stats_until(IO_TIMEOUT, idle),
        b.stats_until(IO_TIMEOUT, idle),
    );
    // Clients close cleanly; health checks reset (closed_error) after 5 bytes.
    let served = |s: &Stats| {
        (
            s.get("closed_client"),
            s.get("bytes_out") - 5 * s.get("closed_error"),
        )
    };
    let ((ca, bytes_a), (cb, bytes_b)) = (served(&sa), served(&sb));
    assert!(
        ca > 0 && cb > 0,
        "leastconn used one server: {ca} and {cb} clients"
    );
    assert_eq!(ca + cb, clients as u64, "{sa:?}\n{sb:?}");
    assert_eq!(bytes_a + bytes_b, sent, "{sa:?}\n{sb:?}");
    for server in [&a, &b] {
        assert!(server.log.warnings().is_empty(), "{}", server.log.dump());
    }
    let alerts = format!("{}{}", err.text(), out.text());
    assert!(!alerts.contains("ALERT"), "{alerts}");
    drop(proxy);
}

/// A child killed and reaped on drop.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
