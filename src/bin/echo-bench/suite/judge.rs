//! Judging: echo-reactor's targets, each met, missed, or not measured, with
//! the numbers that decided it. (docs/benchmarks.md says what each means.)

use serde::Serialize;

use super::instructions;
use super::plan::Plan;
use super::summary::{Summary, FLOOR};

const OURS: &str = "echo-reactor";
/// Requests per CPU-second, as a fraction of the C floor's.
const CPU_VS_FLOOR: f64 = 0.97;
/// Syscalls per request above the C floor's.
const SYSCALLS_OVER_FLOOR: f64 = 0.02;
const INSTRUCTIONS_PER_REQUEST: f64 = 300.0;
/// The probe's p99 echo beside a bulk client, milliseconds.
const FAIRNESS_P99_MS: f64 = 2.0;
const IDLE_BYTES_PER_CONN: f64 = 100.0;
const BURST_LAST_ECHO_MS: f64 = 1500.0;
/// Server RSS at the connection ceiling: 8 MB (decimal), in KiB.
const CEILING_RSS_KIB: f64 = 8_000_000.0 / 1024.0;

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub target: String,
    /// None: not measured.
    pub met: Option<bool>,
    pub detail: String,
}

fn n(x: Option<f64>, digits: usize) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

pub fn judge(plan: &Plan, s: &Summary) -> Vec<Verdict> {
    let mut v = Vec::new();
    let ours = s.server(OURS);
    let floor = s.server(FLOOR);
    for &load in &plan.loads {
        let (o, f) = (
            ours.and_then(|x| x.load(load)),
            floor.and_then(|x| x.load(load)),
        );
        let r = o.map(|o| &o.rpcpu_vs_floor);
        let ratio = r.and_then(|r| r.median);
        let rounds = r.map_or(0, |r| r.rounds.len());
        let (lo, hi) = r.map_or((None, None), |r| {
            let m = |f: fn(f64, f64) -> f64| r.rounds.iter().copied().reduce(f);
            (m(f64::min), m(f64::max))
        });
        v.push(Verdict {
            target: format!(
                "req per CPU-s >= {CPU_VS_FLOOR}x {FLOOR} at {} (median of interleaved rounds)",
                load.label()
            ),
            met: ratio.map(|x| x >= CPU_VS_FLOOR),
            detail: format!(
                "{}x over {rounds} round(s), single rounds {}x to {}x, spread of the median ±{} %; {OURS} {} vs {FLOOR} {} req per CPU-s",
                n(ratio, 3),
                n(lo, 3),
                n(hi, 3),
                n(r.and_then(|r| r.spread).map(|x| 100.0 * x), 1),
                n(o.and_then(|o| o.rpcpu), 0),
                n(f.and_then(|f| f.rpcpu), 0),
            ),
        });
        let (os, fs) = (
            o.and_then(|o| o.syscalls_per_request),
            f.and_then(|f| f.syscalls_per_request),
        );
        v.push(Verdict {
            target: format!(
                "syscalls per request <= {FLOOR}'s + {SYSCALLS_OVER_FLOOR} at {}",
                load.label()
            ),
            met: os.zip(fs).map(|(o, f)| o <= f + SYSCALLS_OVER_FLOOR),
            detail: format!("{} vs {FLOOR} {}", n(os, 3), n(fs, 3)),
        });
    }
    let instr = |name: &str| s.server(name).and_then(|x| x.instructions_per_request);
    let ours_instr = instr(OURS);
    v.push(Verdict {
        target: format!(
            "user-space instructions per request <= {INSTRUCTIONS_PER_REQUEST} at {} (callgrind)",
            instructions::LOAD.label()
        ),
        met: ours_instr.map(|i| i <= INSTRUCTIONS_PER_REQUEST),
        detail: format!(
            "{}; {FLOOR} {}, tokio {}, threads {}",
            n(ours_instr, 0),
            n(instr(FLOOR), 0),
            n(instr("tokio"), 0),
            n(instr("threads"), 0)
        ),
    });
    let p99 = |name: &str| {
        s.server(name)
            .and_then(|x| x.fairness.as_ref())
            .and_then(|f| f.probe_p99_ms)
    };
    let ours_p99 = p99(OURS);
    let others: Vec<(&str, Option<f64>)> = s
        .servers
        .iter()
        .filter(|x| x.name != OURS)
        .map(|x| (x.name, p99(x.name)))
        .collect();
    let best_other = others.iter().filter_map(|(_, p)| *p).reduce(f64::min);
    v.push(Verdict {
        target: format!(
            "fairness: probe p99 beside a bulk client <= {FAIRNESS_P99_MS} ms and the best in the table"
        ),
        met: ours_p99.map(|p| p <= FAIRNESS_P99_MS && best_other.is_none_or(|b| p <= b)),
        detail: format!(
            "{} ms; {}",
            n(ours_p99, 3),
            others
                .iter()
                .map(|(name, p)| format!("{name} {} ms", n(*p, 3)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    let idle = ours
        .and_then(|o| o.hold(plan.idle_hold))
        .and_then(|h| h.rss_per_conn);
    v.push(Verdict {
        target: format!(
            "RSS per idle connection <= {IDLE_BYTES_PER_CONN} B at {}",
            plan.idle_hold
        ),
        met: idle.map(|b| b <= IDLE_BYTES_PER_CONN),
        detail: format!("{} B", n(idle, 0)),
    });
    for clients in plan.burst_sizes().into_iter().filter(|&c| c >= 10000) {
        let b = ours.and_then(|o| o.burst(clients));
        let failed = b.and_then(|b| b.failed_worst);
        let last = b.and_then(|b| b.last_echo_ms);
        let rss = b.and_then(|b| b.peak_rss_kib_worst);
        v.push(Verdict {
            target: format!(
                "burst {clients}: 0 failed, last echo < {:.1} s, server RSS <= 8 MB",
                BURST_LAST_ECHO_MS / 1000.0
            ),
            met: match (failed, last, rss) {
                (Some(f), Some(l), Some(r)) => {
                    Some(f == 0.0 && l < BURST_LAST_ECHO_MS && r <= CEILING_RSS_KIB)
                }
                _ => None,
            },
            detail: format!(
                "failed {} (worst round), last echo {} ms (median), peak RSS {} KiB (worst), SYN retransmits {}",
                n(failed, 0),
                n(last, 1),
                n(rss, 0),
                n(b.and_then(|b| b.syn_retransmits_worst), 0)
            ),
        });
    }
    let h = ours.and_then(|o| o.hold(plan.ceiling));
    let (failed, rss) = (
        h.and_then(|h| h.failed_worst),
        h.and_then(|h| h.peak_rss_kib_worst),
    );
    v.push(Verdict {
        target: format!("hold {}: 0 failed, server RSS <= 8 MB", plan.ceiling),
        met: failed
            .zip(rss)
            .map(|(f, r)| f == 0.0 && r <= CEILING_RSS_KIB),
        detail: format!(
            "failed {} (worst round), peak RSS {} KiB (worst)",
            n(failed, 0),
            n(rss, 0)
        ),
    });
    v
}
