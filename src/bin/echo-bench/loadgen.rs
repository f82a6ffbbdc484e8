//! The closed-loop client machinery of `throughput`: C connections on one
//! mio thread (edge-triggered), each sending one L-byte message and waiting
//! for its complete echo (every byte compared) before sending the next, so
//! the generator costs a write and a read per request plus a shared
//! epoll_wait. `Gen::window` measures one stretch: the server idle at its
//! start and end, so its CPU time covers exactly the requests counted.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::net::fill_message;
use super::procfs;
use super::swarm::{client_socket, connect_done, source_of, start_connect};
use super::syscalls::{Counter, Method};

/// Clients per loopback source address: far below one address's share of
/// the ephemeral ports.
pub const PER_SOURCE: usize = 2000;

/// What one measured window saw.
pub struct Window {
    pub secs: f64,
    pub requests: u64,
    /// Round trips of the window, nanoseconds.
    pub hist: Histogram<u64>,
    pub server_cpu: Option<f64>,
    pub loadgen_cpu: Option<f64>,
    pub syscalls: Option<u64>,
    pub server_rss_kb: Option<u64>,
    pub server_peak_rss_kb: Option<u64>,
    /// Retransmission timeouts in this network namespace during the window.
    pub tcp_timeouts: Option<u64>,
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

pub struct Gen {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    len: usize,
    scratch: Vec<u8>,
    hist: Histogram<u64>,
    done: u64,
    busy: usize,
    connecting: usize,
    pub errors: u64,
    pub mismatches: u64,
    pub first_error: Option<String>,
    pub verified: u64,
    immediate: bool,
    /// Connections whose echo completed in this poll batch, to send again.
    ready: Vec<usize>,
    evbuf: Vec<(usize, bool, bool)>,
    /// Clock ticks per second of /proc/PID/stat.
    tck: f64,
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

impl Gen {
    /// Connects `conns` clients to `addr`, 64 handshakes at a time (below
    /// any listen backlog, so no SYN is dropped: this is not a burst).
    pub fn connect(
        addr: SocketAddr,
        conns: usize,
        len: usize,
        immediate: bool,
    ) -> Result<Gen, String> {
        if len == 0 || conns == 0 {
            return Err("connections and message length must be > 0".into());
        }
        let mut g = Gen {
            poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Events::with_capacity(1024),
            conns: Vec::with_capacity(conns),
            len,
            scratch: vec![0u8; 65536],
            hist: Histogram::new_with_bounds(1, 120_000_000_000, 3).map_err(|e| e.to_string())?,
            done: 0,
            busy: 0,
            connecting: 0,
            errors: 0,
            mismatches: 0,
            first_error: None,
            verified: 0,
            immediate,
            ready: Vec::with_capacity(conns),
            evbuf: Vec::with_capacity(1024),
            tck: procfs::clk_tck() as f64,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..conns {
            while g.connecting >= 64 && Instant::now() < deadline {
                g.pump(deadline, false, true);
            }
            let sock = client_socket(addr, source_of(addr, i, PER_SOURCE))
                .map_err(|e| format!("socket: {e}"))?;
            let mut s = start_connect(sock, addr).map_err(|e| format!("connect {addr}: {e}"))?;
            g.poll
                .registry()
                .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| format!("register: {e}"))?;
            g.conns.push(Conn {
                s,
                msg: Vec::with_capacity(len),
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
        g.pump(deadline, false, true);
        if g.connected() == 0 {
            return Err(format!(
                "no connection to {addr} succeeded ({})",
                g.first_error.clone().unwrap_or_default()
            ));
        }
        Ok(g)
    }

    /// Connections open now.
    pub fn connected(&self) -> usize {
        self.conns.iter().filter(|c| c.connected && !c.dead).count()
    }

    /// Load for `secs`, then let every request finish: the server is idle
    /// when this returns.
    pub fn warm_up(&mut self, secs: f64) {
        if secs > 0.0 {
            self.kick_all();
            self.pump(Instant::now() + Duration::from_secs_f64(secs), true, false);
            self.pump(Instant::now() + Duration::from_secs(10), false, false);
        }
    }

    /// One measured window of `secs`: the server's CPU time (and syscalls,
    /// when a counter is named) sampled while it is idle before and after.
    pub fn window(&mut self, pid: Option<u32>, secs: f64, syscalls: Method) -> Window {
        self.hist.reset();
        self.done = 0;
        let counter = pid.and_then(|pid| Counter::start(syscalls, pid));
        let tcp0 = procfs::tcp_counters();
        let ticks = |pid: u32| procfs::cpu_ticks(pid);
        let me = std::process::id();
        let (cpu0, self0) = (pid.and_then(ticks), ticks(me));
        let t0 = Instant::now();
        self.kick_all();
        self.pump(t0 + Duration::from_secs_f64(secs), true, false);
        self.pump(Instant::now() + Duration::from_secs(10), false, false);
        let elapsed = t0.elapsed().as_secs_f64();
        let (cpu1, self1) = (pid.and_then(ticks), ticks(me));
        let tcp = procfs::tcp_delta(&tcp0);
        let tck = self.tck;
        let span = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / tck);
        Window {
            secs: elapsed,
            requests: self.done,
            hist: self.hist.clone(),
            server_cpu: span(cpu0, cpu1),
            loadgen_cpu: span(self0, self1),
            syscalls: counter.and_then(Counter::stop),
            server_rss_kb: pid.and_then(procfs::rss_kb),
            server_peak_rss_kb: pid.and_then(procfs::hwm_kb),
            tcp_timeouts: tcp.get("TcpExt.TCPTimeouts").copied(),
        }
    }
}
