//! Several sockets from the flags: every `--listen` serves, in command-line
//! order on stdout; a name binds every address it resolves to on one port;
//! a busy port or a multicast/broadcast address is refused at start
//! (the accept policy, keepalive, shutdown: `endpoints_serving.rs`).
//!
//! A name with two addresses comes from a private `/etc/hosts`, bind-mounted
//! in a mount namespace of the server's own (`unshare`); the network is the
//! host's loopback. A missing `unshare` fails these tests.

mod common;

use common::*;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::process::{Command, Stdio};

/// The name the private hosts file gives both loopback addresses.
const TWO_ADDRESS_NAME: &str = "both-loopbacks.test";

/// The server with `args`, run with a hosts file where `TWO_ADDRESS_NAME`
/// is ::1 and 127.0.0.1; before the server starts, the script writes the
/// name's addresses in resolver order to stderr as `resolved: IP`.
fn with_two_address_name(dir: &TempDir, args: &[&str]) -> Command {
    let hosts = dir.0.join("hosts");
    let text = format!("127.0.0.1 localhost {TWO_ADDRESS_NAME}\n::1 {TWO_ADDRESS_NAME}\n");
    std::fs::write(&hosts, text).unwrap();
    let script = format!(
        "mount --bind \"$HOSTS\" /etc/hosts || exit 97\n\
         getent ahosts {TWO_ADDRESS_NAME} | awk '$2 == \"STREAM\" {{ print \"resolved: \" $1 }}' >&2\n\
         exec \"$0\" \"$@\""
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--map-root-user", "sh", "-c", &script, BIN])
        .args(args)
        .env("HOSTS", &hosts)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// The `resolved: IP` lines the script wrote (waits for `n`).
fn resolved(log: &Log, n: usize) -> Vec<IpAddr> {
    let is_resolved = |l: &str| l.starts_with("resolved: ");
    log.wait_nth(n, is_resolved, START_TIMEOUT)
        .unwrap_or_else(|| panic!("fewer than {n} resolved addresses:\n{}", log.dump()));
    let lines = log.lines();
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("resolved: "))
        .map(|ip| ip.trim().parse().unwrap())
        .collect()
}

/// Exit status 1 with `needle` on stderr.
fn assert_cannot_listen(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?}\n{stderr}", out.status);
    assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
}

#[test]
fn two_listens_both_echo_announced_in_command_line_order() {
    for order in [["127.0.0.1:0", "[::1]:0"], ["[::1]:0", "127.0.0.1:0"]] {
        let server = ServerProcess::start(&["--listen", order[0], "--listen", order[1]]);
        let endpoints = server.endpoints(2);
        for ((addr, kind), flag) in endpoints.iter().zip(order) {
            let wanted: SocketAddr = flag.parse().unwrap();
            assert_eq!(
                (addr.ip(), kind.as_str()),
                (wanted.ip(), "tcp"),
                "{endpoints:?}"
            );
            assert_ne!(addr.port(), 0);
            echo_session(*addr, format!("to {addr}\n").as_bytes());
        }
    }
}

/// `localhost` as this host resolves it: one line per address, one port.
#[test]
fn localhost_binds_every_address_it_resolves_to_on_one_port() {
    let mut seen = HashSet::new();
    let ips: Vec<IpAddr> = ("localhost", 0)
        .to_socket_addrs()
        .expect("resolve localhost")
        .map(|a| a.ip())
        .filter(|ip| seen.insert(*ip))
        .collect();
    figure(
        "endpoints_localhost",
        &format!("localhost resolves to {ips:?}"),
    );
    let server = ServerProcess::start(&["--listen", "localhost:0"]);
    let endpoints = server.endpoints(ips.len());
    let got: Vec<IpAddr> = endpoints.iter().map(|(a, _)| a.ip()).collect();
    assert_eq!(got, ips, "addresses in resolver order");
    assert!(endpoints
        .iter()
        .all(|(a, _)| a.port() == server.addr.port()));
    for (addr, _) in &endpoints {
        echo_session(*addr, b"localhost\n");
    }
    // `endpoints` waited for the other lines: no more may follow them.
    let rest = String::from_utf8_lossy(&server.stdout_after_first_line()).to_string();
    assert_eq!(
        rest.lines().count(),
        ips.len() - 1,
        "one line per address: {rest:?}"
    );
}

