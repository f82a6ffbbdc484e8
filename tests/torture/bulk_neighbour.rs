//! Bulk neighbour: one client moves data as fast as it can, writing and
//! reading 256 KiB chunks at once, beside a probe client sending 64 bytes
//! every 2 ms and timing their echo. A fair server keeps the probe's echo
//! fast however much the bulk connection could still read: it reads a
//! bounded amount of one connection per turn of its loop, then serves the
//! others.
//!
//! Per round: the probe alone, then beside the bulk client, then (when
//! strace is installed) a traced stretch in which the server's reads are
//! counted per connection between two `epoll_wait` calls. When the tokio
//! baseline is built, the same rounds run against it too, alternating with
//! ours, for comparison.
//!
//! Asserts: both echoes byte-exact to the end (clean EOF, nothing lost, the
//! server's counters agree), and, when traced, at most 16 reads of one
//! connection between two polls (a count, not a timing). The probe's
//! latency and the bulk throughput are printed, not asserted.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::drivers::{Bulk, Probe};
use crate::common::*;
use crate::syscall_trace::{fd_of_connection, strace_available, Tracer};
use crate::{ms, secs};

const TICK: Duration = Duration::from_millis(2);
const CHUNK: usize = 256 * 1024;
/// The design's bound on reads of one connection in one turn.
const MAX_READS_PER_TURN: u32 = echo_reactor::connection::READS_PER_TURN;
/// Upper bound on how long any client of a round runs.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// A server under test: ours, or the tokio `current_thread` baseline.
enum Contender {
    Ours,
    Tokio(PathBuf),
}

impl Contender {
    fn start(&self) -> ServerProcess {
        match self {
            Contender::Ours => ServerProcess::start(&[]),
            Contender::Tokio(path) => {
                let mut cmd = Command::new(path);
                cmd.args(["--listen", "127.0.0.1:0"]).stdin(Stdio::null());
                ServerProcess::spawn(cmd)
            }
        }
    }
}

/// The baseline next to our binary, else the one `make bench-build` makes.
/// Only for a release build of ours: a debug build beside a release tokio
/// compares nothing.
fn tokio_baseline() -> Result<PathBuf, String> {
    if cfg!(debug_assertions) {
        return Err("echo-reactor is a debug build here (run with --release)".into());
    }
    let sibling = std::path::Path::new(BIN).with_file_name("baseline-tokio");
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/baseline-tokio");
    [sibling, built.clone()]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{} not found (build it with `cargo build --release --features bench`)",
                built.display()
            )
        })
}

struct Plan {
    alone: Duration,
    beside: Duration,
    traced: Option<Duration>,
    /// Server on CPU 0, clients on CPU 1.
    pinned: bool,
}

/// Reads per turn seen in the traced stretches.
#[derive(Default)]
struct Traced {
    /// The most reads of one fd in one turn, and that fd.
    most: u32,
    most_fd: i32,
    /// The same for the bulk connection alone (None if not found).
    bulk_most: Option<u32>,
    polls: u64,
    reads: u64,
}

/// One contender's results over all rounds.
#[derive(Default)]
struct Tally {
    alone: Vec<Duration>,
    beside: Vec<Duration>,
    bulk_bytes: u64,
    bulk_secs: f64,
    traced: Option<Traced>,
    failures: Vec<String>,
}

impl Tally {
    fn summary(&self) -> String {
        let (mut alone, mut beside) = (self.alone.clone(), self.beside.clone());
        alone.sort();
        beside.sort();
        let reads = match &self.traced {
            None => "most reads of one connection in a turn skipped: strace not installed".into(),
            Some(t) => format!(
                "most reads of one connection in a turn {} (fd {}; bulk connection {}; {} polls, {} reads traced)",
                t.most,
                t.most_fd,
                t.bulk_most.map_or("not found".into(), |n| n.to_string()),
                t.polls,
                t.reads
            ),
        };
        format!(
            "probe p50/p99 {:.3}/{:.3} ms alone, {:.3}/{:.3} ms beside bulk ({} + {} round trips), bulk {:.0} MiB/s each way, {reads}",
            ms(percentile(&alone, 0.50)),
            ms(percentile(&alone, 0.99)),
            ms(percentile(&beside, 0.50)),
            ms(percentile(&beside, 0.99)),
            alone.len(),
            beside.len(),
            mib(self.bulk_bytes) / self.bulk_secs.max(1e-9),
        )
    }
}

