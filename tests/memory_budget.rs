//! The memory budget (`--max-memory`): the most echo held in memory across
//! all connections. Clients that never read their echo fill it and are then
//! held back by TCP flow control (nothing lost), while clients whose echo
//! goes straight into their socket, old and new, are still served; once the
//! never-readers read, every byte comes back. A connection paused for the
//! budget goes on once the budget frees; below the budget nothing pauses for
//! it. Also the K/M/G byte suffixes of the command line.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::drivers::{exchange, small_client_socket, Fleet};
use common::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// The server's read share of one connection in one turn: the most one
/// connection can add to the held echo after the budget check let it read.
const READ_SHARE: u64 = 4 * KIB;
/// How long an echo may take while the budget is spent: a correctness
/// bound (the client is served at all), not a performance target.
const ECHO_BOUND: Duration = Duration::from_secs(2);
/// The budget (1 MiB) is spent, and overshot by at most one read share
/// per never-reader.
fn assert_spent(stats: &Stats, never_readers: usize) {
    let limit = MIB + never_readers as u64 * READ_SHARE;
    let (now, peak) = (stats["pending_bytes"], stats["pending_peak"]);
    assert!(now >= MIB, "held back with the budget not spent: {stats:?}");
    assert!(peak <= limit, "pending_peak {peak} > {limit}: {stats:?}");
}

/// Echo held, bytes in and bytes out, from the server's stats.
fn held_in_out(stats: &Stats) -> (u64, u64, u64) {
    (
        stats["pending_bytes"],
        stats["bytes_in"],
        stats["bytes_out"],
    )
}

/// The server's start-up line.
fn started_line(server: &ServerProcess) -> String {
    let line = server.log.wait_for(" started: ", START_TIMEOUT);
    line.unwrap_or_else(|| panic!("no start-up line: {}", server.log.dump()))
}

/// A client that reads its echo as it writes moves `len` bytes through.
fn stream_through(addr: SocketAddr, len: usize) {
    let stream = pattern(len, len as u64);
    assert!(
        exchange(addr, &stream) == stream,
        "the streamed echo differs"
    );
}

/// One 64-byte round trip, timed; the read fails (and the test with it)
/// when the echo is not back within `ECHO_BOUND`.
fn timed_echo(stream: &mut TcpStream, seq: usize) -> Duration {
    let msg = format!("interactive {seq:06} {:.<44}\n", "");
    stream.set_read_timeout(Some(ECHO_BOUND)).unwrap();
    let at = Instant::now();
    echo(stream, msg.as_bytes());
    at.elapsed()
}

#[test]
fn never_readers_are_held_at_the_budget_while_others_are_served() {
    const NEVER_READERS: usize = 100;
    let server = ServerProcess::start(&["--max-memory", "1M"]);
    let mut interactive = server.connect();
    timed_echo(&mut interactive, 0);

    let mut fleet = Fleet::connect(server.addr, NEVER_READERS);
    let held = fleet.fill_until_held(&server, Duration::from_secs(60), |s| s["memory_pauses"] > 0);
    assert_spent(&held, NEVER_READERS);

    // The budget is spent: the interactive client, a newcomer and a
    // client streaming 1 MiB (reading as it goes) are all still served.
    let mut worst = Duration::ZERO;
    for seq in 1..=20 {
        worst = worst.max(timed_echo(&mut interactive, seq));
    }
    let at = Instant::now();
    let mut newcomer = server.connect();
    timed_echo(&mut newcomer, 0);
    newcomer.shutdown(Shutdown::Write).unwrap();
    expect_eof(&mut newcomer);
    let newcomer_took = at.elapsed();
    let at = Instant::now();
    stream_through(server.addr, MIB as usize);
    let streamed_in = at.elapsed();
    println!("interactive worst {worst:?}, newcomer {newcomer_took:?}, 1 MiB in {streamed_in:?}");
    let worst = worst.max(newcomer_took);
    assert!(
        worst <= ECHO_BOUND,
        "an echo took {worst:?} with the budget spent"
    );
    assert!(streamed_in.as_secs() < 10, "1 MiB took {streamed_in:?}");
    assert_spent(&server.stats(), NEVER_READERS);

    // One never-reader reads while the others still hold the budget: it
    // is not stuck behind them.
    fleet.drain(&[0], Duration::from_secs(20)).unwrap();
    // Then all of them: every byte comes back, and nothing is held.
    let rest: Vec<usize> = (1..NEVER_READERS).collect();
    fleet.drain(&rest, Duration::from_secs(60)).unwrap();
    timed_echo(&mut interactive, 21);
    // 23 round trips of 64 bytes, 1 MiB streamed, and the fleet's bytes.
    let moved = 23 * 64 + MIB + fleet.sent();
    let after = server.stats_until(IO_TIMEOUT, |s| s["active"] == 1);
    assert_eq!(held_in_out(&after), (0, moved, moved), "{after:?}");
}

