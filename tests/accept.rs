//! Accepting: bursts of simultaneous connects are all served, a batch cut
//! short is resumed by the loop itself, and the server stays one thread.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Counts arrivals; lets threads (and the test) wait until all arrived,
/// with a deadline so that one failed client fails the test instead of
/// hanging it.
struct Gate {
    arrived: Mutex<usize>,
    all: Condvar,
    n: usize,
}

impl Gate {
    fn new(n: usize) -> Self {
        Gate {
            arrived: Mutex::new(0),
            all: Condvar::new(),
            n,
        }
    }

    fn arrive(&self) {
        *self.arrived.lock().unwrap() += 1;
        self.all.notify_all();
    }

    fn wait_all(&self, timeout: Duration) {
        let guard = self.arrived.lock().unwrap();
        let (guard, result) = self
            .all
            .wait_timeout_while(guard, timeout, |arrived| *arrived < self.n)
            .unwrap();
        assert!(
            !result.timed_out(),
            "only {} of {} clients connected within {timeout:?}",
            *guard,
            self.n
        );
    }
}

/// `n` clients connect at the same moment, each sends a line at once, and
/// all stay connected until every one is in; then each reads its echo and
/// half-closes. Calls `while_all_connected` while all `n` are open.
/// Returns the slowest connect.
fn burst(addr: SocketAddr, n: usize, while_all_connected: impl FnOnce()) -> Duration {
    let start = Arc::new(Barrier::new(n + 1));
    let connected = Arc::new(Gate::new(n));
    let release = Arc::new(Gate::new(1));
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let (start, connected, release) = (start.clone(), connected.clone(), release.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    let result = (|| {
                        let mut c = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
                        let took = began.elapsed();
                        c.set_read_timeout(Some(IO_TIMEOUT))?;
                        c.set_write_timeout(Some(IO_TIMEOUT))?;
                        c.write_all(format!("client {i} says hello\n").as_bytes())?;
                        Ok::<_, std::io::Error>((c, took))
                    })();
                    // Arrive even on failure: the test must not wait for us.
                    connected.arrive();
                    let (mut c, took) =
                        result.map_err(|e| format!("client {i}: connect or write: {e}"))?;
                    release.wait_all(Duration::from_secs(60));
                    // Echo, then a half-close answered by a clean EOF.
                    let mut got = Vec::new();
                    c.shutdown(Shutdown::Write)
                        .and_then(|()| c.read_to_end(&mut got))
                        .map_err(|e| format!("client {i}: {e} after {:?}", show(&got)))?;
                    let want = format!("client {i} says hello\n");
                    if got != want.as_bytes() {
                        return Err(format!("client {i}: got {:?}", show(&got)));
                    }
                    Ok(took)
                })
                .expect("spawn client thread")
        })
        .collect();
    start.wait();
    connected.wait_all(Duration::from_secs(30));
    while_all_connected();
    release.arrive();
    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    for client in clients {
        match client.join().expect("client thread panicked") {
            Ok(took) => slowest = slowest.max(took),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} clients failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    slowest
}

#[test]
fn a_burst_of_1000_simultaneous_connects_is_all_echoed() {
    const N: usize = 1000;
    let server = ServerProcess::start(&[]);
    let slowest = burst(server.addr, N, || {
        assert_eq!(server.threads(), 1, "threads with {N} clients connected");
    });
    let stats = server.stats();
    println!(
        "{N} clients: slowest connect {slowest:?}; accept_batches={} largest_batch={}",
        stats["accept_batches"], stats["largest_batch"]
    );
    assert_eq!(stats["accepted"], N as u64, "{stats:?}");
    assert_eq!(stats["closed_error"], 0, "{stats:?}");
    assert_eq!(server.threads(), 1);
}

#[test]
fn accept_batch_1_serves_a_burst_of_300() {
    // With one accept per turn the listener's queue is left non-empty on
    // every turn; edge-triggered polling reports it only once, so the loop
    // must come back to it by itself.
    const N: usize = 300;
    let server = ServerProcess::start(&["--accept-batch", "1"]);
    burst(server.addr, N, || {});
    let stats = server.stats();
    assert_eq!(stats["accepted"], N as u64, "{stats:?}");
    assert_eq!(stats["largest_batch"], 1, "{stats:?}");
    assert_eq!(stats["accept_batches"], N as u64, "{stats:?}");
}

#[test]
fn exactly_one_thread_while_serving() {
    let server = ServerProcess::start(&[]);
    assert_eq!(server.threads(), 1, "threads at start");
    let mut clients: Vec<_> = (0..20).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        echo(c, format!("hello {i}\n").as_bytes());
    }
    assert_eq!(server.threads(), 1, "threads with 20 clients");
    let _ = server.stats();
    assert_eq!(server.threads(), 1, "threads after SIGUSR1");
    // A big transfer in flight.
    let mut big = server.connect();
    let mut writer = big.try_clone().unwrap();
    let data = vec![b'x'; 8 << 20];
    let w = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    assert_eq!(server.threads(), 1, "threads during a transfer");
    assert_eq!(read_to_eof(&mut big).len(), 8 << 20);
    w.join().unwrap();
    drop(clients);
    assert_eq!(server.threads(), 1, "threads after clients left");
}
