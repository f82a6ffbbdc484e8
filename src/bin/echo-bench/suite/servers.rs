//! Running things for a measurement: a fresh network namespace, a server
//! (pinned to CPU 0, optionally under a wrapper such as valgrind), and the
//! load generator (this binary, pinned to CPU 1), whose JSON report is read
//! back into its typed form.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::plan::Contender;

const C_SOURCE: &str = include_str!("../../../baseline/epoll_echo.c");

/// Whether this process can make network namespaces: `unshare -n` with
/// the loopback interface brought up inside.
pub fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["-n", "--", "ip", "link", "set", "lo", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace of its own for one measurement, held open by a
/// sleeping process: its server and load generator enter it with
/// `nsenter`, and its sockets (TIME_WAIT included) and TCP counters go away
/// with it.
pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> Result<Netns, String> {
        let mut holder = Command::new("unshare")
            .args([
                "-n",
                "--",
                "sh",
                "-c",
                "ip link set lo up && echo ready && exec sleep 3600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let out = holder.stdout.take().ok_or("unshare: no stdout")?;
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            return Err("could not bring up lo in a new network namespace".into());
        }
        Ok(Netns { holder })
    }

    /// The words that run a command inside.
    fn enter(&self) -> Vec<OsString> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.holder.id().to_string().into(),
            "-n".into(),
            "--".into(),
        ]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Where and how a measurement's processes run.
pub struct Placement<'a> {
    pub netns: Option<&'a Netns>,
    pub pin: bool,
    pub logs: &'a Path,
}

impl Placement<'_> {
    /// `argv` run in the namespace, pinned to `cpu` when pinning.
    fn command(&self, cpu: &str, argv: &[OsString]) -> Command {
        let mut words: Vec<OsString> = self.netns.map(Netns::enter).unwrap_or_default();
        if self.pin {
            words.extend(["taskset".into(), "-c".into(), cpu.into()]);
        }
        words.extend(argv.iter().cloned());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]);
        cmd
    }
}

pub struct Running {
    child: Child,
    pub pid: u32,
    pub addr: String,
}

/// Starts `s` on 127.0.0.1:0 with `args`, behind `wrapper` (e.g.
/// valgrind) if given, and waits for its `listening on ADDR` line.
pub fn start(
    s: &Contender,
    args: &[String],
    wrapper: &[String],
    at: &Placement,
    startup: Duration,
) -> Result<Running, String> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(at.logs.join(format!("{}.log", s.name)))
        .map_err(|e| format!("log file: {e}"))?;
    let mut argv: Vec<OsString> = wrapper.iter().map(OsString::from).collect();
    argv.push(s.bin.clone().into());
    argv.extend(args.iter().map(OsString::from));
    argv.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let mut cmd = at.command("0", &argv);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("start {}: {e}", s.bin.display()))?;
    // nsenter and taskset exec the server: the child's pid is the server's.
    let pid = child.id();
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep the pipe open (and drained) while the server runs.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(startup) {
        Ok(line) if line.starts_with("listening on ") => Ok(Running {
            child,
            pid,
            addr: line["listening on ".len()..].trim().to_string(),
        }),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{} did not print `listening on ADDR` (got {:?})",
                s.name,
                other.ok()
            ))
        }
    }
}

impl Running {
    /// Kills the server at once.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `within` for the exit (a tool wrapping the
    /// server writes its results then); SIGKILL after that. True if it
    /// exited by itself.
    pub fn terminate(mut self, within: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

/// Runs the load generator (`exe` with `args` and `--json`) and reads its
/// typed report.
pub fn load<T: DeserializeOwned>(exe: &Path, at: &Placement, args: &[String]) -> Result<T, String> {
    let mut argv: Vec<OsString> = vec![exe.into()];
    argv.extend(args.iter().map(OsString::from));
    argv.push("--json".into());
    let out = at
        .command("1", &argv)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("load generator: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "load generator failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("load generator output: {e}"))
}

/// Whether the server and the load can have a CPU each.
pub fn can_pin() -> bool {
    thread::available_parallelism().map_or(1, |n| n.get()) >= 2
        && Command::new("taskset")
            .args(["-c", "0", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Compiles the C epoll baseline into `out`; None without a working `cc`.
pub fn build_c(out: &Path) -> Option<PathBuf> {
    let src = out.join("epoll_echo.c");
    let bin = out.join("epoll-echo");
    fs::write(&src, C_SOURCE).ok()?;
    let ok = Command::new("cc")
        .args(["-O2", "-g", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}
