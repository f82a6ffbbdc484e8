//! `burst` mode: N clients connect at the same instant (sockets are created
//! first, then every connect is issued back to back), each sends one line and
//! waits for its echo. Times are from the first connect to each echo.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use super::net::{connect_done, new_socket, percentile, start_connect};
use super::procfs;

pub struct Opts {
    pub addr: SocketAddr,
    pub clients: usize,
    pub timeout: f64,
}

#[derive(PartialEq)]
enum St {
    Connecting,
    Sending,
    Reading,
    Done,
    Failed,
}

struct Client {
    s: Option<TcpStream>,
    line: Vec<u8>,
    sent: usize,
    recvd: usize,
    st: St,
}

pub fn run(o: &Opts) -> Result<Value, String> {
    let n = o.clients;
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        socks
            .push(new_socket(o.addr).map_err(|e| format!("socket: {e} (RLIMIT_NOFILE too low?)"))?);
    }
    let mut clients: Vec<Client> = Vec::with_capacity(n);
    let mut connect_times: Vec<f64> = Vec::with_capacity(n);
    let mut echo_times: Vec<f64> = Vec::with_capacity(n);
    let mut fail_reasons: std::collections::BTreeMap<String, u64> = Default::default();
    let tcp0 = procfs::tcp_counters();

    let t0 = Instant::now();
    for (i, sock) in socks.into_iter().enumerate() {
        let line = format!("burst client {i:06}\n").into_bytes();
        let mut c = Client {
            s: None,
            line,
            sent: 0,
            recvd: 0,
            st: St::Connecting,
        };
        match start_connect(sock, o.addr) {
            Ok(mut s) => {
                if let Err(e) = poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    *fail_reasons.entry(format!("register: {e}")).or_default() += 1;
                    c.st = St::Failed;
                } else {
                    c.s = Some(s);
                }
            }
            Err(e) => {
                *fail_reasons.entry(format!("connect: {e}")).or_default() += 1;
                c.st = St::Failed;
            }
        }
        clients.push(c);
    }
    let issue_ms = t0.elapsed().as_secs_f64() * 1000.0;

    let deadline = t0 + Duration::from_secs_f64(o.timeout);
    let mut pending = clients.iter().filter(|c| c.st != St::Failed).count();
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 256];
    while pending > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let _ = poll.poll(&mut events, Some(deadline - now));
        for e in events.iter() {
            let i = e.token().0;
            let c = &mut clients[i];
            let Some(s) = c.s.as_mut() else { continue };
            let mut fail: Option<String> = None;
            if c.st == St::Connecting {
                match connect_done(s) {
                    Ok(true) => {
                        connect_times.push(t0.elapsed().as_secs_f64() * 1000.0);
                        c.st = St::Sending;
                    }
                    Ok(false) => continue,
                    Err(e) => fail = Some(format!("connect: {e}")),
                }
            }
            if fail.is_none() && c.st == St::Sending {
                loop {
                    match s.write(&c.line[c.sent..]) {
                        Ok(k) => {
                            c.sent += k;
                            if c.sent == c.line.len() {
                                c.st = St::Reading;
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            fail = Some(format!("write: {}", e.kind()));
                            break;
                        }
                    }
                }
            }
            if fail.is_none() && c.recvd < c.line.len() {
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            fail = Some("closed before echo".into());
                            break;
                        }
                        Ok(k) => {
                            let end = c.recvd + k;
                            if end > c.sent || buf[..k] != c.line[c.recvd..end] {
                                fail = Some("echo differs".into());
                                break;
                            }
                            c.recvd = end;
                            if c.recvd == c.line.len() {
                                echo_times.push(t0.elapsed().as_secs_f64() * 1000.0);
                                c.st = St::Done;
                                c.s = None; // close now: this client is done
                                pending -= 1;
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            fail = Some(format!("read: {}", e.kind()));
                            break;
                        }
                    }
                }
            }
            if let Some(why) = fail {
                *fail_reasons.entry(why).or_default() += 1;
                c.st = St::Failed;
                c.s = None;
                pending -= 1;
            }
        }
    }
    let mut timed_out = 0u64;
    for c in clients.iter_mut() {
        if c.st != St::Done && c.st != St::Failed {
            timed_out += 1;
            c.st = St::Failed;
        }
    }
    if timed_out > 0 {
        *fail_reasons
            .entry(format!("no echo within {} s", o.timeout))
            .or_default() += timed_out;
    }
    drop(clients);
    let tcp = procfs::tcp_delta(&tcp0);
    echo_times.sort_by(|a, b| a.total_cmp(b));
    connect_times.sort_by(|a, b| a.total_cmp(b));
    let failures: u64 = fail_reasons.values().sum();
    Ok(json!({
        "mode": "burst",
        "addr": o.addr.to_string(),
        "clients": n,
        "ok": echo_times.len(),
        "failures": failures,
        "failure_reasons": fail_reasons,
        "connects_issued_ms": issue_ms,
        "connect_ms": {
            "p50": percentile(&connect_times, 50.0),
            "p99": percentile(&connect_times, 99.0),
            "last": connect_times.last(),
        },
        "echo_ms": {
            "first": echo_times.first(),
            "p50": percentile(&echo_times, 50.0),
            "p99": percentile(&echo_times, 99.0),
            "last": echo_times.last(),
        },
        "tcp_counters_delta": tcp,
    }))
}

pub fn print_human(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let e = &v["echo_ms"];
    let f = |x: &Value| x.as_f64().map_or("n/a".to_string(), |x| format!("{x:.1}"));
    let _ = writeln!(
 o,
        "burst {} clients: {} echoed, {} failed; echo ms first {}  p50 {}  p99 {}  last {} (all connects issued in {} ms)",
        v["clients"], v["ok"], v["failures"], f(&e["first"]), f(&e["p50"]), f(&e["p99"]), f(&e["last"]),
        f(&v["connects_issued_ms"])
    );
    if v["failures"].as_u64().unwrap_or(0) > 0 {
        let _ = writeln!(o, "failure reasons: {}", v["failure_reasons"]);
    }
    let _ = writeln!(
        o,
        "kernel TCP counters (whole host, delta): {}",
        v["tcp_counters_delta"]
    );
    o
}
