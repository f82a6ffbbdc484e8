//! Scale-out: `--reuse-port` lets several processes share a port,
//! and systemd socket activation (`LISTEN_FDS`/`LISTEN_PID`) hands the server
//! a listening socket instead of letting it bind.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn two_reuse_port_processes_share_a_port_and_serve_50_clients() {
    let a = ServerProcess::start(&["--reuse-port"]);
    let port = a.addr.port().to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--reuse-port"])
        .env("RUST_LOG", "info");
    let b = ServerProcess::spawn(cmd);
    assert_eq!(a.addr, b.addr, "both listen on the same address");

    for i in 0..50u64 {
        echo_session(a.addr, &pattern(1000, i));
    }
    let sa = a.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    let sb = b.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    let (na, nb) = (sa.get("accepted"), sb.get("accepted"));
    eprintln!("process A served {na} clients, process B {nb}");
    assert_eq!(na + nb, 50, "{sa:?}\n{sb:?}");
    assert!(
        na > 0 && nb > 0,
        "the kernel gave all 50 clients to one process: {na} / {nb}"
    );
    assert_eq!(sa.get("bytes_out") + sb.get("bytes_out"), 50_000);
    a.assert_one_thread("with --reuse-port");
    b.assert_one_thread("with --reuse-port");
}

/// Rolling restart: when one of the two stops, the other takes every new
/// client on the shared port.
#[test]
fn reuse_port_survivor_takes_all_clients() {
    let mut a = ServerProcess::start(&["--reuse-port"]);
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", &a.addr.to_string(), "--reuse-port"])
        .env("RUST_LOG", "info");
    let b = ServerProcess::spawn(cmd);
    a.signal("TERM");
    assert!(a.expect_exit(Duration::from_secs(5)).success());
    for i in 0..20u64 {
        echo_session(b.addr, &pattern(100, i));
    }
    let stats = b.stats_until(Duration::from_secs(5), |s| s.get("active") == 0);
    assert_eq!(stats.get("accepted"), 20, "{stats:?}");
}

/// Without `--reuse-port` a second process cannot bind a port in use: exit
/// 1 with one stderr line naming the address.
#[test]
fn second_process_without_reuse_port_cannot_bind() {
    for first_args in [&["--reuse-port"][..], &[][..]] {
        let a = ServerProcess::start(first_args);
        let out = Command::new(BIN)
            .args(["--listen", &a.addr.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let named: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&a.addr.to_string()))
            .collect();
        assert_eq!(named.len(), 1, "stderr:\n{stderr}");
        assert!(out.stdout.is_empty(), "{out:?}");
        echo_session(a.addr, b"first one still serves\n");
    }
}

/// Runs `BIN ARGS` as systemd would after socket activation: `listener` on
/// fd 3, `LISTEN_FDS=1`, `LISTEN_PID` = the server's own pid.
///
/// `std::process::Command` can place a descriptor only on fds 0-2 without
/// `unsafe` (`pre_exec`), and the pid is only known after fork. So the
/// listener goes in as the child's stdin (`Stdio::from(OwnedFd)`, which
/// dup2()s it and clears close-on-exec), and a two-line `sh` moves it to fd 3
/// (`exec 3<&0`), puts /dev/null on stdin, exports LISTEN_PID=$$ and
/// `exec`s the server, which keeps the shell's pid. `listen_pid` overrides
/// the pid (to test a mismatch).
fn socket_activated(
    listener: TcpListener,
    listen_pid: Option<u32>,
    args: &[&str],
) -> ServerProcess {
    let pid = listen_pid.map_or("$$".to_string(), |p| p.to_string());
    let script =
        format!("exec 3<&0 0</dev/null\nexport LISTEN_FDS=1 LISTEN_PID={pid}\nexec \"$0\" \"$@\"");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::from(OwnedFd::from(listener)));
    ServerProcess::spawn(cmd)
}

/// A second listener on a port, to make `--listen` unusable: if the server
/// ignored the inherited socket it would fail to bind and exit 1.
fn occupied() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

#[test]
fn socket_activation_serves_the_inherited_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (_busy, busy_addr) = occupied();
    let mut server = socket_activated(listener, None, &["--listen", &busy_addr.to_string()]);
    assert_eq!(
        server.addr, addr,
        "`listening on` must print the inherited socket's address"
    );
    assert!(
        server
            .log
            .wait_for("LISTEN_FDS", Duration::from_secs(5))
            .is_some(),
        "no log line about the inherited socket:\n{}",
        server.log.dump()
    );
    // The listener really is fd 3 of the server.
    let fd3 = std::fs::read_link(format!("/proc/{}/fd/3", server.pid)).unwrap();
    assert!(fd3.to_string_lossy().starts_with("socket:"), "{fd3:?}");

    for i in 0..10u64 {
        echo_session(addr, &pattern(5000, i));
    }
    let mut client = connect(addr);
    echo(&mut client, b"hello through fd 3\n");
    server.assert_one_thread("when socket-activated");

    // The test gave its only copy away: once the server exits, the port is
    // closed.
    server.signal("TERM");
    expect_eof(&mut client);
    drop(client);
    assert!(server.expect_exit(Duration::from_secs(5)).success());
    let fin = server.final_stats();
    assert_eq!(fin.get("accepted"), 11, "{fin:?}");
    assert_refused(addr);
}

/// `LISTEN_PID` naming another process: the variables are not for us, so
/// the server binds `--listen` as usual, and says why it ignored them.
#[test]
fn socket_activation_for_another_pid_is_ignored() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = listener.local_addr().unwrap();
    let server = socket_activated(listener, Some(1), &["--listen", "127.0.0.1:0"]);
    assert_ne!(server.addr, inherited);
    echo_session(server.addr, b"bound its own\n");
    let warning = server.log.wait_for("LISTEN_FDS", Duration::ZERO);
    let warning = warning.unwrap_or_else(|| panic!("no warning:\n{}", server.log.dump()));
    assert!(
        warning.contains("WARN") && warning.contains("ignoring"),
        "{warning}"
    );
}

/// Socket activation with a socket that is bound but not listening (a
/// launcher's mistake): the server must either refuse it at start (exit 1,
/// naming the problem) or at least not spin. Accepting on such a socket
/// fails with EINVAL every time.
#[test]
fn socket_activation_with_a_non_listening_socket_does_not_spin() {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec 3<&0 0</dev/null\nexport LISTEN_FDS=1 LISTEN_PID=$$\nexec \"$0\" \"$@\"")
        .arg(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::from(OwnedFd::from(socket)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let log = Log::follow(child.stderr.take().unwrap());
    let exited = wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
        child.try_wait().unwrap().is_some()
    });
    if exited {
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{}", log.dump());
        return;
    }
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        used < 20,
        "server given a non-listening socket burns CPU: {used} ticks (1/100 s) in 1 s \
         (accept fails with EINVAL and the listener is retried every turn)"
    );
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
