//! Idle and half-open connections under `--idle-timeout 1`: silent
//! clients, clients that sent part of a line, and stuck clients that filled
//! both directions and stopped reading and writing. Asserts every one of
//! them is closed by the server after the timeout (not before), the fds come
//! back to the baseline within 3 s, and new clients are served meanwhile.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use crate::common::*;
use crate::ms;

#[derive(Clone, Copy, PartialEq)]
enum IdleKind {
    Silent,
    Partial,
    Stuck,
}

#[test]
fn idle_and_half_open() {
    let _g = serial();
    let n = scale(500, 5000);
    let server = ServerProcess::start(&["--idle-timeout", "1", "--backlog", "1024"]);
    let base_fds = server.fd_count();
    let addr = server.addr;

    // New clients keep being served meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let side = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut served = 0u64;
            let mut worst = Duration::ZERO;
            let hard = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < hard {
                let t = Instant::now();
                let r = (|| -> io::Result<()> {
                    let mut s = try_connect(addr, Duration::from_secs(5))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    try_echo(&mut s, b"a new client\n")
                })();
                r.expect("new client not served during the idle phase");
                worst = worst.max(t.elapsed());
                served += 1;
            }
            (served, worst)
        })
    };

    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut socks: Vec<Option<MioStream>> = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut last_act = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let mut s = try_connect(addr, Duration::from_secs(20)).expect("idle connect");
        let kind = match i % 50 {
            0 => IdleKind::Stuck,
            1..=4 => IdleKind::Partial,
            _ => IdleKind::Silent,
        };
        match kind {
            IdleKind::Silent => {}
            IdleKind::Partial => s.write_all(b"GET / HTTP/1.1\r\nHost: x").unwrap(),
            IdleKind::Stuck => {
                // Fill both directions, then never read nor write again.
                s.set_nonblocking(true).unwrap();
                let buf = vec![b'z'; 64 * 1024];
                let hard = Instant::now() + Duration::from_secs(5);
                loop {
                    match s.write(&buf) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("stuck writer: {e}"),
                    }
                    assert!(Instant::now() < hard, "stuck writer never blocked");
                }
            }
        }
        s.set_nonblocking(true).unwrap();
        let mut m = MioStream::from_std(s);
        poll.registry()
            .register(&mut m, Token(i), Interest::READABLE)
            .unwrap();
        socks.push(Some(m));
        kinds.push(kind);
        last_act.push(Instant::now());
    }
    let opened = t0.elapsed();
    let t_open = Instant::now();
    // Watch the client side: silent and partial clients must see EOF.
    let mut closed_after = vec![None::<Duration>; n];
    let mut open_watch = kinds.iter().filter(|k| **k != IdleKind::Stuck).count();
    let mut buf = [0u8; 4096];
    let deadline = t_open + Duration::from_secs(3);
    while open_watch > 0 && Instant::now() < deadline + Duration::from_secs(5) {
        poll.poll(&mut events, Some(Duration::from_millis(50))).ok();
        let ready: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        for i in ready {
            if kinds[i] == IdleKind::Stuck || socks[i].is_none() {
                continue;
            }
            loop {
                match socks[i].as_mut().unwrap().read(&mut buf) {
                    Ok(0) => {
                        closed_after[i] = Some(last_act[i].elapsed());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed_after[i] = Some(last_act[i].elapsed());
                        break;
                    }
                }
            }
            if closed_after[i].is_some() {
                socks[i] = None;
                open_watch -= 1;
            }
        }
    }
    let all_eof = t_open.elapsed();
    // Server side: fds back to baseline (the side thread may hold one).
    let back = wait_until(Duration::from_secs(8), Duration::from_millis(10), || {
        server.fd_count() <= base_fds + 1
    });
    let fds_back = t_open.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (served, worst) = side.join().expect("side client panicked");
    let (st, fds, _) = server.wait_settled(base_fds, Duration::from_secs(5));
    drop(socks);
    let lifetimes: Vec<Duration> = closed_after.iter().flatten().copied().collect();
    let min_life = lifetimes.iter().min().copied().unwrap_or_default();
    figure(
        "idle-half-open",
        &format!(
            "{n} idle conns (silent, partial line, stuck half-open writers) opened in {:.2} s, --idle-timeout 1: all closed {:.2} s after the last opened (no client EOF before {:.2} s idle), closed_idle={}, fds {base_fds} -> {fds}; {served} new clients served meanwhile (worst {:.0} ms)",
            opened.as_secs_f64(),
            fds_back.as_secs_f64(),
            min_life.as_secs_f64(),
            st.get("closed_idle"),
            ms(worst),
        ),
    );
    assert_eq!(
        open_watch, 0,
        "{open_watch} idle clients never saw EOF (after {all_eof:?})"
    );
    assert!(back, "server fds not back to baseline");
    assert!(
        fds_back <= Duration::from_secs(3),
        "idle connections closed only {fds_back:?} after the last was opened"
    );
    assert!(
        min_life >= Duration::from_millis(900),
        "closed before the idle timeout: {min_life:?}"
    );
    assert!(served > 0, "no new client served meanwhile");
    assert_eq!(fds, base_fds);
    assert_eq!(st.get("active"), 0);
    assert!(st.get("closed_idle") >= n as u64);
}
