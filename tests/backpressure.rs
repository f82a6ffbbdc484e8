//! Backpressure and fairness: a client that never reads cannot grow the
//! server's memory or slow other clients down, and a busy client cannot
//! starve the others.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

/// Echo latency of one small round trip.
fn round_trip(c: &mut TcpStream, i: usize) -> Duration {
    let msg = format!("ping {i}\n");
    let start = Instant::now();
    echo(c, msg.as_bytes());
    start.elapsed()
}

/// A repeating pattern without `\n`, so the quit rule never fires and the
/// echo can be checked by position.
const PATTERN: &[u8; 16] = b"0123456789abcdef";

fn pattern_at(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = PATTERN[((offset + i as u64) % 16) as usize];
    }
}

#[test]
fn a_client_that_never_reads_cannot_grow_server_memory_or_slow_others() {
    const FLOOD: u64 = 200 * MIB;
    let server = ServerProcess::start(&[]);
    let mut other = server.connect();
    round_trip(&mut other, 0);
    let rss_before = server.rss_kib();

    let flood = server.connect();
    let mut writer = flood.try_clone().unwrap();
    // A write that moves nothing for 200 ms means the whole path (client
    // send buffer, server receive buffer, server echo buffer, client
    // receive buffer) is full: the server has stopped reading.
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (written, stalled, stop) = (written.clone(), stalled.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            while total < FLOOD && !stop.load(Ordering::SeqCst) {
                let n = (buf.len() as u64).min(FLOOD - total) as usize;
                pattern_at(total, &mut buf[..n]);
                match writer.write(&buf[..n]) {
                    Ok(k) => {
                        total += k as u64;
                        written.store(total, Ordering::SeqCst);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        stalled.store(true, Ordering::SeqCst)
                    }
                    Err(e) => panic!("flood write: {e}"),
                }
            }
            total
        })
    };

    // Wait for the flood to stall (or, if the server swallows it all, to
    // finish), sampling the server's memory meanwhile.
    let mut rss_max = rss_before;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stalled.load(Ordering::SeqCst) && !w.is_finished() {
        rss_max = rss_max.max(server.rss_kib());
        assert!(
            Instant::now() < deadline,
            "flood neither stalled nor finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let at_stall = written.load(Ordering::SeqCst);
    assert!(
        stalled.load(Ordering::SeqCst) && at_stall < FLOOD,
        "the server read all {} MiB from a client that never reads",
        at_stall / MIB
    );

    // While the flood client is held back, another client is served at once.
    let mut worst = Duration::ZERO;
    for i in 1..=100 {
        worst = worst.max(round_trip(&mut other, i));
        if i % 10 == 0 {
            rss_max = rss_max.max(server.rss_kib());
        }
    }
    let held = written.load(Ordering::SeqCst);
    let growth_kib = rss_max.saturating_sub(rss_before);
    println!(
        "flood stalled after {:.1} MiB written; server RSS {rss_before} KiB -> max {rss_max} KiB; \
         worst echo meanwhile {worst:?}",
        held as f64 / MIB as f64
    );
    assert!(
        growth_kib < 30 * 1024,
        "server RSS grew by {growth_kib} KiB while a client flooded it"
    );
    assert!(
        worst < Duration::from_secs(1),
        "an echo took {worst:?} while another client flooded"
    );
    let stats = server.stats();
    assert!(stats["backpressure_pauses"] >= 1, "{stats:?}");

    // Once the flood client reads, the server resumes reading it, and every
    // byte comes back in order.
    stop.store(true, Ordering::SeqCst);
    let total = w.join().unwrap();
    let mut flood = flood;
    flood.shutdown(Shutdown::Write).unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut want = vec![0u8; buf.len()];
    loop {
        let n = match flood.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => panic!("draining the flood echo: {e} after {got} of {total} bytes"),
        };
        pattern_at(got, &mut want[..n]);
        assert!(buf[..n] == want[..n], "flood echo differs at offset {got}");
        got += n as u64;
    }
    assert_eq!(got, total, "flood echo length");
    echo(&mut other, b"bye\n");
}

