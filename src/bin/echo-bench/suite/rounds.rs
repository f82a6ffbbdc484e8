//! Throughput rounds: every server running at once, idle while not
//! measured, the load generator giving each one window per round in a
//! rotating order. At least `plan.rounds` rounds, then batches until the
//! median of echo-reactor's requests per CPU-second over the floor's is
//! known to ±`SPREAD_GOAL`, at most `plan.max_rounds`.

use std::time::Duration;

use super::measure::{at_load, words, Ctx, Run, ServerRuns};
use super::plan::{Contender, Load, Plan, ROUND_BATCH, SPREAD_GOAL};
use super::servers::{self, Placement};
use super::summary::{ratio, FLOOR};
use crate::throughput::{InterleavedReport, ThroughputReport};

/// Runs the throughput rounds at `load` into `out` (in the order of
/// `servers`); `fail` hears what went wrong.
pub fn throughput(
    ctx: &Ctx,
    plan: &Plan,
    servers: &[Contender],
    load: Load,
    out: &mut [ServerRuns],
    fail: &mut impl FnMut(&Contender, &str, String),
) {
    let what = format!("throughput {}", load.label());
    let mut done = 0;
    while done < plan.max_rounds {
        let batch = if done < plan.rounds {
            plan.rounds - done
        } else {
            ROUND_BATCH.min(plan.max_rounds - done)
        };
        eprintln!(
            "{what}: rounds {} to {}, servers in turn",
            done + 1,
            done + batch
        );
        let per_server = match interleaved(ctx, plan, servers, load, done, batch) {
            Ok(v) => v,
            Err(e) => {
                for s in servers {
                    fail(s, &what, e.clone());
                }
                return;
            }
        };
        for ((s, windows), r) in servers.iter().zip(per_server).zip(out.iter_mut()) {
            let runs = at_load(&mut r.throughput, load);
            let first = runs.len();
            for (k, v) in windows.into_iter().enumerate() {
                runs.push(Run {
                    round: done + k,
                    report: v,
                });
            }
            print_throughput(s.name, load, &runs[first..]);
            if let Some(v) = runs.last().map(|r| &r.report) {
                if v.errors + v.mismatches > 0 {
                    let e = format!(
                        "{} failed, {} echoed wrong bytes: {:?}",
                        v.errors, v.mismatches, v.first_error
                    );
                    fail(s, &what, e);
                }
            }
        }
        done += batch;
        let ours = out.iter().find(|r| r.name == "echo-reactor");
        let floor = out.iter().find(|r| r.name == FLOOR);
        // Without a spread (no floor, or under 5 rounds) more rounds cannot help.
        let Some(spread) = ours.and_then(|o| ratio(o, floor, load).spread) else {
            return;
        };
        eprintln!(
            "  spread of the median ratio to {FLOOR} after {done} rounds: ±{:.1} %",
            100.0 * spread
        );
        if spread <= SPREAD_GOAL {
            return;
        }
    }
}

/// Every server at once (each idle while not measured), the generator
/// giving each one window per round in turn; their windows by server.
fn interleaved(
    ctx: &Ctx,
    plan: &Plan,
    servers: &[Contender],
    load: Load,
    first_round: usize,
    rounds: usize,
) -> Result<Vec<Vec<ThroughputReport>>, String> {
    let ns = ctx.netns()?;
    let at = Placement {
        netns: ns.as_ref(),
        pin: ctx.pin,
        logs: &ctx.logs,
    };
    let mut running = Vec::new();
    let mut args = words(&[
        &"interleave",
        &"-c",
        &load.clients,
        &"-l",
        &load.bytes,
        &"-t",
        &plan.secs,
        &"--warmup",
        &plan.warmup,
        &"--rounds",
        &rounds,
        &"--first-round",
        &first_round,
    ]);
    let mut started = Ok(());
    for s in servers {
        match servers::start(s, &s.args(load.clients), &[], &at, Duration::from_secs(10)) {
            Ok(r) => {
                args.extend(words(&[&"-a", &r.addr, &"--pid", &r.pid]));
                running.push(r);
            }
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    let res = started.and_then(|()| servers::load::<InterleavedReport>(&ctx.exe, &at, &args));
    for r in running {
        r.kill();
    }
    Ok(res?.targets.into_iter().map(|t| t.windows).collect())
}

fn print_throughput(name: &str, load: Load, runs: &[Run<ThroughputReport>]) {
    let line: Vec<String> = runs
        .iter()
        .map(|r| {
            r.report
                .requests_per_cpu_sec
                .map_or("n/a".into(), |x| format!("{:.0}k", x / 1000.0))
        })
        .collect();
    let busy: Vec<String> = runs
        .iter()
        .map(|r| {
            r.report
                .server_cpu_util
                .map_or("n/a".into(), |x| format!("{:.0}", 100.0 * x))
        })
        .collect();
    eprintln!(
        "  {name:<12} {:>12}: req per CPU-s {} (server busy %: {})",
        load.label(),
        line.join(" "),
        busy.join(" ")
    );
}
