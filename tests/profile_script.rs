//! The profiling script behind `make strace` and `make perf`
//! (tests/tools/profile.sh): it stops only the server it started, by its
//! pid, even beside another server started the same way; and `perf`
//! refuses, saying how to fix it, where perf cannot see kernel frames
//! (a user without CAP_PERFMON while kernel.perf_event_paranoid > 1)
//! instead of printing a user-space-only profile as if it were the whole.
//!
//! Needs strace and python3 (`make test-deps`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn script() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.join("tests/tools/profile.sh").display().to_string()
}

/// Waits for `child` (bounded), killing it if it overruns; its status and
/// everything it printed.
fn finish(mut child: Child, timeout: Duration) -> (Option<ExitStatus>, String) {
    let out: Arc<Log> = Log::follow(child.stdout.take().unwrap());
    let err: Arc<Log> = Log::follow(child.stderr.take().unwrap());
    let mut status = None;
    wait_until(timeout, Duration::from_millis(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    out.wait_eof(IO_TIMEOUT);
    err.wait_eof(IO_TIMEOUT);
    (status, out.text() + &err.text())
}

#[test]
fn strace_profile_stops_only_the_server_it_started() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is not installed: `make test-deps` (apt-get install strace)"
    );
    // Started the way scripts start it: `echo-reactor --listen 127.0.0.1:0`,
    // the same binary the profile runs.
    let mut other = ServerProcess::start(&[]);
    let dir = TempDir::new("profile-strace");
    let child = Command::new("bash")
        .args([script().as_str(), "strace"])
        .env("ECHO_REACTOR", BIN)
        .env("PROFILE_OUT", &dir.0)
        .env("CLIENTS", "50")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, output) = finish(child, START_TIMEOUT * 2);
    // The other server never heard of it...
    assert!(
        other.is_running(),
        "the other server was stopped:\n{}",
        other.log.dump()
    );
    assert!(
        !other.log.text().contains("shutting down"),
        "{}",
        other.log.dump()
    );
    other.echo_check(b"still here\n").unwrap();
    // ...while the profile ran, and its own server drained and exited.
    assert!(
        status.is_some_and(|s| s.success()),
        "profile.sh strace: {status:?}\n{output}"
    );
    assert!(output.contains("== syscall summary"), "{output}");
    assert!(output.contains("accept4 calls in this turn"), "{output}");
    let log = std::fs::read_to_string(dir.0.join("stderr")).unwrap_or_default();
    assert!(
        log.contains("final stats:"),
        "the profiled server's log:\n{log}"
    );
}

#[test]
fn perf_profile_refuses_where_kernel_frames_are_hidden() {
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    if paranoid <= 1 {
        eprintln!(
            "skipped: kernel.perf_event_paranoid is {paranoid}, so every user sees kernel \
             frames here and there is nothing to refuse"
        );
        return;
    }
    let dir = TempDir::new("profile-perf");
    // The unprivileged user writes its output here, and runs the script
    // from here: the checkout may sit in a directory only root can enter
    // (a clone into `mktemp -d`). It refuses before it needs anything else.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script_copy = dir.0.join("profile.sh");
    std::fs::copy(script(), &script_copy).unwrap();
    let script_copy = script_copy.display().to_string();
    let mut cmd;
    if effective_uid() == 0 {
        // As nobody: setuid away from root drops every capability.
        cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
    } else {
        cmd = Command::new("bash");
    }
    let child = cmd
        .args([script_copy.as_str(), "perf"])
        .env("ECHO_REACTOR", BIN)
        .env("PROFILE_OUT", &dir.0)
        .env("SECS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, output) = finish(child, START_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{output}");
    for says in [
        "perf cannot see kernel frames",
        &format!("perf_event_paranoid is {paranoid}"),
        "sudo sysctl kernel.perf_event_paranoid=1",
        "PERF_USER_ONLY=1",
    ] {
        assert!(output.contains(says), "does not say {says:?}:\n{output}");
    }
    // Refused before starting anything: no profile, no server.
    assert!(!dir.0.join("stdout").exists(), "{output}");
    assert!(!output.contains("by object"), "{output}");
}

/// The effective uid of this process, from /proc/self/status.
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    uids.split_whitespace().nth(1).unwrap().parse().unwrap()
}
