//! The namespace harness. The parent side finds out whether a private
//! network namespace with the faults can be made here (`probe`) and runs
//! each scenario as a re-execution of this binary under `unshare -n`
//! (`run_scenario`), bounded in time, killing what is left behind. The child
//! side (`Netns::enter`) first proves it is isolated (another netns than the
//! parent's, no interface up but its own loopback), then brings that
//! loopback up and installs the faults a scenario asks for on it.
//!
//! Faults available: a slow queueing link (tbf on `lo`) and random loss
//! (nftables `numgen random` on the output hook). This kernel has no netem,
//! so there is no delay jitter and no reordering here.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// Set in a re-executed child: the scenario it runs.
pub const SCENARIO_ENV: &str = "ECHO_FAULTS_SCENARIO";
/// Set in a re-executed child: only check that the faults can be installed.
pub const PROBE_ENV: &str = "ECHO_FAULTS_PROBE";
/// The parent's network namespace (`net:[inode]`), which the child must not share.
const HOST_NETNS_ENV: &str = "ECHO_FAULTS_HOST_NETNS";
/// Exit code of a child that cannot set its namespace up (skipped, not failed).
pub const SKIP_CODE: i32 = 77;
/// Bound on each `ip`, `tc`, `nft` and `kill` command.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The namespace a process is in, as `net:[inode]`.
fn netns_of(pid: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Runs `cmd` to its end within `limit`, collecting its output; killed (it
/// is our direct child) if it takes longer.
fn output_within(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let readers = [
        drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ];
    let status = wait_within(&mut child, limit);
    let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!("{what} still running after {limit:?}")),
    }
}

fn drain(pipe: Option<Box<dyn Read + Send>>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

/// Waits for `child` up to `limit`; on timeout kills it and returns `None`.
fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a tool that must succeed; its stdout.
fn tool(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    let out = output_within(cmd, TOOL_TIMEOUT)?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child of this binary in a fresh network namespace, `env` naming its job.
fn reexec(env: (&str, &str)) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let host = netns_of("self").ok_or("cannot read /proc/self/ns/net")?;
    let mut cmd = Command::new("unshare");
    cmd.arg("-n")
        .arg("--")
        .arg(exe)
        .env(env.0, env.1)
        .env(HOST_NETNS_ENV, host)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Whether a namespace with both faults can be made here; the reason if not.
pub fn probe() -> Result<(), String> {
    for t in ["unshare", "ip", "tc", "nft"] {
        if !on_path(t) {
            return Err(format!("`{t}` not found"));
        }
    }
    let out = output_within(reexec((PROBE_ENV, "1"))?, Duration::from_secs(30))?;
    if out.status.success() {
        return Ok(());
    }
    let text = [out.stdout, out.stderr].concat();
    let text = String::from_utf8_lossy(&text);
    let reason = text.trim();
    Err(if reason.is_empty() {
        format!("unshare -n: {}", out.status)
    } else {
        reason.lines().last().unwrap_or(reason).to_string()
    })
}

/// Child side of `probe`: isolated, loopback up, both faults installable.
pub fn probe_inside() -> i32 {
    let result = Netns::setup().and_then(|mut ns| {
        ns.try_slow_link()?;
        ns.try_set_loss(2)
    });
    match result {
        Ok(()) => 0,
        Err(reason) => {
            println!("{reason}");
            SKIP_CODE
        }
    }
}

/// How one scenario ended, seen from the parent.
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped,
}

/// Runs `name` in its own namespace (this binary re-executed under
/// `unshare -n`, output passed straight through), at most `limit`. The child
/// leads a process group of its own, so on timeout the group (the child,
/// its server and anything else it started) is killed at once.
pub fn run_scenario(name: &str, limit: Duration) -> Outcome {
    let mut cmd = match reexec((SCENARIO_ENV, name)) {
        Ok(cmd) => cmd,
        Err(e) => return Outcome::Failed(e),
    };
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("spawn unshare: {e}")),
    };
    let group = child.id();
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            // Still running (not reaped), so the group id is surely ours.
            _ => {
                kill(&format!("-{group}"));
                let _ = child.wait();
                break None;
            }
        }
    };
    let left = leftovers(group);
    for pid in &left {
        eprintln!("scenario {name}: killing leftover process {pid}");
        kill(&pid.to_string());
    }
    match status {
        None => Outcome::Failed(format!("timed out after {limit:?}")),
        Some(_) if !left.is_empty() => Outcome::Failed(format!("left processes {left:?} running")),
        Some(s) if s.success() => Outcome::Passed,
        Some(s) if s.code() == Some(SKIP_CODE) => Outcome::Skipped,
        Some(s) => Outcome::Failed(s.to_string()),
    }
}

/// SIGKILL to a pid or (`-pgid`) a process group, by id.
fn kill(target: &str) {
    let mut cmd = Command::new("kill");
    cmd.args(["-s", "KILL", "--", target]);
    let _ = output_within(cmd, TOOL_TIMEOUT);
}

