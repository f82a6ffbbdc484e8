//! What an operator reads: the start-up line (the pid to signal and the
//! settings in force), stats that no `RUST_LOG` filter hides once asked for,
//! the log line when a socket from `LISTEN_FDS` replaces `--listen`, and a
//! `--help` that explains the rules, signals and environment.

mod common;

use common::*;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

/// The one `started:` line of a server's log.
fn started_line(server: &ServerProcess) -> String {
    server
        .log
        .wait_for(" started: ", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no start-up line; stderr:\n{}", server.log.dump()))
}

/// The value of `key=` on a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    let rest = &line[at + key.len() + 2..];
    rest.split_whitespace().next().unwrap_or("")
}

#[test]
fn the_start_up_line_names_the_pid_and_the_settings_in_force() {
    let server = ServerProcess::start(&[
        "--max-connections",
        "321",
        "--idle-timeout",
        "2.5",
        "--shutdown-timeout",
        "7",
        "--accept-batch",
        "9",
        "--backlog",
        "77",
        "--no-quit",
        "--reuse-port",
    ]);
    let line = started_line(&server);
    assert!(line.contains(" INFO "), "{line}");
    assert_eq!(field(&line, "pid"), server.pid.to_string(), "{line}");
    assert_eq!(field(&line, "sockets"), server.addr.to_string(), "{line}");
    let expected = [
        ("source", "flags"),
        ("backlog", "77"),
        ("reuse_port", "on"),
        ("max_connections", "321"),
        ("accept_batch", "9"),
        ("idle_timeout", "2.5s"),
        ("shutdown_timeout", "7s"),
        ("quit_rule", "off"),
        ("keepalive", "300s"),
        ("proxy_trust", "any"),
    ];
    for (key, value) in expected {
        assert_eq!(field(&line, key), value, "{key} in {line}");
    }
    assert_eq!(field(&line, "max_buffer"), "65536", "{line}");
    // The pid it names is the one to signal.
    send_signal(field(&line, "pid").parse().unwrap(), "USR1");
    let stats = server.log.wait_nth(1, is_stats_line, IO_TIMEOUT);
    assert!(stats.is_some(), "no stats after USR1 to the logged pid");
    // Stderr never says `listening on`: that line is stdout's.
    assert!(!server.log.text().contains("listening on"));
}

/// With a low descriptor limit the line shows the limit the reactor really
/// applies, the same number as its `accepting at most` warning.
#[test]
fn the_start_up_line_shows_the_lowered_connection_limit() {
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=60:60", "--", BIN])
        .args(["--listen", "127.0.0.1:0", "--max-connections", "1000"])
        .env_remove("RUST_LOG");
    let server = ServerProcess::spawn(cmd);
    let line = started_line(&server);
    let warned = server
        .log
        .wait_for("accepting at most ", IO_TIMEOUT)
        .expect("the limit warning");
    let applied = warned
        .split("accepting at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no number in {warned:?}"));
    assert_eq!(field(&line, "max_connections"), applied, "{line}\n{warned}");
    assert_eq!(field(&line, "nofile"), "60", "{line}");
}

/// Stats an operator asked for with SIGUSR1, and the final stats, are
/// printed whatever `RUST_LOG` filters; the rest of the info log is not.
#[test]
fn requested_stats_are_printed_whatever_rust_log_filters() {
    for filter in ["warn", "off", "error", "echo_reactor=warn"] {
        let mut server = ServerProcess::start_with_env(&[], &[("RUST_LOG", filter)]);
        server.echo_check(b"counted\n").unwrap();
        let stats = server.stats();
        assert_eq!(stats["accepted"], 1, "RUST_LOG={filter}");
        server.signal("TERM");
        let status = server.expect_exit(IO_TIMEOUT);
        assert!(status.success(), "RUST_LOG={filter}: {status:?}");
        let fin = server.final_stats();
        assert_eq!(fin["bytes_out"], 8, "RUST_LOG={filter}");
        let text = server.log.text();
        // The filter still holds for everything else.
        for hidden in [" started: ", "shutting down", "accepting at most"] {
            assert!(
                !text.contains(hidden),
                "RUST_LOG={filter} shows {hidden:?}:\n{text}"
            );
        }
        assert_eq!(server.log.lines().len(), 2, "RUST_LOG={filter}:\n{text}");
    }
}

/// A socket passed in LISTEN_FDS replaces `--listen`: the log says so and
/// names the `--listen` that was ignored.
#[test]
fn a_socket_from_listen_fds_is_logged_as_replacing_listen() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ignored = "127.0.0.1:9";
    let script = "exec 3<&0 0</dev/null\nexport LISTEN_FDS=1 LISTEN_PID=$$\nexec \"$0\" \"$@\"";
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, BIN, "--listen", ignored])
        .env_remove("RUST_LOG")
        .stdin(Stdio::from(OwnedFd::from(listener)));
    let server = ServerProcess::spawn(cmd);
    assert_eq!(server.addr, addr);
    let line = server
        .log
        .wait_for("passed in LISTEN_FDS", IO_TIMEOUT)
        .unwrap_or_else(|| panic!("no LISTEN_FDS line:\n{}", server.log.dump()));
    assert!(
        line.contains(&format!("--listen {ignored}")) && line.contains("ignored"),
        "the line must say which --listen was ignored: {line}"
    );
    assert!(line.contains(&addr.to_string()), "{line}");
    let started = started_line(&server);
    assert_eq!(field(&started, "source"), "LISTEN_FDS", "{started}");
    echo_session(server.addr, b"through the inherited socket\n");
}

#[test]
fn help_explains_the_rules_the_signals_and_the_environment() {
    let out = run_to_exit(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "quit",
        "--no-quit",
        "listening on ADDR",
        "SIGINT",
        "SIGTERM",
        "SIGHUP",
        "SIGUSR1",
        "stats:",
        "RUST_LOG",
        "LISTEN_FDS",
        "Exit status",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    // -h keeps the flags' one-line summaries and still names the signals.
    let short = run_to_exit(&["-h"]);
    let short = String::from_utf8_lossy(&short.stdout);
    assert!(
        short.contains("SIGUSR1") && short.contains("RUST_LOG"),
        "{short}"
    );
}

#[test]
fn generate_prints_a_man_page_and_completions() {
    for (kind, marker) in [
        ("man", ".TH echo-reactor 1"),
        ("bash", "complete -F"),
        ("zsh", "#compdef echo-reactor"),
        ("fish", "complete -c echo-reactor"),
    ] {
        let out = run_to_exit(&["--generate", kind]);
        assert_eq!(out.status.code(), Some(0), "--generate {kind}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "--generate {kind}:\n{text}");
        assert!(out.stderr.is_empty(), "--generate {kind} logged: {out:?}");
    }
    let bad = run_to_exit(&["--generate", "powershell-7"]);
    assert_eq!(bad.status.code(), Some(2));
}
