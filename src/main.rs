//! The `echo-reactor` binary: parses flags, sets up logging, binds, announces
//! the sockets and the effective settings, and runs the reactor. Exit codes:
//! 0 after a clean shutdown, 1 when the server cannot listen or fails, 2 for
//! bad flags (from clap).
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use echo_reactor::listener::{self, Source};
use echo_reactor::{Config, Reactor};

fn main() -> ExitCode {
    let config = Config::from_args();
    if let Some(kind) = config.generate {
        let mut stdout = std::io::stdout().lock();
        return match kind.write(&mut stdout).and_then(|()| stdout.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            // The reader had enough (`| head`), as with --help.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("echo-reactor: cannot write to stdout: {err}");
                ExitCode::FAILURE
            }
        };
    }
    echo_reactor::logging::init();

    let server = match Reactor::bind(&config) {
        Ok(server) => server,
        Err(err) => {
            // The error names what failed, e.g. `cannot listen on ADDR: …`.
            eprintln!("echo-reactor: {err}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("{}", started_line(&config, &server));
    // Scripts and tests read the real ports from these lines, so they go to
    // stdout at once, before any client can be served.
    let mut stdout = std::io::stdout().lock();
    for (kind, addr) in server.endpoints() {
        let _ = writeln!(stdout, "listening on {addr}{}", kind.suffix(" "));
    }
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

/// One line an operator can act on: the PID to signal and every setting in
/// force, limits as lowered to what the process may open.
fn started_line(config: &Config, server: &Reactor) -> String {
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs_f64());
    let on_off = |on: bool| if on { "on" } else { "off" };
    let sockets = listener::names(server.endpoints().iter().copied());
    let source = match server.source() {
        Source::ListenFds => {
            "source=LISTEN_FDS (--listen, --proxy-listen, --udp ignored)".to_string()
        }
        Source::Flags => format!(
            "source=flags backlog={} reuse_port={}",
            config.backlog,
            on_off(config.reuse_port)
        ),
    };
    let idle = match config.idle_timeout.is_zero() {
        true => "off".to_string(),
        false => secs(config.idle_timeout),
    };
    let keepalive = match config.keepalive {
        0 => "off".to_string(),
        secs => format!("{secs}s"),
    };
    let trust = match config.proxy_trust.is_empty() {
        true => "any".to_string(),
        false => config
            .proxy_trust
            .iter()
            .map(|net| net.to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    format!(
        "echo-reactor {} started: pid={} sockets={sockets} {source} max_connections={} \
         nofile={nofile} max_buffer={} max_memory={} accept_batch={} idle_timeout={} \
         keepalive={keepalive} shutdown_timeout={} quit_rule={} proxy_trust={trust}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        server.max_connections(),
        config.max_buffer,
        config.max_memory,
        config.accept_batch,
        idle,
        secs(config.shutdown_timeout),
        on_off(!config.no_quit),
    )
}