/// Processes still in the scenario's process group after it exited (a
/// server it failed to reap), in a network namespace other than ours.
fn leftovers(group: u32) -> Vec<u32> {
    let ours = netns_of("self");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces): state ppid pgrp.
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
            pgrp == Some(group) && netns_of(&pid.to_string()).is_some_and(|n| Some(n) != ours)
        })
        .collect()
}

/// Inside the scenario's namespace: its loopback and the faults on it.
pub struct Netns {
    slow: bool,
    loss_pct: u32,
    /// Packets dropped by loss rules already removed.
    dropped_before: u64,
}

impl Netns {
    /// Checks the isolation, brings `lo` up with MTU 1500 and raises the fd
    /// limit (the server inherits it); panics if any of that fails.
    pub fn enter() -> Netns {
        let ns = Netns::setup().unwrap_or_else(|e| panic!("namespace setup: {e}"));
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        ns
    }

    fn setup() -> Result<Netns, String> {
        let host = std::env::var(HOST_NETNS_ENV).map_err(|_| format!("{HOST_NETNS_ENV} unset"))?;
        let here = netns_of("self").ok_or("cannot read /proc/self/ns/net")?;
        if here == host {
            return Err(format!("still in the parent's network namespace {host}"));
        }
        // A fresh namespace may hold fallback tunnel devices, always down;
        // nothing but its loopback may be up, so no packet can leave.
        let links = tool(&["ip", "-o", "link"])?;
        for line in links.lines() {
            let name = line.split(':').nth(1).unwrap_or("").trim();
            let flags = line.split(['<', '>']).nth(1).unwrap_or("");
            if name != "lo" && flags.split(',').any(|f| f == "UP") {
                return Err(format!("interface other than lo is up: {line}"));
            }
        }
        if !links.lines().any(|l| l.contains(" lo:")) {
            return Err(format!("no loopback in the namespace: {links}"));
        }
        // tbf drops any segment larger than its burst: with lo's default
        // 64 KiB MTU that is every large one.
        tool(&["ip", "link", "set", "lo", "up", "mtu", "1500"])?;
        Ok(Netns {
            slow: false,
            loss_pct: 0,
            dropped_before: 0,
        })
    }

    /// The slow queueing link: 100 Mbit/s on `lo`, for both directions of
    /// every connection, with a 256 KiB burst and up to 50 ms of queue.
    pub fn slow_link(&mut self) {
        self.try_slow_link().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_slow_link(&mut self) -> Result<(), String> {
        tool(&[
            "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "100mbit", "burst", "256kb",
            "latency", "50ms",
        ])?;
        self.slow = true;
        Ok(())
    }

    /// Drops `pct` % of the packets sent on `lo` (each direction), at
    /// random; 0 removes the loss.
    pub fn set_loss(&mut self, pct: u32) {
        self.try_set_loss(pct).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_set_loss(&mut self, pct: u32) -> Result<(), String> {
        if self.loss_pct > 0 {
            self.dropped_before += self.nft_dropped();
            tool(&["nft", "delete", "table", "inet", "faults"])?;
            self.loss_pct = 0;
        }
        if pct > 0 {
            tool(&["nft", "add", "table", "inet", "faults"])?;
            tool(&[
                "nft",
                "add",
                "chain",
                "inet",
                "faults",
                "out",
                "{ type filter hook output priority 0; }",
            ])?;
            let pct = pct.to_string();
            tool(&[
                "nft", "add", "rule", "inet", "faults", "out", "numgen", "random", "mod", "100",
                "<", &pct, "counter", "drop",
            ])?;
            self.loss_pct = pct.parse().unwrap_or(0);
        }
        Ok(())
    }

    fn nft_dropped(&self) -> u64 {
        if self.loss_pct == 0 {
            return 0;
        }
        tool(&["nft", "list", "chain", "inet", "faults", "out"])
            .ok()
            .and_then(|text| number_after(&text, "packets "))
            .unwrap_or(0)
    }

    /// Packets dropped so far: (by the loss rule, by the tbf queue).
    pub fn dropped(&self) -> (u64, u64) {
        let tbf = if self.slow {
            tool(&["tc", "-s", "qdisc", "show", "dev", "lo"])
                .ok()
                .and_then(|text| number_after(&text, "dropped "))
                .unwrap_or(0)
        } else {
            0
        };
        (self.dropped_before + self.nft_dropped(), tbf)
    }

    /// The faults in force, for figures.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.slow {
            parts.push("tbf 100mbit burst 256kb latency 50ms".to_string());
        }
        if self.loss_pct > 0 {
            parts.push(format!("{}% loss", self.loss_pct));
        }
        if parts.is_empty() {
            parts.push("plain loopback".to_string());
        }
        parts.join(" + ")
    }

    /// Drop counters, for figures.
    pub fn describe_drops(&self) -> String {
        let (lost, queue) = self.dropped();
        format!("{lost} pkts dropped by loss, {queue} by the tbf queue")
    }
}

/// The number right after the first `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}
