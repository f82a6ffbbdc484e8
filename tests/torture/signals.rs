//! Signals under load: SIGTERM in the middle of random-chunking traffic,
//! with burst clients whose last bytes still sit in TCP buffers at the
//! signal; after the signal every client closes its side, as a finished
//! client does. Asserts every byte sent before the signal is echoed
//! (chunking and burst clients alike), new connects are refused, the
//! server exits 0, and its final stats count exactly the bytes the clients
//! moved.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::drivers::ChunkRun;
use crate::common::*;
use crate::{secs, KIB, MIB};

#[test]
fn signals_under_load() {
    let _g = serial();
    let n = scale(50, 1000);
    let max_total = scale(512 * KIB, 1600 * KIB);
    let mut server = ServerProcess::start(&["--shutdown-timeout", "20"]);
    let addr = server.addr;
    let mut run = ChunkRun::new(addr, n, max_total, scale(5, 20), 0x5eed_0009);
    // Burst clients: just before the signal each writes a burst without
    // reading, so at the signal part of what it sent still sits in TCP
    // buffers (flow control), not yet read by the server.
    let burst_n = scale(10, 50);
    let mut bursts: Vec<TcpStream> = (0..burst_n)
        .map(|_| try_connect(addr, Duration::from_secs(20)).expect("burst connect"))
        .collect();
    let t0 = Instant::now();
    // Signal once 40 % of the planned bytes are sent (or after a bounded time).
    let planned: u64 = run.conns.iter().map(|c| c.total).sum();
    let load_max = secs(scale(5.0, 20.0));
    run.run_until(t0 + Duration::from_secs(60), |r| {
        r.sent() >= planned / 5 * 2 || t0.elapsed() >= load_max
    });
    let load = t0.elapsed();
    // Stop every client from writing, then signal: what was sent must come back.
    run.stopped = true;
    let sent_at_signal = run.sent();
    let echoed_at_signal = run.echoed();
    let mid = run
        .conns
        .iter()
        .filter(|c| !c.finished() && !c.wr_shut)
        .count();
    let pattern = burst_pattern();
    let wbuf: Vec<u8> = pattern.iter().copied().cycle().take(65536 + 64).collect();
    let mut burst_sent = vec![0u64; burst_n];
    for (i, b) in bursts.iter_mut().enumerate() {
        b.set_nonblocking(true).unwrap();
        let hard = Instant::now() + Duration::from_secs(2);
        while burst_sent[i] < 64 * MIB && Instant::now() < hard {
            let o = (burst_sent[i] % 64) as usize;
            match b.write(&wbuf[o..o + 65536]) {
                Ok(n) => burst_sent[i] += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("burst write: {e}"),
            }
        }
    }
    let t_sig = Instant::now();
    server.signal("TERM");
    // Every client is done sending: each closes its side, as a finished
    // client does (only that tells the server its input is over).
    run.finish_writing();
    // The burst clients now read their echo to the end.
    let burst_readers: Vec<_> = bursts
        .into_iter()
        .map(|mut b| {
            let pattern = pattern.clone();
            thread::spawn(move || {
                b.shutdown(Shutdown::Write).unwrap();
                b.set_nonblocking(false).unwrap();
                b.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut got = 0u64;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match b.read(&mut buf) {
                        Ok(0) => return (got, None),
                        Ok(n) => {
                            for (k, &x) in buf[..n].iter().enumerate() {
                                if x != pattern[((got + k as u64) % 64) as usize] {
                                    return (
                                        got,
                                        Some(format!("echo differs at byte {}", got + k as u64)),
                                    );
                                }
                            }
                            got += n as u64;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return (got, Some(format!("read after {got} bytes: {e}"))),
                    }
                }
            })
        })
        .collect();
    // New connections are refused once the listener is closed.
    let refuser = thread::spawn(move || {
        let hard = Instant::now() + Duration::from_secs(10);
        while Instant::now() < hard {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Some(t_sig.elapsed()),
                _ => thread::sleep(Duration::from_millis(5)),
            }
        }
        None
    });
    run.run_until(t_sig + Duration::from_secs(30), |_| false);
    let burst_results: Vec<(u64, Option<String>)> = burst_readers
        .into_iter()
        .map(|h| h.join().expect("burst reader panicked"))
        .collect();
    let drained = t_sig.elapsed();
    let burst_total: u64 = burst_sent.iter().sum();
    let burst_echoed: u64 = burst_results.iter().map(|r| r.0).sum();
    let burst_failures: Vec<String> = burst_results
        .iter()
        .zip(&burst_sent)
        .enumerate()
        .filter(|(_, ((got, err), sent))| err.is_some() || got != *sent)
        .map(|(i, ((got, err), sent))| format!("burst #{i}: sent {sent}, echoed {got}, {err:?}"))
        .collect();
    let status = server.wait_exit(Duration::from_secs(30));
    let exited = t_sig.elapsed();
    let refused = refuser.join().unwrap();
    let failures = run.failures();
    let final_line = server
        .log
        .lines()
        .into_iter()
        .rev()
        .find(|l| is_final_stats_line(l));
    figure(
        "signals",
        &format!(
            "SIGTERM after {:.2} s of random-chunking load ({n} conns, {mid} mid-stream, {:.1} of {:.1} MiB planned sent, {:.1} MiB echoed at signal): {:.1} MiB sent = {:.1} MiB echoed, {} lost ({} failed conns), {burst_n} burst clients (reads paused at the signal): {:.1} MiB sent, {:.1} MiB echoed, {:.1} MiB lost ({} conns failed); all closed {:.2} s and exit {:?} {:.2} s after the signal; new connects refused after {:?}",
            load.as_secs_f64(),
            mib(sent_at_signal),
            mib(planned),
            mib(echoed_at_signal),
            mib(run.sent()),
            mib(run.echoed()),
            run.sent().saturating_sub(run.echoed()),
            failures.len(),
            mib(burst_total),
            mib(burst_echoed),
            mib(burst_total.saturating_sub(burst_echoed)),
            burst_failures.len(),
            drained.as_secs_f64(),
            status.and_then(|s| s.code()),
            exited.as_secs_f64(),
            refused,
        ),
    );
    assert!(
        failures.is_empty(),
        "failed connections: {:?}",
        &failures[..failures.len().min(10)]
    );
    assert!(
        burst_failures.is_empty(),
        "bytes sent before SIGTERM not echoed: {:?}",
        &burst_failures[..burst_failures.len().min(10)]
    );
    let status = status.expect("server did not exit");
    assert_eq!(status.code(), Some(0), "exit status");
    assert!(refused.is_some(), "listener still accepting after SIGTERM");
    let fin = Stats::parse(&final_line.expect("no `final stats:` line"));
    assert_eq!(fin.get("bytes_in"), run.sent() + burst_total);
    assert_eq!(fin.get("bytes_out"), run.echoed() + burst_echoed);
}

/// 64 bytes, every line starting with `b` (never `quit`).
fn burst_pattern() -> Vec<u8> {
    let p = b"burst 0123456789 abcdefghijklmnoprstuvwxyz ABCDEFGHIJKLMNOPQRST\n".to_vec();
    assert_eq!(p.len(), 64);
    p
}
