//! `suite`: what `make bench` runs. Plan (which servers, sizes, rounds),
//! measure (each run against a fresh server pinned to CPU 0, the load
//! generator, this binary, pinned to CPU 1, both in a network namespace of
//! their own when one can be made), summarise, judge echo-reactor's
//! targets, report (a table, results.json, results.svg).

mod instructions;
mod judge;
mod measure;
mod plan;
mod report;
mod rounds;
mod servers;
mod summary;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

pub use plan::SuiteArgs;

use crate::syscalls::{self, Method};
use measure::Ctx;
use plan::{Contender, Network, Part, Plan};

pub fn run(a: &SuiteArgs, exe: PathBuf) -> Result<(), String> {
    let started = Instant::now();
    let stolen_before = crate::procfs::steal_secs();
    let machine = report::machine();
    let nofile = crate::net::raise_nofile();
    let plan = Plan::new(a, nofile);
    let logs = a.out.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let fresh_netns = match a.network {
        Network::Host => false,
        Network::Auto => servers::can_unshare(),
        Network::Fresh if servers::can_unshare() => true,
        Network::Fresh => return Err("cannot make a network namespace (unshare -n)".into()),
    };
    let network = if fresh_netns {
        "a fresh network namespace per measurement"
    } else {
        "the host's network namespace"
    };
    // --quick counts syscalls only when a counter is named explicitly.
    let method = if plan.quick && a.syscalls == Method::Auto {
        Method::None
    } else {
        syscalls::detect(a.syscalls)
    };
    let ctx = Ctx {
        exe: exe.clone(),
        logs,
        pin: servers::can_pin(),
        fresh_netns,
        syscalls: method,
    };
    let servers = contenders(a, &exe)?;
    eprintln!(
        "echo-bench suite: {} throughput round(s), {} of the rest; servers: {}; server on CPU 0, load on CPU 1: {}; {network}; syscalls via {}; RLIMIT_NOFILE {nofile}, ceiling {}",
        plan.rounds,
        plan.other_rounds,
        servers.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        if ctx.pin { "yes" } else { "no (fewer than 2 CPUs or no taskset)" },
        method.name(),
        plan.ceiling,
    );

    let mut failures = Vec::new();
    let mut runs = measure::run_rounds(&ctx, &plan, &servers, &mut failures);
    if plan.has(Part::Instructions) {
        if instructions::available() {
            for (s, r) in servers.iter().zip(runs.iter_mut()) {
                eprintln!("  {:<12} instructions under callgrind ...", s.name);
                match instructions::measure(&ctx, s, plan.callgrind_secs, &a.out.join("callgrind"))
                {
                    Ok(i) => {
                        eprintln!(
                            "  {:<12} {:.0} instructions per request",
                            s.name, i.per_request
                        );
                        r.instructions = Some(i);
                    }
                    Err(e) => {
                        eprintln!("  {:<12} instructions: {e}", s.name);
                        failures.push(format!("{} instructions: {e}", s.name));
                    }
                }
            }
        } else {
            eprintln!(
                "note: valgrind or callgrind_annotate not installed: instructions not counted"
            );
        }
    }

    let summary = summary::summarize(&plan, &runs);
    let verdicts = (!plan.quick).then(|| judge::judge(&plan, &summary));
    let table = report::table(&plan, &summary);
    let instr = report::instructions_table(&runs);
    let spread = report::spread_table(&summary);
    let notes = report::notes(&plan, &summary);
    // By CPU name: a CPU that went offline meanwhile drops out.
    let steal: Option<BTreeMap<String, f64>> =
        stolen_before
            .zip(crate::procfs::steal_secs())
            .map(|(before, after)| {
                after
                    .into_iter()
                    .filter_map(|(cpu, t)| Some((cpu.clone(), t - before.get(&cpu)?)))
                    .collect()
            });
    println!(
        "Measured in {network}. CPU time stolen by the hypervisor (ready to run, something else ran): {} in {:.0} s.\n\n{table}",
        report::per_cpu_secs(steal.as_ref()),
        started.elapsed().as_secs_f64()
    );
    for n in &notes {
        println!("{n}");
    }
    if !instr.is_empty() {
        println!("\nUser-space instructions per request (callgrind, 50 x 512 B):\n\n{instr}");
    }
    if plan.rounds >= 3 && !spread.is_empty() {
        println!("\nHow the median moves with the number of rounds:\n\n{spread}");
    }
    match &verdicts {
        None => println!("\nquick run: numbers are indicative only; targets are not judged."),
        Some(v) => {
            println!("\necho-reactor targets:");
            for t in v {
                let word = match t.met {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "missed (not measured)",
                };
                println!("- {word}: {} ({})", t.target, t.detail);
            }
        }
    }

    let results = report::Results {
        machine,
        network: network.to_string(),
        pinned: ctx.pin,
        syscall_method: method.name().to_string(),
        loadavg_at_end: fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
        plan: &plan,
        servers: &servers,
        summary: &summary,
        targets: verdicts.as_deref(),
        table_markdown: table,
        instructions_markdown: instr,
        spread_markdown: spread,
        notes,
        failures: &failures,
        runs: &runs,
        suite_seconds: started.elapsed().as_secs_f64(),
        steal_secs_per_cpu: steal,
    };
    let json_path = a.out.join("results.json");
    let text = serde_json::to_string_pretty(&results).map_err(|e| format!("results: {e}"))?;
    fs::write(&json_path, text).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let svg_path = a.out.join("results.svg");
    crate::chart::draw(
        &svg_path,
        &report::chart_bars(&plan, &summary),
        &plan.loads.iter().map(|l| l.label()).collect::<Vec<_>>(),
        &plan.burst_sizes(),
    )?;
    println!(
        "wrote {} and {} ({:.0} s)",
        json_path.display(),
        svg_path.display(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        return Err(format!(
            "{} measurement(s) failed to run or saw echo errors (see above); results written anyway",
            failures.len()
        ));
    }
    Ok(())
}

/// The servers to measure: those asked for whose binaries exist, and the C
/// floor when it compiles.
fn contenders(a: &SuiteArgs, exe: &std::path::Path) -> Result<Vec<Contender>, String> {
    let mut servers = plan::contenders(a, exe);
    if !a.no_c && plan::wanted(a, summary::FLOOR) {
        match servers::build_c(&a.out) {
            Some(bin) => servers.push(Contender {
                name: summary::FLOOR,
                bin,
                max_clients: None,
            }),
            None => eprintln!("note: no working `cc`; skipping the C epoll baseline"),
        }
    }
    servers.retain(|s| {
        if !plan::wanted(a, s.name) {
            return false;
        }
        let ok = s.bin.is_file();
        if !ok {
            eprintln!(
                "warning: {} not found at {}; skipping it",
                s.name,
                s.bin.display()
            );
        }
        ok
    });
    if servers.is_empty() {
        return Err(
            "no server binary found (build with `cargo build --release --features bench`)".into(),
        );
    }
    Ok(servers)
}
