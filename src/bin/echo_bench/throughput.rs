//! `throughput` mode: C connections, each sends one L-byte message and waits
//! for its complete echo before sending the next, for T seconds. One mio
//! thread drives every connection (edge-triggered), so the generator costs a
//! write and a read per request plus a shared epoll_wait.
//!
//! Timeline: connect all, warm up, let every request finish (server idle),
//! snapshot the server's CPU time and attach the syscall counter, run the
//! measured window, stop issuing, wait for the last echoes, snapshot again.
//! So CPU seconds and syscalls cover exactly the requests counted.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use super::net::{connect_done, fill_message, new_socket, start_connect};
use super::procfs;
use super::syscalls::{self, Counter, Method};

pub struct Opts {
    pub addr: SocketAddr,
    pub conns: usize,
    pub len: usize,
    pub secs: f64,
    pub warmup: f64,
    pub pid: Option<u32>,
    pub syscalls: Method,
    /// Send each connection's next request right after its echo, instead of
    /// after every event of the poll batch has been read.
    pub immediate: bool,
}

struct Conn {
    s: TcpStream,
    msg: Vec<u8>,
    sent: usize,
    recvd: usize,
    seq: u64,
    t0: Instant,
    connected: bool,
    busy: bool,
    dead: bool,
}

struct Gen {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    len: usize,
    scratch: Vec<u8>,
    hist: Histogram<u64>,
    done: u64,
    busy: usize,
    connecting: usize,
    errors: u64,
    mismatches: u64,
    first_error: Option<String>,
    verified: u64,
    immediate: bool,
    /// Connections whose echo completed in this poll batch, to send again.
    ready: Vec<usize>,
    evbuf: Vec<(usize, bool, bool)>,
}

enum Step {
    Ok,
    Fail(String, bool),
}

impl Gen {
    fn fail(&mut self, i: usize, why: String, mismatch: bool) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        c.dead = true;
        if c.busy {
            c.busy = false;
            self.busy -= 1;
        }
        if !c.connected {
            self.connecting -= 1;
        }
        let _ = self.poll.registry().deregister(&mut c.s);
        if mismatch {
            self.mismatches += 1;
        } else {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(format!("conn {i}: {why}"));
        }
    }

    /// Begin the next request on connection `i` (write as much as fits).
    fn issue(&mut self, i: usize) -> Step {
        let len = self.len;
        let c = &mut self.conns[i];
        fill_message(&mut c.msg, len, i, c.seq);
        c.sent = 0;
        c.recvd = 0;
        c.busy = true;
        c.t0 = Instant::now();
        self.busy += 1;
        write_more(c)
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool, issuing: bool) {
        if self.conns[i].dead {
            return;
        }
        if !self.conns[i].connected {
            match connect_done(&self.conns[i].s) {
                Ok(true) => {
                    self.conns[i].connected = true;
                    self.connecting -= 1;
                }
                Ok(false) => return,
                Err(e) => return self.fail(i, format!("connect: {e}"), false),
            }
        }
        if writable && self.conns[i].busy && self.conns[i].sent < self.len {
            if let Step::Fail(why, m) = write_more(&mut self.conns[i]) {
                return self.fail(i, why, m);
            }
        }
        if readable && self.conns[i].busy {
            loop {
                let want = self.scratch.len();
                let r = self.conns[i].s.read(&mut self.scratch);
                match r {
                    Ok(0) => return self.fail(i, "server closed the connection".into(), false),
                    Ok(n) => {
                        let c = &mut self.conns[i];
                        let end = c.recvd + n;
                        if end > c.sent || self.scratch[..n] != c.msg[c.recvd..end] {
                            let at = c.recvd;
                            return self.fail(
                                i,
                                format!("echo differs from what was sent (at byte {at})"),
                                true,
                            );
                        }
                        c.recvd = end;
                        self.verified += n as u64;
                        if c.recvd == self.len {
                            let us = c.t0.elapsed().as_nanos() as u64;
                            let _ = self.hist.record(us.max(1));
                            c.busy = false;
                            c.seq += 1;
                            self.busy -= 1;
                            self.done += 1;
                            if issuing {
                                if self.immediate {
                                    if let Step::Fail(why, m) = self.issue(i) {
                                        self.fail(i, why, m);
                                    }
                                } else {
                                    self.ready.push(i);
                                }
                            }
                            // Everything sent so far was echoed: nothing is left to read.
                            return;
                        }
                        if n < want {
                            // Drained what was there; the next arrival raises a new edge.
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.fail(i, format!("read: {e}"), false),
                }
            }
        }
    }

    /// Process events until `deadline`, or until no request is outstanding
    /// when `issuing` is false (drain), or until all are connected.
    fn pump(&mut self, deadline: Instant, issuing: bool, until_connected: bool) {
        loop {
            if !issuing && !until_connected && self.busy == 0 {
                return;
            }
            if until_connected && self.connecting == 0 {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let _ = self.poll.poll(&mut self.events, Some(deadline - now));
            let mut evs = std::mem::take(&mut self.evbuf);
            evs.clear();
            evs.extend(self.events.iter().map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable() || e.is_error(),
                )
            }));
            for &(i, r, w) in &evs {
                self.on_event(i, r, w, issuing);
            }
            self.evbuf = evs;
            // Read every echo of the batch first, then send the next requests
            // back to back: the server is woken once per burst rather than
            // once per request, as with many independent clients.
            let ready = std::mem::take(&mut self.ready);
            for &i in &ready {
                if !self.conns[i].dead && !self.conns[i].busy {
                    if let Step::Fail(why, m) = self.issue(i) {
                        self.fail(i, why, m);
                    }
                }
            }
            self.ready = ready;
            self.ready.clear();
        }
    }

    fn kick_all(&mut self) {
        for i in 0..self.conns.len() {
            if !self.conns[i].dead && self.conns[i].connected && !self.conns[i].busy {
                if let Step::Fail(why, m) = self.issue(i) {
                    self.fail(i, why, m);
                }
            }
        }
    }
}

