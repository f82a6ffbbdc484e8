//! `hold` mode: open N connections and keep them idle, then echo one line on
//! each, then keep them idle again. With --pid it samples the server's VmRSS
//! before, while idle (after the server has accepted all N, seen through
//! /proc/PID/fd) and after the echo round, and reports growth per connection.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use super::net::{connect_done, new_socket, start_connect};
use super::procfs;

pub struct Opts {
    pub addr: SocketAddr,
    pub conns: usize,
    pub pid: Option<u32>,
    pub settle: f64,
}

struct C {
    s: TcpStream,
    connected: bool,
    dead: bool,
    line: Vec<u8>,
    sent: usize,
    recvd: usize,
}

fn per_conn(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) * 1024.0 / n as f64),
        _ => None,
    }
}

/// Wait until the server holds `target` descriptors, or its count has not
/// grown for a second (then some connections still sit in the accept queue).
fn wait_fds(pid: Option<u32>, target: usize, timeout: Duration) -> bool {
    let Some(pid) = pid else { return true };
    let end = Instant::now() + timeout;
    let (mut last, mut since) = (0usize, Instant::now());
    while Instant::now() < end {
        let n = procfs::fd_count(pid).unwrap_or(0);
        if n >= target {
            return true;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn run(o: &Opts) -> Result<Value, String> {
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let rss0 = o.pid.and_then(procfs::rss_kb);
    let fd0 = o.pid.and_then(procfs::fd_count).unwrap_or(0);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(30);

    // Connect, keeping at most 64 handshakes in flight (below any listen backlog:
    // this is not a burst test).
    let mut cs: Vec<C> = Vec::with_capacity(o.conns);
    let mut connecting = 0usize;
    let mut failed = 0usize;
    let mut first_error: Option<String> = None;
    let handle = |cs: &mut Vec<C>,
                  poll: &mut Poll,
                  events: &mut Events,
                  connecting: &mut usize,
                  failed: &mut usize,
                  first_error: &mut Option<String>| {
        let _ = poll.poll(events, Some(Duration::from_millis(100)));
        for e in events.iter() {
            let c = &mut cs[e.token().0];
            if c.connected || c.dead {
                continue;
            }
            match connect_done(&c.s) {
                Ok(true) => {
                    c.connected = true;
                    *connecting -= 1;
                }
                Ok(false) => {}
                Err(err) => {
                    c.dead = true;
                    *connecting -= 1;
                    *failed += 1;
                    first_error.get_or_insert(format!("connect: {err}"));
                }
            }
        }
    };
    for i in 0..o.conns {
        while connecting >= 64 && Instant::now() < deadline {
            handle(
                &mut cs,
                &mut poll,
                &mut events,
                &mut connecting,
                &mut failed,
                &mut first_error,
            );
        }
        let sock = new_socket(o.addr).map_err(|e| format!("socket: {e}"))?;
        let mut s = start_connect(sock, o.addr).map_err(|e| format!("connect: {e}"))?;
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        cs.push(C {
            s,
            connected: false,
            dead: false,
            line: format!("hold {i:06}\n").into_bytes(),
            sent: 0,
            recvd: 0,
        });
        connecting += 1;
    }
    while connecting > 0 && Instant::now() < deadline {
        handle(
            &mut cs,
            &mut poll,
            &mut events,
            &mut connecting,
            &mut failed,
            &mut first_error,
        );
    }
    let open = cs.iter().filter(|c| c.connected && !c.dead).count();
    let connect_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let all_accepted = wait_fds(o.pid, fd0 + open, Duration::from_secs(10));
    thread::sleep(Duration::from_secs_f64(o.settle));
    let rss_idle = o.pid.and_then(procfs::rss_kb);

    // One line on every connection.
    let t_echo = Instant::now();
    let echo_deadline = t_echo + Duration::from_secs(30);
    let mut buf = [0u8; 256];
    let mut waiting = 0usize;
    for c in cs.iter_mut().filter(|c| c.connected && !c.dead) {
        match c.s.write(&c.line) {
            Ok(k) => c.sent = k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                c.dead = true;
                failed += 1;
                first_error.get_or_insert(format!("write: {e}"));
                continue;
            }
        }
        waiting += 1;
    }
    while waiting > 0 && Instant::now() < echo_deadline {
        let _ = poll.poll(&mut events, Some(Duration::from_millis(100)));
        for e in events.iter() {
            let c = &mut cs[e.token().0];
            if c.dead || !c.connected || c.recvd == c.line.len() {
                continue;
            }
            if c.sent < c.line.len() {
                if let Ok(k) = c.s.write(&c.line[c.sent..]) {
                    c.sent += k;
                }
            }
            loop {
                match c.s.read(&mut buf) {
                    Ok(0) => {
                        c.dead = true;
                        failed += 1;
                        waiting -= 1;
                        first_error.get_or_insert("closed before echo".into());
                        break;
                    }
                    Ok(k) => {
                        let end = c.recvd + k;
                        if end > c.sent || buf[..k] != c.line[c.recvd..end] {
                            c.dead = true;
                            failed += 1;
                            waiting -= 1;
                            first_error.get_or_insert("echo differs".into());
                            break;
                        }
                        c.recvd = end;
                        if end == c.line.len() {
                            waiting -= 1;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        c.dead = true;
                        failed += 1;
                        waiting -= 1;
                        first_error.get_or_insert(format!("read: {e}"));
                        break;
                    }
                }
            }
        }
    }
    failed += waiting;
    let echo_ms = t_echo.elapsed().as_secs_f64() * 1000.0;
    thread::sleep(Duration::from_secs_f64(o.settle));
    let rss_after = o.pid.and_then(procfs::rss_kb);
    let hwm = o.pid.and_then(procfs::hwm_kb);
    let echoed = cs
        .iter()
        .filter(|c| !c.dead && c.recvd == c.line.len())
        .count();
    let idle_pc = per_conn(rss0, rss_idle, open);
    let after_pc = per_conn(rss0, rss_after, open);
    let worst = match (idle_pc, after_pc) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    drop(cs);
    Ok(json!({
        "mode": "hold",
        "addr": o.addr.to_string(),
        "connections": o.conns,
        "open": open,
        "echoed": echoed,
        "failed": failed,
        "first_error": first_error,
        "server_accepted_all": all_accepted,
        "connect_ms": connect_ms,
        "echo_round_ms": echo_ms,
        "rss_kb": { "before": rss0, "idle": rss_idle, "after_echo": rss_after, "peak": hwm },
        "rss_bytes_per_conn_idle": idle_pc,
        "rss_bytes_per_conn_after_echo": after_pc,
        "rss_bytes_per_conn": worst,
    }))
}

pub fn print_human(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let f = |x: &Value| x.as_f64().map_or("n/a".to_string(), |x| format!("{x:.0}"));
    let _ = writeln!(
 o,
        "hold {} connections: {} open, {} echoed one line, {} failed (connect {} ms, echo round {} ms)",
        v["connections"], v["open"], v["echoed"], v["failed"], f(&v["connect_ms"]), f(&v["echo_round_ms"])
    );
    let r = &v["rss_kb"];
    if !r["before"].is_null() {
        let _ = writeln!(
 o,
            "server RSS KiB: before {}  idle {}  after echo {}  peak {}; per connection: {} B idle, {} B after echo",
            r["before"], r["idle"], r["after_echo"], r["peak"],
            f(&v["rss_bytes_per_conn_idle"]), f(&v["rss_bytes_per_conn_after_echo"])
        );
    }
    if let Some(e) = v["first_error"].as_str() {
        let _ = writeln!(o, "first error: {e}");
    }
    o
}
