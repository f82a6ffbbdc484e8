//! Counting a server's system calls over a window: `perf stat -e
//! raw_syscalls:sys_enter -p PID` when perf works, else `strace -c -f -p PID`,
//! else nothing. The counter attaches while the server is idle, the caller
//! runs its load, waits until every request is answered, then stops it with
//! SIGINT, so the count covers exactly the requests of the window.

use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Auto,
    Perf,
    Strace,
    None,
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Method::Auto),
            "perf" => Ok(Method::Perf),
            "strace" => Ok(Method::Strace),
            "none" | "off" => Ok(Method::None),
            _ => Err(format!(
                "unknown syscall counter {s:?} (auto|perf|strace|none)"
            )),
        }
    }
}

impl Method {
    /// The value to pass back as `--syscalls`.
    pub fn name_arg(self) -> &'static str {
        match self {
            Method::None => "none",
            m => m.name(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Perf => "perf",
            Method::Strace => "strace",
            Method::None => "n/a",
        }
    }
}

fn perf_count(stderr: &str) -> Option<u64> {
    // CSV (-x,): "12345,,raw_syscalls:sys_enter,..."; "<not counted>" => 0.
    let line = stderr
        .lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))?;
    let first = line.split(',').next()?.trim();
    if first.starts_with("<not") {
        return Some(0);
    }
    first.parse().ok()
}

fn strace_count(stderr: &str) -> Option<u64> {
    // "100.00    0.012345           3      4321       12 total"
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with("total"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    f.get(3)?.parse().ok()
}

/// Resolve `Auto` to the first method that works on this machine.
pub fn detect(m: Method) -> Method {
    if m != Method::Auto {
        return m;
    }
    let perf_ok = Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
        .stdout(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| perf_count(&String::from_utf8_lossy(&o.stderr)))
        .is_some_and(|n| n > 0);
    if perf_ok {
        return Method::Perf;
    }
    let strace_ok = Command::new("strace")
        .args(["-c", "-f", "--", "true"])
        .stdout(Stdio::null())
        .output()
        .ok()
        .and_then(|o| strace_count(&String::from_utf8_lossy(&o.stderr)))
        .is_some();
    if strace_ok {
        Method::Strace
    } else {
        Method::None
    }
}

pub struct Counter {
    child: Child,
    method: Method,
}

impl Counter {
    /// Attach to `pid` (all its threads) and give the tool time to attach.
    pub fn start(method: Method, pid: u32) -> Option<Counter> {
        let pid_s = pid.to_string();
        let mut cmd = match method {
            Method::Perf => {
                let mut c = Command::new("perf");
                c.args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", &pid_s]);
                c
            }
            Method::Strace => {
                let mut c = Command::new("strace");
                c.args(["-c", "-f", "-p", &pid_s]);
                c
            }
            Method::Auto | Method::None => return None,
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        thread::sleep(Duration::from_millis(if method == Method::Perf {
            300
        } else {
            800
        }));
        Some(Counter { child, method })
    }

    /// Stop counting (SIGINT) and return the number of syscalls seen.
    pub fn stop(self) -> Option<u64> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let out = self.child.wait_with_output().ok()?;
        let err = String::from_utf8_lossy(&out.stderr);
        match self.method {
            Method::Perf => perf_count(&err),
            Method::Strace => strace_count(&err),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_output() {
        assert_eq!(
            perf_count("\n12345,,raw_syscalls:sys_enter,1002,100.00,,\n"),
            Some(12345)
        );
        assert_eq!(
            perf_count("<not counted>,,raw_syscalls:sys_enter,0,0.00,,"),
            Some(0)
        );
        let st = "% time     seconds  usecs/call     calls    errors syscall\n\
                  ------ ----------- ----------- --------- --------- ----------------\n\
                   60.00    0.000600           1       400           read\n\
                  ------ ----------- ----------- --------- --------- ----------------\n\
                  100.00    0.001000           1      1000        12 total\n";
        assert_eq!(strace_count(st), Some(1000));
    }
}
