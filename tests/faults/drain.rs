//! SIGTERM while clients still have echo coming, over the slow link with
//! and without loss. The drain contract: after the signal each connection
//! is echoed until its client closes its side (EOF), sends `quit`, or
//! `--shutdown-timeout` passes; then the server exits 0. Loss makes a
//! connection go silent for a retransmission timeout (200 ms and more) in
//! the middle of its echo, so a server that takes silence for "done" loses
//! echo here.

use std::time::{Duration, Instant};

use crate::common::{figure, mib, percentile, scale, ServerProcess};
use crate::flows::{Flows, Shut};
use crate::netns::Netns;

const KIB: u64 = 1024;
const CLIENTS: usize = 30;
const EACH: u64 = 512 * KIB;

/// One server, one signal, `CLIENTS` clients.
struct Round {
    /// Clients that did not get every byte they sent back, exactly, then EOF.
    lost_clients: usize,
    lost_bytes: u64,
    first_failures: Vec<String>,
    /// Bytes sent but not yet echoed when the signal went out.
    in_flight: u64,
    /// From the signal to the last client's EOF.
    last_eof: Option<Duration>,
    /// From the signal to the first client's EOF.
    first_eof: Option<Duration>,
    /// From the signal to the server's exit, and its code.
    exit: Option<(Duration, Option<i32>)>,
}

/// Starts a server, streams `EACH` bytes from every client (reading the
/// echo all along), signals once every client's last write returned, then
/// lets the clients half-close (or not, `shut` = `Never`) and read to EOF.
fn round(timeout_secs: u64, shut: Shut, seed: u64) -> Round {
    let timeout = timeout_secs.to_string();
    let mut server = ServerProcess::start(&["--shutdown-timeout", &timeout]);
    let mut flows = Flows::connect(server.addr, CLIENTS, EACH, 64 * 1024, shut, seed);
    let t0 = Instant::now();
    let all_sent = flows.run_until(t0 + Duration::from_secs(60), |f| f.all_sent());
    assert!(
        all_sent && flows.all_sent(),
        "clients could not send {EACH} bytes each within 60 s ({} of {} sent)",
        flows.sent(),
        CLIENTS as u64 * EACH
    );
    let in_flight = flows.sent() - flows.echoed();
    let t_sig = Instant::now();
    server.signal("TERM");
    // Clients that are done half-close, as a client that is done does.
    if shut == Shut::Held {
        flows.release();
    }
    let bound = Duration::from_secs(timeout_secs + 15);
    flows.run_until(t_sig + bound, |_| false);
    let exit = server
        .wait_exit(bound.saturating_sub(t_sig.elapsed()) + Duration::from_secs(5))
        .map(|status| (t_sig.elapsed(), status.code()));
    let (lost_clients, first_failures) = flows.failures(3);
    let eofs: Vec<Duration> = flows
        .flows
        .iter()
        .filter_map(|f| f.eof_at.map(|t| t.saturating_duration_since(t_sig)))
        .collect();
    Round {
        lost_clients,
        lost_bytes: flows.flows.iter().map(|f| f.lost()).sum(),
        first_failures,
        in_flight,
        last_eof: eofs.iter().max().copied(),
        first_eof: eofs.iter().min().copied(),
        exit,
    }
}

/// Several rounds under one condition, summed up for the figure.
struct Tally {
    rounds: Vec<Round>,
}