/// A name with two addresses and port 0: both get the port the kernel chose
/// for the first, and both echo.
#[test]
fn a_two_address_name_binds_both_on_the_kernels_port() {
    let dir = TempDir::new("endpoints-two-addresses");
    let listen = format!("{TWO_ADDRESS_NAME}:0");
    let server = ServerProcess::spawn(with_two_address_name(&dir, &["--listen", &listen]));
    let ips = resolved(&server.log, 2);
    let endpoints = server.endpoints(2);
    let got: Vec<IpAddr> = endpoints.iter().map(|(a, _)| a.ip()).collect();
    assert_eq!(got, ips, "addresses in resolver order");
    assert_eq!(
        endpoints[0].0.port(),
        endpoints[1].0.port(),
        "{endpoints:?}"
    );
    for (addr, _) in &endpoints {
        echo_session(*addr, b"both loopbacks\n");
    }
}

/// The port is free on the first address and taken on the second: exit 1
/// naming the second.
#[test]
fn a_port_taken_on_a_later_address_of_a_name_is_exit_1_naming_it() {
    let dir = TempDir::new("endpoints-second-busy");
    // ::1 comes first for this name (RFC 6724, checked below); hold
    // 127.0.0.1:P, with P free on ::1.
    let (held, port) = v4_port_free_on_v6();
    let listen = format!("{TWO_ADDRESS_NAME}:{port}");
    let out = run_command_to_exit(with_two_address_name(&dir, &["--listen", &listen]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("resolved: "))
        .collect();
    assert_eq!(order, ["::1", "127.0.0.1"], "resolver order:\n{stderr}");
    assert_cannot_listen(
        &out,
        &format!("cannot listen on {}", held.local_addr().unwrap()),
    );
}

/// A listener on 127.0.0.1:P where [::1]:P is free as well (a few tries).
fn v4_port_free_on_v6() -> (TcpListener, u16) {
    for _ in 0..50 {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        if TcpListener::bind(("::1", port)).is_ok() {
            return (held, port);
        }
    }
    panic!("no port free on both loopbacks in 50 tries");
}

#[test]
fn a_busy_port_is_exit_1_naming_the_address() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let out = run_to_exit(&["--listen", &addr.to_string()]);
    assert_cannot_listen(&out, &format!("echo-reactor: cannot listen on {addr}: "));
    let held_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = held_udp.local_addr().unwrap();
    let out = run_to_exit(&["--udp", &addr.to_string()]);
    assert_cannot_listen(
        &out,
        &format!("echo-reactor: cannot listen on {addr} (udp): "),
    );
}

/// IPV6_V6ONLY: `0.0.0.0:P` and `[::]:P` coexist, either started first;
/// each server serves its own family (its `accepted` counts the client).
#[test]
fn ipv4_and_ipv6_wildcards_bind_the_same_port() {
    for v4_first in [true, false] {
        let (probe, port) = v4_port_free_on_v6();
        drop(probe);
        let v4 = format!("0.0.0.0:{port}");
        let v6 = format!("[::]:{port}");
        let order = if v4_first { [&v4, &v6] } else { [&v6, &v4] };
        let first = ServerProcess::start(&["--listen", order[0]]);
        let second = ServerProcess::start(&["--listen", order[1]]);
        let (v4_server, v6_server) = if v4_first {
            (&first, &second)
        } else {
            (&second, &first)
        };
        echo_session(SocketAddr::from(([127, 0, 0, 1], port)), b"v4\n");
        echo_session(format!("[::1]:{port}").parse().unwrap(), b"v6\n");
        assert_eq!(v4_server.stats()["accepted"], 1, "0.0.0.0 server");
        assert_eq!(v6_server.stats()["accepted"], 1, "[::] server");
    }
}

#[test]
fn multicast_and_broadcast_addresses_are_flag_errors() {
    let cases = [
        ("--listen", "224.0.0.1:0"),
        ("--listen", "255.255.255.255:0"),
        ("--udp", "239.1.1.1:0"),
        ("--listen", "[ff02::1]:0"),
        ("--proxy-listen", "224.0.0.251:0"),
        ("--udp", "[ff05::2]:0"),
    ];
    for (flag, addr) in cases {
        assert_usage_error(&[flag, addr], flag);
    }
}

/// No socket flag: 127.0.0.1:7007. If something else holds that port, the
/// refusal must name it instead; either way the default is shown.
#[test]
fn without_socket_flags_the_default_is_127_0_0_1_port_7007() {
    let default: SocketAddr = "127.0.0.1:7007".parse().unwrap();
    let help = run_to_exit(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("127.0.0.1:7007"));
    if TcpListener::bind(default).is_err() {
        figure(
            "endpoints_default",
            "127.0.0.1:7007 busy: checking the refusal names it",
        );
        let out = run_to_exit(&[]);
        assert_cannot_listen(&out, "cannot listen on 127.0.0.1:7007");
        return;
    }
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
    let server = ServerProcess::spawn(cmd);
    assert_eq!(server.addr, default);
    echo_session(default, b"default\n");
}
