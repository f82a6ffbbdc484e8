//! Blocking clients on threads: back-to-back latency clients, connect/echo/
//! close churn, a whole-stream exchange, and clients that write without ever
//! reading their echo.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::super::{connect, try_connect, try_echo};

/// `clients` threads doing back-to-back 64-byte round trips for `dur`;
/// returns every round trip, sorted, and the count per client.
pub fn latency_clients(
    addr: SocketAddr,
    clients: usize,
    dur: Duration,
) -> (Vec<Duration>, Vec<usize>) {
    let until = Instant::now() + dur;
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            thread::spawn(move || {
                let mut s = try_connect(addr, Duration::from_secs(10)).expect("latency connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut msg = format!("latency client {i:03} ").into_bytes();
                msg.resize(63, b'.');
                msg.push(b'\n');
                let mut back = vec![0u8; msg.len()];
                let mut rtts = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    s.write_all(&msg).expect("latency write");
                    s.read_exact(&mut back).expect("latency read");
                    assert_eq!(back, msg, "latency echo differs");
                    rtts.push(t.elapsed());
                }
                rtts
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut counts = Vec::new();
    for h in handles {
        let r = h.join().expect("latency client panicked");
        counts.push(r.len());
        all.extend(r);
    }
    all.sort();
    (all, counts)
}

/// Connect, echo one line, half-close and expect a clean EOF, `cycles` times
/// spread over `threads` threads; returns the cycles done and the first
/// errors (at most 20).
pub fn churn_cycles(addr: SocketAddr, cycles: usize, threads: usize) -> (usize, Vec<String>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let errors = errors.clone();
            let done = done.clone();
            let mine = cycles / threads + usize::from(t < cycles % threads);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let hard = Instant::now() + Duration::from_secs(200);
                    for i in 0..mine {
                        if Instant::now() > hard {
                            errors.lock().unwrap().push("churn deadline".to_string());
                            return;
                        }
                        let msg = format!("churn {t:02} {i:06}\n");
                        let r = (|| -> io::Result<()> {
                            let mut s = try_connect(addr, Duration::from_secs(20))?;
                            try_echo(&mut s, msg.as_bytes())?;
                            s.shutdown(Shutdown::Write)?;
                            let mut rest = [0u8; 16];
                            match s.read(&mut rest)? {
                                0 => Ok(()),
                                n => Err(io::Error::other(format!("{n} bytes after echo"))),
                            }
                        })();
                        match r {
                            Ok(()) => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                let mut errs = errors.lock().unwrap();
                                if errs.len() < 20 {
                                    errs.push(format!("thread {t} cycle {i}: {e}"));
                                }
                            }
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().expect("churn thread panicked");
    }
    let errs = errors.lock().unwrap().clone();
    (done.load(Ordering::Relaxed), errs)
}

/// Sends `input` on a new connection (writer thread, then half-close) and
/// reads everything back to EOF.
pub fn exchange(addr: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let data = input.to_vec();
    let writer = thread::spawn(move || {
        // After a quit line the server may stop reading; errors are fine then.
        let _ = w.write_all(&data);
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut out = Vec::new();
    let r = s.read_to_end(&mut out);
    writer.join().unwrap();
    if let Err(e) = r {
        panic!("reading echo after {} bytes: {e}", out.len());
    }
    out
}

/// `n` clients on one thread that write 256 KiB as fast as the server takes
/// it and never read their echo, until `stop` is set (at most 120 s); each
/// write is counted into `bytes`. The thread returns the bytes per client.
pub fn spawn_non_readers(
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
) -> JoinHandle<Vec<u64>> {
    thread::spawn(move || {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(256);
        let mut socks = Vec::new();
        for i in 0..n {
            let s = try_connect(addr, Duration::from_secs(10)).expect("non-reader connect");
            s.set_nonblocking(true).unwrap();
            let mut m = MioStream::from_std(s);
            poll.registry()
                .register(&mut m, Token(i), Interest::WRITABLE)
                .unwrap();
            socks.push(m);
        }
        let buf = vec![b'x'; 256 * 1024];
        let mut per = vec![0u64; n];
        let hard = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
            poll.poll(&mut events, Some(Duration::from_millis(20))).ok();
            for ev in events.iter() {
                let i = ev.token().0;
                loop {
                    match socks[i].write(&buf) {
                        Ok(written) => {
                            per[i] += written as u64;
                            bytes.fetch_add(written as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
        }
        per
    })
}
