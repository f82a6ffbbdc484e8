//! The server process: start it (or a prepared command that is or `exec`s
//! into it), follow its output, signal it, ask it for stats, wait for its
//! exit. Killed (SIGKILL) and reaped on drop.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    connect, fd_count, is_final_stats_line, is_stats_line, parse_endpoint_line,
    parse_listening_line, rss_kib, thread_count, try_echo, Log, Stats, BIN, START_TIMEOUT,
};

/// A running `echo-reactor`; killed and reaped on drop.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    /// From the first `listening on` line (the real port).
    pub addr: SocketAddr,
    /// Everything the server writes to stderr.
    pub log: Arc<Log>,
    /// The first line of stdout.
    first_line: String,
    /// Stdout after the first line: the other sockets' `listening on`
    /// lines, then (the contract says) nothing.
    stdout_rest: Arc<Log>,
    status: Option<ExitStatus>,
    /// One SIGUSR1 at a time, so each caller gets the line it asked for.
    stats_lock: Mutex<()>,
}

impl ServerProcess {
    /// Starts the binary with `args`, adding `--listen 127.0.0.1:0` unless
    /// `args` names a socket (`--listen`, `--proxy-listen`, `--udp`), and
    /// waits for its first `listening on ADDR` line.
    /// `RUST_LOG` is removed from the environment, so the default level
    /// (info) applies.
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(args, &[])
    }

    /// Like `start`, with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let mut cmd = Command::new(BIN);
        let names_a_socket = |arg: &&str| {
            ["--listen", "--proxy-listen", "--udp"]
                .iter()
                .any(|flag| arg == flag || arg.starts_with(&format!("{flag}=")))
        };
        if !args.iter().any(names_a_socket) {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdin(Stdio::null());
        ServerProcess::spawn(cmd)
    }

    /// Runs a prepared command whose process is (or `exec`s into) the
    /// server; its stdout and stderr are taken here (stdin is left as the
    /// command has it). Waits for `listening on`.
    pub fn spawn(mut cmd: Command) -> ServerProcess {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if cmd.get_envs().all(|(k, _)| k != "LISTEN_FDS") {
            cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let pid = child.id();
        let log = Log::follow(child.stderr.take().expect("stderr is piped"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdout_rest = Arc::new(Log::default());
        let (first_line, rx) = mpsc::channel();
        {
            let rest = Arc::clone(&stdout_rest);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let _ = first_line.send(reader.read_line(&mut line).map(|_| line));
                // Keep the rest (there should be none), draining the pipe so
                // the server never blocks on it.
                rest.collect(reader);
            });
        }
        let line = rx.recv_timeout(START_TIMEOUT);
        let addr = match &line {
            Ok(Ok(line)) => parse_listening_line(line),
            _ => None,
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let status = child.wait();
            log.wait_eof(Duration::from_secs(2));
            panic!(
                "{cmd:?} printed no `listening on ADDR` line ({line:?}); exit: {status:?}; \
                 stderr:\n{}",
                log.dump()
            );
        };
        ServerProcess {
            child,
            pid,
            addr,
            log,
            first_line: line.ok().and_then(Result::ok).unwrap_or_default(),
            stdout_rest,
            status: None,
            stats_lock: Mutex::new(()),
        }
    }

    /// A new client connection with timeouts set (see `connect`).
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// What the server wrote to stdout after its first line so far.
    pub fn stdout_after_first_line(&self) -> Vec<u8> {
        self.stdout_rest.bytes()
    }

    /// The first `n` sockets the server announced on stdout (`listening on
    /// ADDR [proxy|udp]`), in order, as (address, `tcp`|`proxy`|`udp`).
    /// Waits (bounded) for the lines after the first; panics if fewer come.
    pub fn endpoints(&self, n: usize) -> Vec<(SocketAddr, String)> {
        let is_endpoint = |line: &str| parse_endpoint_line(line).is_some();
        if n > 1 {
            self.stdout_rest
                .wait_nth(n - 1, is_endpoint, START_TIMEOUT)
                .unwrap_or_else(|| {
                    panic!(
                        "fewer than {n} `listening on` lines: {:?} then {:?}",
                        self.first_line,
                        self.stdout_rest.text()
                    )
                });
        }
        std::iter::once(self.first_line.clone())
            .chain(self.stdout_rest.lines())
            .filter_map(|line| parse_endpoint_line(&line))
            .take(n)
            .collect()
    }

    /// Waits until the server closed stdout and stderr (it exited and the
    /// readers have everything); false on timeout.
    pub fn wait_output_closed(&self, timeout: Duration) -> bool {
        self.stdout_rest.wait_eof(timeout) && self.log.wait_eof(timeout)
    }

    /// Sends a signal by name (`TERM`, `INT`, `USR1`, `KILL`).
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid, sig);
    }

    /// Stops the server (SIGSTOP) and waits until /proc says it is stopped:
    /// what clients send meanwhile queues in the kernel, for the server to
    /// find all at once when `resume` lets it go on.
    pub fn pause(&self) {
        self.signal("STOP");
        let stat = format!("/proc/{}/stat", self.pid);
        let mut last = String::new();
        let stopped = super::wait_until(super::IO_TIMEOUT, Duration::from_millis(2), || {
            last = std::fs::read_to_string(&stat).unwrap_or_default();
            // The state follows the command name, which may hold spaces.
            last.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
        });
        assert!(stopped, "server {} never stopped: {last}", self.pid);
    }

    /// Lets a `pause`d server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Sends SIGUSR1 and returns the `stats:` snapshot it logs.
    pub fn stats(&self) -> Stats {
        let _serial = self.stats_lock.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.log.count(is_stats_line);
        self.signal("USR1");
        let line = self
            .log
            .wait_nth(before + 1, is_stats_line, Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "no `stats:` line within 10 s of SIGUSR1; stderr:\n{}",
                    self.log.dump()
                )
            });
        Stats::parse(&line)
    }

    /// Asks for stats until `pred` holds; panics after `timeout`.
    pub fn stats_until(&self, timeout: Duration, pred: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if pred(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "stats never reached the expected state; last: {stats:?}\nstderr:\n{}",
                self.log.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks for stats until `active == 0` and the fd count equals `fds`, or
    /// `timeout` passes; returns the last stats, fd count and time taken.
    pub fn wait_settled(&self, fds: usize, timeout: Duration) -> (Stats, usize, Duration) {
        let t0 = Instant::now();
        loop {
            let st = self.stats();
            let n = self.fd_count();
            if (st.get("active") == 0 && n == fds) || t0.elapsed() > timeout {
                return (st, n, t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A fresh client echoes `msg` exactly, then half-closes and sees a
    /// clean EOF with nothing more.
    pub fn echo_check(&self, msg: &[u8]) -> std::io::Result<()> {
        let mut s = self.connect();
        try_echo(&mut s, msg)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut rest)?;
        if !rest.is_empty() {
            return Err(std::io::Error::other(format!(
                "{} unexpected bytes after echo",
                rest.len()
            )));
        }
        Ok(())
    }

    /// Threads of the process right now (`/proc/PID/task` entries).
    pub fn threads(&self) -> usize {
        thread_count(self.pid)
    }

    pub fn assert_one_thread(&self, when: &str) {
        assert_eq!(self.threads(), 1, "server has more than one thread {when}");
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }

    /// Open descriptors of the process (`/proc/PID/fd` entries).
    pub fn fd_count(&self) -> usize {
        fd_count(self.pid)
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// The process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Polls for the exit, every few ms, up to `timeout`; once it exited,
    /// also waits (up to 5 s) until its output is all read, so the log is
    /// complete.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                self.wait_output_closed(Duration::from_secs(5));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Like `wait_exit` but panics (with the log) if the process is still
    /// running after `timeout`.
    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "server still running {timeout:?} later; stderr:\n{}",
                self.log.dump()
            ),
        }
    }

    /// The `final stats:` line, which must be there once the process exited.
    pub fn final_stats(&self) -> Stats {
        let line = self
            .log
            .wait_nth(1, is_final_stats_line, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no `final stats:` line; stderr:\n{}", self.log.dump()));
        Stats::parse(&line)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends signal `sig` (`TERM`, `INT`, `USR1`, `KILL`) to `pid` with kill(1).
pub fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -s {sig} {pid} failed");
}

/// Runs the binary to completion (for flags that make it exit at once) and
/// returns its output; kills it and panics if it is still running after
/// `START_TIMEOUT` (e.g. a bad flag that was accepted and started a server).
pub fn run_to_exit(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
    run_command_to_exit(cmd)
}

/// Runs the binary with bad `args`: it must exit 2 (a usage error) with
/// `mention` (the flag, say) on stderr.
pub fn assert_usage_error(args: &[&str], mention: &str) {
    let out = run_to_exit(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: {:?}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(mention),
        "{args:?}: {mention} not named:\n{stderr}"
    );
}

/// `run_to_exit` for a prepared command (an environment, a launcher that
/// `exec`s the server).
pub fn run_command_to_exit(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let exited = super::wait_until(START_TIMEOUT, Duration::from_millis(10), || {
        child.try_wait().expect("try_wait").is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("collect output");
    assert!(
        exited,
        "{cmd:?} still running after {START_TIMEOUT:?}; stdout: {:?} stderr: {:?}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
