//! The `echo-reactor` binary: parses flags, sets up logging, binds, announces
//! the address and the effective settings, and runs the reactor. Exit codes:
//! 0 after a clean shutdown, 1 when the server cannot listen or fails, 2 for
//! bad flags (from clap).
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use echo_reactor::{Config, Reactor};

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(kind) = config.generate {
        let mut stdout = std::io::stdout().lock();
        return match kind.write(&mut stdout).and_then(|()| stdout.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("echo-reactor: cannot write to stdout: {err}");
                ExitCode::FAILURE
            }
        };
    }
    echo_reactor::logging::init();

    // Read before binding: the socket library removes the variables.
    let inherited = listen_fds_for_us();
    let server = match Reactor::bind(&config) {
        Ok(server) => server,
        Err(err) => {
            // The error names what failed, e.g. `cannot listen on ADDR: …`.
            eprintln!("echo-reactor: {err}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("{}", started_line(&config, server.local_addr(), inherited));
    // Scripts and tests read the real port from this line, so it goes to
    // stdout at once, before any client can be served.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", server.local_addr());
    let _ = stdout.flush();
    drop(stdout);

    let result = server.run();
    // The loop is over: the last lines may wait a little for stderr rather
    // than be dropped.
    echo_reactor::logging::flush_at_exit(std::time::Duration::from_secs(2));
    match result {
        Ok(stats) => {
            echo_reactor::info_requested!("final stats: {stats}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            log::error!("poll failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The listener will be the socket passed in LISTEN_FDS, by the rule the
/// socket library applies: at least one socket, and LISTEN_PID this
/// process or unset.
fn listen_fds_for_us() -> bool {
    let var = |name| std::env::var(name).unwrap_or_default();
    let count = var("LISTEN_FDS").parse::<u32>().unwrap_or(0);
    let pid = var("LISTEN_PID");
    count > 0 && (pid.is_empty() || pid.parse() == Ok(std::process::id()))
}

/// One line an operator can act on: the PID to signal and every setting in
/// force, limits as lowered to what the process may open.
fn started_line(config: &Config, addr: SocketAddr, inherited: bool) -> String {
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs_f64());
    let on_off = |on: bool| if on { "on" } else { "off" };
    let listener = if inherited {
        format!("listener={addr} source=LISTEN_FDS (--listen ignored)")
    } else {
        let (backlog, reuse) = (config.backlog, on_off(config.reuse_port));
        format!("listener={addr} source=--listen backlog={backlog} reuse_port={reuse}")
    };
    let idle = match config.idle_timeout.is_zero() {
        true => "off".to_string(),
        false => secs(config.idle_timeout),
    };
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    format!(
        "echo-reactor {} started: pid={} {listener} max_connections={} nofile={nofile} \
         max_buffer={} max_memory={} accept_batch={} idle_timeout={} shutdown_timeout={} \
         quit_rule={}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        effective_connections(config.max_connections, nofile),
        config.max_buffer,
        config.max_memory,
        config.accept_batch,
        idle,
        secs(config.shutdown_timeout),
        on_off(!config.no_quit),
    )
}

/// `--max-connections` as the reactor lowered it at bind: the descriptor
/// limit (already raised as far as it goes) less the 16 the server keeps for
/// itself. A test holds this to the reactor's `accepting at most` line.
fn effective_connections(wanted: u32, nofile: u64) -> u64 {
    u64::from(wanted).min(nofile.saturating_sub(16)).max(1)
}