#[test]
fn never_readers_that_reset_give_their_share_of_the_budget_back() {
    const NEVER_READERS: usize = 50;
    let server = ServerProcess::start(&["--max-memory", "1M"]);
    let mut fleet = Fleet::connect(server.addr, NEVER_READERS);
    let held = fleet.fill_until_held(&server, Duration::from_secs(60), |s| s["memory_pauses"] > 0);
    assert_spent(&held, NEVER_READERS);
    fleet.reset_all();
    let gone = server.stats_until(IO_TIMEOUT, |s| s["active"] == 0);
    assert_eq!(
        gone["pending_bytes"], 0,
        "echo of reset connections still counted: {gone:?}"
    );
    assert_eq!(gone["closed_error"], NEVER_READERS as u64, "{gone:?}");
}

/// A client that writes a burst before it reads: more than the kernel
/// buffers take, well within `--max-buffer`. Paused for the budget, it is
/// stuck until the server reads on, which it may once the budget frees:
/// nothing else will wake it (its client is blocked writing).
#[test]
fn a_connection_paused_for_the_budget_resumes_when_the_budget_frees() {
    const NEVER_READERS: usize = 20;
    const BURST: usize = 600 * KIB as usize;
    let server = ServerProcess::start(&["--max-memory", "1M", "--max-buffer", "1M"]);
    let mut fleet = Fleet::connect(server.addr, NEVER_READERS);
    let held = fleet.fill_until_held(&server, Duration::from_secs(60), |s| s["memory_pauses"] > 0);
    let mut client = small_client_socket(server.addr).unwrap();
    client.set_nonblocking(false).unwrap();
    client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let burst = pattern(BURST, 0x6275_7273);
        let result = client.write_all(&burst).and_then(|()| {
            let mut back = vec![0u8; BURST];
            client.read_exact(&mut back)?;
            Ok(back == burst)
        });
        let _ = done_tx.send(result);
    });
    let paused = server.stats_until(IO_TIMEOUT, |s| s["memory_pauses"] > held["memory_pauses"]);
    fleet.reset_all();
    let freed = server.stats_until(IO_TIMEOUT, |s| s["closed_error"] == NEVER_READERS as u64);
    let bound = Duration::from_secs(10);
    match done.recv_timeout(bound) {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => panic!("the burst's echo differs"),
        Ok(Err(e)) => panic!("the burst client failed: {e}"),
        Err(_) => panic!(
            "a client paused for the budget was still stuck {bound:?} after the budget \
             freed: paused {paused:?}, freed {freed:?}, now {:?}",
            server.stats()
        ),
    }
}

#[test]
fn below_the_budget_nothing_pauses_for_it_and_nothing_stays_held() {
    const NEVER_READERS: u64 = 4;
    const MAX_BUFFER: u64 = 64 * KIB;
    let server = ServerProcess::start(&["--max-memory", "1M"]);
    let mut fleet = Fleet::connect(server.addr, NEVER_READERS as usize);
    // Each never-reader fills its own buffer: 4 x 64 KiB, under 1 MiB.
    let held = fleet.fill_until_held(&server, Duration::from_secs(60), |s| {
        s["backpressure_pauses"] >= NEVER_READERS
    });
    let full = NEVER_READERS * MAX_BUFFER;
    let pending = (held["pending_bytes"], held["pending_peak"]);
    assert_eq!(pending, (full, full), "{held:?}");
    // A client that reads its echo as it goes moves 4 MiB meanwhile.
    stream_through(server.addr, 4 * MIB as usize);
    let all: Vec<usize> = (0..NEVER_READERS as usize).collect();
    fleet.drain(&all, Duration::from_secs(30)).unwrap();
    let after = server.stats_until(IO_TIMEOUT, |s| s["active"] == 0);
    let moved = fleet.sent() + 4 * MIB;
    assert_eq!(
        after["memory_pauses"], 0,
        "paused for a budget never reached: {after:?}"
    );
    assert!(after["pending_peak"] <= MIB, "{after:?}");
    assert_eq!(held_in_out(&after), (0, moved, moved), "{after:?}");
}

#[test]
fn byte_options_take_k_m_g_suffixes_in_powers_of_1024() {
    let server = ServerProcess::start(&["--max-buffer", "64K", "--max-memory", "32M"]);
    let started = started_line(&server);
    assert!(
        started.contains(" max_buffer=65536 max_memory=33554432 "),
        "{started}"
    );
    echo_session(server.addr, b"suffixes\n");
    let server = ServerProcess::start(&["--max-buffer", "1KiB", "--max-memory", "1g"]);
    let started = started_line(&server);
    assert!(
        started.contains(" max_buffer=1024 max_memory=1073741824 "),
        "{started}"
    );

    // (A negative value with a suffix needs `=`: alone, clap reads `-1M` as
    // short flags.)
    for args in [
        &["--max-memory", "0"][..],
        &["--max-memory", "1T"],
        &["--max-memory=-1M"],
        &["--max-buffer", "x"],
        &["--max-buffer", "0K"],
    ] {
        let flag = args[0].split('=').next().unwrap();
        let out = run_to_exit(&[&["--listen", "127.0.0.1:0"], args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = format!("{args:?}: {:?}, stderr: {stderr}", out.status);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(
            stderr.contains(flag),
            "the error does not name {flag}: {said}"
        );
        assert!(out.stdout.is_empty(), "started anyway: {said}");
    }
}