impl Tally {
    fn summary(&self) -> String {
        let runs = self.rounds.len();
        let lossy = self.rounds.iter().filter(|r| r.lost_clients > 0).count();
        let lost: usize = self.rounds.iter().map(|r| r.lost_clients).sum();
        let lost_bytes: u64 = self.rounds.iter().map(|r| r.lost_bytes).sum();
        let mut drains: Vec<Duration> = self
            .rounds
            .iter()
            .filter_map(|r| r.exit.map(|e| e.0))
            .collect();
        drains.sort();
        let exits: Vec<String> = self
            .rounds
            .iter()
            .map(|r| match r.exit {
                Some((_, Some(code))) => code.to_string(),
                Some((_, None)) => "signal".to_string(),
                None => "none".to_string(),
            })
            .collect();
        let in_flight: u64 = self.rounds.iter().map(|r| r.in_flight).sum::<u64>() / runs as u64;
        format!(
            "{lost} clients lost echo ({:.2} MiB) in {lossy} of {runs} runs; {:.1} MiB unechoed at the signal (mean); drain (signal to exit) median {:.2} s, max {:.2} s; exit codes [{}]",
            mib(lost_bytes),
            mib(in_flight),
            percentile(&drains, 0.5).as_secs_f64(),
            drains.last().copied().unwrap_or_default().as_secs_f64(),
            exits.join(" "),
        )
    }

    /// Every round: no client lost echo, the server exited 0.
    fn problems(&self, what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, r) in self.rounds.iter().enumerate() {
            if r.lost_clients > 0 {
                out.push(format!(
                    "{what} run {i}: {} of {CLIENTS} clients lost echo ({} bytes), e.g. {:?}",
                    r.lost_clients, r.lost_bytes, r.first_failures
                ));
            }
            if r.exit.is_none_or(|(_, code)| code != Some(0)) {
                out.push(format!("{what} run {i}: server exit {:?}", r.exit));
            }
        }
        out
    }
}

pub fn drain(ns: &mut Netns) {
    ns.slow_link();
    let runs = scale(1, 5);
    let mut clean = Tally { rounds: Vec::new() };
    let mut lossy = Tally { rounds: Vec::new() };
    for run in 0..runs {
        ns.set_loss(0);
        clean.rounds.push(round(20, Shut::Held, 0xd4a1_0000 + run));
        ns.set_loss(2);
        lossy.rounds.push(round(20, Shut::Held, 0xd4a1_1000 + run));
    }
    figure(
        "faults-drain",
        &format!(
            "{CLIENTS} clients x {} KiB, SIGTERM once every send returned, then shutdown(Write) and read to EOF, --shutdown-timeout 20, over tbf 100mbit: no loss: {}; 2% loss: {}; {}",
            EACH / KIB,
            clean.summary(),
            lossy.summary(),
            ns.describe_drops(),
        ),
    );
    let mut problems = clean.problems("no loss");
    problems.extend(lossy.problems("2% loss"));
    assert!(
        problems.is_empty(),
        "drain broke its contract: {problems:#?}"
    );
}

/// Clients that never half-close: each still gets all of its echo, then the
/// server's clean FIN when the timeout ends the drain, not before.
pub fn drain_no_shut(ns: &mut Netns) {
    const TIMEOUT: u64 = 3;
    ns.slow_link();
    let runs = scale(1, 3);
    let mut tally = Tally { rounds: Vec::new() };
    for run in 0..runs {
        tally
            .rounds
            .push(round(TIMEOUT, Shut::Never, 0xd4a1_2000 + run));
    }
    let early: Vec<String> = tally
        .rounds
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.first_eof
                .is_some_and(|t| t.as_secs_f64() < TIMEOUT as f64 - 0.2)
        })
        .map(|(i, r)| format!("run {i}: first EOF {:?} after the signal", r.first_eof))
        .collect();
    let first_eof = tally.rounds.iter().filter_map(|r| r.first_eof).min();
    let last_eof = tally.rounds.iter().filter_map(|r| r.last_eof).max();
    figure(
        "faults-drain-no-shut",
        &format!(
            "{CLIENTS} clients x {} KiB that never half-close, SIGTERM once every send returned, --shutdown-timeout {TIMEOUT}, over {}: {}; EOFs {:.2}..{:.2} s after the signal",
            EACH / KIB,
            ns.describe(),
            tally.summary(),
            first_eof.unwrap_or_default().as_secs_f64(),
            last_eof.unwrap_or_default().as_secs_f64(),
        ),
    );
    let mut problems = tally.problems("no half-close");
    problems.extend(early);
    assert!(
        problems.is_empty(),
        "drain broke its contract: {problems:#?}"
    );
}