fn write_more(c: &mut Conn) -> Step {
    while c.sent < c.msg.len() {
        match c.s.write(&c.msg[c.sent..]) {
            Ok(0) => return Step::Fail("write returned 0".into(), false),
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Ok,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Step::Fail(format!("write: {e}"), false),
        }
    }
    Step::Ok
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(o: &Opts) -> Result<Value, String> {
    if o.len == 0 || o.conns == 0 {
        return Err("connections and message length must be > 0".into());
    }
    let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut g = Gen {
        poll,
        events: Events::with_capacity(1024),
        conns: Vec::with_capacity(o.conns),
        len: o.len,
        scratch: vec![0u8; 65536],
        hist: Histogram::new_with_bounds(1, 120_000_000_000, 3).map_err(|e| e.to_string())?,
        done: 0,
        busy: 0,
        connecting: 0,
        errors: 0,
        mismatches: 0,
        first_error: None,
        verified: 0,
        immediate: o.immediate,
        ready: Vec::with_capacity(o.conns),
        evbuf: Vec::with_capacity(1024),
    };

    // Connect in batches of 64 handshakes, below any listen backlog (std and
    // tokio use 128), so no SYN is dropped: this is not a burst test.
    let t_conn = Instant::now();
    let connect_deadline = t_conn + Duration::from_secs(20);
    for i in 0..o.conns {
        while g.connecting >= 64 {
            g.pump(connect_deadline, false, true);
            if Instant::now() >= connect_deadline {
                break;
            }
        }
        let sock = new_socket(o.addr).map_err(|e| format!("socket: {e}"))?;
        let mut s = start_connect(sock, o.addr).map_err(|e| format!("connect {}: {e}", o.addr))?;
        g.poll
            .registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        g.conns.push(Conn {
            s,
            msg: Vec::with_capacity(o.len),
            sent: 0,
            recvd: 0,
            seq: 0,
            t0: Instant::now(),
            connected: false,
            busy: false,
            dead: false,
        });
        g.connecting += 1;
    }
    g.pump(connect_deadline, false, true);
    let connect_time = t_conn.elapsed();
    let connected = g.conns.iter().filter(|c| c.connected && !c.dead).count();
    if connected == 0 {
        return Err(format!(
            "no connection to {} succeeded ({})",
            o.addr,
            g.first_error.clone().unwrap_or_default()
        ));
    }

    // Warm up, then drain so the server is idle when measurement starts.
    if o.warmup > 0.0 {
        g.kick_all();
        g.pump(
            Instant::now() + Duration::from_secs_f64(o.warmup),
            true,
            false,
        );
        g.pump(Instant::now() + Duration::from_secs(10), false, false);
    }
    g.hist.reset();
    g.done = 0;

    let method = syscalls::detect(o.syscalls);
    let counter = o.pid.and_then(|pid| Counter::start(method, pid));
    let cpu0 = o.pid.and_then(procfs::cpu_secs);
    let self0 = procfs::cpu_secs(std::process::id());
    let t0 = Instant::now();
    g.kick_all();
    g.pump(t0 + Duration::from_secs_f64(o.secs), true, false);
    g.pump(Instant::now() + Duration::from_secs(10), false, false);
    let elapsed = t0.elapsed();
    let cpu1 = o.pid.and_then(procfs::cpu_secs);
    let self1 = procfs::cpu_secs(std::process::id());
    let sys = counter.and_then(Counter::stop);

    let secs = elapsed.as_secs_f64();
    let reqs = g.done;
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let q = |p: f64| g.hist.value_at_quantile(p) as f64 / 1000.0;
    let lat = if reqs > 0 {
        json!({
            "p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999),
            "max": g.hist.max() as f64 / 1000.0, "mean": g.hist.mean() / 1000.0,
        })
    } else {
        Value::Null
    };
    Ok(json!({
        "mode": "throughput",
        "addr": o.addr.to_string(),
        "connections": o.conns,
        "connected": connected,
        "connect_ms": ms(connect_time),
        "message_bytes": o.len,
        "seconds": secs,
        "requests": reqs,
        "requests_per_sec": reqs as f64 / secs,
        "latency_us": lat,
        "verified_bytes": g.verified,
        "errors": g.errors,
        "mismatches": g.mismatches,
        "first_error": g.first_error,
        "server_cpu_secs": server_cpu,
        "server_cpu_util": server_cpu.map(|c| c / secs),
        "requests_per_cpu_sec": server_cpu.filter(|&c| c > 0.0).map(|c| reqs as f64 / c),
        "loadgen_cpu_util": match (self0, self1) { (Some(a), Some(b)) => Some((b - a) / secs), _ => None },
        "syscall_method": if o.pid.is_some() { method.name() } else { "n/a" },
        "syscalls": sys,
        "syscalls_per_request": sys.filter(|_| reqs > 0).map(|s| s as f64 / reqs as f64),
        "server_rss_kb": o.pid.and_then(procfs::rss_kb),
        "server_peak_rss_kb": o.pid.and_then(procfs::hwm_kb),
    }))
}

pub fn print_human(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let f = |k: &str| {
        v[k].as_f64()
            .map_or("n/a".to_string(), |x| format!("{x:.0}"))
    };
    let _ = writeln!(
 o,
        "throughput {} conns x {} B for {:.1} s: {} requests, {} req/s ({} connected, {} errors, {} mismatches, {} bytes verified)",
        v["connections"], v["message_bytes"], v["seconds"].as_f64().unwrap_or(0.0),
        v["requests"], f("requests_per_sec"), v["connected"], v["errors"], v["mismatches"], v["verified_bytes"]
    );
    let l = &v["latency_us"];
    if !l.is_null() {
        let g = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            o,
            "latency us: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            g("p50"),
            g("p90"),
            g("p99"),
            g("p999"),
            g("max")
        );
    }
    if !v["server_cpu_secs"].is_null() {
        let _ = writeln!(
 o,
            "server: {:.2} CPU-s ({:.0}% busy), {} req per CPU-s, peak RSS {} KiB; load generator {:.0}% busy",
            v["server_cpu_secs"].as_f64().unwrap_or(0.0),
            100.0 * v["server_cpu_util"].as_f64().unwrap_or(0.0),
            f("requests_per_cpu_sec"),
            v["server_peak_rss_kb"],
            100.0 * v["loadgen_cpu_util"].as_f64().unwrap_or(0.0),
        );
        let _ = match v["syscalls_per_request"].as_f64() {
            Some(s) => writeln!(
                o,
                "syscalls ({}): {} = {s:.3} per request",
                v["syscall_method"].as_str().unwrap_or(""),
                v["syscalls"]
            ),
            None => writeln!(o, "syscalls: n/a"),
        };
    }
    if let Some(e) = v["first_error"].as_str() {
        let _ = writeln!(o, "first error: {e}");
    }
    o
}
