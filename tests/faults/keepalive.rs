//! A peer that vanishes without a FIN or a reset (a crashed host, a cable
//! pulled): nftables drops every packet to and from the client's port, so
//! the server's socket sees nothing at all. With `--keepalive 1` (idle 1 s,
//! probes 1 s apart, 3 of them) the kernel gives up after about 4 s and
//! the server closes the connection as an error, logged at debug only (a
//! vanished peer is expected, no operator needs a warning for it). With
//! `--keepalive 0` nothing probes: the connection stays open (checked for
//! 6 s), and not one packet goes out for it.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{connect, echo, figure, wait_until, ServerProcess};
use crate::netns::Netns;

/// The nftables table of this scenario (the namespace's own).
const TABLE: &str = "vanish";
/// How long the keepalive server may take: 1 s idle and 3 probes 1 s apart
/// make about 4 s; the rest is margin for a loaded machine.
const KEEPALIVE_BOUND: Duration = Duration::from_secs(15);
/// How long the server without keepalive must keep the connection.
const CONTROL_SPAN: Duration = Duration::from_secs(6);

/// Runs `nft` with `args`, bounded to 10 s; its stdout. Panics on failure.
fn nft(args: &[&str]) -> String {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("nft {args:?}: {e}"));
    let done = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("nft output");
    assert!(
        done && out.status.success(),
        "nft {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output hook drops every packet from and to `client`'s port (on
/// loopback each packet passes it once), counting them.
fn vanish(client: &TcpStream) {
    let port = client.local_addr().unwrap().port().to_string();
    let chain = format!("c{port}");
    nft(&[
        "add",
        "chain",
        "inet",
        TABLE,
        &chain,
        "{ type filter hook output priority 0; }",
    ]);
    for side in ["sport", "dport"] {
        nft(&[
            "add", "rule", "inet", TABLE, &chain, "tcp", side, &port, "counter", "drop",
        ]);
    }
}

/// Packets the rules of `client`'s chain dropped so far.
fn dropped(client: &TcpStream) -> u64 {
    let port = client.local_addr().unwrap().port();
    let text = nft(&["list", "chain", "inet", TABLE, &format!("c{port}")]);
    text.split("packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A server with `--keepalive SECS --idle-timeout 0`, logging at debug, and
/// a client that has echoed once.
fn served(keepalive: &str) -> (ServerProcess, TcpStream) {
    let server = ServerProcess::start_with_env(
        &["--keepalive", keepalive, "--idle-timeout", "0"],
        &[("RUST_LOG", "debug")],
    );
    let mut client = connect(server.addr);
    echo(&mut client, b"still there?\n");
    (server, client)
}

pub fn keepalive_vanished_peer(_ns: &mut Netns) {
    nft(&["add", "table", "inet", TABLE]);
    let (probed, probed_client) = served("1");
    let (control, control_client) = served("0");
    vanish(&probed_client);
    vanish(&control_client);
    let t0 = Instant::now();
    let closed = wait_until(KEEPALIVE_BOUND, Duration::from_millis(100), || {
        probed.stats().get("active") == 0
    });
    let took = t0.elapsed();
    let st = probed.stats();
    let probes = dropped(&probed_client);
    assert!(
        closed,
        "--keepalive 1: still open {took:?} after the peer vanished: {st:?}\n{}",
        probed.log.dump()
    );
    assert_eq!(st.get("closed_error"), 1, "{st:?}");
    let warnings = probed.log.warnings();
    assert!(warnings.is_empty(), "a vanished peer warned: {warnings:?}");
    let timed_out = probed
        .log
        .lines()
        .into_iter()
        .find(|l| l.contains("timed out"));
    assert!(
        timed_out.as_ref().is_some_and(|l| l.contains(" DEBUG ")),
        "no debug line for the keepalive timeout: {timed_out:?}\n{}",
        probed.log.dump()
    );
    assert!(probes > 0, "no keepalive probe was dropped: {probes}");

    // Without keepalive: open throughout, nothing sent for it.
    let span = CONTROL_SPAN.saturating_sub(t0.elapsed());
    let gone = wait_until(span, Duration::from_millis(200), || {
        control.stats().get("active") == 0
    });
    let st = control.stats();
    assert!(
        !gone && st.get("active") == 1,
        "--keepalive 0: closed within {CONTROL_SPAN:?}: {st:?}"
    );
    let silent = dropped(&control_client);
    figure(
        "faults-keepalive-vanished",
        &format!(
            "peer vanished (all its packets dropped): --keepalive 1 closed it after {:.1} s \
             ({probes} packets dropped, closed_error={}, no warning); --keepalive 0 kept it \
             open {:.1} s ({silent} packets dropped)",
            took.as_secs_f64(),
            probed.stats().get("closed_error"),
            t0.elapsed().as_secs_f64(),
        ),
    );
    assert_eq!(
        silent, 0,
        "--keepalive 0 sent packets for an idle connection"
    );
}
