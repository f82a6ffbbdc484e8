//! Socket activation with the real binary: the sockets a socket activator
//! passes (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) are served when they
//! are for this process, each as its kind says; anything else is refused at
//! start with exit 1 and a message naming the variable or the fd.
//!
//! A small python3 launcher makes the sockets (of any kind, which
//! `systemd-socket-activate` cannot mix), puts them at fds 3, 4, ..., sets
//! the variables and `exec`s the server, so `LISTEN_PID` is the server's pid
//! when the test wants it to be. `systemd-socket-activate` itself is used
//! once, as the real thing; a missing python3 or systemd-socket-activate
//! fails these tests, it does not skip them.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// argv: kinds (comma-separated: tcp, udp, unlistened, unix, pipe, file),
/// LISTEN_FDNAMES (`-` for none), LISTEN_PID (`ours`, `unset` or a number),
/// LISTEN_FDS (`-` for the number of kinds), then the server's argv.
/// Writes `launcher: fd N ADDR` to stderr for each inet socket.
const LAUNCHER: &str = r#"
import fcntl, os, socket, sys
kinds, names, pid, count = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4]
server = sys.argv[5:]
high = []
for i, kind in enumerate(kinds):
    addr = None
    if kind in ("tcp", "unlistened"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        if kind == "tcp":
            s.listen(64)
        addr = s.getsockname()
        fd = s.detach()
    elif kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()
        fd = s.detach()
    elif kind == "unix":
        fd = socket.socketpair()[0].detach()
    elif kind == "pipe":
        fd = os.pipe()[0]
    elif kind == "file":
        fd = os.open("/dev/null", os.O_RDONLY)
    else:
        sys.exit("launcher: unknown kind " + kind)
    # Out of the way of 3, 4, ... and not inherited: only the dup2 copies are.
    high.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100))
    os.close(fd)
    if addr:
        sys.stderr.write("launcher: fd %d %s:%d\n" % (3 + i, addr[0], addr[1]))
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
os.environ["LISTEN_FDS"] = str(len(kinds)) if count == "-" else count
if names != "-":
    os.environ["LISTEN_FDNAMES"] = names
if pid == "ours":
    os.environ["LISTEN_PID"] = str(os.getpid())
elif pid != "unset":
    os.environ["LISTEN_PID"] = pid
sys.stderr.flush()
os.execv(server[0], server)
"#;

/// The launcher command: `kinds` passed at fds 3.., then the server with
/// `args`.
fn launcher(kinds: &str, names: &str, pid: &str, count: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", LAUNCHER, kinds, names, pid, count, BIN])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null());
    cmd
}

/// The addresses the launcher made, by fd (3 first).
fn launched(log: &Log, n: usize) -> Vec<SocketAddr> {
    let is_launched = |l: &str| l.starts_with("launcher: fd ");
    log.wait_nth(n, is_launched, START_TIMEOUT)
        .unwrap_or_else(|| panic!("the launcher named fewer than {n} sockets:\n{}", log.dump()));
    log.lines()
        .iter()
        .filter(|l| is_launched(l))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// `run_command_to_exit`, and how long the command ran.
fn run_to_exit_cmd(cmd: Command) -> (Output, Duration) {
    let t0 = Instant::now();
    let output = run_command_to_exit(cmd);
    (output, t0.elapsed())
}

/// Exit status 1 (not a signal, not another code), nothing announced on
/// stdout, and stderr containing every one of `needles`.
fn assert_refused_at_start(output: &Output, needles: &[&str], what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what}: {:?}\n{stderr}",
        output.status
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening on"),
        "{what}: announced a socket: {output:?}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: no {needle:?} in:\n{stderr}"
        );
    }
}

/// One datagram to `addr` comes back byte-exact from `addr`; a lost
/// datagram (allowed: UDP) is sent again, a few times.
fn udp_echo(addr: SocketAddr, msg: &[u8]) {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        client.send_to(msg, addr).unwrap();
        if let Ok((n, from)) = client.recv_from(&mut buf) {
            assert_eq!(from, addr, "the echo came from elsewhere");
            assert_eq!(show(&buf[..n]), show(msg), "udp echo differs");
            return;
        }
    }
    panic!("no udp echo from {addr} after 5 datagrams");
}

/// A PROXY v1 header, then data: the data is echoed, the header is not.
fn proxy_echo(addr: SocketAddr, msg: &[u8]) {
    let mut stream = connect(addr);
    stream
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n")
        .unwrap();
    echo(&mut stream, msg);
}

#[test]
fn a_tcp_a_udp_and_a_proxy_socket_passed_in_are_announced_in_fd_order_and_served() {
    let cmd = launcher(
        "tcp,udp,tcp",
        "web:dns:proxy",
        "ours",
        "-",
        &["--listen", "127.0.0.1:9", "--udp", "127.0.0.1:9"],
    );
    let server = ServerProcess::spawn(cmd);
    let passed = launched(&server.log, 3);
    let expected: Vec<(SocketAddr, String)> = passed
        .iter()
        .zip(["tcp", "udp", "proxy"])
        .map(|(addr, kind)| (*addr, kind.to_string()))
        .collect();
    assert_eq!(server.endpoints(3), expected, "stdout lines");
    echo_session(passed[0], b"through the passed TCP listener\n");
    udp_echo(passed[1], b"through the passed UDP socket");
    proxy_echo(passed[2], b"through the passed PROXY listener\n");
    let said = server.log.wait_for("ignored", IO_TIMEOUT);
    assert!(
        said.as_deref().is_some_and(|l| l.contains("LISTEN_FDS")),
        "the log must say the flags are ignored:\n{}",
        server.log.dump()
    );
    let rest = String::from_utf8_lossy(&server.stdout_after_first_line()).to_string();
    assert_eq!(
        rest.lines().count(),
        2,
        "one stdout line per socket: {rest:?}"
    );
}

