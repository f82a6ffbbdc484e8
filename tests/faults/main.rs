//! Fault suite: the real server binary and its clients inside a private
//! network namespace, with faults on that namespace's loopback: a slow
//! queueing link (tbf, 100 Mbit/s) and random packet loss (nftables). The
//! kernel here has no netem, so there is no delay jitter and no reordering.
//!
//! A plain `main` (`harness = false`): each scenario re-executes this binary
//! under `unshare -n` (a fresh namespace per scenario, see `netns`), where it
//! starts the server and its clients, asserts, prints its `FIGURE` line and
//! exits; the parent relays the output and counts. Where no namespace can be
//! made (not root, no CAP_NET_ADMIN, a tool missing) every scenario is
//! reported skipped, never passed. Ends with
//! `faults: N passed, N failed, N skipped`; fails if any scenario failed.
//!
//! Arguments as libtest takes them: names to filter on (substring, or exact
//! with `--exact`), `--skip NAME`, `--list`; other flags are ignored.
//! Short sizes by default, full sizes with `TORTURE_FULL=1`.

#[path = "../common/mod.rs"]
mod common;

mod burst;
mod closing;
mod drain;
mod flows;
mod keepalive;
mod neighbour;
mod netns;
mod proxy;
mod streaming;
mod udp;

use std::time::{Duration, Instant};

use netns::{Netns, Outcome};

struct Scenario {
    name: &'static str,
    run: fn(&mut Netns),
    /// Bound on the whole child, short and full sizes: a backstop behind
    /// the scenario's own bounds.
    limit_secs: (u64, u64),
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "streaming_echo",
        run: streaming::streaming_echo,
        limit_secs: (120, 240),
    },
    Scenario {
        name: "quit_split_half_close",
        run: closing::quit_split_half_close,
        limit_secs: (60, 120),
    },
    Scenario {
        name: "drain",
        run: drain::drain,
        limit_secs: (150, 600),
    },
    Scenario {
        name: "drain_no_shut",
        run: drain::drain_no_shut,
        limit_secs: (90, 240),
    },
    Scenario {
        name: "connect_burst",
        run: burst::connect_burst,
        limit_secs: (80, 120),
    },
    Scenario {
        name: "bulk_neighbour",
        run: neighbour::bulk_neighbour,
        limit_secs: (60, 120),
    },
    Scenario {
        name: "udp_loss",
        run: udp::udp_loss,
        limit_secs: (60, 240),
    },
    Scenario {
        name: "proxy_split_header",
        run: proxy::proxy_split_header,
        limit_secs: (120, 240),
    },
    Scenario {
        name: "keepalive_vanished_peer",
        run: keepalive::keepalive_vanished_peer,
        limit_secs: (60, 60),
    },
];

/// What the command line asks for.
#[derive(Default)]
struct Args {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list: bool,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Args {
        // libtest flags that take their value as the next argument.
        const WITH_VALUE: [&str; 6] = [
            "--test-threads",
            "--logfile",
            "--color",
            "--format",
            "-Z",
            "--shuffle-seed",
        ];
        let mut out = Args::default();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--list" => out.list = true,
                "--exact" => out.exact = true,
                "--skip" => out.skips.extend(args.next()),
                flag if WITH_VALUE.contains(&flag) => {
                    args.next();
                }
                flag if flag.starts_with('-') => {}
                name => out.filters.push(name.to_string()),
            }
        }
        out
    }

    fn selects(&self, name: &str) -> bool {
        let matches = |pat: &String| {
            if self.exact {
                name == pat
            } else {
                name.contains(pat.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skips.iter().any(|s| name.contains(s.as_str()))
    }
}

/// Inside the namespace: run one scenario, exit 0 (passed) or not.
fn child(name: &str) -> i32 {
    let Some(scenario) = SCENARIOS.iter().find(|s| s.name == name) else {
        eprintln!("no fault scenario named {name:?}");
        return 2;
    };
    let mut ns = Netns::enter();
    (scenario.run)(&mut ns);
    0
}

fn main() {
    if let Ok(name) = std::env::var(netns::SCENARIO_ENV) {
        std::process::exit(child(&name));
    }
    if std::env::var_os(netns::PROBE_ENV).is_some() {
        std::process::exit(netns::probe_inside());
    }
    let args = Args::parse(std::env::args().skip(1));
    let selected: Vec<&Scenario> = SCENARIOS.iter().filter(|s| args.selects(s.name)).collect();
    if args.list {
        for s in &selected {
            println!("{}: test", s.name);
        }
        return;
    }
    let full = common::full();
    println!(
        "running {} fault scenarios ({} sizes), each in its own network namespace",
        selected.len(),
        if full { "full" } else { "short" }
    );
    let namespace = if selected.is_empty() {
        Ok(())
    } else {
        netns::probe()
    };
    let (mut passed, mut failed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for s in selected {
        if let Err(reason) = &namespace {
            println!(
                "scenario {} ... skipped: cannot create a network namespace ({reason})",
                s.name
            );
            skipped.push(s.name);
            continue;
        }
        println!("scenario {} ...", s.name);
        let limit = Duration::from_secs(if full { s.limit_secs.1 } else { s.limit_secs.0 });
        let t0 = Instant::now();
        let outcome = netns::run_scenario(s.name, limit);
        let took = t0.elapsed().as_secs_f64();
        match outcome {
            Outcome::Passed => {
                println!("scenario {} ... ok ({took:.1} s)", s.name);
                passed.push(s.name);
            }
            Outcome::Failed(why) => {
                println!("scenario {} ... FAILED: {why} ({took:.1} s)", s.name);
                failed.push(s.name);
            }
            Outcome::Skipped => {
                println!(
                    "scenario {} ... skipped: its namespace could not be set up",
                    s.name
                );
                skipped.push(s.name);
            }
        }
    }
    if !failed.is_empty() {
        println!("failed scenarios: {}", failed.join(", "));
    }
    println!(
        "faults: {} passed, {} failed, {} skipped",
        passed.len(),
        failed.len(),
        skipped.len()
    );
    std::process::exit(if failed.is_empty() { 0 } else { 1 });
}