/// Compares `got` with the stream `cycle` repeated forever, starting at
/// stream offset `at`.
fn matches_cycle(cycle: &[u8], at: u64, got: &[u8]) -> bool {
    let mut pos = (at % cycle.len() as u64) as usize;
    let mut rest = got;
    while !rest.is_empty() {
        let n = rest.len().min(cycle.len() - pos);
        if rest[..n] != cycle[pos..pos + n] {
            return false;
        }
        rest = &rest[n..];
        pos = 0;
    }
    true
}

#[test]
fn a_busy_client_does_not_starve_another() {
    const BUSY_BYTES: u64 = 64 * MIB;
    let server = ServerProcess::start(&[]);
    let mut other = server.connect();
    round_trip(&mut other, 0);

    // A client echoing at full speed both ways: one random megabyte without
    // newlines (the quit rule cannot fire), sent over and over.
    let mut cycle = Payload::new(42).bytes(MIB as usize);
    for b in cycle.iter_mut().filter(|b| **b == b'\n') {
        *b = b'.';
    }
    let cycle = Arc::new(cycle);
    let busy = server.connect();
    let mut writer = busy.try_clone().unwrap();
    let mut reader = busy;
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let w = {
        let (stop, cycle) = (stop.clone(), cycle.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::SeqCst) {
                writer.write_all(&cycle).unwrap();
                sent += cycle.len() as u64;
            }
            writer.shutdown(Shutdown::Write).unwrap();
            sent
        })
    };
    let r = {
        let (echoed, cycle) = (echoed.clone(), cycle.clone());
        std::thread::spawn(move || {
            let mut got = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => {
                        assert!(
                            matches_cycle(&cycle, got, &buf[..n]),
                            "busy client's echo differs near offset {got}"
                        );
                        got += n as u64;
                        echoed.store(got, Ordering::SeqCst);
                    }
                    Err(e) => panic!("busy client read: {e} after {got} bytes"),
                }
            }
        })
    };

    // Echo round trips for as long as the busy client needs to move
    // BUSY_BYTES (and at least 100 of them).
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while times.len() < 100 || echoed.load(Ordering::SeqCst) < BUSY_BYTES {
        assert!(
            Instant::now() < deadline,
            "busy client moved only {} bytes in 30 s",
            echoed.load(Ordering::SeqCst)
        );
        times.push(round_trip(&mut other, times.len() + 1));
    }
    stop.store(true, Ordering::SeqCst);
    let sent = w.join().unwrap();
    let got = r.join().unwrap();
    times.sort();
    let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
    println!(
        "busy client moved {:.1} MiB while {} echoes took median {median:?}, worst {worst:?}",
        sent as f64 / MIB as f64,
        times.len()
    );
    assert_eq!(got, sent, "busy client's echo length");
    // The tests run the debug build, where one turn serving the busy client
    // costs milliseconds; starvation would show as seconds.
    assert!(
        median < Duration::from_millis(250) && worst < Duration::from_secs(2),
        "echoes beside a busy client took median {median:?}, worst {worst:?}"
    );
}

#[test]
fn tiny_max_buffer_still_echoes_everything() {
    // With --max-buffer 1 the server reads one byte at a time: keep it short.
    for (max_buffer, size) in [("1", 100_000), ("100", 1 << 20), ("4096", 2 << 20)] {
        let server = ServerProcess::start(&["--max-buffer", max_buffer]);
        let mut c = server.connect();
        let data = Payload::new(3).bytes(size);
        assert!(!has_quit_line(&data));
        let mut writer = c.try_clone().unwrap();
        let to_send = data.clone();
        let w = std::thread::spawn(move || {
            for chunk in to_send.chunks(300_000) {
                writer.write_all(chunk).unwrap();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let got = read_to_eof(&mut c);
        w.join().unwrap();
        assert!(got == data, "--max-buffer {max_buffer}: echo differs");
    }
}