/// The real activator: it binds, waits for the first client, then `exec`s
/// the server with LISTEN_PID set and one name per socket.
#[test]
fn sockets_from_systemd_socket_activate_are_served_by_name() {
    let (plain, proxy) = (free_port(), free_port());
    let plain_addr: SocketAddr = format!("127.0.0.1:{plain}").parse().unwrap();
    let proxy_addr: SocketAddr = format!("127.0.0.1:{proxy}").parse().unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &plain_addr.to_string(), "-l", &proxy_addr.to_string()])
        .args(["--fdname=web:proxy", BIN, "--listen", "127.0.0.1:9"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    // The activator starts the server only once a client comes, so the first
    // client connects (retrying until the activator listens) while `spawn`
    // waits for the server's first line.
    let first_client = std::thread::spawn(move || {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut stream = loop {
            match TcpStream::connect(plain_addr) {
                Ok(stream) => break stream,
                Err(e) => assert!(Instant::now() < deadline, "connect {plain_addr}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        echo(&mut stream, b"the client that started the server\n");
    });
    let server = ServerProcess::spawn(cmd);
    first_client.join().expect("the first client was echoed");
    assert_eq!(
        server.endpoints(2),
        vec![(plain_addr, "tcp".into()), (proxy_addr, "proxy".into())]
    );
    proxy_echo(proxy_addr, b"by name\n");
}

/// LISTEN_FDS for no pid or another pid is not ours: the flags are served,
/// a warning says why, and the passed socket is not served.
#[test]
fn sockets_passed_to_another_pid_or_to_no_pid_are_not_used() {
    let other = std::process::id().to_string();
    for (pid, why) in [("unset", "LISTEN_PID"), (other.as_str(), other.as_str())] {
        let cmd = launcher("tcp", "-", pid, "-", &["--listen", "127.0.0.1:0"]);
        let server = ServerProcess::spawn(cmd);
        let passed = launched(&server.log, 1)[0];
        assert_ne!(
            server.addr, passed,
            "LISTEN_PID={pid}: the passed socket was used"
        );
        assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
        echo_session(server.addr, b"through --listen\n");
        let warning = server
            .log
            .wait_nth(
                1,
                |l| l.contains(" WARN ") && l.contains("LISTEN_FDS"),
                IO_TIMEOUT,
            )
            .unwrap_or_else(|| panic!("LISTEN_PID={pid}: no warning:\n{}", server.log.dump()));
        assert!(warning.contains(why), "LISTEN_PID={pid}: {warning}");
        // The passed socket is still open in the server (nothing closed it),
        // so a client lands in its backlog; it must never be echoed.
        let mut stranded = connect(passed);
        stranded.write_all(b"not served\n").unwrap();
        assert_silent(&mut stranded, Duration::from_millis(300));
    }
}

#[test]
fn a_count_beyond_the_descriptor_limit_is_refused_quickly_without_a_crash() {
    for count in ["2147483647", "4294967296", "1048576"] {
        let script = format!("export LISTEN_FDS={count} LISTEN_PID=$$\nexec \"$0\" \"$@\"");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script, BIN, "--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        let (output, took) = run_to_exit_cmd(cmd);
        figure(
            "activation_huge_count_exit",
            &format!("LISTEN_FDS={count}: {took:?}"),
        );
        // Exit 1 with the message, not an abort on a huge allocation.
        assert_refused_at_start(&output, &["LISTEN_FDS"], &format!("LISTEN_FDS={count}"));
        assert!(
            took < Duration::from_secs(10),
            "LISTEN_FDS={count} took {took:?}"
        );
    }
}

#[test]
fn a_count_that_is_not_a_number_is_refused() {
    for count in ["abc", "-1", ""] {
        let script = format!("export LISTEN_FDS='{count}' LISTEN_PID=$$\nexec \"$0\" \"$@\"");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script, BIN, "--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        let (output, _) = run_to_exit_cmd(cmd);
        assert_refused_at_start(&output, &["LISTEN_FDS"], &format!("LISTEN_FDS={count:?}"));
    }
}

/// Each case: the kinds passed, their names, the count, and the fd the
/// message must name.
#[test]
fn a_descriptor_of_another_kind_is_refused_naming_its_fd() {
    let cases = [
        ("tcp,unix", "-", "-", "fd 4 "),
        ("tcp,pipe", "-", "-", "fd 4 "),
        ("unlistened", "-", "-", "fd 3 "),
        ("udp,tcp,file", "-", "-", "fd 5 "),
        ("tcp,udp", "a:proxy", "-", "fd 4 "),
        // A count beyond what was passed: fd 4 is not open.
        ("tcp", "-", "2", "fd 4 "),
    ];
    for (kinds, names, count, fd) in cases {
        let cmd = launcher(kinds, names, "ours", count, &["--listen", "127.0.0.1:0"]);
        let (output, _) = run_to_exit_cmd(cmd);
        let what = format!("{kinds} named {names} count {count}");
        assert_refused_at_start(&output, &[fd, "LISTEN_FDS"], &what);
    }
}