/// One round against one contender, added to `tally`.
fn measure(contender: &Contender, plan: &Plan, tally: &mut Tally) {
    let server = contender.start();
    let name = match contender {
        Contender::Ours => "echo-reactor",
        Contender::Tokio(_) => "tokio",
    };
    if plan.pinned {
        let pinned = Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &server.pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(pinned, "taskset could not pin the server");
    }
    let client_cpu = plan.pinned.then_some(1);
    let probe = Probe::start(server.addr, TICK, CLIENT_LIMIT, client_cpu);
    // The first round trip waits for the accept: measure from the second.
    let started = wait_until(Duration::from_secs(10), Duration::from_millis(1), || {
        probe.echoes() >= 1
    });
    assert!(started, "{name}: the probe got no echo within 10 s");
    let alone_from = Instant::now();
    // A measurement window, not a wait for an event.
    thread::sleep(plan.alone);
    let alone_to = Instant::now();

    let bulk = Bulk::start(server.addr, CHUNK, CLIENT_LIMIT, client_cpu);
    let flowing = wait_until(Duration::from_secs(10), Duration::from_millis(1), || {
        bulk.echoed() >= 4 * CHUNK as u64
    });
    assert!(flowing, "{name}: the bulk client got no echo within 10 s");
    let (beside_from, echoed_from) = (Instant::now(), bulk.echoed());
    thread::sleep(plan.beside);
    let (beside_to, echoed_to) = (Instant::now(), bulk.echoed());

    if let Some(stretch) = plan.traced {
        let bulk_fd = fd_of_connection(server.pid, server.addr, bulk.local_addr());
        let tracer = Tracer::attach(server.pid);
        thread::sleep(stretch);
        let counts = tracer.detach();
        let t = tally.traced.get_or_insert_with(Traced::default);
        if let Some((fd, most)) = counts.most() {
            if most > t.most {
                (t.most, t.most_fd) = (most, fd);
            }
        }
        let bulk_most = bulk_fd.map(|fd| counts.most_per_fd.get(&fd).copied().unwrap_or(0));
        t.bulk_most = match (t.bulk_most, bulk_most) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        t.polls += counts.polls;
        t.reads += counts.reads;
        if bulk_most.unwrap_or(0) == 0 {
            tally.failures.push(format!(
                "{name}: the trace shows no read of the bulk connection (fd {bulk_fd:?}, {} polls, {} reads)",
                counts.polls, counts.reads
            ));
        }
    }

    let bulk = bulk.finish();
    let probe = probe.finish();
    tally.alone.extend(probe.rtts_between(alone_from, alone_to));
    tally
        .beside
        .extend(probe.rtts_between(beside_from, beside_to));
    tally.bulk_bytes += echoed_to - echoed_from;
    tally.bulk_secs += (beside_to - beside_from).as_secs_f64();
    let f = &mut tally.failures;
    if let Some(e) = probe.err {
        f.push(format!("{name}: {e}"));
    }
    if let Some(e) = bulk.err {
        f.push(format!("{name}: {e}"));
    }
    if !bulk.eof || bulk.echoed != bulk.sent {
        f.push(format!(
            "{name}: bulk sent {} bytes, {} echoed, EOF {}",
            bulk.sent, bulk.echoed, bulk.eof
        ));
    }
    if let Contender::Ours = contender {
        // Both clients saw EOF: the server has counted all of it.
        let st = server.stats_until(Duration::from_secs(10), |s| s.get("active") == 0);
        let moved = bulk.sent + probe.sent;
        if st.get("bytes_in") != moved || st.get("bytes_out") != moved {
            f.push(format!(
                "{name}: clients moved {moved} bytes each way, server bytes_in={} bytes_out={}",
                st.get("bytes_in"),
                st.get("bytes_out")
            ));
        }
    }
}

#[test]
fn bulk_neighbour() {
    let _g = serial();
    let traced = strace_available();
    let pinned = std::env::var("TORTURE_PIN").as_deref() == Ok("1")
        && Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let plan = Plan {
        alone: secs(scale(1.0, 2.0)),
        beside: secs(scale(1.5, 3.0)),
        traced: traced.then(|| secs(scale(0.75, 1.5))),
        pinned,
    };
    let rounds = scale(1, 3);
    let tokio = tokio_baseline().map(Contender::Tokio);
    let (mut ours, mut theirs) = (Tally::default(), Tally::default());
    for round in 0..rounds {
        // Alternate who goes first, so drift in the machine's load evens out.
        let ours_first = round % 2 == 0;
        if ours_first {
            measure(&Contender::Ours, &plan, &mut ours);
        }
        if let Ok(baseline) = &tokio {
            measure(baseline, &plan, &mut theirs);
        }
        if !ours_first {
            measure(&Contender::Ours, &plan, &mut ours);
        }
    }
    let bound = match &ours.traced {
        Some(_) => format!(" [at most {MAX_READS_PER_TURN} allowed]"),
        None => String::new(),
    };
    let baseline = match &tokio {
        Ok(_) => format!("tokio current_thread: {} (not asserted)", theirs.summary()),
        Err(e) => format!("tokio comparison skipped: {e}"),
    };
    figure(
        "bulk-neighbour",
        &format!(
            "echo-reactor: {}{bound}; {baseline}; {rounds} round(s){}, {:.1} s alone + {:.1} s beside bulk{} each, 256 KiB chunks both ways, 64-byte probe every 2 ms, {}",
            ours.summary(),
            if tokio.is_ok() { " alternating servers" } else { "" },
            plan.alone.as_secs_f64(),
            plan.beside.as_secs_f64(),
            plan.traced
                .map_or(String::new(), |t| format!(" + {:.2} s traced", t.as_secs_f64())),
            if pinned { "pinned: server on CPU 0, clients on CPU 1" } else { "unpinned" },
        ),
    );
    if !traced {
        println!("bulk-neighbour: read count skipped: strace not installed");
    }
    if let Err(e) = &tokio {
        println!("bulk-neighbour: tokio comparison skipped: {e}");
    }
    let failures: Vec<&String> = ours.failures.iter().chain(&theirs.failures).collect();
    assert!(failures.is_empty(), "{failures:?}");
    if let Some(t) = &ours.traced {
        assert!(
            t.most <= MAX_READS_PER_TURN,
            "fd {} was read {} times between two polls (at most {MAX_READS_PER_TURN} allowed)",
            t.most_fd,
            t.most
        );
    }
}
