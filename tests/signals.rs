//! Shutdown signals as they really arrive: one Ctrl-C often comes as two
//! signals (the terminal's SIGINT to the process group, and a wrapper's or
//! supervisor's SIGTERM right behind it), which is one request to drain, not
//! a second request to stop at once; a deliberate second signal later still
//! stops at once; and SIGHUP (the terminal went away) drains like SIGTERM.
//! Real binary, real sockets.

mod common;

use std::net::{Shutdown, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// Runs `script` with sh(1): its `kill` builtin sends signals microseconds
/// apart, as a terminal and a supervisor do.
fn sh(script: &str) {
    let status = Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("run sh");
    assert!(status.success(), "`{script}` failed: {status:?}");
}

/// A client with up to 8 MiB of echo in the pipe, none of it read yet.
fn client_with_echo_in_flight(server: &ServerProcess, seed: u64) -> (TcpStream, Vec<u8>) {
    let mut client = server.connect();
    let mut data = pattern(8 * MIB, seed);
    let written = write_until_full(&mut client, &data, Duration::from_millis(500));
    assert!(
        written >= MIB,
        "only {written} bytes fit in the pipe; expected at least 1 MiB in flight"
    );
    data.truncate(written);
    (client, data)
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        None => "is still running".into(),
        Some(s) => match s.signal() {
            Some(sig) => format!("was killed by signal {sig}"),
            None => format!("exited with {:?}", s.code()),
        },
    }
}

/// `signals` (a script; `{pid}` is the server's pid) land while a client
/// has echo in flight: the server drains as for one signal. The client
/// gets all its echo and a clean EOF, the process exits 0, and nothing
/// says `second signal`.
fn one_request_drains(mut server: ServerProcess, signals: &str) {
    let (mut client, data) = client_with_echo_in_flight(&server, 4);
    sh(&signals.replace("{pid}", &server.pid.to_string()));
    let echo = read_exactly_or_what_came(&mut client, data.len());
    client.shutdown(Shutdown::Write).ok();
    let rest = try_read_to_eof(&mut client);
    drop(client);
    let status = server.wait_exit(Duration::from_secs(15));
    let second = server.log.wait_for("second signal", Duration::ZERO);
    assert!(
        second.is_none(),
        "`{signals}` is one request to stop, taken as two: {}; the client got {} of \
         {} bytes of its echo",
        second.unwrap_or_default(),
        echo.len(),
        data.len()
    );
    assert!(
        echo == data,
        "{} of {} bytes of echo in flight came back after `{signals}`",
        echo.len(),
        data.len()
    );
    assert!(
        matches!(&rest, Ok(more) if more.is_empty()),
        "after the echo: {:?}",
        rest.map(|more| show(&more))
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the server {}; stderr:\n{}",
        describe(status),
        server.log.tail(20)
    );
    let fin = server.final_stats();
    assert_eq!(fin["bytes_out"], data.len() as u64, "{fin:?}");
}

/// Like `read_exactly`, but a short read (EOF, reset, timeout) returns what
/// came instead of panicking, so the caller can say why first.
fn read_exactly_or_what_came(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    let mut have = 0;
    while have < n {
        match std::io::Read::read(stream, &mut got[have..]) {
            Ok(0) => break,
            Ok(k) => have += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got.truncate(have);
    got
}

#[test]
fn sigint_then_sigterm_back_to_back_is_one_request() {
    let server = ServerProcess::start(&["--shutdown-timeout", "10"]);
    one_request_drains(server, "kill -s INT {pid}; kill -s TERM {pid}");
}

#[test]
fn sigint_to_the_process_group_then_sigterm_is_one_request() {
    // As a terminal's Ctrl-C reaches every process of the foreground group,
    // while a wrapper forwards SIGTERM to the server itself.
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--shutdown-timeout", "10"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .process_group(0);
    let server = ServerProcess::spawn(cmd);
    // process_group(0): the group's id is the server's pid.
    one_request_drains(server, "kill -s INT -- -{pid}; kill -s TERM {pid}");
}

#[test]
fn a_deliberate_second_signal_still_stops_at_once() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "10"]);
    let (_client, _) = client_with_echo_in_flight(&server, 5);
    server.signal("TERM");
    server
        .log
        .wait_for("shutting down", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no `shutting down` line; stderr:\n{}", server.log.dump()));
    // Well past the time in which a second signal counts as the same
    // request: this one is deliberate. The client reads none of its echo,
    // so the drain is still going.
    std::thread::sleep(Duration::from_millis(1600));
    assert!(server.is_running(), "the drain ended on its own");
    server.signal("INT");
    let sent = Instant::now();
    let status = server.expect_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "exited {:?} after the second signal",
        sent.elapsed()
    );
    assert!(
        server
            .log
            .wait_for("second signal: closing 1 connection now", Duration::ZERO)
            .is_some(),
        "no `second signal: closing 1 connection now`; stderr:\n{}",
        server.log.dump()
    );
    server.final_stats();
}

#[test]
fn sighup_drains_like_sigterm() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "10"]);
    let (mut client, data) = client_with_echo_in_flight(&server, 6);
    server.signal("HUP");
    let Some(draining) = server.log.wait_for("shutting down", Duration::from_secs(5)) else {
        let status = server.wait_exit(Duration::from_secs(2));
        panic!(
            "no `shutting down` line after SIGHUP; the server {}; stderr:\n{}",
            describe(status),
            server.log.dump()
        );
    };
    assert!(
        draining.contains("shutting down: draining 1 connection"),
        "{draining}"
    );
    let echo = read_exactly_or_what_came(&mut client, data.len());
    assert!(
        echo == data,
        "{} of {} bytes of echo in flight came back after SIGHUP",
        echo.len(),
        data.len()
    );
    client.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut client);
    drop(client);
    let status = server.expect_exit(Duration::from_secs(5));
    assert!(status.success(), "the server {}", describe(Some(status)));
    let fin = server.final_stats();
    assert_eq!(fin["bytes_out"], data.len() as u64, "{fin:?}");
}
